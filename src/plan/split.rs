//! The split fast path: one SQL per leg (batch below W, speed at or above W) and the merge
//! spec the engine applies to the legs' rows. Whatever this module cannot prove correct
//! returns [`crate::error::Error::Unsplittable`] and the query is passed through whole.

use sqlparser::ast::{Distinct, Expr, LimitClause, Query, Select, SetExpr, Value as SqlValue};

use super::prune::{self};
use super::text::text_rules;
use super::windows_leg::AggShape;
use crate::error::Result;
use crate::model::column::Param;
use crate::model::sql::quote_ident;

use super::aggregate::*;
pub use super::literals::*;
pub use super::spec::*;
use super::sqlcheck::*;

/// Plans the split of a query over one logical table.
pub fn plan(inp: &SplitInput) -> Result<SplitPlan> {
    let q = inp.query;
    check_query(q)?;
    let SetExpr::Select(select) = q.body.as_ref() else { return Err(no("set operation")) };
    check_select(select)?;
    let pos = find_logical(select, inp.table)?;
    check_joins(select, pos)?;
    check_functions(q, inp.facts)?;
    let qualifier = qualifier_of(select, pos)?;
    let time_ref = format!("{qualifier}.{}", quote_ident(&inp.table.time_column));
    let w = inp.watermark.literal()?;
    let pruning = prune::analyze(
        select.selection.as_ref(),
        &qualifier,
        &inp.table.time_column,
        &inp.watermark.value,
    );
    let mut frames = Vec::new();
    let speed_from = render_from(select, pos, &inp.table.speed_table, &qualifier);
    let speed_filter = |upper: &str| {
        let pred = format!("{time_ref} >= {w} AND {time_ref} < {upper}");
        match &select.selection {
            Some(e) => format!("FROM {speed_from} WHERE ({e}) AND {pred}"),
            None => format!("FROM {speed_from} WHERE {pred}"),
        }
    };
    let speed_template = speed_filter("\u{0}");

    for (layer, table, pred) in [
        (Layer::Batch, &inp.table.batch_table, format!("{time_ref} < {w}")),
        (Layer::Speed, &inp.table.speed_table, format!("{time_ref} >= {w}")),
    ] {
        let skip = match layer {
            Layer::Batch => pruning.batch,
            Layer::Speed => pruning.speed,
        };
        if !skip {
            let from = render_from(select, pos, table, &qualifier);
            let filter = match &select.selection {
                Some(e) => format!("({e}) AND {pred}"),
                None => pred,
            };
            frames.push((layer, format!("FROM {from} WHERE {filter}")));
        }
    }
    let aggregate = is_aggregate(q, select, inp.facts);
    let union = (inp.union && aggregate)
        .then(|| {
            let cols: Vec<String> = inp.columns.iter().map(|c| c.name.clone()).collect();
            render_union(q, pos, &qualifier, &cols, &sides_of_w(inp.table, &w, pruning))
        })
        .flatten();
    let (shape, render, agg) = if aggregate {
        plan_aggregate(q, select, inp)?
    } else {
        let (shape, render) = plan_rows(q, select, inp)?;
        (shape, render, None)
    };
    let render = if inp.time.redshift && inp.facts.backslash_escapes {
        let plain = render;
        std::sync::Arc::new(move |frame: &str| escape_backslashes(&plain(frame))) as Render
    } else {
        render
    };
    let legs =
        frames.into_iter().map(|(layer, frame)| Leg { layer, sql: render(&frame) }).collect();
    let text = text_rules(q, inp.facts);
    // The windows compare text by bytes: under a folding collation they would miss rows.
    let alone = select.from.len() == 1 && select.from[0].joins.is_empty() && text.keys_bytewise;
    let batch_pieces = match (&agg, pruning.batch) {
        (Some(_), false) => Some(BatchPieces {
            render: render.clone(),
            from: render_from(select, pos, &inp.table.batch_table, &qualifier),
            below_w: format!("{time_ref} < {w}"),
            time_ref: time_ref.clone(),
            selection: select.selection.clone(),
            qualifier: qualifier.clone(),
            time_column: inp.table.time_column.clone(),
        }),
        _ => None,
    };
    let window = match agg {
        Some((cols, n_keys, partials)) if alone && !pruning.speed => Some(WindowInput {
            shape: AggShape {
                cols,
                n_keys,
                partials,
                selection: select.selection.clone(),
                qualifier: qualifier.clone(),
                time_column: inp.table.time_column.clone(),
            },
            speed_up_to: SpeedUpTo(std::sync::Arc::new(move |upper: &str| {
                render(&speed_template.replace('\u{0}', upper))
            })),
        }),
        _ => None,
    };
    Ok(SplitPlan {
        table: inp.table.name.clone(),
        watermark: inp.watermark.clone(),
        legs,
        pruned: pruned_layers(pruning),
        text,
        time: inp.time.clone(),
        shape,
        window,
        batch_pieces,
        union: union.map(|u| backslashes_for(inp, u)),
        source: String::new(),
        pinned_now: false,
    })
}

/// SQL printed by sqlparser as the warehouse reads it (Redshift with backslash escapes on
/// doubles the backslashes inside string literals).
fn backslashes_for(inp: &SplitInput, sql: String) -> String {
    if inp.time.redshift && inp.facts.backslash_escapes {
        escape_backslashes(&sql)
    } else {
        sql
    }
}

fn plan_rows(q: &Query, s: &Select, inp: &SplitInput) -> Result<(Shape, Render)> {
    let (limit, offset) = limit_offset(q)?;
    let sorted = q.order_by.is_some() || s.distinct.is_some() || offset > 0;
    match limit {
        None if sorted => {
            return Err(no("unbounded sorted or distinct rows (the warehouse sorts them)"))
        }
        Some(l) if l.saturating_add(offset) > SPLIT_ROWS_MAX => {
            return Err(no("LIMIT above the split row budget"))
        }
        _ => {}
    }
    let n_visible = inp.described.columns.len();
    let mut hidden: Vec<String> = Vec::new();
    let mut order = Vec::new();
    for o in order_exprs(q)? {
        let (desc, nulls_first) = sort_opts(o)?;
        let col = match output_ref(&o.expr, inp.described)? {
            Some(i) => i,
            None => {
                if contains_subquery(&o.expr) {
                    return Err(no("subquery in ORDER BY"));
                }
                hidden.push(o.expr.to_string());
                n_visible + hidden.len() - 1
            }
        };
        order.push(SortKey { source: SortSource::Column(col), desc, nulls_first });
    }
    let distinct = matches!(s.distinct, Some(Distinct::Distinct));
    let mut select_list: Vec<String> = s.projection.iter().map(|p| p.to_string()).collect();
    for (j, h) in hidden.iter().enumerate() {
        select_list.push(format!("{h} AS \"__tm_o{j}\""));
    }
    let head =
        format!("SELECT {}{}", if distinct { "DISTINCT " } else { "" }, select_list.join(", "));
    let tail = match limit {
        Some(l) => {
            let ob = q.order_by.as_ref().map(|o| format!(" {o}")).unwrap_or_default();
            format!("{ob} LIMIT {}", l.saturating_add(offset))
        }
        None => String::new(),
    };
    let spec = RowsSpec { n_visible, order, distinct, limit, offset };
    Ok((Shape::Rows(spec), std::sync::Arc::new(move |frame: &str| format!("{head} {frame}{tail}"))))
}

// ---------------------------------------------------------------- aggregates

/// Replaces a `$n` LIMIT or OFFSET by its bound value when that is a whole number (so a
/// parameterized LIMIT, as in a named query, splits and caches like a literal one; the answer
/// cache is keyed by the parameters). Other values stay as they are and pass the query
/// through, where the warehouse judges them.
pub fn bind_limits(q: &mut Query, params: &[Param]) {
    let bind = |e: &mut Expr| {
        let Expr::Value(v) = e else { return };
        let SqlValue::Placeholder(p) = &v.value else { return };
        let Some(Param::Text(t)) = super::timefold::param(p, params) else { return };
        if let Ok(n) = t.trim().parse::<u64>() {
            v.value = SqlValue::Number(n.to_string(), false);
        }
    };
    if let Some(LimitClause::LimitOffset { limit, offset, .. }) = &mut q.limit_clause {
        if let Some(l) = limit {
            bind(l);
        }
        if let Some(o) = offset {
            bind(&mut o.value);
        }
    }
}
