//! Re-warming: when a table's batch watermark W moves, every named query and the most
//! frequent recent split queries of that table run again in the background (bounded
//! concurrency), so the first dashboard request after a batch recompute finds its batch
//! legs and chunks cached for the new W.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use futures::{StreamExt, TryStreamExt};
use tokio::sync::{broadcast, watch};

use super::{Engine, Session};
use crate::model::column::Param;
use crate::plan::Class;

/// Distinct recent queries remembered; past it, the once-seen ones are forgotten.
const RECENT_MAX: usize = 1024;
/// Recent queries re-warmed per table when its W moves.
const REWARM_TOP: usize = 16;
/// Re-warm queries run at the same time.
const REWARM_PARALLEL: usize = 2;

/// A query as re-warming runs it: SQL text and parameters.
type Asked = (String, Vec<Param>);

/// Recent split queries: (sql, params) → (logical table, times asked).
#[derive(Default)]
pub(super) struct Recent(Mutex<HashMap<Asked, (String, u64)>>);

impl Recent {
    /// Counts one request of a split query over `table`.
    pub(super) fn note(&self, table: &str, sql: &str, params: &[Param]) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= RECENT_MAX {
            m.retain(|_, (_, n)| *n > 1);
            m.values_mut().for_each(|(_, n)| *n /= 2);
        }
        let e = m.entry((sql.to_string(), params.to_vec())).or_insert((table.to_lowercase(), 0));
        e.1 += 1;
    }

    /// The most asked recent queries of `table`.
    fn top(&self, table: &str) -> Vec<(String, Vec<Param>)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = m.iter().filter(|(_, (t, _))| t == table).collect();
        v.sort_by_key(|(_, (_, n))| std::cmp::Reverse(*n));
        v.into_iter().take(REWARM_TOP).map(|(k, _)| k.clone()).collect()
    }
}

impl Engine {
    /// Spawns the re-warmer; it holds the engine weakly and stops with `shutdown`.
    pub(super) fn spawn_rewarmer(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut moved = self.watermarks.subscribe();
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let table = tokio::select! {
                    t = moved.recv() => t,
                    _ = shutdown.changed() => break,
                };
                match table {
                    Ok(m) => rewarm(&engine, &m.table).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Named queries (with their defaults) and frequent recent queries over `table`.
    fn rewarm_set(&self, table: &str) -> Vec<(String, Vec<Param>)> {
        let mut set = Vec::new();
        for q in self.named.0.values() {
            let reads = matches!(self.classify(&q.sql), Ok(Class::Split { table: t, .. }) if t.eq_ignore_ascii_case(table));
            if let (true, Ok((_, params))) = (reads, self.named.bind(&q.name, &HashMap::new())) {
                set.push((q.sql.clone(), params));
            }
        }
        for q in self.recent.top(table) {
            if !set.contains(&q) {
                set.push(q);
            }
        }
        set
    }
}

impl Engine {
    /// Whether this replica re-warms `sql` for `table`'s current W: always alone; in a fleet
    /// sharing legs, only the replica that claims it first (the others read its legs from
    /// the shared cache when asked).
    async fn claims_rewarm(&self, table: &str, sql: &str, params: &[Param]) -> bool {
        let Some(shared) = &self.shared else { return true };
        let w = self.watermarks.cached(table).map(|w| w.text()).unwrap_or_default();
        shared.claim_rewarm(&format!("rewarm\n{table}\n{w}\n{sql}\n{params:?}")).await
    }
}

async fn rewarm(engine: &Weak<Engine>, table: &str) {
    let Some(e) = engine.upgrade() else { return };
    let set = e.rewarm_set(table);
    tracing::info!(table, queries = set.len(), "re-warming caches for the new watermark");
    futures::stream::iter(set)
        .for_each_concurrent(REWARM_PARALLEL, |(sql, params)| {
            let e = e.clone();
            async move {
                if !e.claims_rewarm(table, &sql, &params).await {
                    return;
                }
                let mut session = Session::new("rewarm");
                let run = async {
                    let r = e.execute(&sql, &params, &mut session).await?;
                    r.stream.try_for_each(|_| async { Ok(()) }).await
                };
                if let Err(err) = run.await {
                    tracing::warn!(error = %err, "re-warming a query failed");
                }
            }
        })
        .await;
}
