//! Limits and operations: result rows/bytes (54000, HTTP 413), bounded warehouse slots with a
//! bounded queue (53300, HTTP 503 + Retry-After), the warehouse statement timeout (57014,
//! cancelled in the warehouse), graceful shutdown (drain, then cancel at the deadline), and
//! the one structured query-log line per statement.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_postgres::Client;

use common::*;

/// A server over a fresh layout database with these `[warehouse]` lines and `[limits]`.
struct LimitStack {
    db_name: String,
    db: Client,
    server: tidemark::server::Server,
}

async fn limit_stack(prefix: &str, warehouse: &str, limits: &str) -> LimitStack {
    let (db_name, db) = fresh_db(prefix).await;
    build_layout(&db, 2_000, 11).await;
    set_watermark(&db, "events", Layout::standard().w0).await;
    let extra = format!("{warehouse}\n\n[limits]\n{limits}\n");
    let toml = config_toml(&db_url(&db_name), &extra, true)
        .replace("http = \"127.0.0.1:0\"", "http = \"127.0.0.1:0\"\npg = \"127.0.0.1:0\"");
    let config = parse_config(&toml);
    let server = serve(config).await;
    LimitStack { db_name, db, server }
}

impl LimitStack {
    async fn rest(&self, sql: &str) -> (u16, Value) {
        query(&http_client(), self.server.http_addr.expect("http"), sql, &[]).await
    }

    async fn pg(&self) -> Client {
        let port = self.server.pg_addr.expect("pg").port();
        pg_client(port, "analyst", None).await.expect("connect through tidemark")
    }

    async fn stop(self) {
        self.server.shutdown().await;
        drop(self.db);
        drop_db(&self.db_name).await;
    }
}

/// Rows and bytes past the limits end the answer with 54000 on every path (REST 413, the
/// pgwire fast path, the extended protocol, a split query); answers within them are whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_limits_refuse_large_answers() {
    let s = limit_stack("lim_rows", "", "max_result_rows = 100").await;
    let (status, body) = s.rest("SELECT * FROM events_batch").await;
    assert_eq!((status, body["sqlstate"].clone()), (413, json!("54000")), "{body}");
    let (status, body) = s.rest("SELECT * FROM events").await;
    assert_eq!((status, body["sqlstate"].clone()), (413, json!("54000")), "split: {body}");
    let (status, body) = s.rest("SELECT id FROM events_batch ORDER BY id LIMIT 100").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(100));

    let c = s.pg().await;
    let e = c.simple_query("SELECT id FROM events_batch").await.unwrap_err();
    assert_eq!(sqlstate_of(&e), "54000", "fast path");
    let e = c.query("SELECT id FROM events_batch", &[]).await.unwrap_err();
    assert_eq!(sqlstate_of(&e), "54000", "extended protocol");
    let ok = c.query("SELECT id FROM events_batch LIMIT 7", &[]).await.unwrap();
    assert_eq!(ok.len(), 7, "the connection stays usable");
    s.stop().await;

    let s = limit_stack("lim_bytes", "", "max_result_bytes = 20000").await;
    let (status, body) = s.rest("SELECT * FROM events_batch").await;
    assert_eq!((status, body["sqlstate"].clone()), (413, json!("54000")), "{body}");
    let e = s.pg().await.simple_query("SELECT * FROM events_batch").await.unwrap_err();
    assert_eq!(sqlstate_of(&e), "54000", "fast path, bytes");
    let (status, body) = s.rest("SELECT count(*) FROM events_batch").await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}

/// One warehouse slot and a queue of one: a second statement waits (and gives up after the
/// queue timeout), a third is refused at once; both with 53300 / 503 and Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_slots_queue_then_refuse() {
    let limits = "max_concurrent_queries = 1\nqueue = 1\nqueue_timeout = \"400ms\"";
    let s = limit_stack("lim_slots", "", limits).await;
    let addr = s.server.http_addr.expect("http");
    let http = http_client();
    let send = |sql: &'static str| {
        let req = http.post(format!("http://{addr}/v1/query")).json(&json!({ "sql": sql }));
        tokio::spawn(async move { common::send(req).await })
    };
    let first = send("SELECT pg_sleep(1.5)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (second, third) = (send("SELECT 2"), send("SELECT 3"));
    let mut refused = 0;
    for r in [second, third] {
        let (status, headers, body) = r.await.unwrap();
        if status == 503 {
            assert_eq!(body_json(&body)["sqlstate"], "53300");
            assert_eq!(headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
            refused += 1;
        }
    }
    assert_eq!(refused, 2, "one waited out the queue timeout, one found the queue full");
    let (status, _, body) = first.await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, body) = s.rest("SELECT 4 AS n").await;
    assert_eq!((status, body["rows"][0][0].clone()), (200, json!(4)), "free again");
    s.stop().await;
}

/// The warehouse statement timeout cancels the statement in the warehouse (57014).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_in_the_warehouse() {
    let s = limit_stack("lim_timeout", "statement_timeout = \"700ms\"", "").await;
    let started = Instant::now();
    let (status, body) = s.rest("SELECT pg_sleep(20)").await;
    assert_eq!((status, body["sqlstate"].clone()), (504, json!("57014")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let e = s.pg().await.simple_query("SELECT pg_sleep(20)").await.unwrap_err();
    assert_eq!(sqlstate_of(&e), "57014", "fast path");
    assert_eq!(wait_gone(&s.db, "SELECT pg_sleep(20)%").await, 0, "nothing left running");
    s.stop().await;
}

/// SIGTERM semantics: not ready, no new statements, in-flight ones finish within the
/// deadline, the rest are cancelled (also in the warehouse) and shutdown returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_cancels() {
    let s = limit_stack("lim_drain", "", "shutdown_deadline = \"1500ms\"").await;
    let addr = s.server.http_addr.expect("http");
    let http = http_client();
    let send = |sql: &'static str| {
        let req = http.post(format!("http://{addr}/v1/query")).json(&json!({ "sql": sql }));
        tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
    };
    let short = send("SELECT pg_sleep(0.6)");
    let long = send("SELECT pg_sleep(30)");
    let pg = s.pg().await;
    let pg_long = tokio::spawn(async move { pg.simple_query("SELECT pg_sleep(31)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let LimitStack { db_name, db, server } = s;
    let engine = server.engine.clone();
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(engine.ready().await, Err("shutting down".to_string()));
    let mut session = tidemark::engine::Session::new("test");
    let refused = engine.execute("SELECT 1", &[], &mut session).await.err().expect("refused");
    assert_eq!(refused.sqlstate(), "57P01");
    stopping.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    assert_eq!(short.await.unwrap().ok(), Some(200), "in-flight query finished");
    assert_ne!(long.await.unwrap().ok(), Some(200), "stopped at the deadline");
    let e = pg_long.await.unwrap().unwrap_err();
    assert!(e.code().map(|c| c.code()) == Some("57P01") || e.is_closed(), "{e}");
    assert_eq!(wait_gone(&db, "SELECT pg_sleep(3%").await, 0, "warehouse queries cancelled");
    drop(db);
    drop_db(&db_name).await;
}

/// Captured log output of this test binary (the query log is written through `tracing`).
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter("tidemark::query=info")
            .with_writer(move || Writer(sink.clone()))
            .try_init();
        buf
    })
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One JSON log line per statement with user, frontend, plan, legs, rows, bytes, round trips,
/// phase times and SQLSTATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_log_line_per_statement() {
    let logs = captured();
    let s = limit_stack("lim_log", "", "").await;
    let c = s.pg().await;
    c.simple_query("SELECT id FROM events_batch WHERE id <= 3").await.unwrap();
    c.query("SELECT country, count(*) FROM events GROUP BY country", &[]).await.unwrap();
    let _ = c.simple_query("SELECT * FROM no_such_table").await.unwrap_err();
    let sql = "SELECT count(*) FROM events_batch WHERE id <= 3";
    let want: i64 = s.db.query_one(sql, &[]).await.unwrap().get(0);
    s.stop().await;
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "tidemark::query" && v["fields"]["user"] == "analyst")
        .map(|v| v["fields"].clone())
        .collect();
    let find = |plan: &str, sqlstate: &str| {
        lines
            .iter()
            .find(|f| f["plan"] == plan && f["sqlstate"] == sqlstate)
            .unwrap_or_else(|| panic!("no {plan}/{sqlstate} line in {lines:#?}"))
            .clone()
    };
    let forwarded = find("passthrough", "");
    assert_eq!(
        (forwarded["frontend"].clone(), forwarded["rows"].clone()),
        (json!("pgwire"), json!(want))
    );
    assert!(forwarded["bytes"].as_u64().unwrap() > 0);
    let split = find("split", "");
    assert!(split["legs"].as_str().unwrap().contains("batch:"), "{split}");
    assert!(split["rows"].as_u64().unwrap() > 0);
    assert!(split["round_trips"].as_u64().unwrap() >= 2, "two legs at least: {split}");
    let phases = split["phases"].as_str().unwrap();
    for phase in ["parse ", "describe ", "plan ", "legs ", "merge ", "encode "] {
        assert!(phases.contains(phase), "{phase} in {split}");
    }
    let failed = find("passthrough", "42P01");
    assert_eq!(failed["rows"], 0);
}

/// `[pg] idle_timeout` closes connections idle that long, never one running a statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let s = limit_stack("lim_idle", "", "\n[pg]\nidle_timeout = \"600ms\"").await;
    let busy = s.pg().await;
    let rows = busy.simple_query("SELECT pg_sleep(1.2)").await;
    assert!(rows.is_ok(), "a statement longer than the idle timeout runs to its end: {rows:?}");
    let idle = s.pg().await;
    idle.simple_query("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e = idle.simple_query("SELECT 1").await.unwrap_err();
    assert!(e.is_closed() || e.code().is_none(), "closed after idling: {e}");
    let fresh = s.pg().await;
    assert!(fresh.simple_query("SELECT 1").await.is_ok(), "new connections still work");
    s.stop().await;
}
