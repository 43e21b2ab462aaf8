//! A split aggregate whose legs return many partial rows (a GROUP BY on a user or URL column,
//! ordered by a count and cut by LIMIT) runs as one statement over the union of its layers at
//! W: the warehouse merges the groups where they are, instead of sending every partial group
//! here to be merged and nearly all dropped. Whether a statement is such a one is learnt from
//! its previous split run (the warehouse gives no row count before it runs); the answer is the
//! same either way, since both read each layer on its own side of the same W.

use super::windows_leg::time_text;
use super::*;

/// Partial rows above which a split aggregate runs next time as one union statement. Below
/// it, merging here costs less than the warehouse's larger scan over the union (and leaves
/// the batch leg cacheable); ClickBench's GROUP BY UserID-like queries are far above it.
pub(super) const UNION_ABOVE_ROWS: usize = 50_000;
/// Statements remembered at most (the map is cleared when full, like the describe cache).
const REMEMBERED_MAX: usize = 10_000;

/// How many partial rows the legs of each recently split statement returned, by its text.
#[derive(Default)]
pub(super) struct MergeSizes(Mutex<HashMap<String, usize>>);

impl MergeSizes {
    /// True when the statement's last split merged more than [`UNION_ABOVE_ROWS`] rows.
    pub(super) fn big(&self, source: &str) -> bool {
        let sizes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sizes.get(source).is_some_and(|n| *n > UNION_ABOVE_ROWS)
    }

    /// Records how many partial rows a split of `source` merged.
    pub(super) fn record(&self, source: &str, rows: usize) {
        let mut sizes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if sizes.len() >= REMEMBERED_MAX {
            sizes.clear();
        }
        sizes.insert(source.to_string(), rows);
    }
}

impl Engine {
    /// Whether to plan a statement over `table` as one union statement: an aggregate whose
    /// last split merged many rows, over a table without windows (the windows' realtime part
    /// can only be merged here).
    pub(super) fn union_wanted(&self, table: &crate::config::TableConfig, source: &str) -> bool {
        table.windows.is_none() && self.merge_sizes.big(source)
    }

    /// Runs the union statement: one round trip, the warehouse's final rows, reported as one
    /// `union` leg of the split.
    pub(super) async fn run_union(
        &self,
        plan: &SplitPlan,
        union: &str,
        described: &Described,
        (params, now, wp): (&[Param], i64, &SessionParams),
    ) -> Result<QueryResult> {
        let started = Instant::now();
        self.metrics.leg("union");
        let fetch = self.warehouse.fetch(union, &described.params, params, wp);
        let rows = Cost::timed(Phase::Legs, Box::pin(fetch)).await?.rows;
        let report = LegReport::new(
            "union",
            Some(rows.len()),
            started.elapsed().as_secs_f64() * 1000.0,
            CacheStatus::None,
        );
        let schema = schema_for(&described.columns);
        let batch = batch_from_rows(&schema, &described.columns, rows)?;
        let freshness = self.split_freshness(plan, vec![report], now);
        let stream = stream::once(async { Ok(batch) }).boxed();
        let mut explain = super::explain::explain_split(plan);
        let mut leg = ExplainLeg::new("union", union.to_string());
        leg.from = self.lower_time_bound(plan, params).map(|(l, n)| time_text(l, n));
        explain.legs = vec![leg];
        Ok(QueryResult::new(schema, stream, freshness, Tag::Select).with_explain(explain))
    }
}
