//! What the engine tells operators: metrics text, readiness, Redis roles, counters for tests.

use super::*;

impl Engine {
    /// Counts an open client connection of `frontend` (`tidemark_connections`) until the
    /// guard is dropped.
    pub fn connection(&self, frontend: &'static str) -> crate::metrics::Connection {
        self.metrics.connection(frontend)
    }

    /// The metrics in Prometheus text format, with gauges read now.
    pub fn metrics_text(&self) -> String {
        let mut gauges = self.legs.byte_gauges();
        let now = chrono::Utc::now().timestamp_micros();
        for t in self.catalog.tables() {
            let w = self.watermarks.cached(&t.name).map(|w| w.value);
            let at = match w {
                Some(Value::Timestamp(v) | Value::TimestampTz(v)) => v,
                Some(Value::Date(d)) => d as i64 * 86_400_000_000,
                _ => continue,
            };
            let age = (now - at) as f64 / 1e6;
            gauges.push(("tidemark_watermark_age_seconds", vec![("table", t.name.clone())], age));
        }
        gauges.extend(self.warehouse.pool_gauges());
        for (role, why) in self.redis_roles() {
            let up = if why.is_none() { 1.0 } else { 0.0 };
            gauges.push(("tidemark_redis_up", vec![("use", role.to_string())], up));
        }
        self.metrics.render(&gauges)
    }

    /// What tidemark uses Redis for (`windows`, `watermark_push`) and, for each, why it is
    /// unavailable now (None: working, or not tried yet).
    pub fn redis_roles(&self) -> Vec<(&'static str, Option<String>)> {
        let mut roles = Vec::new();
        if let Some(w) = &self.windows {
            roles.push(("windows", w.unavailable_because()));
        }
        if let Some(p) = &self.push {
            roles.push(("watermark_push", p.unavailable_because()));
        }
        if let Some(s) = &self.shared {
            roles.push(("shared_cache", s.unavailable_because()));
        }
        roles
    }

    /// Connects to Redis and pings it now (`tidemark check`): None without `[redis]`.
    pub async fn check_redis(&self) -> Option<std::result::Result<(), String>> {
        Some(self.windows.as_ref()?.probe().await)
    }

    /// Checks Redis once at start, so a wrong password or certificate is a WARN in the log
    /// at once rather than a silent loss of the windows layer.
    pub(super) fn spawn_redis_check(self: Arc<Self>) {
        if self.windows.is_none() {
            return;
        }
        tokio::spawn(async move {
            let Some(w) = &self.windows else { return };
            if let Err(why) = w.probe().await {
                tracing::warn!(error = %why, "windows layer unavailable at start; answers use the speed table until Redis answers");
            }
        });
    }

    /// Whether the warehouse answers (`SELECT 1` within 2 s), checked at most once a second;
    /// the error says why not.
    pub async fn ready(&self) -> std::result::Result<(), String> {
        if self.life.draining() {
            return Err("shutting down".into());
        }
        if let Some((at, r)) = &*self.readiness.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return r.clone();
            }
        }
        let no_settings = SessionParams::new();
        let probe = self.warehouse.fetch("SELECT 1", &[], &[], &no_settings);
        let r = match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("warehouse: {e}")),
            Err(_) => Err("warehouse: no answer within 2 s".into()),
        };
        *self.readiness.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), r.clone()));
        r
    }

    /// Split legs run on the warehouse since start, per layer (`batch`, `speed`).
    pub fn legs_run(&self) -> std::collections::BTreeMap<String, u64> {
        self.metrics.legs_run()
    }

    /// SQL of the batch legs in the cache now (diagnostics and tests).
    pub fn cached_batch_sql(&self) -> Vec<String> {
        self.legs.batch_sql()
    }
}
