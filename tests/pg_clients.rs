//! Real PostgreSQL clients against tidemark's pgwire frontend: psql, psycopg 3, node-postgres,
//! pgjdbc, a differential sample through tokio-postgres, and SCRAM logins.
//!
//! Each test builds a fresh database with the exactly-once layout, runs `tidemark setup`, starts a
//! server with `[listen] pg` on a free port, runs one client (an external program under
//! tests/clients/, with a timeout) and compares what it saw with `events_oracle` queried directly
//! on PostgreSQL. scripts/clients.sh, called by scripts/test.sh, installs the client toolchains;
//! a missing toolchain fails the test (never skips it).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::NaiveDateTime;
use common::clients::*;
use common::{Answer, Layout, Rng, Rows};
use tidemark::server::Server;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const EVENTS: usize = 3_000;
const SEED: u64 = 20_240_320;
/// Longest a client program may run before it is killed and the test fails.
/// Longest one query of the differential sample may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// pgjdbc from Debian's libpostgresql-jdbc-java.
const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";
const SCRAM_USER: &str = "alice";
const SCRAM_PASSWORD: &str = "tidemark-secret";
/// The verifier PostgreSQL stores for `tidemark-secret` (`SET password_encryption =
/// 'scram-sha-256'; CREATE ROLE x PASSWORD 'tidemark-secret'`, then `SELECT rolpassword FROM
/// pg_authid WHERE rolname = 'x'`).
const SCRAM_VERIFIER: &str = "SCRAM-SHA-256$4096:MUiA+iaLoIZ3UAW9lZLlag==$\
     7Rx9jyEYWSJ7bTxdhsCqbCfJN+95vyth2+ZjJUSce/I=:Fs2ZTb7uBzAxqWPI/6n2jGXIlWShb0J7oId8FhT/KoA=";
/// Placeholder for the table in generated SQL: `events` (tidemark) or `events_oracle` (oracle).
const T: &str = "{T}";

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// psql: `\d`, `\dt`, `\dv`, `\d events` show the logical table with its types, a split aggregate
/// equals the oracle's, and `\copy (query) to stdout` works or fails clearly without killing the
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describe_aggregate_and_copy() {
    require_program("psql");
    let stack = PgStack::start("pgpsql", "").await;
    let tm = format!("{} sslmode=disable", stack.conninfo("analyst"));
    let agg = format!("SELECT country, count(*), sum(amount) FROM {T} GROUP BY 1 ORDER BY 1");
    let copy =
        format!("\\copy (SELECT id, country, amount FROM {T} ORDER BY id LIMIT 5) to stdout");
    let (agg_tm, agg_oracle) = (on_events(&agg), on_oracle(&agg));
    let (copy_tm, copy_oracle) = (on_events(&copy), on_oracle(&copy));

    let describe = run_client(
        "psql (describe, aggregate)",
        psql_command(
            &tm,
            true,
            &[
                "\\echo ==d",
                "\\d",
                "\\echo ==dt",
                "\\dt",
                "\\echo ==dv",
                "\\dv",
                "\\echo ==devents",
                "\\d events",
                "\\echo ==agg",
                agg_tm.as_str(),
                "\\echo ==freshness",
                "SHOW tidemark.freshness",
            ],
        ),
    )
    .await;
    let copied = run_client(
        "psql (\\copy)",
        psql_command(
            &tm,
            false,
            &["\\echo ==copy", copy_tm.as_str(), "\\echo ==after", "SELECT 'still here'"],
        ),
    )
    .await;
    let oracle = run_client(
        "psql on the oracle",
        psql_command(
            &stack.oracle_conninfo(),
            true,
            &["\\echo ==agg", agg_oracle.as_str(), "\\echo ==copy", copy_oracle.as_str()],
        ),
    )
    .await;
    stack.stop().await;

    assert!(oracle.success(), "{}", oracle.report());
    assert!(describe.success(), "{}", describe.report());
    let got = sections(&describe.stdout);
    let want = sections(&oracle.stdout);
    let mut problems = Vec::new();
    let mut expect_line = |section: &str, prefix: &str| {
        if !got.get(section).is_some_and(|lines| lines.iter().any(|l| l.starts_with(prefix))) {
            problems.push(format!("{section}: no line starting with {prefix:?}"));
        }
    };
    expect_line("d", "public|events|");
    expect_line("dt", "public|countries|table|");
    expect_line("dt", "public|events_batch|table|");
    expect_line("dv", "public|events|view|");
    for column in [
        "id|bigint|",
        "event_time|timestamp without time zone|",
        "user_id|integer|",
        "country|text|",
        "device|text|",
        "amount|numeric(12,2)|",
        "qty|smallint|",
        "score|double precision|",
        "big|bigint|",
        "flag|boolean|",
        "day|date|",
    ] {
        expect_line("devents", column);
    }
    if got.get("agg").is_none_or(Vec::is_empty) || got.get("agg") != want.get("agg") {
        problems.push(format!(
            "split aggregate differs: tidemark {:?}, oracle {:?}",
            got.get("agg"),
            want.get("agg")
        ));
    }
    let freshness =
        got.get("freshness").and_then(|lines| lines.first()).cloned().unwrap_or_default();
    let plan = serde_json::from_str::<serde_json::Value>(&freshness)
        .ok()
        .and_then(|v| v["plan"].as_str().map(str::to_string));
    if plan.as_deref() != Some("split") {
        problems.push(format!("SHOW tidemark.freshness after the aggregate: {freshness:?}"));
    }
    assert!(problems.is_empty(), "psql: {}\n{}", problems.join("\n"), describe.report());

    // \copy: either the rows, or a clear error after which the session still answers.
    let copy_out = sections(&copied.stdout);
    let rows = copy_out.get("copy").cloned().unwrap_or_default();
    let still_here = copy_out.get("after").is_some_and(|l| l.iter().any(|l| l == "still here"));
    if rows.is_empty() {
        let mentions_copy = copied.stderr.to_lowercase().contains("copy");
        assert!(
            !copied.stderr.trim().is_empty() && (still_here || mentions_copy),
            "\\copy gave no rows and no clear error, or the session died:\n{}",
            copied.report()
        );
        println!("psql: \\copy refused: {}", copied.stderr.trim());
    } else {
        assert_eq!(Some(&rows), want.get("copy"), "\\copy rows differ:\n{}", copied.report());
        assert!(still_here, "the session did not answer after \\copy:\n{}", copied.report());
        println!("psql: \\copy returned {} rows", rows.len());
    }
}

/// psycopg 3 (server-side binding): parameters of every common type, exact numerics, timestamps
/// with time zones, NULLs, binary results, prepared statements, 25006, freshness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg3_client() {
    let python = repo().join(".venv/bin/python");
    require_file(&python, "the Python venv .venv with psycopg 3");
    let stack = PgStack::start("pgpsycopg", "").await;
    let mut cmd = client_command(python);
    cmd.arg(repo().join("tests/clients/python/test_psycopg.py"))
        .arg(stack.conninfo("analyst"))
        .arg(stack.oracle_conninfo());
    let run = run_client("tests/clients/python/test_psycopg.py", cmd).await;
    stack.stop().await;
    assert_client_passed(&run, "psycopg: ");
}

/// node-postgres: parameters, numerics and int8 as exact strings, timestamps, NULLs, named
/// prepared statements, several statements in one query, 25006, freshness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_client() {
    require_program("node");
    let dir = repo().join("tests/clients/node");
    require_file(
        &dir.join("node_modules/pg/package.json"),
        "node-postgres (npm ci in tests/clients/node)",
    );
    let stack = PgStack::start("pgnode", "").await;
    let mut cmd = client_command("node");
    cmd.current_dir(dir)
        .env("TZ", "UTC")
        .arg("test_pg.js")
        .arg(format!("postgres://analyst@127.0.0.1:{}/tidemark", stack.pg_addr.port()))
        .arg(common::db_url(&stack.db_name));
    let run = run_client("tests/clients/node/test_pg.js", cmd).await;
    stack.stop().await;
    assert_client_passed(&run, "node-postgres: ");
}

/// pgjdbc: DatabaseMetaData, a PreparedStatement past the binary switch, setFetchSize with
/// autocommit off over 50,000 rows, Statement.cancel().
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_client() {
    require_program("javac");
    require_program("java");
    require_file(Path::new(JDBC_JAR), "pgjdbc (Debian package libpostgresql-jdbc-java)");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let classes =
        std::env::temp_dir().join(format!("tidemark_jdbc_{}_{nanos}", std::process::id()));
    std::fs::create_dir_all(&classes).expect("create a temporary directory for the classes");
    let mut javac = client_command("javac");
    javac
        .arg("-d")
        .arg(&classes)
        .args(["-cp", JDBC_JAR])
        .arg(repo().join("tests/clients/java/TidemarkJdbcTest.java"));
    let compiled = run_client("javac TidemarkJdbcTest.java", javac).await;
    assert!(compiled.success(), "{}", compiled.report());

    let stack = PgStack::start("pgjdbc", "").await;
    let mut java = client_command("java");
    java.arg("-Duser.timezone=UTC")
        .arg("-cp")
        .arg(format!("{}:{JDBC_JAR}", classes.display()))
        .arg("TidemarkJdbcTest")
        .arg(format!(
            "jdbc:postgresql://127.0.0.1:{}/tidemark?user=analyst&connectTimeout=10",
            stack.pg_addr.port()
        ))
        .arg(format!("jdbc:postgresql://{}/{}?user=postgres", common::PG_ADDR, stack.db_name));
    let run = run_client("TidemarkJdbcTest", java).await;
    stack.stop().await;
    let _ = std::fs::remove_dir_all(classes);
    assert_client_passed(&run, "pgjdbc: ");
}

/// A sample of generated queries (aggregates, GROUP BY, time ranges, ORDER BY + LIMIT, a join,
/// a passthrough) through tokio-postgres's simple query protocol: the text of every answer
/// equals the oracle's (floats within a relative 1e-9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgwire_differential_sample() {
    let stack = PgStack::start("pgdiff", "").await;
    let tm = stack.connect("analyst").await;
    let mut rng = Rng::new(SEED ^ 0xD1FF);
    let queries: Vec<(String, bool)> =
        (0..200).map(|i| generate(&mut rng, &stack.layout, i)).collect();
    let mut mismatches = Vec::new();
    for (sql, ordered) in &queries {
        if let Err(report) = compare_one(&stack.db, &tm, sql, *ordered).await {
            mismatches.push(format!("{sql}\n    {report}"));
        }
    }
    drop(tm);
    stack.stop().await;
    println!("pgwire differential: {} queries, {} mismatches", queries.len(), mismatches.len());
    for m in mismatches.iter().take(10) {
        println!("MISMATCH {m}");
    }
    assert!(mismatches.is_empty(), "{} mismatches, first:\n{}", mismatches.len(), mismatches[0]);
}

/// SCRAM-SHA-256 with a `[[users]]` entry: the right password works (psql and tokio-postgres),
/// a wrong one fails with 28P01, and an unknown user cannot log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_password_login() {
    require_program("psql");
    let users =
        format!("[[users]]\nname = \"{SCRAM_USER}\"\npassword_hash = \"{SCRAM_VERIFIER}\"\n");
    let stack = PgStack::start("pgscram", &users).await;
    let login = |user: &str, password: &str| {
        let conninfo = format!("{} sslmode=disable", stack.conninfo(user));
        let mut cmd = psql_command(
            &conninfo,
            true,
            &["\\set VERBOSITY verbose", "SELECT count(*) FROM events"],
        );
        cmd.env("PGPASSWORD", password);
        cmd
    };
    let good = run_client("psql with the right password", login(SCRAM_USER, SCRAM_PASSWORD)).await;
    let bad = run_client("psql with a wrong password", login(SCRAM_USER, "not-the-password")).await;
    let unknown = run_client("psql as an unknown user", login("mallory", SCRAM_PASSWORD)).await;
    let code = |user: &str, password: &str| {
        let conninfo = format!("{} password={password} connect_timeout=10", stack.conninfo(user));
        async move {
            match tokio_postgres::connect(&conninfo, NoTls).await {
                Ok(_) => "connected".to_string(),
                Err(e) => e.code().map_or_else(|| e.to_string(), |c| c.code().to_string()),
            }
        }
    };
    let right_code = code(SCRAM_USER, SCRAM_PASSWORD).await;
    let wrong_code = code(SCRAM_USER, "not-the-password").await;
    let count: i64 = stack
        .db
        .query_one("SELECT count(*) FROM events_oracle", &[])
        .await
        .expect("count the oracle")
        .get(0);
    stack.stop().await;

    assert!(good.success(), "{}", good.report());
    assert_eq!(good.stdout.trim(), count.to_string(), "{}", good.report());
    assert!(!bad.success(), "a wrong password was accepted:\n{}", bad.report());
    let stderr = bad.stderr.to_lowercase();
    assert!(
        stderr.contains("28p01") || stderr.contains("password authentication failed"),
        "a wrong password should fail with 28P01 / \"password authentication failed\":\n{}",
        bad.report()
    );
    assert!(!unknown.success(), "an unknown user was let in:\n{}", unknown.report());
    assert_eq!(right_code, "connected", "tokio-postgres with the right password");
    assert_eq!(wrong_code, "28P01", "tokio-postgres with a wrong password");
}

// ---------------------------------------------------------------------------------------------
// A tidemark with the pgwire listener
// ---------------------------------------------------------------------------------------------

/// A test database with the layout and a tidemark serving it over pgwire (and HTTP).
struct PgStack {
    db_name: String,
    /// A direct connection to the test database (the oracle side).
    db: Client,
    layout: Layout,
    server: Server,
    pg_addr: SocketAddr,
}

impl PgStack {
    /// Fresh database, ~3,000 events, watermark W0, `tidemark setup`, and a server with
    /// `[listen] pg` on a free port; `users_toml` is appended to the config (`[[users]]`).
    async fn start(prefix: &str, users_toml: &str) -> PgStack {
        let (db_name, db) = common::fresh_db(prefix).await;
        let layout = common::build_layout(&db, EVENTS, SEED).await;
        common::set_watermark(&db, "events", layout.w0).await;
        let config = common::parse_config(&pg_config_toml(&common::db_url(&db_name), users_toml));
        let server = common::serve(config).await;
        let pg_addr = server.pg_addr.expect("the pgwire listener is bound ([listen] pg)");
        PgStack { db_name, db, layout, server, pg_addr }
    }

    /// libpq key/value connection string for tidemark (tidemark ignores the database name).
    fn conninfo(&self, user: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} dbname=tidemark", self.pg_addr.port())
    }

    /// libpq key/value connection string for the test database itself.
    fn oracle_conninfo(&self) -> String {
        format!("host=127.0.0.1 port=5432 user=postgres dbname={}", self.db_name)
    }

    /// A tokio-postgres client connected to tidemark.
    async fn connect(&self, user: &str) -> Client {
        let conninfo = format!("{} connect_timeout=10", self.conninfo(user));
        let (client, connection) = tokio_postgres::connect(&conninfo, NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to tidemark at {}: {e}", self.pg_addr));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Shuts the server down and drops the database.
    async fn stop(self) {
        let PgStack { db_name, db, server, .. } = self;
        server.shutdown().await;
        drop(db);
        common::drop_db(&db_name).await;
    }
}

/// The test config (as `common::config_toml` builds it) plus the pgwire listener and `[pg]`.
fn pg_config_toml(url: &str, users_toml: &str) -> String {
    format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\npg = \"127.0.0.1:0\"\n\n\
         [warehouse]\nurl = \"{url}\"\ndialect = \"postgres\"\nwatermark_table = \"{}\"\n\
         watermark_poll = \"100ms\"\n\n\
         [pg]\nmax_connections = 64\n\n\
         [[tables]]\nname = \"events\"\ntime_column = \"event_time\"\n\
         batch_table = \"events_batch\"\nspeed_table = \"events_speed\"\n\n{users_toml}",
        common::WATERMARK_TABLE
    )
}

fn on_events(sql: &str) -> String {
    sql.replace(T, "events")
}

fn on_oracle(sql: &str) -> String {
    sql.replace(T, "events_oracle")
}

// ---------------------------------------------------------------------------------------------
// Client programs
// ---------------------------------------------------------------------------------------------

/// Fails (never skips) when a file a client needs is missing.
fn require_file(path: &Path, what: &str) {
    assert!(path.exists(), "{what} is missing ({}): {INSTALL_HINT}", path.display());
}

/// Fails (never skips) when a program is not on PATH.
fn require_program(program: &str) {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir: PathBuf| dir.join(program).is_file())
    });
    assert!(found, "{program} is not on PATH: {INSTALL_HINT}");
}

/// `psql -X -A -t -w [-v ON_ERROR_STOP=1] -c ... -d conninfo`: unaligned, tuples only, one `-c`
/// per command.
fn psql_command(conninfo: &str, on_error_stop: bool, commands: &[&str]) -> Command {
    let mut cmd = client_command("psql");
    cmd.args(["-X", "-A", "-t", "-w"]);
    if on_error_stop {
        cmd.args(["-v", "ON_ERROR_STOP=1"]);
    }
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    cmd.arg("-d").arg(conninfo);
    cmd
}

/// psql output split at `==name` lines (from `\echo ==name`), blank lines dropped.
fn sections(stdout: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = String::new();
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("==") {
            current = name.to_string();
            out.entry(current.clone()).or_default();
        } else if !line.trim().is_empty() {
            out.entry(current.clone()).or_default().push(line.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The differential sample
// ---------------------------------------------------------------------------------------------

const KEYS: &[&str] = &["country", "device", "flag", "day", "user_id % 10", "qty / 100"];
const NUMS: &[&str] = &["amount", "qty", "big", "user_id"];

/// Query `i` of the sample (ten shapes in turn): SQL over `{T}` and whether its row order is
/// fully determined (else rows are compared as multisets).
fn generate(rng: &mut Rng, layout: &Layout, i: usize) -> (String, bool) {
    let key = *rng.pick(KEYS);
    let num = *rng.pick(NUMS);
    let p = time_predicate(rng, layout, "event_time");
    let limit = rng.range(1, 40);
    match i % 10 {
        0 => (
            format!(
                "SELECT count(*), sum(amount), avg(qty), min(event_time), max(event_time) \
                 FROM {T} WHERE {p}"
            ),
            true,
        ),
        1 => (format!("SELECT {key}, count(*), sum({num}) FROM {T} WHERE {p} GROUP BY 1"), false),
        2 => (
            format!(
                "SELECT {key} AS k, count(*) AS n FROM {T} WHERE {p} \
                 GROUP BY 1 ORDER BY n DESC, k LIMIT {limit}"
            ),
            true,
        ),
        3 => (
            format!(
                "SELECT id, event_time, {num} FROM {T} WHERE {p} \
                 ORDER BY event_time DESC, id LIMIT {limit} OFFSET {}",
                rng.range(0, 10)
            ),
            true,
        ),
        4 => (
            format!(
                "SELECT date_trunc('day', event_time) AS d, count(*), sum(qty), bool_or(flag) \
                 FROM {T} WHERE {p} GROUP BY 1 ORDER BY 1"
            ),
            true,
        ),
        5 => {
            let pe = time_predicate(rng, layout, "e.event_time");
            (
                format!(
                    "SELECT c.region, count(*), sum(e.amount), max(e.big) FROM {T} e \
                     JOIN countries c ON c.code = e.country WHERE {pe} GROUP BY 1"
                ),
                false,
            )
        }
        6 => (
            format!(
                "SELECT {key}, avg(score), sum(score), count(score) FROM {T} WHERE {p} \
                 GROUP BY 1 HAVING count(*) > {}",
                rng.range(0, 50)
            ),
            false,
        ),
        7 => (
            format!(
                "SELECT count(DISTINCT user_id), percentile_disc(0.5) WITHIN GROUP (ORDER BY amount) \
                 FROM {T} WHERE {p}"
            ),
            true,
        ),
        8 => (
            format!(
                "SELECT device, country, count(*), sum(big), min(amount) FROM {T} \
                 WHERE qty > {} AND {p} GROUP BY 1, 2",
                rng.range(-50, 900)
            ),
            false,
        ),
        _ => (
            format!(
                "SELECT {key}, min(amount), max(amount), sum(amount) - min(amount), \
                 round(avg(amount), 2) FROM {T} WHERE flag AND {p} GROUP BY 1 ORDER BY 1"
            ),
            true,
        ),
    }
}

/// A condition on the time column: none, one bound, or a range; bounds often sit exactly on
/// W0, W1 or a watermark step.
fn time_predicate(rng: &mut Rng, layout: &Layout, col: &str) -> String {
    let mut a = instant(rng, layout);
    let mut b = instant(rng, layout);
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    let (a, b) = (common::ts_lit(a), common::ts_lit(b));
    match rng.below(6) {
        0 => "TRUE".to_string(),
        1 => format!("{col} >= {a}"),
        2 => format!("{col} < {b}"),
        3 => format!("{col} >= {a} AND {col} < {b}"),
        4 => format!("{col} BETWEEN {a} AND {b}"),
        _ => format!("{col} >= {b} - interval '3 days'"),
    }
}

fn instant(rng: &mut Rng, layout: &Layout) -> NaiveDateTime {
    match rng.below(4) {
        0 => *rng.pick(&[layout.w0, layout.w1]),
        1 => layout.wm_step(rng.range(0, common::WM_STEPS)),
        _ => Layout::random_between(rng, layout.start, layout.end),
    }
}

/// Runs one query on the oracle (`events_oracle`, with its column types) and through tidemark
/// (`events`, simple query protocol) and compares the answers.
async fn compare_one(oracle: &Client, tm: &Client, sql: &str, ordered: bool) -> Result<(), String> {
    let want = tokio::time::timeout(QUERY_TIMEOUT, common::oracle(oracle, &on_oracle(sql), &[]))
        .await
        .map_err(|_| "the oracle timed out".to_string())?
        .map_err(|e| format!("the oracle failed: {e}"))?;
    let (names, rows) = simple_rows(tm, &on_events(sql)).await?;
    // The simple protocol carries no types to tokio-postgres: take the oracle's, by position.
    let columns = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| (name, want.columns.get(i).map(|c| c.1.clone()).unwrap_or_default()))
        .collect();
    let got = Answer { columns, rows, plan: None, watermark: None };
    common::compare_answers(&want, &got, ordered).map_err(|e| {
        format!(
            "{e}\n    oracle: {}\n    tidemark: {}",
            common::render_answer(&want, 5),
            common::render_answer(&got, 5)
        )
    })
}

/// Column names and rows (as text) of a simple query.
async fn simple_rows(client: &Client, sql: &str) -> Result<(Vec<String>, Rows), String> {
    let messages = tokio::time::timeout(QUERY_TIMEOUT, client.simple_query(sql))
        .await
        .map_err(|_| "tidemark timed out".to_string())?
        .map_err(|e| format!("tidemark failed: {}", common::pg_error_text(&e)))?;
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                names = columns.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                rows.push((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect());
            }
            _ => {}
        }
    }
    Ok((names, rows))
}
