//! The web console in a real browser: `tidemark demo` (its own database, its own Redis, users
//! with API keys) is started as users start it, and tests/console/console.test.mjs drives
//! Debian's chromium through playwright-core against it: sign-in, a split query's grid
//! against the REST answer, the split picture (batch, speed, windows; W and H), a
//! pass-through's reason, cancel (57014, the warehouse query gone), the freshness chart
//! moving with W, the health charts, recent queries with other users' text hidden, and that
//! the page never asks another host. Screenshots of every view go to target/console-screenshots.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::clients::*;
use common::redis::{scratch_dir, RedisServer};
use common::*;

/// Kills the demo when the test ends, passed or not.
struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `[[users]]` file: the analyst and bob read everything but only their own statements'
/// text; their API keys are returned.
fn users_file(dir: &std::path::Path) -> (std::path::PathBuf, String, String) {
    let analyst = tidemark::access::new_api_key().expect("a key");
    let bob = tidemark::access::new_api_key().expect("a key");
    let scram = tidemark::frontend::auth::make_verifier("a password");
    let user = |name: &str, key: &str| {
        format!(
            "[[users]]\nname = \"{name}\"\npassword_hash = \"{scram}\"\napi_keys = [\"{}\"]\n\n",
            tidemark::access::hash_api_key(key)
        )
    };
    let path = dir.join("users.toml");
    std::fs::write(&path, user("analyst", &analyst) + &user("bob", &bob)).expect("write users");
    (path, analyst, bob)
}

/// Starts the demo and waits for its console URL.
fn start_demo(database: &str, users: &std::path::Path, redis: &RedisServer) -> (Demo, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .current_dir(repo())
        .args(["demo", "--database", database, "--events", "20000", "--rate", "50"])
        .args(["--advance-every", "8", "--http", "127.0.0.1:0", "--pg", "127.0.0.1:0"])
        .args(["--flight", "127.0.0.1:0", "--users"])
        .arg(users)
        .env("TIDEMARK_REDIS_URL", redis.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tidemark demo");
    let out = child.stdout.take().expect("demo stdout");
    let demo = Demo { child };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("=== console: ") {
                let _ = tx.send(url.split_whitespace().next().unwrap_or_default().to_string());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(180)).expect("the demo printed its console URL");
    (demo, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser() {
    let dir = repo().join("tests/console");
    assert!(
        dir.join("node_modules/playwright-core/package.json").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "playwright-core (npm ci in tests/console) and /usr/bin/chromium are missing: {INSTALL_HINT}"
    );
    let redis = RedisServer::start();
    let scratch = scratch_dir("console");
    let (users, analyst, bob) = users_file(&scratch);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let database = format!("tmtest_console_{}_{nanos}", std::process::id());
    let (demo, console) = start_demo(&database, &users, &redis);
    let base = console.trim_end_matches("/console").to_string();
    let shots = repo().join("target/console-screenshots");
    let mut cmd = client_command("node");
    cmd.current_dir(&dir)
        .arg("console.test.mjs")
        .env("TIDEMARK_URL", &base)
        .env("ANALYST_KEY", &analyst)
        .env("BOB_KEY", &bob)
        .env("WAREHOUSE_URL", db_url(&database))
        .env("SCREENSHOTS", &shots);
    let run = run_client("the console's browser test", cmd).await;
    drop(demo);
    drop_db(&database).await;
    assert!(
        run.success() && run.stdout.contains("console test: passed"),
        "{}\n(screenshots in {})",
        run.report(),
        shots.display()
    );
    println!("{}", run.stdout.lines().last().unwrap_or_default());
}

// ---------------------------------------------------------------------------------------------
// The console's data endpoints, without a browser
// ---------------------------------------------------------------------------------------------

const ANALYST: &str = "tmk_analyst_0123456789";
const BOB: &str = "tmk_bob_0123456789";
const ADMIN: &str = "tmk_admin_0123456789";

/// A server over the test layout with three users: analyst (the `events` table only), bob
/// (everything), admin (everything, and every user's statements: `read_all_stats`).
async fn observed_stack() -> (String, tokio_postgres::Client, tidemark::server::Server) {
    let (db_name, db) = fresh_db("observe").await;
    build_layout(&db, 1_500, 7).await;
    set_watermark(&db, "events", Layout::standard().w0).await;
    let user = |name: &str, key: &str, extra: &str| {
        format!(
            "\n[[users]]\nname = \"{name}\"\npassword_hash = \"{}\"\napi_keys = [\"{}\"]\n{extra}\n",
            tidemark::frontend::auth::make_verifier("pw"),
            tidemark::access::hash_api_key(key)
        )
    };
    let toml = config_toml(&db_url(&db_name), "", true)
        + &user("analyst", ANALYST, "tables = [\"events\"]")
        + &user("bob", BOB, "")
        + &user("admin", ADMIN, "read_all_stats = true");
    let server = serve(parse_config(&toml)).await;
    (db_name, db, server)
}

/// `GET path` (or POST `body`) with an optional API key: status, headers, JSON body.
async fn call(
    server: &tidemark::server::Server,
    key: Option<&str>,
    path: &str,
    body: Option<serde_json::Value>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let url = format!("http://{}{path}", server.http_addr.expect("http"));
    let client = http_client();
    let mut req = match &body {
        Some(b) => client.post(url).json(b),
        None => client.get(url),
    };
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, h, bytes) = send(req).await;
    (status, h, body_json(&bytes))
}

/// Polls `f` every 200 ms for up to `secs` seconds until it gives Some.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    for _ in 0..secs * 5 {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_data_endpoints() {
    let (db_name, db, server) = observed_stack().await;
    let s = &server;

    // without a key: 401 everywhere but the static page, which holds no data
    for path in ["/v1/recent", "/v1/recent/1", "/v1/freshness", "/v1/stats"] {
        assert_eq!(call(s, None, path, None, &[]).await.0, 401, "{path}");
    }
    let body = serde_json::json!({ "request_id": "x" });
    assert_eq!(call(s, None, "/v1/cancel", Some(body), &[]).await.0, 401);
    let page = http_client()
        .get(format!("http://{}/console", s.http_addr.expect("http")))
        .send()
        .await
        .expect("the console page");
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap_or_default().to_string();
    assert!(csp.contains("connect-src 'self'") && csp.contains("default-src 'none'"), "{csp}");

    // a sliding range: its record has the plan as it ran, pieces with ranges and statuses
    let w0 = Layout::standard().w0;
    let lower = (w0 - chrono::TimeDelta::days(3)).format("%Y-%m-%d %H:%M:%S").to_string();
    let sql = "SELECT country, count(*) AS n, sum(amount) AS revenue FROM events \
               WHERE event_time >= $1 GROUP BY country ORDER BY country";
    let q = serde_json::json!({ "sql": sql, "params": [lower] });
    let (status, h, answer) = call(s, Some(ANALYST), "/v1/query", Some(q), &[]).await;
    assert_eq!(status, 200, "{answer}");
    let oracle_sql =
        sql.replace("FROM events", "FROM events_oracle").replace("$1", &format!("'{lower}'"));
    let expected = oracle(&db, &oracle_sql, &[]).await.expect("oracle");
    let got = answer_from_json(&answer).expect("answer");
    compare_answers(&expected, &got, true).unwrap_or_else(|e| panic!("{e}"));
    let id = header(&h, "tidemark-query-id").expect("tidemark-query-id").to_string();
    let (status, _, rec) = call(s, Some(ANALYST), &format!("/v1/recent/{id}"), None, &[]).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["sql"], sql);
    assert_eq!(rec["params"], serde_json::json!([lower]));
    let w = rec["explain"]["batch_watermark"].as_str().expect("W").to_string();
    assert_eq!(rec["freshness"]["batch_watermark"], w);
    let legs = rec["explain"]["legs"].as_array().expect("legs");
    let pieces: Vec<_> = legs
        .iter()
        .filter(|l| l["name"].as_str().unwrap_or("").starts_with("batch piece"))
        .collect();
    assert!(pieces.len() >= 3, "a three-day range is cut into day chunks: {legs:?}");
    assert!(pieces[0]["from"].as_str().unwrap_or("").starts_with(&lower), "{:?}", pieces[0]);
    assert_eq!(pieces.last().expect("a piece")["to"], w, "the last chunk ends at W");
    for pair in pieces.windows(2) {
        assert_eq!(pair[0]["to"], pair[1]["from"], "chunks meet: {pair:?}");
    }
    let speed = legs.iter().find(|l| l["name"] == "speed").expect("a speed leg");
    assert_eq!(speed["from"], w, "the speed leg starts at W");
    let reported = rec["freshness"]["legs"].as_array().expect("freshness legs");
    let batch = reported.iter().find(|l| l["name"] == "batch").expect("the batch leg's report");
    assert_eq!(batch["pieces"].as_array().map(Vec::len), Some(pieces.len()));

    // others' text is hidden unless read_all_stats
    let bob_sql = "SELECT 'bob was here' AS note";
    let (status, h, _) =
        call(s, Some(BOB), "/v1/query", Some(serde_json::json!({ "sql": bob_sql })), &[]).await;
    assert_eq!(status, 200);
    let bob_id = header(&h, "tidemark-query-id").expect("id").to_string();
    let (_, _, mine) = call(s, Some(ANALYST), "/v1/recent?limit=50", None, &[]).await;
    assert_eq!(mine["read_all"], false);
    let bobs = |list: &serde_json::Value| {
        list["statements"]
            .as_array()
            .expect("statements")
            .iter()
            .find(|r| r["user"] == "bob")
            .cloned()
    };
    let seen = bobs(&mine).expect("bob's statement is listed");
    assert!(seen["sql"].is_null() && seen["params"] == serde_json::json!([]), "{seen}");
    let (_, _, detail) = call(s, Some(ANALYST), &format!("/v1/recent/{bob_id}"), None, &[]).await;
    assert!(detail["sql"].is_null() && detail["explain"].is_null(), "{detail}");
    let (_, _, found) = call(s, Some(ANALYST), "/v1/recent?q=bob%20was", None, &[]).await;
    assert_eq!(found["statements"], serde_json::json!([]), "hidden text is not searched");
    let (_, _, all) = call(s, Some(ADMIN), "/v1/recent?user=bob", None, &[]).await;
    assert_eq!(all["read_all"], true);
    assert_eq!(bobs(&all).expect("bob's")["sql"], bob_sql);
    let (status, _, _) = call(s, Some(ADMIN), "/v1/recent?limit=x", None, &[]).await;
    assert_eq!(status, 400);

    // cancel: only by its user, 499 / 57014, the warehouse query gone, recorded as 57014
    let slow = serde_json::json!({ "sql": "SELECT pg_sleep(30) AS slept" });
    let running = {
        let addr = s.http_addr.expect("http");
        tokio::spawn(async move {
            let req = http_client()
                .post(format!("http://{addr}/v1/query"))
                .bearer_auth(ANALYST)
                .header("tidemark-request-id", "slow-1")
                .json(&slow);
            send(req).await
        })
    };
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' \
                    AND state = 'active' AND pid <> pg_backend_pid()";
    let started = eventually(10, || async {
        let n: i64 = db.query_one(sleeping, &[]).await.ok()?.get(0);
        (n > 0).then_some(())
    });
    assert!(started.await.is_some(), "the slow query reached the warehouse");
    let cancel = |key, id: &str| {
        call(s, Some(key), "/v1/cancel", Some(serde_json::json!({ "request_id": id })), &[])
    };
    assert_eq!(cancel(BOB, "slow-1").await.0, 404, "another user's request");
    let (status, _, body) = cancel(BOB, "not valid!").await;
    assert_eq!((status, body["sqlstate"].as_str()), (400, Some("22023")));
    assert_eq!(cancel(ANALYST, "slow-1").await.0, 200);
    let (status, h, body) = running.await.expect("the slow request");
    let problem = body_json(&body);
    assert_eq!((status, problem["sqlstate"].as_str()), (499, Some("57014")), "{problem}");
    assert!(header(&h, "content-type").unwrap_or_default().contains("problem+json"));
    assert_eq!(wait_gone(&db, "%pg_sleep(30)%").await, 0, "the warehouse query was cancelled");
    assert_eq!(cancel(ANALYST, "slow-1").await.0, 404, "nothing runs under it now");
    let (_, _, failed) = call(s, Some(ANALYST), "/v1/recent?failed=true", None, &[]).await;
    let rec = &failed["statements"][0];
    assert_eq!(
        (rec["sqlstate"].as_str(), rec["sql"].as_str()),
        (Some("57014"), Some("SELECT pg_sleep(30) AS slept")),
        "{failed}"
    );

    // freshness: the analyst's tables, W as the engine has it; samples arrive every 5 s
    let (status, _, fresh) = call(s, Some(ANALYST), "/v1/freshness", None, &[]).await;
    assert_eq!(status, 200);
    let t = &fresh["tables"][0];
    assert_eq!(t["table"], "events");
    assert_eq!(
        t["batch_watermark"].as_str(),
        Some(w0.format("%Y-%m-%d %H:%M:%S").to_string().as_str())
    );
    assert!(t["windows"].is_null() && t["h"].is_null(), "no windows here: {t}");
    assert!(
        t["speed_retention_s"].as_f64().unwrap_or(0.0) >= 60.0,
        "poll + statement timeout: {t}"
    );
    let sampled = eventually(15, || async {
        let (_, _, f) = call(s, Some(ANALYST), "/v1/freshness", None, &[]).await;
        let n = f["tables"][0]["samples"].as_array().map_or(0, Vec::len);
        (n > 0).then_some(f)
    });
    let f = sampled.await.expect("a W sample within 15 s");
    assert!(f["tables"][0]["samples"][0]["w"].as_i64().is_some(), "{f}");

    // stats: the same numbers as /metrics, per interval; the cancel is among the errors
    let stats = eventually(20, || async {
        let (_, _, st) = call(s, Some(BOB), "/v1/stats", None, &[]).await;
        let samples = st["samples"].as_array()?.clone();
        samples.iter().any(|x| x["errors"]["57014"].as_u64() == Some(1)).then_some(samples)
    });
    let samples = stats.await.expect("a sample counting the cancelled statement");
    assert!(samples.iter().any(|x| x["queries_per_second"]["rest"].as_f64() > Some(0.0)));
    assert!(samples.iter().all(|x| x["warehouse_slots"]["max"].as_u64() > Some(0)));
    let last = samples.last().expect("a sample")["t"].as_i64().expect("t");
    let (_, _, later) = call(s, Some(BOB), &format!("/v1/stats?since={last}"), None, &[]).await;
    assert!(later["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .all(|x| x["t"].as_i64() > Some(last)));
    let metrics = http_client()
        .get(format!("http://{}/metrics", s.http_addr.expect("http")))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(metrics.contains("tidemark_connections{frontend=\"rest\"}"), "{metrics}");
    assert!(metrics.contains("tidemark_warehouse_slots{state=\"max\"} "), "{metrics}");

    server.shutdown().await;
    drop(db);
    drop_db(&db_name).await;
}
