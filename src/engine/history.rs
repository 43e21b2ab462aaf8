//! The last hour in memory, for the console: every [`SAMPLE_EVERY`] the engine samples the
//! numbers `/metrics` serves (statements per second and latency quantiles per frontend, cache
//! hits and bytes, warehouse slots, errors by SQLSTATE, connections) and each logical table's
//! W and H. [`KEEP`] samples are kept, so memory stays bounded whatever the load.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::Engine;
use crate::metrics::{Counters, BOUNDS};
use crate::model::value::Value;

/// How often a sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept: one hour.
pub const KEEP: usize = 720;

/// The health numbers of one interval (rates and quantiles over it, gauges at its end).
#[derive(Debug, Clone, Serialize)]
pub struct HealthSample {
    /// End of the interval, milliseconds since 1970 (UTC).
    pub t: i64,
    /// Statements answered or failed per second, per frontend.
    pub queries_per_second: BTreeMap<String, f64>,
    /// Median time to the first batch, per frontend, in milliseconds (interpolated within
    /// the histogram's buckets, as Prometheus' `histogram_quantile` does).
    pub p50_ms: BTreeMap<String, f64>,
    /// 99th percentile of the same.
    pub p99_ms: BTreeMap<String, f64>,
    /// Per cache (`batch`, `speed`, `answer`): lookups in the interval and bytes held.
    pub cache: BTreeMap<String, CacheSample>,
    /// Warehouse statement slots at the end of the interval.
    pub warehouse_slots: Slots,
    /// Failed statements in the interval, per SQLSTATE.
    pub errors: BTreeMap<String, u64>,
    /// Open client connections per frontend.
    pub connections: BTreeMap<String, u64>,
}

/// One cache's lookups in an interval and its size.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheSample {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that computed (or bypassed) the value.
    pub misses: u64,
    /// hits / (hits + misses); null without lookups.
    pub hit_ratio: Option<f64>,
    /// Bytes held at the end of the interval.
    pub bytes: f64,
}

/// Warehouse statement slots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Slots {
    /// Held by running statements.
    pub in_use: u64,
    /// Statements waiting for one.
    pub queued: u64,
    /// The most statements at once.
    pub max: u64,
}

/// A logical table's W and H at one instant, milliseconds since 1970 (UTC).
#[derive(Debug, Clone, Serialize)]
pub struct MarkSample {
    /// When.
    pub t: i64,
    /// The batch watermark W.
    pub w: Option<i64>,
    /// The speed loader's high-water mark H (tables with windows).
    pub h: Option<i64>,
}

/// A logical table's freshness now and over the last hour.
#[derive(Debug, Clone, Serialize)]
pub struct TableFreshness {
    /// The logical table.
    pub table: String,
    /// Now, milliseconds since 1970 (UTC).
    pub now: i64,
    /// W as text of the time column's type.
    pub batch_watermark: Option<String>,
    /// W in milliseconds since 1970.
    pub w: Option<i64>,
    /// H in milliseconds since 1970 (tables with windows, once published).
    pub h: Option<i64>,
    /// How far the batch layer is behind now: now - W, seconds.
    pub batch_behind_s: Option<f64>,
    /// How far the speed table is behind now: now - H, seconds.
    pub speed_behind_s: Option<f64>,
    /// The Redis windows' state (null when the table has none).
    pub windows: Option<WindowsState>,
    /// The retention rule: the stream processor's cleanup must keep speed rows at least this
    /// long after W has passed them (`watermark_poll` + `statement_timeout`).
    pub speed_retention_s: f64,
    /// W and H over the last hour, oldest first.
    pub samples: Vec<MarkSample>,
}

/// Whether a table's windows answer, and how much room their retention leaves.
#[derive(Debug, Clone, Serialize)]
pub struct WindowsState {
    /// True while Redis answers; false: answers read the speed table and say `degraded`.
    pub up: bool,
    /// Why not, when down.
    pub reason: Option<String>,
    /// Bucket width, seconds.
    pub bucket_s: f64,
    /// Bucket TTL, seconds.
    pub retention_s: f64,
    /// Seconds until H falls so far behind that the windows are no longer read (retention -
    /// one bucket - (now - S)); negative: already too far behind.
    pub margin_s: Option<f64>,
}

/// The samples and what the next one is computed from.
#[derive(Default)]
pub struct History {
    health: Mutex<VecDeque<HealthSample>>,
    marks: Mutex<BTreeMap<String, VecDeque<MarkSample>>>,
    last: Mutex<Option<(Instant, Counters)>>,
}

impl History {
    /// Health samples taken after `since` (ms since 1970), oldest first.
    pub fn health_since(&self, since: i64) -> Vec<HealthSample> {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.iter().filter(|s| s.t > since).cloned().collect()
    }

    /// W/H samples of `table` taken after `since`, oldest first.
    pub fn marks_since(&self, table: &str, since: i64) -> Vec<MarkSample> {
        let m = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        m.get(table)
            .map(|q| q.iter().filter(|s| s.t > since).cloned().collect())
            .unwrap_or_default()
    }

    fn push_health(&self, s: HealthSample) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.push_back(s);
        while h.len() > KEEP {
            h.pop_front();
        }
    }

    fn push_mark(&self, table: &str, s: MarkSample) {
        let mut m = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let q = m.entry(table.to_string()).or_default();
        q.push_back(s);
        while q.len() > KEEP {
            q.pop_front();
        }
    }
}

/// The `q` quantile (0..1) in milliseconds of the observations between two cumulative
/// histograms, linear within a bucket; None without observations.
pub fn quantile_ms(
    q: f64,
    before: &[u64; BOUNDS.len()],
    after: &[u64; BOUNDS.len()],
    n: u64,
) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let rank = q * n as f64;
    let mut below = (0.0, 0u64); // (bound, cumulative count) of the previous bucket
    for (i, bound) in BOUNDS.iter().enumerate() {
        let c = after[i].saturating_sub(before[i]);
        if c as f64 >= rank {
            let span = (c - below.1) as f64;
            let within = if span > 0.0 { (rank - below.1 as f64) / span } else { 1.0 };
            return Some((below.0 + (bound - below.0) * within) * 1000.0);
        }
        below = (*bound, c);
    }
    Some(BOUNDS[BOUNDS.len() - 1] * 1000.0) // past the last finite bucket
}

/// Milliseconds since 1970 of a watermark value (None for types without an instant).
pub fn value_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Timestamp(us) | Value::TimestampTz(us) => Some(us.div_euclid(1000)),
        Value::Date(d) => Some(*d as i64 * 86_400_000),
        _ => None,
    }
}

/// What changed between two counter snapshots `dt` seconds apart.
fn rates(before: &Counters, after: &Counters, dt: f64, s: &mut HealthSample) {
    let zero = (0, [0; BOUNDS.len()]);
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    for ((frontend, state), n) in &after.errors {
        let was = before.errors.get(&(frontend.clone(), state.clone())).copied().unwrap_or(0);
        let d = n.saturating_sub(was);
        *failed.entry(frontend.clone()).or_default() += d;
        if d > 0 {
            *s.errors.entry(state.clone()).or_default() += d;
        }
    }
    for (frontend, (n, buckets)) in &after.answered {
        let (was, was_buckets) = before.answered.get(frontend).unwrap_or(&zero);
        let d = n.saturating_sub(*was);
        let all = d + failed.remove(frontend).unwrap_or(0);
        s.queries_per_second.insert(frontend.clone(), all as f64 / dt);
        if let Some(p) = quantile_ms(0.5, was_buckets, buckets, d) {
            s.p50_ms.insert(frontend.clone(), p);
        }
        if let Some(p) = quantile_ms(0.99, was_buckets, buckets, d) {
            s.p99_ms.insert(frontend.clone(), p);
        }
    }
    for (frontend, d) in failed {
        s.queries_per_second.insert(frontend, d as f64 / dt);
    }
    for ((cache, result), n) in &after.cache {
        let was = before.cache.get(&(cache.clone(), result.clone())).copied().unwrap_or(0);
        let c = s.cache.entry(cache.clone()).or_default();
        match result.as_str() {
            "hit" => c.hits += n.saturating_sub(was),
            _ => c.misses += n.saturating_sub(was),
        }
    }
    for c in s.cache.values_mut() {
        let all = c.hits + c.misses;
        c.hit_ratio = (all > 0).then(|| c.hits as f64 / all as f64);
    }
}

impl Engine {
    /// The console's history, taken every [`SAMPLE_EVERY`] until shutdown.
    pub(super) fn spawn_history(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let engine: Weak<Engine> = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => break,
                }
                let Some(e) = engine.upgrade() else { break };
                e.sample_health();
                e.sample_marks().await;
            }
        });
    }

    /// The health samples after `since` (ms since 1970).
    pub fn health_history(&self, since: i64) -> Vec<HealthSample> {
        self.history.health_since(since)
    }

    fn sample_health(&self) {
        let now = Instant::now();
        let counters = self.metrics.counters();
        let mut last = self.history.last.lock().unwrap_or_else(|e| e.into_inner());
        let Some((at, before)) = last.replace((now, counters.clone())) else { return };
        drop(last);
        let dt = now.duration_since(at).as_secs_f64().max(0.001);
        let (in_use, queued, max) = self.warehouse.slots();
        let mut s = HealthSample {
            t: chrono::Utc::now().timestamp_millis(),
            queries_per_second: BTreeMap::new(),
            p50_ms: BTreeMap::new(),
            p99_ms: BTreeMap::new(),
            cache: BTreeMap::new(),
            warehouse_slots: Slots {
                in_use: in_use as u64,
                queued: queued as u64,
                max: max as u64,
            },
            errors: BTreeMap::new(),
            connections: self
                .metrics
                .connections()
                .into_iter()
                .map(|(f, n)| (f.into(), n))
                .collect(),
        };
        rates(&before, &counters, dt, &mut s);
        for (_, labels, bytes) in self.legs.byte_gauges() {
            if let Some((_, cache)) = labels.first() {
                s.cache.entry(cache.clone()).or_default().bytes = bytes;
            }
        }
        self.history.push_health(s);
    }

    async fn sample_marks(&self) {
        let t = chrono::Utc::now().timestamp_millis();
        for table in self.catalog.tables() {
            let w = self.watermarks.cached(&table.name).and_then(|w| value_ms(&w.value));
            let h = self.high_water_ms(&table.name).await.ok().flatten();
            self.history.push_mark(&table.name, MarkSample { t, w, h });
        }
    }

    /// Each logical table `visible` keeps: its freshness now and its samples after `since`.
    pub async fn table_freshness(
        &self,
        since: i64,
        visible: impl Fn(&str) -> bool,
    ) -> Vec<TableFreshness> {
        let now = chrono::Utc::now().timestamp_millis();
        let poll = self.config.warehouse.watermark_poll().unwrap_or(SAMPLE_EVERY);
        let retention = poll + self.config.warehouse.statement_timeout.get();
        let mut out = Vec::new();
        for t in self.catalog.tables().iter().filter(|t| visible(&t.name)) {
            let mark = self.watermarks.cached(&t.name);
            let w = mark.as_ref().and_then(|m| value_ms(&m.value));
            let h = self.high_water_ms(&t.name).await;
            let windows = t.windows.as_ref().map(|cfg| {
                let (bucket, keep) = (cfg.bucket.get().as_millis() as i64, cfg.retention.get());
                let down = self.windows.as_ref().and_then(|r| r.unavailable_because());
                let s = h.clone().ok().flatten().map(|h| h.div_euclid(bucket.max(1)) * bucket);
                WindowsState {
                    up: h.is_ok() && down.is_none(),
                    reason: h.as_ref().err().cloned().or(down),
                    bucket_s: bucket as f64 / 1000.0,
                    retention_s: keep.as_secs_f64(),
                    margin_s: s
                        .map(|s| (keep.as_millis() as i64 - bucket - (now - s)) as f64 / 1000.0),
                }
            });
            let h = h.ok().flatten();
            let behind = |x: Option<i64>| x.map(|x| (now - x) as f64 / 1000.0);
            out.push(TableFreshness {
                table: t.name.clone(),
                now,
                batch_watermark: mark.map(|m| m.text()),
                w,
                h,
                batch_behind_s: behind(w),
                speed_behind_s: behind(h),
                windows,
                speed_retention_s: retention.as_secs_f64(),
                samples: self.history.marks_since(&t.name, since),
            });
        }
        out
    }

    /// A table's H in ms since 1970 (Ok(None): no windows or none published; Err: Redis
    /// cannot be read, and why). Read from Redis, not from the cache queries read H from, so
    /// that watching never changes what a query sees.
    pub(super) async fn high_water_ms(&self, table: &str) -> Result<Option<i64>, String> {
        let has = self.config.table(table).is_some_and(|t| t.windows.is_some());
        let Some(reader) = self.windows.as_ref().filter(|_| has) else { return Ok(None) };
        match reader.cached_high_water_mark(table, true).await {
            Ok(h) => Ok(h.map(|us| us.div_euclid(1000))),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let before = [0; BOUNDS.len()];
        // 10 observations, all in (1 ms, 2.5 ms]
        let mut after = [0; BOUNDS.len()];
        for (i, b) in BOUNDS.iter().enumerate() {
            after[i] = if *b >= 0.0025 { 10 } else { 0 };
        }
        let p50 = quantile_ms(0.5, &before, &after, 10).unwrap();
        assert!((p50 - 1.75).abs() < 1e-9, "{p50}");
        assert_eq!(quantile_ms(0.5, &before, &after, 0), None);
        // every observation past the last bound: the last finite bound, as Prometheus says
        let none = [0; BOUNDS.len()];
        assert_eq!(quantile_ms(0.99, &before, &none, 3), Some(5000.0));
    }

    #[test]
    fn rates_count_failures_with_answers() {
        let mut before = Counters::default();
        before.answered.insert("rest".into(), (10, [10; BOUNDS.len()]));
        let mut after = before.clone();
        after.answered.insert("rest".into(), (20, [20; BOUNDS.len()]));
        after.errors.insert(("rest".into(), "57014".into()), 5);
        after.errors.insert(("flight".into(), "42601".into()), 2);
        after.cache.insert(("batch".into(), "hit".into()), 3);
        after.cache.insert(("batch".into(), "miss".into()), 1);
        let mut s = HealthSample {
            t: 0,
            queries_per_second: BTreeMap::new(),
            p50_ms: BTreeMap::new(),
            p99_ms: BTreeMap::new(),
            cache: BTreeMap::new(),
            warehouse_slots: Slots::default(),
            errors: BTreeMap::new(),
            connections: BTreeMap::new(),
        };
        rates(&before, &after, 5.0, &mut s);
        assert_eq!(s.queries_per_second["rest"], 3.0);
        assert_eq!(s.queries_per_second["flight"], 0.4);
        assert_eq!(s.errors["57014"], 5);
        assert_eq!(s.cache["batch"].hit_ratio, Some(0.75));
    }
}
