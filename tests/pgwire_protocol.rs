//! PostgreSQL wire protocol edge cases driven by tokio-postgres: extended protocol with
//! binary results, parameters, portal suspension, describe without running, errors,
//! transactions, session settings that never leak, cancel, connection limit, bad bytes.

mod common;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use common::*;

/// A fresh layout database and a server with the pg listener (`extra` goes into the TOML).
async fn pg_stack(prefix: &str, extra: &str, warehouse_extra: &str) -> (Stack2, Client) {
    let (db_name, db) = fresh_db(prefix).await;
    let layout = Layout::standard();
    build_layout(&db, 2_000, 7).await;
    set_watermark(&db, "events", layout.w0).await;
    let toml = config_toml(&db_url(&db_name), warehouse_extra, true)
        .replace("http = \"127.0.0.1:0\"", "http = \"127.0.0.1:0\"\npg = \"127.0.0.1:0\"")
        + extra;
    let config = parse_config(&toml);
    let server = serve(config).await;
    let pg = server.pg_addr.expect("pg listener bound");
    let client = connect_to(pg.port()).await.expect("connect through tidemark");
    (Stack2 { db_name, db, server, pg_port: pg.port() }, client)
}

struct Stack2 {
    db_name: String,
    db: Client,
    server: tidemark::server::Server,
    pg_port: u16,
}

impl Stack2 {
    async fn stop(self) {
        self.server.shutdown().await;
        drop(self.db);
        drop_db(&self.db_name).await;
    }
}

async fn connect_to(port: u16) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=analyst dbname=whatever"),
        NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Extended protocol: typed parameters in, binary results out, equal to the oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_binary_results_match_the_oracle() {
    let (s, c) = pg_stack("pgw_bin", "", "").await;
    let sql = "SELECT country, count(*) AS n, sum(amount) AS total, min(event_time) AS first, max(score) AS top, bool_or(flag) AS anyf \
               FROM {T} WHERE qty > $1 AND event_time >= $2 GROUP BY country ORDER BY country";
    let since = chrono::NaiveDate::from_ymd_opt(2024, 3, 10).unwrap().and_hms_opt(0, 0, 0).unwrap();
    let through =
        c.query(&sql.replace("{T}", "events"), &[&1i16, &since]).await.expect("tidemark query");
    let oracle =
        s.db.query(&sql.replace("{T}", "events_oracle"), &[&1i16, &since])
            .await
            .expect("oracle query");
    assert!(!oracle.is_empty());
    assert_eq!(through.len(), oracle.len());
    for (a, b) in through.iter().zip(&oracle) {
        assert_eq!(a.get::<_, Option<String>>(0), b.get::<_, Option<String>>(0));
        assert_eq!(a.get::<_, i64>(1), b.get::<_, i64>(1));
        assert_eq!(a.columns()[2].type_().name(), "numeric");
        assert_eq!(
            a.get::<_, Option<chrono::NaiveDateTime>>(3),
            b.get::<_, Option<chrono::NaiveDateTime>>(3)
        );
        let (x, y) = (a.get::<_, Option<f64>>(4), b.get::<_, Option<f64>>(4));
        assert_eq!(x, y);
        assert_eq!(a.get::<_, Option<bool>>(5), b.get::<_, Option<bool>>(5));
    }
    // numeric as text, exactly
    let q = "SELECT sum(amount)::text, sum(big)::text, avg(qty)::text FROM {T}";
    let a = c.query_one(&q.replace("{T}", "events"), &[]).await.unwrap();
    let b = s.db.query_one(&q.replace("{T}", "events_oracle"), &[]).await.unwrap();
    for i in 0..3 {
        assert_eq!(a.get::<_, Option<String>>(i), b.get::<_, Option<String>>(i));
    }
    s.stop().await;
}

/// Execute with a row limit suspends the portal and the next Execute continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_suspension_resumes() {
    let (s, mut c) = pg_stack("pgw_portal", "", "").await;
    let tx = c.transaction().await.unwrap();
    let stmt = tx.prepare("SELECT g FROM generate_series(1, 12) g").await.unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut seen = Vec::new();
    for want in [5, 5, 2, 0] {
        let rows = tx.query_portal(&portal, 5).await.unwrap();
        assert_eq!(rows.len(), want);
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, (1..=12).collect::<Vec<_>>());
    tx.commit().await.unwrap();
    s.stop().await;
}

/// Parse/Describe answers without running the statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_does_not_run_the_query() {
    let (s, c) = pg_stack("pgw_describe", "", "").await;
    let started = Instant::now();
    let stmt = c.prepare("SELECT pg_sleep(5) AS slept, $1::int8 + 1 AS next").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(stmt.columns()[1].type_().name(), "int8");
    assert_eq!(stmt.params()[0].name(), "int8");
    let stmt = c.prepare("SELECT country, avg(amount) FROM events GROUP BY 1").await.unwrap();
    assert_eq!(stmt.columns()[1].type_().name(), "numeric");
    s.stop().await;
}

/// `EXPLAIN (ANALYZE)` (and `EXPLAIN ANALYZE`) runs the query: the plan, then the rows of the
/// answer (as many as the oracle's groups) and each leg's rows, milliseconds and cache status;
/// a plain EXPLAIN shows the plan only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_runs_the_query() {
    let (s, c) = pg_stack("pgw_analyze", "", "").await;
    let groups: i64 =
        s.db.query_one("SELECT count(*) FROM (SELECT DISTINCT country FROM events_oracle) g", &[])
            .await
            .unwrap()
            .get(0);
    let q = "SELECT country, count(*) FROM events GROUP BY country";
    let lines = |rows: Vec<SimpleQueryMessage>| -> Vec<String> {
        rows.into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect()
    };
    for (i, spelling) in ["EXPLAIN (ANALYZE)", "EXPLAIN ANALYZE", "EXPLAIN (ANALYZE true, VERBOSE)"]
        .iter()
        .enumerate()
    {
        let got = lines(c.simple_query(&format!("{spelling} {q}")).await.unwrap());
        let text = got.join("\n");
        let trips = got.iter().find_map(|l| l.trim_start().strip_prefix("warehouse round trips: "));
        let trips = trips.unwrap_or_else(|| panic!("{spelling}: no round trips in {text}"));
        let statements: u64 = trips
            .split_once(" (")
            .and_then(|(_, rest)| rest.split_once(" statement(s)"))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("{spelling}: {trips}"));
        if i == 0 {
            assert!(statements >= 2, "a cold split runs both legs: {text}");
        }
        let phases = got.iter().find_map(|l| l.trim_start().strip_prefix("phases: "));
        let phases = phases.unwrap_or_else(|| panic!("{spelling}: no phases in {text}"));
        for phase in ["parse ", "describe ", "plan ", "legs ", "merge "] {
            assert!(phases.contains(phase), "{spelling}: {phases}");
        }
        assert!(text.contains("tidemark plan: split"), "{spelling}: {text}");
        let actual = format!("actual: {groups} row(s) in ");
        assert!(got.iter().any(|l| l.starts_with(&actual)), "{spelling}: {text}");
        for leg in ["batch", "speed"] {
            let leg_line = got.iter().find(|l| l.trim_start().starts_with(&format!("{leg} leg: ")));
            let leg_line = leg_line.unwrap_or_else(|| panic!("{spelling}: no {leg} leg in {text}"));
            assert!(leg_line.contains(" ms, cache "), "{spelling}: {leg_line}");
        }
    }
    let plain = lines(c.simple_query(&format!("EXPLAIN {q}")).await.unwrap()).join("\n");
    assert!(plain.contains("tidemark plan: split") && !plain.contains("actual:"), "{plain}");
    let off = lines(c.simple_query(&format!("EXPLAIN (ANALYZE false) {q}")).await.unwrap());
    assert!(!off.join("\n").contains("actual:"), "ANALYZE false does not run the query");
    s.stop().await;
}

/// Errors carry their SQLSTATE and leave the connection usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_sqlstates() {
    let (s, c) = pg_stack("pgw_errors", "", "").await;
    for (sql, want) in [
        ("SELEC 1", "42601"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT no_such_column FROM events", "42703"),
        ("INSERT INTO events_batch (id) VALUES (1)", "25006"),
        ("DROP TABLE events_batch", "25006"),
        ("SELECT sum(qty) / 0 FROM events", "22012"),
    ] {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate_of(&e), want, "{sql}");
        let e = c.query(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate_of(&e), want, "{sql} (extended)");
    }
    let rows = c.simple_query("SELECT 1; SELECT 2").await.unwrap();
    let n = rows.iter().filter(|m| matches!(m, SimpleQueryMessage::Row(_))).count();
    assert_eq!(n, 2, "two statements in one simple query");
    assert!(c.simple_query("").await.is_ok(), "empty query");
    s.stop().await;
}

/// BEGIN/COMMIT/ROLLBACK with the right transaction status; an error aborts the block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_report_status() {
    let (s, mut c) = pg_stack("pgw_tx", "", "").await;
    let tx = c.transaction().await.unwrap();
    assert!(tx.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get::<_, i64>(0) > 0);
    assert_eq!(
        sqlstate_of(&tx.execute("DELETE FROM events_batch", &[]).await.unwrap_err()),
        "25006"
    );
    assert_eq!(sqlstate_of(&tx.query("SELECT 1", &[]).await.unwrap_err()), "25P02");
    tx.rollback().await.unwrap();
    assert_eq!(c.query_one("SELECT 7", &[]).await.unwrap().get::<_, i32>(0), 7);
    c.batch_execute("BEGIN READ ONLY; SET TRANSACTION READ ONLY; COMMIT")
        .await
        .expect("read-only transactions");
    s.stop().await;
}

/// SET applies to this client's queries only, even through one shared warehouse connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_never_leak() {
    let (s, a) = pg_stack("pgw_session", "", "pool_size = 1").await;
    let b = connect_to(s.pg_port).await.unwrap();
    a.batch_execute("SET TimeZone = 'America/New_York'").await.unwrap();
    for _ in 0..3 {
        let ra = a
            .query_one("SELECT current_setting('TimeZone')", &[])
            .await
            .unwrap()
            .get::<_, String>(0);
        let rb = b
            .query_one("SELECT current_setting('TimeZone')", &[])
            .await
            .unwrap()
            .get::<_, String>(0);
        assert_eq!(ra, "America/New_York");
        assert_eq!(rb, "UTC");
    }
    let shown = a.simple_query("SHOW timezone").await.unwrap();
    let SimpleQueryMessage::Row(r) = &shown[1] else { panic!("no row: {shown:?}") };
    assert_eq!(r.get(0), Some("America/New_York"));
    let fresh =
        a.simple_query("SELECT count(*) FROM events; SHOW tidemark.freshness").await.unwrap();
    let text = fresh
        .iter()
        .filter_map(|m| {
            if let SimpleQueryMessage::Row(r) = m {
                r.get(0).map(str::to_string)
            } else {
                None
            }
        })
        .last()
        .unwrap();
    assert!(text.contains("\"plan\":\"split\""), "{text}");
    s.stop().await;
}

/// A CancelRequest stops the running query (57014) and its warehouse query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_warehouse_query() {
    let (s, c) = pg_stack("pgw_cancel", "", "").await;
    let token = c.cancel_token();
    let started = Instant::now();
    let running = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(20)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(NoTls).await.unwrap();
    let e = running.await.unwrap().expect_err("cancelled");
    assert_eq!(sqlstate_of(&e), "57014");
    assert!(started.elapsed() < Duration::from_secs(5));
    let left = wait_gone(&s.db, "SELECT pg_sleep(20)%").await;
    assert_eq!(left, 0, "the warehouse query was cancelled too");
    s.stop().await;
}

/// Past max_connections new connections get 53300; others keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_gives_53300() {
    let (s, first) = pg_stack("pgw_limit", "\n[pg]\nmax_connections = 2\n", "").await;
    let second = connect_to(s.pg_port).await.unwrap();
    let e = connect_to(s.pg_port).await.expect_err("third connection refused");
    assert_eq!(sqlstate_of(&e), "53300");
    assert_eq!(second.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = connect_to(s.pg_port).await.expect("a slot was freed");
    assert_eq!(again.query_one("SELECT 2", &[]).await.unwrap().get::<_, i32>(0), 2);
    s.stop().await;
}

/// Garbage and truncated messages end that connection only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_end_only_that_connection() {
    let (s, c) = pg_stack("pgw_garbage", "", "").await;
    for bytes in [
        &b"\x00\x00\x00\x08\x04\xd2\x16\x2f"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x00\x00\xff\xff\x00\x03",
        b"\x00\x00\x00\x03",
    ] {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.pg_port)).await.unwrap();
        let _ = sock.write_all(bytes).await;
        drop(sock);
    }
    assert_eq!(c.query_one("SELECT 3", &[]).await.unwrap().get::<_, i32>(0), 3);
    let fresh = connect_to(s.pg_port).await.unwrap();
    assert_eq!(fresh.query_one("SELECT 4", &[]).await.unwrap().get::<_, i32>(0), 4);
    s.stop().await;
}

/// DECLARE / FETCH n / CLOSE read a cursor in pieces (Tableau's way), and COPY TO STDOUT works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_and_copy_out() {
    let (s, c) = pg_stack("pgw_cursor", "", "").await;
    let rows = |msgs: Vec<SimpleQueryMessage>| -> Vec<String> {
        msgs.into_iter()
            .filter_map(|m| {
                if let SimpleQueryMessage::Row(r) = m {
                    r.get(0).map(str::to_string)
                } else {
                    None
                }
            })
            .collect()
    };
    c.batch_execute("BEGIN; DECLARE cur CURSOR FOR SELECT id FROM events ORDER BY id LIMIT 7")
        .await
        .unwrap();
    let first = rows(c.simple_query("FETCH 3 FROM cur").await.unwrap());
    let rest = rows(c.simple_query("FETCH ALL FROM cur").await.unwrap());
    let none = rows(c.simple_query("FETCH 5 FROM cur").await.unwrap());
    c.batch_execute("CLOSE cur; COMMIT").await.unwrap();
    let oracle: Vec<String> =
        s.db.query("SELECT id FROM events_oracle ORDER BY id LIMIT 7", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i64>(0).to_string())
            .collect();
    assert_eq!([first.clone(), rest.clone()].concat(), oracle);
    assert_eq!((first.len(), rest.len(), none.len()), (3, 4, 0));
    assert_eq!(sqlstate_of(&c.simple_query("FETCH 1 FROM cur").await.unwrap_err()), "34000");
    // a cursor without HOLD closes at COMMIT; WITH HOLD survives
    c.batch_execute(
        "BEGIN; DECLARE a CURSOR FOR SELECT 1; DECLARE b CURSOR WITH HOLD FOR SELECT 2; COMMIT",
    )
    .await
    .unwrap();
    assert_eq!(sqlstate_of(&c.simple_query("FETCH 1 FROM a").await.unwrap_err()), "34000");
    assert_eq!(rows(c.simple_query("FETCH 1 FROM b").await.unwrap()), vec!["2"]);
    // COPY (query) TO STDOUT in text format
    use futures::TryStreamExt;
    let out = c
        .copy_out("COPY (SELECT 'a\tb' AS t, NULL::int AS n, 1.50::numeric AS x) TO STDOUT")
        .await
        .unwrap();
    let bytes: Vec<bytes::Bytes> = std::pin::pin!(out).try_collect().await.unwrap();
    assert_eq!(bytes.concat(), b"a\\tb\t\\N\t1.50\n".to_vec());
    assert_eq!(
        sqlstate_of(&c.simple_query("COPY events_batch FROM STDIN").await.unwrap_err()),
        "25006"
    );
    s.stop().await;
}

/// With a certificate configured, `sslmode=require` connects over TLS (psql); without
/// one, SSL is declined and plain connections work (the other tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_configured_certificate() {
    let dir = std::env::temp_dir().join(format!("tidemark_tls_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed for the TLS test (scripts/test.sh installs it)");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let extra = format!("\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display());
    let (s, _c) = pg_stack("pgw_tls", &extra, "").await;
    let port = s.pg_port;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .arg(format!("host=127.0.0.1 port={port} user=u dbname=d sslmode=require"))
            .args(["-X", "-A", "-t", "-c", "SELECT count(*) > 0 FROM events", "-c", "\\conninfo"])
            .output()
            .expect("psql")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", text, String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("t\n"), "{text}");
    assert!(text.contains("SSL connection"), "{text}");
    // REST is served over TLS with the same certificate.
    let http = s.server.http_addr.expect("http").port();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sk", "-X", "POST", "-H", "content-type: application/json"])
            .args(["-d", r#"{"sql":"SELECT 40 + 2 AS n"}"#])
            .arg(format!("https://127.0.0.1:{http}/v1/query"))
            .output()
            .expect("curl")
    })
    .await
    .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains(r#""rows":[[42]]"#), "{body}{}", String::from_utf8_lossy(&out.stderr));
    s.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pass-through statements of the simple protocol take the raw fast path: the same rows as the
/// warehouse, errors with their SQLSTATE on a connection that stays usable, sessions with
/// their own settings kept on the normal path, and `set_config` never leaking between clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_fast_path() {
    let (s, a) = pg_stack("pgw_forward", "", "pool_size = 1").await;
    let forwarded = || s.server.engine.metrics_text();
    let count = |text: String| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("tidemark_forwarded_statements_total "))
            .and_then(|v| v.parse().ok())
            .expect("forwarded counter")
    };
    let before = count(forwarded());
    let sql = "SELECT id, country, qty FROM events_batch WHERE id < 40 ORDER BY id";
    let want = text_rows(&s.db.simple_query(sql).await.unwrap());
    assert!(!want.is_empty());
    for _ in 0..3 {
        assert_eq!(text_rows(&a.simple_query(sql).await.unwrap()), want);
    }
    assert_eq!(count(forwarded()), before + 3, "three statements forwarded");
    let e = a.simple_query("SELECT 1 / (id - id) FROM events_batch").await.unwrap_err();
    assert_eq!(sqlstate_of(&e), "22012");
    let after_error = a.simple_query("SELECT count(*) FROM events_batch").await.unwrap();
    assert!(matches!(after_error[1], SimpleQueryMessage::Row(_)), "usable after an error");
    let fresh = a.simple_query("SHOW tidemark.freshness").await.unwrap();
    let SimpleQueryMessage::Row(r) = &fresh[1] else { panic!("no row: {fresh:?}") };
    assert!(r.get(0).unwrap().contains("\"plan\":\"passthrough\""), "{:?}", r.get(0));

    // set_config through one client never reaches another (one warehouse connection each way).
    let b = connect_to(s.pg_port).await.unwrap();
    a.simple_query("SELECT set_config('TimeZone', 'Asia/Tokyo', false)").await.unwrap();
    a.query("SELECT set_config('TimeZone', 'Asia/Tokyo', false)", &[]).await.unwrap();
    for _ in 0..2 {
        let tz = b.simple_query("SELECT current_setting('TimeZone')").await.unwrap();
        let SimpleQueryMessage::Row(r) = &tz[1] else { panic!("no row: {tz:?}") };
        assert_eq!(r.get(0), Some("UTC"));
        let tz: String =
            b.query_one("SELECT current_setting('TimeZone')", &[]).await.unwrap().get(0);
        assert_eq!(tz, "UTC");
    }
    // A client with its own settings keeps the normal path (and its settings).
    let n = count(forwarded());
    b.batch_execute("SET TimeZone = 'America/New_York'").await.unwrap();
    let tz = b.simple_query("SELECT current_setting('TimeZone')").await.unwrap();
    let SimpleQueryMessage::Row(r) = &tz[1] else { panic!("no row: {tz:?}") };
    assert_eq!(r.get(0), Some("America/New_York"));
    assert_eq!(count(forwarded()), n, "a session with settings is not forwarded");
    s.stop().await;
}

/// The rows of a simple-query answer as text cells.
fn text_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}
