//! The window leg of a split aggregate: reads H and the buckets from Redis and bounds the
//! speed leg at S, or says why the speed table answers alone (and whether that is degraded).

use std::time::Instant;

use super::Engine;

use crate::error::Error;
use crate::model::column::Param;
use crate::model::freshness::{LegReport, WindowsReport};
use crate::model::value::{timestamp_text, Value};
use crate::plan::split::{SplitPlan, WindowInput};
use crate::plan::windows_leg::{self, WindowSpec};
use crate::watermark::literal_for;

/// What the windows contributed to one split query.
#[derive(Default)]
pub(super) struct WindowOutcome {
    /// The speed leg SQL bounded at S, replacing the unbounded one.
    pub speed_sql: Option<String>,
    /// The window leg's report.
    pub leg: Option<LegReport>,
    /// Rows of the window leg, shaped like the SQL legs.
    pub rows: Option<Vec<Vec<Value>>>,
    /// The windows part of the freshness (None: no windows configured).
    pub report: Option<WindowsReport>,
    /// Redis was down or slow: the answer is less fresh than usual.
    pub degraded: bool,
    /// How far the realtime part reaches (PostgreSQL text of the time column type).
    pub reaches: Option<String>,
}

/// A time (µs since 1970) as text of the time column's type.
pub(super) fn time_text(micros: i64, naive: bool) -> String {
    if naive {
        timestamp_text(micros)
    } else {
        format!("{}+00", timestamp_text(micros))
    }
}

fn unused(reason: String, h: Option<String>) -> WindowOutcome {
    let report = WindowsReport {
        used: false,
        high_water_mark: h,
        from: None,
        buckets: 0,
        reason: Some(reason),
    };
    WindowOutcome { report: Some(report), ..Default::default() }
}

fn degraded(e: Error) -> WindowOutcome {
    WindowOutcome { degraded: true, ..unused(format!("windows unavailable: {e}"), None) }
}

impl Engine {
    async fn window_spec(&self, table: &str) -> Result<Option<WindowSpec>, String> {
        let Some(cfg) = self.config.table(table) else { return Ok(None) };
        let Some(w) = &cfg.windows else { return Ok(None) };
        let columns = self.table_columns(&cfg.batch_table).await.map_err(|e| e.to_string())?;
        WindowSpec::resolve(w, &columns, &cfg.time_column).map(Some)
    }

    /// Checks a table's windows configuration against its columns (for `tidemark check`).
    pub async fn check_windows(&self, table: &str) -> crate::error::Result<Option<String>> {
        let spec = self
            .window_spec(table)
            .await
            .map_err(|e| Error::Config(format!("table {table}: {e}")))?;
        let Some(spec) = spec else { return Ok(None) };
        let reader =
            self.windows.as_ref().ok_or_else(|| Error::Config("windows need [redis]".into()))?;
        let h = reader.high_water_mark(table).await?;
        Ok(Some(format!(
            "windows of {table}: {} s buckets; high-water mark {}",
            spec.bucket / 1_000_000,
            h.map(|h| time_text(h, spec.naive)).unwrap_or_else(|| "not published yet".into())
        )))
    }

    pub(super) async fn window_leg_unfit(&self, plan: &SplitPlan) -> WindowOutcome {
        match self.window_spec(&plan.table).await {
            Ok(Some(_)) => unused("not an aggregate".into(), None),
            Ok(None) => WindowOutcome::default(),
            Err(reason) => unused(reason, None),
        }
    }

    /// Plans and reads the window leg of a split query at instant `now`.
    pub(super) async fn window_leg(
        &self,
        plan: &SplitPlan,
        params: &[Param],
        now: i64,
        fresh: bool,
    ) -> WindowOutcome {
        let spec = match self.window_spec(&plan.table).await {
            Ok(Some(s)) => s,
            Ok(None) => return WindowOutcome::default(),
            Err(reason) => return unused(reason, None),
        };
        let Some(input) = &plan.window else {
            return unused("not a single-table aggregate that reads the speed table".into(), None);
        };
        match windows_leg::analyze(&input.shape, &spec, (params, &plan.time)) {
            Ok(wq) => self.read_windows(plan, input, (&spec, &wq), now, fresh).await,
            Err(reason) => unused(reason, None),
        }
    }

    async fn read_windows(
        &self,
        plan: &SplitPlan,
        input: &WindowInput,
        (spec, wq): (&WindowSpec, &windows_leg::WindowQuery),
        now: i64,
        fresh: bool,
    ) -> WindowOutcome {
        let Some(reader) = &self.windows else {
            return unused("no [redis] configured".into(), None);
        };
        let w = match plan.watermark.value {
            Value::Timestamp(t) | Value::TimestampTz(t) => t,
            _ => return unused("the batch watermark is not a timestamp".into(), None),
        };
        let started = Instant::now();
        let h = match reader.cached_high_water_mark(&plan.table, fresh).await {
            Ok(Some(h)) => h,
            Ok(None) => return unused("no high-water mark published in Redis".into(), None),
            Err(e) => return degraded(e),
        };
        let h_text = Some(time_text(h, spec.naive));
        let bp = match windows_leg::buckets(wq, spec, h, w, now) {
            Ok(bp) => bp,
            Err(reason) => {
                return WindowOutcome { reaches: h_text.clone(), ..unused(reason, h_text) }
            }
        };
        let buckets = match reader.cached_buckets(&plan.table, &bp.starts, fresh).await {
            Ok(b) => b,
            Err(e) => return degraded(e),
        };
        let rows = match windows_leg::rows(wq, spec, &bp.starts, &buckets) {
            Ok(r) => r,
            Err(reason) => {
                tracing::warn!(%reason, table = %plan.table, "windows hold a malformed field");
                return WindowOutcome { reaches: h_text.clone(), ..unused(reason, h_text) };
            }
        };
        let from = if spec.naive { Value::Timestamp(bp.from) } else { Value::TimestampTz(bp.from) };
        let Ok(upper) = literal_for(&from) else {
            return unused("the time column type".into(), h_text);
        };
        let newest = bp
            .starts
            .iter()
            .zip(buckets.iter())
            .filter(|(_, b)| !b.is_empty())
            .map(|(s, _)| *s)
            .max();
        let reaches = newest.map(|s| s * 1_000_000 + spec.bucket).unwrap_or(h).max(h);
        let leg = LegReport::new(
            "windows",
            Some(rows.len()),
            started.elapsed().as_secs_f64() * 1000.0,
            crate::model::freshness::CacheStatus::None,
        );
        WindowOutcome {
            speed_sql: Some(input.speed_up_to.sql(&upper)),
            leg: Some(leg),
            rows: Some(rows),
            report: Some(WindowsReport {
                used: true,
                high_water_mark: h_text,
                from: Some(time_text(bp.from, spec.naive)),
                buckets: bp.starts.len(),
                reason: None,
            }),
            degraded: false,
            reaches: Some(time_text(reaches, spec.naive)),
        }
    }
}
