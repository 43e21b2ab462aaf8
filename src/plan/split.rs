//! The split fast path: one SQL per leg (batch below W, speed at or above W) and the merge
//! spec the engine applies to the legs' rows. Whatever this module cannot prove correct
//! returns [`Error::Unsplittable`] and the query is passed through whole.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Distinct, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, JoinOperator, LimitClause, ObjectName,
    ObjectNamePart, OrderByKind, Query, Select, SelectFlavor, SelectItem, SetExpr, TableAlias,
    TableFactor, UnaryOperator, Value as SqlValue,
};

use super::expr::{literal, BinOp, CastTo, EExpr, Func};
use super::prune::{self, Pruning};
use super::text::{text_rules, TextRules};
use super::timefold::TimeRules;
use super::window::AggShape;
use crate::catalog::{ColumnInfo, Facts};
use crate::config::{Dialect, TableConfig};
use crate::error::{Error, Result};
use crate::model::column::{Described, Param};
use crate::model::sql::quote_ident;
use crate::model::value::timestamp_text;
use crate::watermark::Watermark;

/// A layer of a logical table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Batch table, rows with time < W.
    Batch,
    /// Speed table, rows with time >= W.
    Speed,
}

impl Layer {
    /// `batch` or `speed`.
    pub fn name(&self) -> &'static str {
        match self {
            Layer::Batch => "batch",
            Layer::Speed => "speed",
        }
    }
}

/// One leg: the SQL run against one layer table.
#[derive(Debug, Clone)]
pub struct Leg {
    /// Which layer.
    pub layer: Layer,
    /// Complete SQL text (parameters stay `$n`).
    pub sql: String,
}

/// How leg partials combine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Combine {
    /// Sum of counts.
    Count,
    /// Sum ignoring NULLs (NULL when all are NULL).
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Logical AND ignoring NULLs.
    And,
    /// Logical OR ignoring NULLs.
    Or,
}

/// A final aggregate computed from partial columns.
#[derive(Debug, Clone)]
pub enum AggCall {
    /// Value of one combined partial column.
    Direct(usize),
    /// AVG from a sum column and a count column.
    Avg {
        /// Column holding the combined sum.
        sum: usize,
        /// Column holding the combined count.
        count: usize,
    },
}

/// Source of a sort key.
#[derive(Debug, Clone)]
pub enum SortSource {
    /// An output (or, for row plans, leg) column by index.
    Column(usize),
    /// An expression over the group.
    Expr(EExpr),
}

/// One ORDER BY key.
#[derive(Debug, Clone)]
pub struct SortKey {
    /// What to sort on.
    pub source: SortSource,
    /// Descending.
    pub desc: bool,
    /// NULLs first.
    pub nulls_first: bool,
}

/// Merge spec of an aggregate query.
#[derive(Debug, Clone)]
pub struct AggSpec {
    /// Leading leg columns forming the group key.
    pub n_keys: usize,
    /// Key plus per-group derived columns; partial columns follow.
    pub n_cols: usize,
    /// How each partial column combines (column `n_cols + i`).
    pub partials: Vec<Combine>,
    /// Final aggregates.
    pub aggs: Vec<AggCall>,
    /// Output expressions.
    pub outputs: Vec<EExpr>,
    /// HAVING.
    pub having: Option<EExpr>,
    /// ORDER BY.
    pub order: Vec<SortKey>,
    /// SELECT DISTINCT.
    pub distinct: bool,
    /// LIMIT.
    pub limit: Option<u64>,
    /// OFFSET.
    pub offset: u64,
}

/// Merge spec of a query without aggregation. Without LIMIT (and so without ORDER BY,
/// DISTINCT or OFFSET) the legs are streamed one after the other instead of merged.
#[derive(Debug, Clone)]
pub struct RowsSpec {
    /// Visible output columns (hidden sort columns follow in the leg rows).
    pub n_visible: usize,
    /// ORDER BY over leg columns.
    pub order: Vec<SortKey>,
    /// SELECT DISTINCT.
    pub distinct: bool,
    /// LIMIT.
    pub limit: Option<u64>,
    /// OFFSET.
    pub offset: u64,
}

/// What the engine does with the legs' rows.
#[derive(Debug, Clone)]
pub enum Shape {
    /// Merge partial aggregates per group, then evaluate.
    Aggregate(AggSpec),
    /// Concatenate, sort, cut.
    Rows(RowsSpec),
}

/// Renders the speed leg bounded above by a time literal (`time < S`), for the window leg.
#[derive(Clone)]
pub struct SpeedUpTo(Render);

impl SpeedUpTo {
    /// The speed leg SQL reading `W <= time < upper`.
    pub fn sql(&self, upper_literal: &str) -> String {
        (self.0)(upper_literal)
    }
}

impl std::fmt::Debug for SpeedUpTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpeedUpTo")
    }
}

/// The batch leg of an aggregate with one more time predicate (per-chunk caching of
/// sliding ranges), and what is needed to find the query's lower time bound.
#[derive(Clone)]
pub struct BatchPieces {
    render: Render,
    from: String,
    below_w: String,
    /// The qualified time column as the leg SQL writes it.
    pub time_ref: String,
    /// WHERE clause of the query.
    pub selection: Option<Expr>,
    /// Name the logical table is referenced by.
    pub qualifier: Ident,
    /// The time column.
    pub time_column: String,
}

impl BatchPieces {
    /// The batch leg SQL with WHERE `selection` (the query's, or a part of it that the
    /// piece implies) AND time < W AND `extra`.
    pub fn sql(&self, selection: Option<&Expr>, extra: &str) -> String {
        let frame = match selection {
            Some(e) => format!("FROM {} WHERE ({e}) AND {} AND {extra}", self.from, self.below_w),
            None => format!("FROM {} WHERE {} AND {extra}", self.from, self.below_w),
        };
        (self.render)(&frame)
    }
}

impl std::fmt::Debug for BatchPieces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchPieces")
    }
}

/// What the window leg needs of an aggregate over the logical table alone.
#[derive(Debug, Clone)]
pub struct WindowInput {
    /// Keys, partials and filters of the query.
    pub shape: AggShape,
    /// The speed leg bounded above.
    pub speed_up_to: SpeedUpTo,
}

/// A planned split.
#[derive(Debug, Clone)]
pub struct SplitPlan {
    /// Logical table name.
    pub table: String,
    /// The watermark snapshot used by every leg.
    pub watermark: Watermark,
    /// Legs to run.
    pub legs: Vec<Leg>,
    /// Legs removed by time pruning.
    pub pruned: Vec<Layer>,
    /// What the merge may do with text under the warehouse's collations.
    pub text: TextRules,
    /// How the session evaluates times (see [`SplitInput::time`]).
    pub time: TimeRules,
    /// Merge spec.
    pub shape: Shape,
    /// Present when the windows might answer the realtime part (a single-table aggregate
    /// whose speed leg runs).
    pub window: Option<WindowInput>,
    /// Present for aggregates whose batch leg runs: the batch leg cut by time.
    pub batch_pieces: Option<BatchPieces>,
}

/// Everything the split planner needs.
pub struct SplitInput<'a> {
    /// The query, with `now()` and friends already replaced by literals.
    pub query: &'a Query,
    /// The logical table it reads.
    pub table: &'a TableConfig,
    /// The logical table's columns.
    pub columns: &'a [ColumnInfo],
    /// Warehouse facts.
    pub facts: &'a Facts,
    /// The original query's result columns as the warehouse describes them.
    pub described: &'a Described,
    /// Watermark snapshot.
    pub watermark: &'a Watermark,
    /// The session's time zone and dialect: how `now() - interval ...` and its other
    /// spellings become bounds the windows and the chunk cut can use.
    pub time: TimeRules,
}

fn no(reason: &str) -> Error {
    Error::unsplittable(reason)
}

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
    let (shape, render, agg) = if is_aggregate(q, select, inp.facts) {
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
    })
}

fn pruned_layers(p: Pruning) -> Vec<Layer> {
    let mut v = Vec::new();
    if p.batch {
        v.push(Layer::Batch);
    }
    if p.speed {
        v.push(Layer::Speed);
    }
    v
}

type Render = std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Group columns, number of keys and partial sources of an aggregate, for the window leg.
type AggParts = (Vec<Expr>, usize, Vec<(String, Option<Expr>)>);

fn check_query(q: &Query) -> Result<()> {
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

fn check_select(s: &Select) -> Result<()> {
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
type Pos = (usize, Option<usize>);

fn factor_at(s: &Select, pos: Pos) -> &TableFactor {
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

fn find_logical(s: &Select, table: &TableConfig) -> Result<Pos> {
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

fn check_plain(f: &TableFactor) -> Result<()> {
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
fn check_joins(s: &Select, pos: Pos) -> Result<()> {
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

fn fn_name(f: &Function) -> String {
    f.name
        .0
        .last()
        .and_then(ObjectNamePart::as_ident)
        .map(|i| i.value.to_lowercase())
        .unwrap_or_default()
}

fn check_functions(q: &Query, facts: &Facts) -> Result<()> {
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
fn qualified_outside_catalog(f: &Function) -> bool {
    f.name.0.len() > 1
        && !f.name.0[f.name.0.len() - 2]
            .as_ident()
            .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog"))
}

fn qualifier_of(s: &Select, pos: Pos) -> Result<Ident> {
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

fn render_from(s: &Select, pos: Pos, layer_table: &str, qualifier: &Ident) -> String {
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

fn is_agg_fn(f: &Function, facts: &Facts) -> bool {
    f.over.is_none() && facts.aggregates.contains(&fn_name(f))
}

fn contains_agg(e: &Expr, facts: &Facts) -> bool {
    visit_expressions(e, |x| match x {
        Expr::Function(f) if is_agg_fn(f, facts) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn contains_subquery(e: &Expr) -> bool {
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

fn order_exprs(q: &Query) -> Result<Vec<&sqlparser::ast::OrderByExpr>> {
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

fn projection_exprs(s: &Select) -> Vec<Option<&Expr>> {
    s.projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            _ => None,
        })
        .collect()
}

fn is_aggregate(q: &Query, s: &Select, facts: &Facts) -> bool {
    let grouped = match &s.group_by {
        GroupByExpr::Expressions(v, m) => !v.is_empty() || !m.is_empty(),
        GroupByExpr::All(_) => true,
    };
    grouped
        || s.having.is_some()
        || projection_exprs(s).into_iter().flatten().any(|e| contains_agg(e, facts))
        || order_exprs(q).unwrap_or_default().iter().any(|o| contains_agg(&o.expr, facts))
}

fn limit_offset(q: &Query) -> Result<(Option<u64>, u64)> {
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

fn fold(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// An ORDER BY item naming an output column (ordinal or bare output name).
fn output_ref(e: &Expr, described: &Described) -> Result<Option<usize>> {
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

fn sort_opts(o: &sqlparser::ast::OrderByExpr) -> Result<(bool, bool)> {
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

/// Collects the leg's per-group columns and partial aggregates while lowering expressions.
struct AggBuilder<'a> {
    facts: &'a Facts,
    cols: Vec<String>,
    col_exprs: Vec<Expr>,
    partial_src: Vec<(String, Option<Expr>)>,
    partial_sql: Vec<String>,
    partials: Vec<Combine>,
    aggs: Vec<(String, AggCall)>,
}

impl AggBuilder<'_> {
    fn col(&mut self, e: &Expr) -> Result<usize> {
        if contains_subquery(e) {
            return Err(no("subquery over aggregates"));
        }
        let text = e.to_string();
        if let Some(i) = self.cols.iter().position(|c| *c == text) {
            return Ok(i);
        }
        self.cols.push(text);
        self.col_exprs.push(e.clone());
        Ok(self.cols.len() - 1)
    }

    fn partial(&mut self, f: &Function, name: &str, combine: Combine) -> usize {
        let mut g = f.clone();
        g.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]);
        self.partial_sql.push(g.to_string());
        self.partials.push(combine);
        let arg = match &f.args {
            FunctionArguments::List(l) => match l.args.first() {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e.clone()),
                _ => None,
            },
            _ => None,
        };
        let kind = if f.filter.is_some() { "filtered" } else { name };
        self.partial_src.push((kind.to_string(), arg));
        self.partials.len() - 1
    }

    fn agg(&mut self, f: &Function) -> Result<usize> {
        check_agg_args(f)?;
        let key = f.to_string();
        if let Some(i) = self.aggs.iter().position(|(k, _)| *k == key) {
            return Ok(i);
        }
        let call = match fn_name(f).as_str() {
            "count" => AggCall::Direct(self.partial(f, "count", Combine::Count)),
            "sum" => AggCall::Direct(self.partial(f, "sum", Combine::Sum)),
            "min" => AggCall::Direct(self.partial(f, "min", Combine::Min)),
            "max" => AggCall::Direct(self.partial(f, "max", Combine::Max)),
            "bool_and" | "every" => AggCall::Direct(self.partial(f, "bool_and", Combine::And)),
            "bool_or" => AggCall::Direct(self.partial(f, "bool_or", Combine::Or)),
            "avg" => {
                let sum = self.partial(f, "sum", Combine::Sum);
                let count = self.partial(f, "count", Combine::Count);
                AggCall::Avg { sum, count }
            }
            _ => return Err(no("aggregate that does not decompose")),
        };
        self.aggs.push((key, call));
        Ok(self.aggs.len() - 1)
    }

    fn lower(&mut self, e: &Expr) -> Result<EExpr> {
        if !contains_agg(e, self.facts) {
            if let Some(v) = literal(e) {
                return Ok(EExpr::Lit(v));
            }
            return Ok(EExpr::Col(self.col(e)?));
        }
        let b = |x: EExpr| Box::new(x);
        Ok(match e {
            Expr::Function(f) if is_agg_fn(f, self.facts) => EExpr::Agg(self.agg(f)?),
            Expr::Nested(x) => self.lower(x)?,
            Expr::BinaryOp { left, op, right } => {
                let op = BinOp::from_sql(op).ok_or_else(|| no("operator over aggregates"))?;
                if op == BinOp::Div && self.facts.redshift {
                    // Redshift's numeric division scale is not PostgreSQL's.
                    return Err(no("division over aggregates on Redshift"));
                }
                EExpr::Bin(op, b(self.lower(left)?), b(self.lower(right)?))
            }
            Expr::UnaryOp { op: UnaryOperator::Minus, expr } => EExpr::Neg(b(self.lower(expr)?)),
            Expr::UnaryOp { op: UnaryOperator::Plus, expr } => self.lower(expr)?,
            Expr::UnaryOp { op: UnaryOperator::Not, expr } => EExpr::Not(b(self.lower(expr)?)),
            Expr::IsNull(x) => EExpr::IsNull(b(self.lower(x)?), false),
            Expr::IsNotNull(x) => EExpr::IsNull(b(self.lower(x)?), true),
            Expr::Between { expr, negated, low, high } => {
                let x = self.lower(expr)?;
                let inside = EExpr::Bin(
                    BinOp::And,
                    b(EExpr::Bin(BinOp::GtEq, b(x.clone()), b(self.lower(low)?))),
                    b(EExpr::Bin(BinOp::LtEq, b(x), b(self.lower(high)?))),
                );
                if *negated {
                    EExpr::Not(b(inside))
                } else {
                    inside
                }
            }
            Expr::Cast {
                kind: sqlparser::ast::CastKind::Cast | sqlparser::ast::CastKind::DoubleColon,
                expr,
                data_type,
                format: None,
                ..
            } => {
                let to = CastTo::from_sql(data_type).ok_or_else(|| no("cast over aggregates"))?;
                EExpr::Cast(b(self.lower(expr)?), to)
            }
            Expr::Case { operand, conditions, else_result, .. } => EExpr::Case {
                operand: operand.as_ref().map(|o| self.lower(o)).transpose()?.map(b),
                whens: conditions
                    .iter()
                    .map(|w| Ok((self.lower(&w.condition)?, self.lower(&w.result)?)))
                    .collect::<Result<_>>()?,
                otherwise: else_result.as_ref().map(|o| self.lower(o)).transpose()?.map(b),
            },
            Expr::Function(f) => {
                let func =
                    Func::from_name(&fn_name(f)).ok_or_else(|| no("function over aggregates"))?;
                let args = scalar_args(f)?;
                EExpr::Func(func, args.iter().map(|a| self.lower(a)).collect::<Result<_>>()?)
            }
            _ => return Err(no("expression over aggregates")),
        })
    }
}

fn scalar_args(f: &Function) -> Result<Vec<&Expr>> {
    if f.filter.is_some()
        || f.null_treatment.is_some()
        || !matches!(f.parameters, FunctionArguments::None)
    {
        return Err(no("function modifiers"));
    }
    match &f.args {
        FunctionArguments::List(l) if l.duplicate_treatment.is_none() && l.clauses.is_empty() => l
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                _ => Err(no("function argument form")),
            })
            .collect(),
        _ => Err(no("function argument form")),
    }
}

fn check_agg_args(f: &Function) -> Result<()> {
    if f.null_treatment.is_some() || !matches!(f.parameters, FunctionArguments::None) {
        return Err(no("aggregate modifiers"));
    }
    match &f.args {
        FunctionArguments::List(l) => {
            if l.duplicate_treatment == Some(sqlparser::ast::DuplicateTreatment::Distinct) {
                return Err(no("DISTINCT aggregate"));
            }
            if !l.clauses.is_empty() || l.args.len() != 1 {
                return Err(no("aggregate argument form"));
            }
            match &l.args[0] {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(_)) => Ok(()),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if fn_name(f) == "count" => Ok(()),
                _ => Err(no("aggregate argument form")),
            }
        }
        _ => Err(no("aggregate argument form")),
    }
}

/// Resolves GROUP BY items to expressions: ordinals and output aliases (when no input
/// column has that name, as PostgreSQL resolves them) become the select expression.
fn group_exprs(s: &Select, inp: &SplitInput) -> Result<Vec<Expr>> {
    let GroupByExpr::Expressions(items, modifiers) = &s.group_by else {
        return Err(no("GROUP BY ALL"));
    };
    if !modifiers.is_empty() {
        return Err(no("GROUP BY modifiers"));
    }
    let proj = projection_exprs(s);
    let mut out = Vec::new();
    for g in items {
        if matches!(g, Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) | Expr::Tuple(_)) {
            return Err(no("grouping sets"));
        }
        if let Expr::Value(v) = g {
            if let SqlValue::Number(n, _) = &v.value {
                let k: usize = n.parse().map_err(|_| no("GROUP BY position"))?;
                let e = proj
                    .get(k.wrapping_sub(1))
                    .copied()
                    .flatten()
                    .ok_or_else(|| no("GROUP BY position"))?;
                out.push(e.clone());
                continue;
            }
        }
        if let Expr::Identifier(i) = g {
            let name = fold(i);
            let is_input = inp.columns.iter().any(|c| c.name == name);
            let alias = s.projection.iter().find_map(|p| match p {
                SelectItem::ExprWithAlias { expr, alias } if fold(alias) == name => Some(expr),
                _ => None,
            });
            if let (Some(e), false) = (alias, is_input) {
                if s.from.len() > 1 || s.from.iter().any(|t| !t.joins.is_empty()) {
                    return Err(no("GROUP BY alias in a join"));
                }
                out.push(e.clone());
                continue;
            }
        }
        out.push(g.clone());
    }
    Ok(out)
}

fn plan_aggregate(
    q: &Query,
    s: &Select,
    inp: &SplitInput,
) -> Result<(Shape, Render, Option<AggParts>)> {
    let (limit, offset) = limit_offset(q)?;
    let keys = group_exprs(s, inp)?;
    let mut b = AggBuilder {
        facts: inp.facts,
        cols: Vec::new(),
        col_exprs: Vec::new(),
        partial_src: Vec::new(),
        partial_sql: Vec::new(),
        partials: Vec::new(),
        aggs: Vec::new(),
    };
    for k in &keys {
        b.col(k)?;
    }
    let n_keys = b.cols.len();
    let mut outputs = Vec::new();
    for e in projection_exprs(s) {
        outputs.push(b.lower(e.ok_or_else(|| no("wildcard in an aggregate query"))?)?);
    }
    let having = s.having.as_ref().map(|h| b.lower(h)).transpose()?;
    let mut order = Vec::new();
    for o in order_exprs(q)? {
        let (desc, nulls_first) = sort_opts(o)?;
        let source = match output_ref(&o.expr, inp.described)? {
            Some(i) => SortSource::Column(i),
            None => SortSource::Expr(b.lower(&o.expr)?),
        };
        order.push(SortKey { source, desc, nulls_first });
    }
    let mut items: Vec<String> =
        b.cols.iter().enumerate().map(|(i, c)| format!("{c} AS \"__tm_k{i}\"")).collect();
    items.extend(b.partial_sql.iter().enumerate().map(|(i, p)| format!("{p} AS \"__tm_a{i}\"")));
    if items.is_empty() {
        items.push("1".into());
    }
    let head = format!("SELECT {}", items.join(", "));
    let group = if keys.is_empty() {
        String::new()
    } else {
        format!(" GROUP BY {}", b.cols[..n_keys].join(", "))
    };
    let parts = (b.col_exprs, n_keys, b.partial_src);
    let spec = AggSpec {
        n_keys,
        n_cols: b.cols.len(),
        partials: b.partials,
        aggs: b.aggs.into_iter().map(|(_, c)| c).collect(),
        outputs,
        having,
        order,
        distinct: matches!(s.distinct, Some(Distinct::Distinct)),
        limit,
        offset,
    };
    if spec.partials.is_empty() && b.cols.is_empty() {
        // `SELECT 1 FROM t HAVING ...` style: keep one placeholder column
        return Err(no("aggregate query without columns"));
    }
    let render: Render = std::sync::Arc::new(move |frame: &str| format!("{head} {frame}{group}"));
    Ok((Shape::Aggregate(spec), render, Some(parts)))
}

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

/// The name of a spelling of now (`now()`, `current_date`, on Redshift `getdate()` and
/// `SYSDATE`, ...), as the warehouse names a result column of it; None for other expressions.
fn now_form(e: &Expr, dialect: Dialect) -> Option<String> {
    let redshift = dialect == Dialect::Redshift;
    match e {
        Expr::Identifier(i) if redshift && i.quote_style.is_none() => {
            i.value.eq_ignore_ascii_case("sysdate").then(|| "sysdate".to_string())
        }
        Expr::Function(f) => {
            let name = fn_name(f);
            let known = matches!(
                name.as_str(),
                "now"
                    | "current_timestamp"
                    | "transaction_timestamp"
                    | "statement_timestamp"
                    | "current_date"
                    | "localtimestamp"
                    | "current_time"
                    | "localtime"
            ) || (redshift && name == "getdate");
            known.then_some(name)
        }
        _ => None,
    }
}

/// The warehouse's name for a select item that is a spelling of now, maybe cast (a cast
/// keeps its argument's name).
fn now_item_name(e: &Expr, dialect: Dialect) -> Option<String> {
    match e {
        Expr::Nested(x) | Expr::Cast { expr: x, .. } => now_item_name(x, dialect),
        other => now_form(other, dialect),
    }
}

/// The text to describe a query by when it reads now in any spelling: the query with now
/// replaced by a fixed instant (the result types are the same at every instant, the text
/// stays one describe-cache entry, and on Redshift leader-node functions such as `SYSDATE`
/// are never described against a table), its select items keeping the names the warehouse
/// gives the original. None: describe the client's own text.
pub fn describe_form(q: &Query, dialect: Dialect, facts: &Facts) -> Option<String> {
    let mut any = false;
    let _ = visit_expressions(q, |e| {
        any |= now_form(e, dialect).is_some();
        ControlFlow::<()>::Continue(())
    });
    if !any {
        return None;
    }
    let mut q = q.clone();
    let SetExpr::Select(s) = &mut *q.body else { return None };
    for item in &mut s.projection {
        if let SelectItem::UnnamedExpr(e) = item {
            if let Some(name) = now_item_name(e, dialect) {
                let alias = Ident::with_quote('"', name);
                *item = SelectItem::ExprWithAlias { expr: e.clone(), alias };
            }
        }
    }
    let text = substitute_now(&mut q, 0, dialect).then(|| q.to_string())?;
    Some(if reescapes(dialect, facts) { escape_backslashes(&text) } else { text })
}

/// Whether SQL printed from a parsed query writes `\` for `\`: under the Redshift dialect
/// the parser reads `\` in '...' as an escape (a literal holds the value the client meant),
/// and a warehouse that does the same would read a lone printed `\` as an escape again.
pub fn reescapes(dialect: Dialect, facts: &Facts) -> bool {
    dialect == Dialect::Redshift && facts.backslash_escapes
}

/// Whether the parser and the warehouse disagree on `\` in '...' (the Redshift dialect over a
/// warehouse that reads it literally, or the PostgreSQL dialect over one that escapes): the
/// parsed literals then hold other values than the warehouse reads, and a query with a
/// backslash passes through.
pub fn backslashes_disagree(dialect: Dialect, facts: &Facts) -> bool {
    (dialect == Dialect::Redshift) != facts.backslash_escapes
}

/// Doubles every `\` inside the '...' (and N'...') string literals of SQL printed by
/// sqlparser, leaving identifiers, E'...' strings (printed with their own escapes) and
/// dollar-quoted strings as they are.
pub fn escape_backslashes(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 8);
    let mut i = 0;
    while i < b.len() {
        let end = match b[i] {
            b'\'' if e_prefixed(b, i) => quoted_end(b, i, Quote::Escaped),
            b'\'' => {
                let end = quoted_end(b, i, Quote::Plain);
                for &c in &b[i..end] {
                    out.extend_from_slice(if c == b'\\' {
                        b"\\\\"
                    } else {
                        std::slice::from_ref(&c)
                    });
                }
                i = end;
                continue;
            }
            b'"' => quoted_end(b, i, Quote::Ident),
            b'$' => dollar_end(sql, i),
            _ => i + 1,
        };
        out.extend_from_slice(&b[i..end]);
        i = end;
    }
    // only ASCII was added, between whole UTF-8 sequences
    String::from_utf8(out).unwrap_or_else(|_| sql.to_string())
}

/// Whether the quote at `i` opens an E'...' string (an `E` that starts a word).
fn e_prefixed(b: &[u8], i: usize) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    i > 0 && matches!(b[i - 1], b'E' | b'e') && (i < 2 || !word(b[i - 2]))
}

#[derive(Clone, Copy, PartialEq)]
enum Quote {
    Plain,
    Escaped,
    Ident,
}

/// The index after the quoted run starting at `i` (a doubled quote stays inside; in an
/// E'...' string a backslash escapes the next byte).
fn quoted_end(b: &[u8], i: usize, kind: Quote) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        let escaped = kind == Quote::Escaped && b[j] == b'\\';
        if escaped || (b[j] == q && b.get(j + 1) == Some(&q)) {
            j += 2;
        } else if b[j] == q {
            return j + 1;
        } else {
            j += 1;
        }
    }
    b.len()
}

/// The index after a `$tag$...$tag$` string starting at `i`, or `i + 1` for another `$`
/// (a `$1` placeholder).
fn dollar_end(sql: &str, i: usize) -> usize {
    let rest = &sql[i + 1..];
    let tag_len = rest.find('$').filter(|n| {
        rest[..*n].chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !rest.starts_with(|c: char| c.is_ascii_digit())
    });
    let Some(n) = tag_len else { return i + 1 };
    let tag = &sql[i..i + n + 2];
    match sql[i + tag.len()..].find(tag) {
        Some(k) => i + tag.len() + k + tag.len(),
        None => sql.len(),
    }
}

/// Replaces `now()`, `current_timestamp`, `current_date` and friends (on Redshift also
/// `getdate()` and `SYSDATE`) by typed literals of
/// the query's snapshot instant so that every leg sees the same instant (and the leg SQL is
/// cacheable). Returns false when a form cannot be replaced (the query is passed through).
pub fn substitute_now(q: &mut Query, now_micros: i64, dialect: Dialect) -> bool {
    let instant = format!("CAST('{}+00' AS TIMESTAMPTZ)", timestamp_text(now_micros));
    let mut ok = true;
    let _ = visit_expressions_mut(q, |e| {
        // Redshift's SYSDATE: the transaction's start as a timestamp in the session zone
        if matches!(e, Expr::Identifier(i) if i.quote_style.is_none()
            && i.value.eq_ignore_ascii_case("sysdate") && dialect == Dialect::Redshift)
        {
            match super::parse_expr(dialect, &format!("CAST({instant} AS TIMESTAMP)")) {
                Ok(new) => *e = new,
                Err(_) => ok = false,
            }
            return ControlFlow::Continue(());
        }
        if let Expr::Function(f) = e {
            let no_args = match &f.args {
                FunctionArguments::None => true,
                FunctionArguments::List(l) => l.args.is_empty(),
                _ => false,
            };
            let name = fn_name(f);
            let text = match name.as_str() {
                "now" | "current_timestamp" | "transaction_timestamp" | "statement_timestamp" => {
                    instant.clone()
                }
                "current_date" => format!("CAST({instant} AS DATE)"),
                "localtimestamp" => format!("CAST({instant} AS TIMESTAMP)"),
                // Redshift's "now" in the session time zone, as a timestamp
                "getdate" if dialect == Dialect::Redshift => {
                    format!("CAST({instant} AS TIMESTAMP)")
                }
                "current_time" => format!("CAST({instant} AS TIMETZ)"),
                "localtime" => format!("CAST({instant} AS TIME)"),
                _ => return ControlFlow::<()>::Continue(()),
            };
            if !no_args || f.name.0.len() != 1 {
                ok = false;
                return ControlFlow::Continue(());
            }
            match super::parse_expr(dialect, &text) {
                Ok(new) => *e = new,
                Err(_) => ok = false,
            }
        }
        ControlFlow::Continue(())
    });
    ok
}
