//! Per-chunk caching of sliding ranges in the engine: the batch leg of an aggregate with a
//! lower time bound runs as time pieces (see `plan::chunks`), each cached on its own.

use std::sync::Arc;

use super::fleet::FleetPlan;
use super::Engine;
use crate::cache::{LegKey, LegRows};
use crate::error::Result;
use crate::model::column::{Described, Param, SessionParams};
use crate::model::freshness::CacheStatus;
use crate::model::value::Value;
use crate::plan::chunks::{self, Piece};
use crate::plan::split::{BatchPieces, Layer, SplitPlan};
use crate::plan::windows_leg;
use crate::watermark::literal_for;

/// The pieces as one statement: each piece's rows tagged with its position in a first
/// column. The pieces share their select list (only their time predicates differ), so the
/// branches of the union have the same columns and types.
fn tagged_union(pieces: &[&str]) -> String {
    let branch = |(i, p): (usize, &&str)| {
        format!("SELECT {i} AS \"__tm_piece\", * FROM ({p}) AS \"__tm_p{i}\"")
    };
    pieces.iter().enumerate().map(branch).collect::<Vec<_>>().join(" UNION ALL ")
}

/// Splits the rows of [`tagged_union`] back into `n` pieces, the tag removed.
fn untag(rows: Vec<Vec<Value>>, n: usize) -> Result<Vec<Vec<Vec<Value>>>> {
    let mut out = vec![Vec::new(); n];
    for mut row in rows {
        let piece = match row.first() {
            Some(Value::Int(i)) if (*i as usize) < n => *i as usize,
            _ => return Err(crate::error::Error::internal("a piece's rows without their tag")),
        };
        row.remove(0);
        out[piece].push(row);
    }
    Ok(out)
}

/// The predicate a piece adds to the batch leg.
fn piece_predicate(p: &Piece, bp: &BatchPieces, naive: bool) -> Option<String> {
    let lit =
        |t: i64| literal_for(&if naive { Value::Timestamp(t) } else { Value::TimestampTz(t) }).ok();
    let t = &bp.time_ref;
    Some(match (p.lo, p.hi) {
        (None, Some(h)) => format!("{t} < {}", lit(h)?),
        (Some(l), Some(h)) => format!("{t} >= {} AND {t} < {}", lit(l)?, lit(h)?),
        (Some(l), None) => format!("{t} >= {}", lit(l)?),
        (None, None) => "TRUE".into(),
    })
}

/// A batch leg cut into pieces: the query's lower time bound and each piece with its SQL.
pub(super) struct Cut {
    /// The query's lower bound on the time column (µs since 1970).
    pub lower: i64,
    /// Whether the time column is a `timestamp` (else `timestamptz`).
    pub naive: bool,
    /// The pieces, oldest first, each with its SQL (its batch cache key).
    pub pieces: Vec<(Piece, String)>,
    /// Whether the fringe (the first piece) is worth sharing with the fleet: not when the
    /// lower bound is `now()`-relative, which makes it new with every request.
    pub share_fringe: bool,
}

impl Engine {
    /// The query's lower bound on the time column (µs since 1970) and whether the column
    /// is a `timestamp`, when the batch leg could be cut at all (an aggregate, W a time).
    pub(super) fn lower_time_bound(
        &self,
        plan: &SplitPlan,
        params: &[Param],
    ) -> Option<(i64, bool)> {
        let bp = plan.batch_pieces.as_ref()?;
        let naive = match plan.watermark.value {
            Value::Timestamp(_) => true,
            Value::TimestampTz(_) => false,
            _ => return None,
        };
        let sel = bp.selection.as_ref();
        let rules = (params, &plan.time);
        windows_leg::lower_bound(sel, &bp.qualifier, &bp.time_column, naive, rules)
            .map(|l| (l, naive))
    }

    /// The batch leg's pieces, when caching is on and the query has a lower time bound far
    /// enough below W to be worth cutting.
    pub(super) fn batch_cut(
        &self,
        plan: &SplitPlan,
        params: &[Param],
        bypass: bool,
    ) -> Option<Cut> {
        if bypass || !self.legs.enabled() {
            return None;
        }
        let bp = plan.batch_pieces.as_ref()?;
        let (Value::Timestamp(w) | Value::TimestampTz(w)) = plan.watermark.value else {
            return None;
        };
        let (lower, naive) = self.lower_time_bound(plan, params)?;
        let sel = bp.selection.as_ref();
        let rules = (params, &plan.time);
        let piece_sql = |p: &Piece| {
            let extra = piece_predicate(p, bp, naive)?;
            Some(match p.lo {
                // whole chunks and the tail lie above every lower bound: drop those bounds so
                // the piece's SQL (its cache key) stays the same while the range slides
                Some(lo) => {
                    let q = &bp.qualifier;
                    let rest = windows_leg::without_lower_bounds(
                        sel,
                        q,
                        &bp.time_column,
                        naive,
                        rules,
                        lo,
                    );
                    bp.sql(rest.as_ref(), &extra)
                }
                None => bp.sql(sel, &extra),
            })
        };
        let pieces = chunks::cut(lower, w)?
            .into_iter()
            .map(|p| piece_sql(&p).map(|sql| (p, sql)))
            .collect::<Option<Vec<_>>>()?;
        Some(Cut { lower, naive, pieces, share_fringe: !plan.pinned_now })
    }

    /// Runs the pieces of a cut batch leg through the batch cache and concatenates their
    /// partial rows (the merge combines them like any other leg's). The pieces the cache does
    /// not hold come from the fleet's shared cache when another replica computed them; the
    /// rest are computed together, in one statement (see [`tagged_union`]): a cold sliding
    /// range costs the warehouse one round trip and one queue slot, not one per chunk.
    pub(super) async fn run_pieces(
        &self,
        cut: &Cut,
        described: &Described,
        params: &[Param],
        wp: &SessionParams,
    ) -> Result<(LegRows, Vec<CacheStatus>)> {
        let pieces: Vec<&str> = cut.pieces.iter().map(|(_, sql)| sql.as_str()).collect();
        let key = |sql: &str| LegKey {
            sql: sql.to_string(),
            params: params.to_vec(),
            session: wp.clone(),
        };
        let missing: Vec<usize> =
            (0..pieces.len()).filter(|i| !self.legs.has_batch(&key(pieces[*i]))).collect();
        let shared = self.shared_for(Layer::Batch, false);
        let shareable = |i: &&usize| cut.share_fringe || cut.pieces[**i].0.lo.is_some();
        let ids: Vec<(usize, String)> = missing
            .iter()
            .filter(shareable)
            .map(|i| (*i, Self::leg_identity(pieces[*i], params, wp)))
            .collect();
        let mut fleet = match shared {
            Some(sh) if !ids.is_empty() => self.fleet_plan(sh, &ids).await,
            _ => FleetPlan { won: ids.iter().map(|(i, _)| *i).collect(), ..Default::default() },
        };
        // a now()-relative fringe is computed here, with this replica's other pieces
        fleet.won.extend(missing.iter().filter(|i| !shareable(i)));
        fleet.won.sort_unstable();
        let fringe = cut.pieces.first().is_some_and(|(p, _)| p.is_fringe());
        let ctx =
            PieceCtx { pieces: &pieces, ids: &ids, fleet: &fleet, fringe, described, params, wp };
        let together = tokio::sync::OnceCell::new();
        let loads = (0..pieces.len()).map(|i| {
            let (ctx, together) = (&ctx, &together);
            let load = move || async move { self.load_piece(ctx, i, together).await };
            self.legs.get_or_load(Layer::Batch, key(pieces[i]), false, load)
        });
        let results = futures::future::try_join_all(loads).await?;
        let statuses = results.iter().map(|(_, s)| *s).collect();
        let rows = results.into_iter().flat_map(|((r, _), _)| Arc::unwrap_or_clone(r)).collect();
        Ok((Arc::new(rows), statuses))
    }

    /// One piece the batch cache lacks: from the fleet, awaited from the replica computing
    /// it, or computed here (with the other pieces this replica computes, in one statement).
    async fn load_piece(
        &self,
        ctx: &PieceCtx<'_>,
        i: usize,
        together: &tokio::sync::OnceCell<Vec<Vec<Vec<Value>>>>,
    ) -> Result<(Vec<Vec<Value>>, bool)> {
        let shared = self.shared_for(Layer::Batch, false);
        if let Some(rows) = ctx.fleet.found.get(&i) {
            return Ok((rows.clone(), true));
        }
        let id = ctx.ids.iter().find(|(j, _)| *j == i).map(|(_, id)| id.as_str());
        if let (Some(sh), Some(id)) = (shared, id.filter(|_| ctx.fleet.held.contains(&i))) {
            if let Some(rows) = sh.wait_for(id).await {
                return Ok((rows, true));
            }
            let rows = self.fetch_piece(ctx, i).await?;
            sh.put(id, &rows).await;
            return Ok((rows, false));
        }
        let won = &ctx.fleet.won;
        let Some(at) = won.iter().position(|m| *m == i).filter(|_| won.len() > 1) else {
            let rows = self.fetch_piece(ctx, i).await;
            if let (Some(sh), Some(id)) = (shared, id) {
                if let Ok(r) = &rows {
                    sh.put(id, r).await;
                }
                sh.release(id).await;
            }
            return rows.map(|r| (r, false));
        };
        let all = together.get_or_try_init(|| self.fetch_together(ctx)).await?;
        Ok((all[at].clone(), false))
    }

    /// One piece alone (a fringe alone counts as a `fringe` statement, not a batch one).
    async fn fetch_piece(&self, ctx: &PieceCtx<'_>, i: usize) -> Result<Vec<Vec<Value>>> {
        self.metrics.leg(if i == 0 && ctx.fringe { "fringe" } else { "batch" });
        let fetched =
            self.warehouse.fetch(ctx.pieces[i], &ctx.described.params, ctx.params, ctx.wp);
        fetched.await.map(|f| f.rows)
    }

    /// The pieces this replica computes, in one tagged statement, each then shared and its
    /// lease let go.
    async fn fetch_together(&self, ctx: &PieceCtx<'_>) -> Result<Vec<Vec<Vec<Value>>>> {
        self.metrics.leg("batch");
        let won = &ctx.fleet.won;
        let sqls: Vec<&str> = won.iter().map(|m| ctx.pieces[*m]).collect();
        let sql = tagged_union(&sqls);
        let rows = self.warehouse.fetch(&sql, &ctx.described.params, ctx.params, ctx.wp).await;
        let shared = self.shared_for(Layer::Batch, false);
        let id_of = |m: &usize| ctx.ids.iter().find(|(j, _)| j == m).map(|(_, id)| id.as_str());
        let all = match rows.and_then(|r| untag(r.rows, won.len())) {
            Ok(all) => all,
            Err(e) => {
                if let Some(sh) = shared {
                    futures::future::join_all(
                        won.iter().filter_map(id_of).map(|id| sh.release(id)),
                    )
                    .await;
                }
                return Err(e);
            }
        };
        if let Some(sh) = shared {
            let share = won.iter().zip(&all).filter_map(|(m, r)| Some((id_of(m)?, r)));
            futures::future::join_all(share.map(|(id, r)| async move {
                sh.put(id, r).await;
                sh.release(id).await;
            }))
            .await;
        }
        Ok(all)
    }
}

/// What loading the pieces of one cut needs.
struct PieceCtx<'a> {
    pieces: &'a [&'a str],
    /// Whether the first piece is a fringe (open below).
    fringe: bool,
    ids: &'a [(usize, String)],
    fleet: &'a FleetPlan,
    described: &'a Described,
    params: &'a [Param],
    wp: &'a SessionParams,
}
