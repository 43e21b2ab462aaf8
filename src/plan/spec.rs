//! What the split planner produces and takes: legs, merge specs and their parts, the
//! planner's input and its plan.

use sqlparser::ast::{Expr, Ident, Query};

use super::expr::EExpr;
use super::text::TextRules;
use super::timefold::TimeRules;
use super::windows_leg::AggShape;
use crate::catalog::{ColumnInfo, Facts};
use crate::config::TableConfig;
use crate::model::column::Described;
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
pub struct SpeedUpTo(pub(crate) Render);

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
    pub(crate) render: Render,
    pub(crate) from: String,
    pub(crate) below_w: String,
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
    /// For aggregates when [`SplitInput::union`] asked: the whole query over the union of the
    /// legs' tables split at W, one statement the warehouse merges itself.
    pub union: Option<String>,
    /// The query as the parser prints it, before `now()` is replaced (what the engine
    /// remembers a plan's size by).
    pub source: String,
    /// Whether `now()` or a friend was replaced by the query's instant: then the fringe of a
    /// sliding range differs with every request and is not worth sharing.
    pub pinned_now: bool,
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
    /// Whether to render an aggregate whole over the union of the layers (the engine asks
    /// when the statement's last split merged many rows).
    pub union: bool,
}

pub(crate) type Render = std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>;
