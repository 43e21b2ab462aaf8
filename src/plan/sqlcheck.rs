//! What the split planner requires of a query (one logical table, plain joins, known
//! functions, literal limits) and small readers of a query's parts.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, Distinct, Expr, Function, GroupByExpr, Ident, JoinOperator, LimitClause,
    ObjectName, ObjectNamePart, OrderByKind, Query, Select, SelectFlavor, SelectItem, TableAlias,
    TableFactor, Value as SqlValue,
};

use super::prune::Pruning;
use crate::catalog::Facts;
use crate::config::TableConfig;
use crate::error::{Error, Result};
use crate::model::column::Described;

use super::spec::*;

pub(crate) fn no(reason: &str) -> Error {
    Error::unsplittable(reason)
}

pub(crate) fn pruned_layers(p: Pruning) -> Vec<Layer> {
    let mut v = Vec::new();
    if p.batch {
        v.push(Layer::Batch);
    }
    if p.speed {
        v.push(Layer::Speed);
    }
    v
}

/// Group columns, number of keys and partial sources of an aggregate, for the window leg.
pub(crate) type AggParts = (Vec<Expr>, usize, Vec<(String, Option<Expr>)>);

pub(crate) fn check_query(q: &Query) -> Result<()> {
    if q.with.is_some() {
        return Err(no("WITH clause"));
    }
    if q.fetch.is_some() || !q.locks.is_empty() || q.for_clause.is_some() || q.settings.is_some() {
        return Err(no("FETCH/FOR/SETTINGS clause"));
    }
    if q.format_clause.is_some() || !q.pipe_operators.is_empty() {
        return Err(no("non-standard clause"));
    }
    Ok(())
}

pub(crate) fn check_select(s: &Select) -> Result<()> {
    if s.top.is_some()
        || s.into.is_some()
        || !s.lateral_views.is_empty()
        || s.prewhere.is_some()
        || !s.connect_by.is_empty()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || !s.named_window.is_empty()
        || s.qualify.is_some()
        || s.value_table_mode.is_some()
        || s.exclude.is_some()
        || s.flavor != SelectFlavor::Standard
        || !s.optimizer_hints.is_empty()
        || s.select_modifiers.is_some()
    {
        return Err(no("SELECT clause the split does not handle"));
    }
    if matches!(s.distinct, Some(Distinct::On(_))) {
        return Err(no("DISTINCT ON"));
    }
    Ok(())
}

/// Where the logical table sits in FROM: (index in FROM list, join index or None).
pub(crate) type Pos = (usize, Option<usize>);

pub(crate) fn factor_at(s: &Select, pos: Pos) -> &TableFactor {
    let twj = &s.from[pos.0];
    match pos.1 {
        None => &twj.relation,
        Some(j) => &twj.joins[j].relation,
    }
}

/// True when `name` names the logical table (optionally qualified with `public`).
pub fn names_table(name: &ObjectName, table: &TableConfig) -> bool {
    let parts: Vec<&Ident> = name.0.iter().filter_map(ObjectNamePart::as_ident).collect();
    if parts.len() != name.0.len() {
        return false;
    }
    let matches = |i: &Ident, want: &str| {
        if i.quote_style.is_some() {
            i.value == want
        } else {
            i.value.eq_ignore_ascii_case(want)
        }
    };
    match parts.as_slice() {
        [t] => matches(t, &table.name),
        [schema, t] => matches(schema, "public") && matches(t, &table.name),
        _ => false,
    }
}

pub(crate) fn find_logical(s: &Select, table: &TableConfig) -> Result<Pos> {
    let is_logical =
        |f: &TableFactor| matches!(f, TableFactor::Table { name, .. } if names_table(name, table));
    for (i, twj) in s.from.iter().enumerate() {
        if is_logical(&twj.relation) {
            return check_plain(&twj.relation).map(|_| (i, None));
        }
        for (j, join) in twj.joins.iter().enumerate() {
            if is_logical(&join.relation) {
                return check_plain(&join.relation).map(|_| (i, Some(j)));
            }
        }
    }
    Err(no("logical table is not in the top-level FROM"))
}

pub(crate) fn check_plain(f: &TableFactor) -> Result<()> {
    match f {
        TableFactor::Table {
            args: None,
            with_hints,
            version: None,
            with_ordinality: false,
            partitions,
            json_path: None,
            sample: None,
            index_directives,
            alias,
            ..
        } if with_hints.is_empty() && partitions.is_empty() && index_directives.is_empty() => {
            if alias.as_ref().is_some_and(|a| !a.columns.is_empty() || a.at.is_some()) {
                return Err(no("table alias with column list"));
            }
            Ok(())
        }
        _ => Err(no("logical table used with table modifiers")),
    }
}

/// Only joins that distribute over the union of the layers: the logical table is joined
/// with INNER/CROSS, and outer joins keep it on the preserved (left) side.
pub(crate) fn check_joins(s: &Select, pos: Pos) -> Result<()> {
    let twj = &s.from[pos.0];
    for (j, join) in twj.joins.iter().enumerate() {
        let op = &join.join_operator;
        let inner = matches!(
            op,
            JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
        );
        let left = matches!(op, JoinOperator::Left(_) | JoinOperator::LeftOuter(_));
        let ok = match pos.1 {
            Some(p) if j == p => inner,
            Some(p) if j < p => inner || left,
            _ => inner || left,
        };
        if !ok {
            return Err(no("join type that does not distribute over the layers"));
        }
    }
    Ok(())
}

pub(crate) fn fn_name(f: &Function) -> String {
    f.name
        .0
        .last()
        .and_then(ObjectNamePart::as_ident)
        .map(|i| i.value.to_lowercase())
        .unwrap_or_default()
}

pub(crate) fn check_functions(q: &Query, facts: &Facts) -> Result<()> {
    let mut bad = None;
    let _ = visit_expressions(q, |e| {
        if let Expr::Function(f) = e {
            let name = fn_name(f);
            if f.over.is_some() {
                bad = Some("window function");
            } else if !f.within_group.is_empty() {
                bad = Some("ordered-set aggregate");
            } else if facts.volatile.contains(&name) {
                bad = Some("volatile function");
            } else if facts.aggregates.contains(&name) && qualified_outside_catalog(f) {
                bad = Some("schema-qualified aggregate");
            } else if !facts.aggregates.contains(&name) && !facts.scalars.contains(&name) {
                bad = Some("function the planner does not know to be scalar");
            }
        }
        if bad.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    match bad {
        Some(r) => Err(no(r)),
        None => Ok(()),
    }
}

/// `myschema.sum(x)` is not the built-in `sum`: only `pg_catalog.` or no schema is.
pub(crate) fn qualified_outside_catalog(f: &Function) -> bool {
    f.name.0.len() > 1
        && !f.name.0[f.name.0.len() - 2]
            .as_ident()
            .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog"))
}

pub(crate) fn qualifier_of(s: &Select, pos: Pos) -> Result<Ident> {
    match factor_at(s, pos) {
        TableFactor::Table { alias: Some(a), .. } => Ok(a.name.clone()),
        TableFactor::Table { name, .. } => name
            .0
            .last()
            .and_then(ObjectNamePart::as_ident)
            .cloned()
            .ok_or_else(|| no("table name")),
        _ => Err(no("table factor")),
    }
}

pub(crate) fn render_from(s: &Select, pos: Pos, layer_table: &str, qualifier: &Ident) -> String {
    let mut from = s.from.clone();
    let twj = &mut from[pos.0];
    let factor = match pos.1 {
        None => &mut twj.relation,
        Some(j) => &mut twj.joins[j].relation,
    };
    if let TableFactor::Table { name, alias, .. } = factor {
        let parts =
            layer_table.split('.').map(|p| ObjectNamePart::Identifier(Ident::with_quote('"', p)));
        *name = ObjectName(parts.collect());
        *alias =
            Some(TableAlias { explicit: true, name: qualifier.clone(), columns: vec![], at: None });
    }
    from.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
}

/// Each layer's table with its side of W on the bare time column (`t < W`, `t >= W`), the
/// pruned ones left out: the branches of a union of the layers.
pub(crate) fn sides_of_w<'a>(
    table: &'a TableConfig,
    w: &str,
    p: Pruning,
) -> Vec<(&'a str, String)> {
    let t = crate::model::sql::quote_ident(&table.time_column);
    let mut sides = Vec::new();
    if !p.batch {
        sides.push((table.batch_table.as_str(), format!("{t} < {w}")));
    }
    if !p.speed {
        sides.push((table.speed_table.as_str(), format!("{t} >= {w}")));
    }
    sides
}

/// `SELECT columns FROM table WHERE pred UNION ALL ...` over `layers` (each a table and its
/// side of W on the bare time column).
pub(crate) fn union_of_layers(columns: &[String], layers: &[(&str, String)]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| crate::model::sql::quote_ident(c)).collect();
    let parts = layers.iter().map(|(table, pred)| {
        let name = table.split('.').map(crate::model::sql::quote_ident).collect::<Vec<_>>();
        format!("SELECT {} FROM {} WHERE {pred}", cols.join(", "), name.join("."))
    });
    parts.collect::<Vec<_>>().join(" UNION ALL ")
}

/// The whole query with the logical table replaced by the union of its layers split at W
/// (`layers`: each non-pruned layer's table and its side of W), for the warehouse to merge
/// itself: what the union view does, with W a literal the warehouse's planner can use.
pub(crate) fn render_union(
    q: &Query,
    pos: Pos,
    qualifier: &Ident,
    columns: &[String],
    layers: &[(&str, String)],
) -> Option<String> {
    if layers.is_empty() {
        return None;
    }
    let union = union_of_layers(columns, layers);
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let mut parsed = sqlparser::parser::Parser::parse_sql(&dialect, &union).ok()?;
    let Some(sqlparser::ast::Statement::Query(subquery)) = parsed.pop() else { return None };
    let mut whole = q.clone();
    let sqlparser::ast::SetExpr::Select(select) = whole.body.as_mut() else { return None };
    let twj = &mut select.from[pos.0];
    let factor = match pos.1 {
        None => &mut twj.relation,
        Some(j) => &mut twj.joins[j].relation,
    };
    let alias = TableAlias { explicit: true, name: qualifier.clone(), columns: vec![], at: None };
    *factor = TableFactor::Derived { lateral: false, subquery, alias: Some(alias), sample: None };
    Some(whole.to_string())
}

pub(crate) fn is_agg_fn(f: &Function, facts: &Facts) -> bool {
    f.over.is_none() && facts.aggregates.contains(&fn_name(f))
}

pub(crate) fn contains_agg(e: &Expr, facts: &Facts) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Function(f) if is_agg_fn(f, facts) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

pub(crate) fn contains_subquery(e: &Expr) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Subquery(_)
        | Expr::Exists { .. }
        | Expr::In {
            target: sqlparser::ast::InTarget::Subquery(_) | sqlparser::ast::InTarget::Table { .. },
            ..
        } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

pub(crate) fn order_exprs(q: &Query) -> Result<Vec<&sqlparser::ast::OrderByExpr>> {
    match &q.order_by {
        None => Ok(vec![]),
        Some(ob) => match &ob.kind {
            OrderByKind::Expressions(v) if ob.interpolate.is_none() => {
                if v.iter().any(|o| o.with_fill.is_some()) {
                    return Err(no("WITH FILL"));
                }
                Ok(v.iter().collect())
            }
            _ => Err(no("ORDER BY ALL")),
        },
    }
}

pub(crate) fn projection_exprs(s: &Select) -> Vec<Option<&Expr>> {
    s.projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            _ => None,
        })
        .collect()
}

pub(crate) fn is_aggregate(q: &Query, s: &Select, facts: &Facts) -> bool {
    let grouped = match &s.group_by {
        GroupByExpr::Expressions(v, m) => !v.is_empty() || !m.is_empty(),
        GroupByExpr::All(_) => true,
    };
    grouped
        || s.having.is_some()
        || projection_exprs(s).into_iter().flatten().any(|e| contains_agg(e, facts))
        || order_exprs(q).unwrap_or_default().iter().any(|o| contains_agg(&o.expr, facts))
}

pub(crate) fn limit_offset(q: &Query) -> Result<(Option<u64>, u64)> {
    let lit = |e: &Expr| -> Result<Option<u64>> {
        match e {
            Expr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => n.parse::<u64>().map(Some).map_err(|_| no("LIMIT value")),
                SqlValue::Null => Ok(None),
                _ => Err(no("LIMIT value")),
            },
            _ => Err(no("LIMIT/OFFSET that is not a literal")),
        }
    };
    match &q.limit_clause {
        None => Ok((None, 0)),
        Some(LimitClause::LimitOffset { limit, offset, limit_by }) => {
            if !limit_by.is_empty() {
                return Err(no("LIMIT BY"));
            }
            let l = match limit {
                Some(e) => lit(e)?,
                None => None,
            };
            let o = match offset {
                Some(o) => lit(&o.value)?.unwrap_or(0),
                None => 0,
            };
            Ok((l, o))
        }
        Some(_) => Err(no("LIMIT form")),
    }
}

pub(crate) fn fold(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// An ORDER BY item naming an output column (ordinal or bare output name).
pub(crate) fn output_ref(e: &Expr, described: &Described) -> Result<Option<usize>> {
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => {
                let k: usize = n.parse().map_err(|_| no("ORDER BY position"))?;
                if k == 0 || k > described.columns.len() {
                    return Err(no("ORDER BY position out of range"));
                }
                Ok(Some(k - 1))
            }
            _ => Ok(None),
        },
        Expr::Identifier(i) => {
            let name = fold(i);
            Ok(described.columns.iter().position(|c| c.name == name))
        }
        _ => Ok(None),
    }
}

pub(crate) fn sort_opts(o: &sqlparser::ast::OrderByExpr) -> Result<(bool, bool)> {
    use sqlparser::ast::OrderBySort;
    let desc = match &o.options.sort {
        None | Some(OrderBySort::Asc) => false,
        Some(OrderBySort::Desc) => true,
        Some(_) => return Err(no("ORDER BY USING")),
    };
    Ok((desc, o.options.nulls_first.unwrap_or(desc)))
}

// ---------------------------------------------------------------- rows

/// Most rows a sorted or limited row query may fetch per leg before the warehouse sorts it
/// whole instead (the engine holds merged rows in memory).
pub const SPLIT_ROWS_MAX: u64 = 100_000;
