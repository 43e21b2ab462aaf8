//! Prometheus metrics: query counts and latency histograms per plan class and frontend,
//! errors per SQLSTATE, warehouse statements, cache hits and misses per cache. Gauges (bytes
//! held, watermark age, pool usage) are read when `/metrics` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BOUNDS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// One latency histogram.
#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BOUNDS.len()],
    total: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (c, b) in self.counts.iter_mut().zip(BOUNDS) {
            if secs <= b {
                *c += 1;
            }
        }
        self.total += 1;
        self.sum += secs;
    }
}

/// The process's counters.
#[derive(Default)]
pub struct Metrics {
    queries: Mutex<BTreeMap<&'static str, BTreeMap<String, Histogram>>>,
    errors: Mutex<BTreeMap<(String, String), u64>>,
    cache: Mutex<BTreeMap<(String, String), u64>>,
    warehouse_statements: AtomicU64,
    forwarded: AtomicU64,
    parses: AtomicU64,
    legs: Mutex<BTreeMap<String, u64>>,
    connections: Mutex<BTreeMap<&'static str, u64>>,
    shared: Mutex<BTreeMap<&'static str, u64>>,
    leases: Mutex<BTreeMap<&'static str, u64>>,
}

/// The cumulative counters at one instant (the console's history takes differences).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Per frontend: statements answered and how many took at most each of [`BOUNDS`].
    pub answered: BTreeMap<String, (u64, [u64; BOUNDS.len()])>,
    /// Failed statements per (frontend, SQLSTATE).
    pub errors: BTreeMap<(String, String), u64>,
    /// Cache lookups per (cache, result).
    pub cache: BTreeMap<(String, String), u64>,
}

/// One open client connection of a frontend, counted until dropped.
pub struct Connection {
    metrics: std::sync::Arc<Metrics>,
    frontend: &'static str,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut c = self.metrics.connections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = c.get_mut(self.frontend) {
            *n = n.saturating_sub(1);
        }
    }
}

/// A gauge sample: name, labels and value.
pub type Gauge = (&'static str, Vec<(&'static str, String)>, f64);

impl Metrics {
    /// Records one answered statement.
    pub fn query(&self, frontend: &'static str, plan: &str, took: Duration) {
        let mut q = self.queries.lock().unwrap_or_else(|e| e.into_inner());
        let by_plan = q.entry(frontend).or_default();
        match by_plan.get_mut(plan) {
            Some(h) => h.observe(took.as_secs_f64()),
            None => by_plan.entry(plan.into()).or_default().observe(took.as_secs_f64()),
        }
    }

    /// Records one failed statement.
    pub fn error(&self, frontend: &str, sqlstate: &str) {
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *e.entry((frontend.into(), sqlstate.into())).or_default() += 1;
    }

    /// Records a cache lookup: `cache` is batch, speed or answer; `status` hit or miss.
    pub fn cache(&self, cache: &str, status: &str) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry((cache.into(), status.into())).or_default() += 1;
    }

    /// Counts one statement sent to the warehouse.
    pub fn warehouse_statement(&self) {
        self.warehouse_statements.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one split leg run on the warehouse (`batch` or `speed`).
    pub fn leg(&self, layer: &str) {
        *self.legs.lock().unwrap_or_else(|e| e.into_inner()).entry(layer.into()).or_default() += 1;
    }

    /// Split legs run on the warehouse so far, per layer.
    pub fn legs_run(&self) -> BTreeMap<String, u64> {
        self.legs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts one statement taken by the pass-through fast path.
    pub fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one statement text parsed (a text seen again is not parsed again).
    pub fn parse(&self) {
        self.parses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one use of the fleet's shared cache by its result (`hit`, `miss`, `stored`,
    /// `too_large`, `unsharable`, `foreign`, `error`).
    pub fn shared(&self, result: &'static str) {
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()).entry(result).or_default() += 1;
    }

    /// Counts one fleet lease event (`won`, `held`, `waited`, `waited_in_vain`).
    pub fn lease(&self, result: &'static str) {
        *self.leases.lock().unwrap_or_else(|e| e.into_inner()).entry(result).or_default() += 1;
    }

    /// Counts an open connection of `frontend` until the returned guard is dropped.
    pub fn connection(self: &std::sync::Arc<Self>, frontend: &'static str) -> Connection {
        *self.connections.lock().unwrap_or_else(|e| e.into_inner()).entry(frontend).or_default() +=
            1;
        Connection { metrics: self.clone(), frontend }
    }

    /// Open connections per frontend.
    pub fn connections(&self) -> BTreeMap<&'static str, u64> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The cumulative counters now.
    pub fn counters(&self) -> Counters {
        let q = self.queries.lock().unwrap_or_else(|e| e.into_inner());
        let mut answered = BTreeMap::new();
        for (f, by_plan) in q.iter() {
            let e: &mut (u64, [u64; BOUNDS.len()]) = answered.entry(f.to_string()).or_default();
            for h in by_plan.values() {
                e.0 += h.total;
                for (sum, c) in e.1.iter_mut().zip(h.counts) {
                    *sum += c;
                }
            }
        }
        drop(q);
        Counters {
            answered,
            errors: self.errors.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            cache: self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Statements sent to the warehouse so far.
    pub fn warehouse_statements(&self) -> u64 {
        self.warehouse_statements.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of everything, with `gauges` appended.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        self.render_queries(&mut out);
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        header(
            &mut out,
            "tidemark_query_errors_total",
            "counter",
            "Failed statements by SQLSTATE.",
        );
        for ((f, s), n) in errors {
            let _ = writeln!(
                out,
                "tidemark_query_errors_total{{frontend=\"{f}\",sqlstate=\"{s}\"}} {n}"
            );
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone();
        header(
            &mut out,
            "tidemark_cache_requests_total",
            "counter",
            "Cache lookups by cache and result.",
        );
        for ((c, s), n) in cache {
            let _ =
                writeln!(out, "tidemark_cache_requests_total{{cache=\"{c}\",result=\"{s}\"}} {n}");
        }
        header(
            &mut out,
            "tidemark_warehouse_statements_total",
            "counter",
            "Statements run on the warehouse (legs, passthroughs, watermark polls; not describes).",
        );
        let _ =
            writeln!(out, "tidemark_warehouse_statements_total {}", self.warehouse_statements());
        header(
            &mut out,
            "tidemark_forwarded_statements_total",
            "counter",
            "Pass-through statements sent by the fast path (raw connections, simple protocol).",
        );
        let forwarded = self.forwarded.load(Ordering::Relaxed);
        let _ = writeln!(out, "tidemark_forwarded_statements_total {forwarded}");
        header(
            &mut out,
            "tidemark_sql_parses_total",
            "counter",
            "Statement texts parsed by tidemark (each text once while it stays in the parse cache).",
        );
        let parses = self.parses.load(Ordering::Relaxed);
        let _ = writeln!(out, "tidemark_sql_parses_total {parses}");
        header(
            &mut out,
            "tidemark_warehouse_legs_total",
            "counter",
            "Split legs run on the warehouse (cache misses and bypasses), by layer.",
        );
        for (layer, n) in self.legs_run() {
            let _ = writeln!(out, "tidemark_warehouse_legs_total{{layer=\"{layer}\"}} {n}");
        }
        for (name, help, map) in [
            (
                "tidemark_shared_cache_total",
                "The fleet's shared leg cache in Redis, by result.",
                &self.shared,
            ),
            (
                "tidemark_shared_leases_total",
                "Fleet leases on legs: won (this replica computes), held (another does), waited (its value came), waited_in_vain.",
                &self.leases,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (result, n) in map.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
            }
        }
        let connections: Vec<Gauge> = self
            .connections()
            .into_iter()
            .map(|(f, n)| ("tidemark_connections", vec![("frontend", f.to_string())], n as f64))
            .collect();
        render_gauges(&mut out, &connections);
        render_gauges(&mut out, gauges);
        out
    }

    fn render_queries(&self, out: &mut String) {
        let q = self.queries.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let name = "tidemark_query_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "Time to answer a statement (until its first batch), by frontend and plan class.",
        );
        for (f, p, h) in q.iter().flat_map(|(f, m)| m.iter().map(move |(p, h)| (f, p, h))) {
            let labels = format!("frontend=\"{f}\",plan=\"{p}\"");
            for (c, b) in h.counts.iter().zip(BOUNDS) {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {c}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.total);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.total);
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn render_gauges(out: &mut String, gauges: &[Gauge]) {
    let mut last = "";
    for (name, labels, v) in gauges {
        if *name != last {
            header(out, name, "gauge", gauge_help(name));
            last = name;
        }
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let braces = if l.is_empty() { String::new() } else { format!("{{{}}}", l.join(",")) };
        let _ = writeln!(out, "{name}{braces} {v}");
    }
}

fn gauge_help(name: &str) -> &'static str {
    match name {
        "tidemark_cache_bytes" => "Bytes held per cache (weighted size).",
        "tidemark_watermark_age_seconds" => "Now minus the batch watermark W, per logical table.",
        "tidemark_warehouse_pool_connections" => "Warehouse pool connections by state.",
        "tidemark_redis_up" => "1 while Redis serves this use (windows, watermark_push), else 0.",
        "tidemark_connections" => "Open client connections per frontend.",
        "tidemark_warehouse_slots" => {
            "Warehouse statement slots: in use, statements queued for one, and the most at once."
        }
        _ => "tidemark gauge.",
    }
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histograms_and_gauges() {
        let m = Metrics::default();
        m.query("rest", "split", Duration::from_millis(3));
        m.cache("batch", "hit");
        let text = m.render(&[("tidemark_cache_bytes", vec![("cache", "batch".into())], 42.0)]);
        assert!(text.contains("tidemark_query_duration_seconds_bucket{frontend=\"rest\",plan=\"split\",le=\"0.005\"} 1"));
        assert!(text.contains("tidemark_query_duration_seconds_bucket{frontend=\"rest\",plan=\"split\",le=\"0.0025\"} 0"));
        assert!(text.contains("tidemark_cache_requests_total{cache=\"batch\",result=\"hit\"} 1"));
        assert!(text.contains("tidemark_cache_bytes{cache=\"batch\"} 42"));
    }
}
