//! Differential suite: thousands of generated queries over the logical table `events`, answered
//! by tidemark (batch + speed tables, exactly once at the watermark) and compared with the same
//! query over `events_oracle`, which holds every event exactly once.
//!
//! The layout (tests/common) makes every watermark in `[W0, W1]` correct and puts junk on the
//! wrong side of the watermark in both layer tables, so any leak or double count shows.
//!
//! `TIDEMARK_DIFF_SEED=<n>` (decimal or 0x-hex) reproduces a run; without it a fresh seed is
//! drawn and printed. `TIDEMARK_DIFF_QUERIES=<n>` changes the number of queries.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta};
use common::{cents_text, ts_lit, ts_text, Answer, Layout, Rng, Stack, WM_STEPS};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio_postgres::Client;

/// Placeholder for the table in generated SQL: `events` (tidemark) or `events_oracle` (oracle).
const T: &str = "{T}";
/// Redshift's SYSDATE: asked of tidemark as `SYSDATE`, of the oracle (PostgreSQL) as the
/// profile's `getdate()` (the same instant, a timestamp in the session zone).
const SYSDATE: &str = "{SYSDATE}";
const SEED_ENV: &str = "TIDEMARK_DIFF_SEED";
const QUERIES_ENV: &str = "TIDEMARK_DIFF_QUERIES";
const EVENTS_IN_SUITE: usize = 20_000;
const CONCURRENCY: usize = 4;
const MAX_REPORTS: usize = 20;
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// At least 2,000 generated queries (split and passthrough classes) with the watermark at W0:
/// every answer must equal the oracle's, with zero mismatches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_fixed_watermark() {
    let label = "differential";
    let seed = suite_seed(1);
    let count = query_count(2_400);
    announce(label, seed, count);
    let suite = Suite::start("diff", seed).await;
    let queries = generate(seed, suite.stack.layout, count);
    let started = Instant::now();
    let stats = suite.run(&queries, &AtomicUsize::new(0)).await;
    stats.print(label, seed, started.elapsed());
    suite.stop().await;
    stats.assert_clean(label, count, 2_000);
}

/// The same generator while a background task advances the watermark from W0 towards W1 every
/// ~20 ms (in step with the progress of the run): zero mismatches, and answers must have been
/// given at several different watermarks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_moving_watermark() {
    let label = "differential (moving watermark)";
    let seed = suite_seed(2);
    let count = query_count(1_200);
    announce(label, seed, count);
    let suite = Suite::start("diffmove", seed).await;
    let queries = generate(seed, suite.stack.layout, count);
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mover = tokio::spawn(move_watermark(
        suite.stack.db_name.clone(),
        suite.stack.layout,
        count,
        done.clone(),
        stop.clone(),
        Duration::from_millis(20),
    ));
    let started = Instant::now();
    let stats = suite.run(&queries, &done).await;
    stop.store(true, Ordering::Relaxed);
    let moves = mover.await.expect("the watermark mover panicked");
    stats.print(label, seed, started.elapsed());
    suite.stop().await;
    stats.assert_clean(label, count, 1_000);
    assert!(moves >= 20, "the watermark moved only {moves} times during the run");
    assert!(
        stats.watermarks.len() >= 3,
        "tidemark answered at only {} distinct watermarks: {:?}",
        stats.watermarks.len(),
        stats.watermarks
    );
}

/// Caches on, the watermark moving and the speed table growing: every answer must equal the
/// oracle as of the instant its freshness says its realtime part was read (cached speed legs
/// and answers report when they were read, so a stale-but-honest answer still matches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_caches_while_speed_grows() {
    let label = "differential (caches, growing speed table)";
    let seed = suite_seed(3);
    let count = query_count(600);
    announce(label, seed, count);
    // no background re-warm: every warehouse read must happen inside the test's gate, so
    // that the generation a read saw is exactly the one committed before it
    let suite =
        Suite::start_with("diffgrow", seed, "pool_size = 8\n\n[cache]\nrewarm = false").await;
    let layout = suite.stack.layout;
    growth_views(&suite.stack.db).await;
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let commits = Arc::new(std::sync::Mutex::new(vec![i64::MIN]));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let db_name = suite.stack.db_name.clone();
    let grower =
        tokio::spawn(grow(db_name.clone(), layout, gate.clone(), commits.clone(), stop.clone()));
    // W moves every ~700 ms here: often enough to see several, rarely enough for cache hits
    let pace = Duration::from_millis(700);
    let mover =
        tokio::spawn(move_watermark(db_name, layout, count, done.clone(), stop.clone(), pace));
    // every query is asked twice, a few requests apart (well within the 1 s TTL), so answers
    // and speed legs are served from the caches, often across a growth or an epoch boundary
    let base = generate(seed, layout, count / 2);
    let queries: Vec<&Query> = (0..base.len() + 3)
        .flat_map(|i| [base.get(i), i.checked_sub(3).and_then(|j| base.get(j))])
        .flatten()
        .collect();
    let started = Instant::now();
    let verdicts: Vec<(usize, Verdict)> = stream::iter(queries.into_iter().enumerate())
        .map(|(i, q)| {
            let (suite, gate, commits, done) = (&suite, gate.clone(), commits.clone(), &done);
            async move {
                let v = suite.check_as_of(i, q, &gate, &commits).await;
                done.fetch_add(1, Ordering::Relaxed);
                (i, v)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    let gens = grower.await.expect("the grower panicked");
    mover.await.expect("the watermark mover panicked");
    let stats = Stats::from_verdicts(verdicts);
    stats.print(label, seed, started.elapsed());
    suite.stop().await;
    stats.assert_clean(label, count, 500);
    assert!(gens >= 5, "the speed table grew only {gens} times during the run");
}

/// Generations of new speed events (copies of events at or after W1 with new ids), and one
/// oracle view per generation holding every event up to it.
const GENERATIONS: i64 = 40;

/// The database as Redshift would have it where PostgreSQL can play the part, under
/// `dialect = "redshift"`: backslashes are escapes (`standard_conforming_strings = off`), the
/// `device` column is under a nondeterministic case-insensitive ICU collation with mixed-case
/// values on both sides of W, a user-defined aggregate, `getdate()` and a `dateadd` that
/// behaves like Redshift's for hours and minutes. Every answer must
/// equal the oracle's; the queries tidemark cannot merge exactly pass through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_redshift_profile() {
    let label = "differential (Redshift profile)";
    let mut prepare = String::from(
        "ALTER DATABASE \"{db}\" SET standard_conforming_strings = off;
         CREATE COLLATION tm_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
         CREATE AGGREGATE tm_sum(int8) (sfunc = int8pl, stype = int8);
         CREATE FUNCTION getdate() RETURNS timestamp LANGUAGE sql STABLE AS 'SELECT localtimestamp';
         CREATE FUNCTION dateadd(text, int, timestamp) RETURNS timestamp LANGUAGE sql IMMUTABLE
           AS 'SELECT $3 + make_interval(hours => CASE WHEN $1 = ''hour'' THEN $2 ELSE 0 END,
                                         mins => CASE WHEN $1 = ''minute'' THEN $2 ELSE 0 END)';",
    );
    for t in ["events_batch", "events_speed", "events_oracle"] {
        prepare.push_str(&format!(
            "ALTER TABLE {t} ALTER COLUMN device TYPE text COLLATE tm_ci;
             UPDATE {t} SET device = upper(device) WHERE id % 3 = 0;
             UPDATE {t} SET device = 'C:\\tmp' WHERE id % 11 = 0;
             UPDATE {t} SET device = 'it''s' WHERE id % 13 = 0;"
        ));
    }
    let stack = common::start_prepared_stack(
        "diffrs",
        (EVENTS_IN_SUITE, suite_seed(4)),
        "dialect = \"redshift\"\npool_size = 4",
        &prepare,
    )
    .await;
    let mut oracles = Vec::new();
    for _ in 0..CONCURRENCY {
        oracles.push(common::connect(&stack.db_name).await);
    }
    let suite = Suite { stack, oracles, seed: 0 };
    let queries = redshift_profile_queries();
    let started = Instant::now();
    let stats = suite.run(&queries, &AtomicUsize::new(0)).await;
    stats.print(label, 0, started.elapsed());
    let probes = suite.stack.server.engine.probe().await.join("\n");
    suite.stop().await;
    for expected in [
        "numeric: binary results decode exactly (PostgreSQL's numeric_send: 12.34 and -1.5000)",
        "device (case-insensitive)",
        "backslash is an escape",
        "session settings: forwarded",
        "logical table events: \"last hour\" is split",
    ] {
        assert!(probes.contains(expected), "{label}: probes lack {expected:?}:\n{probes}");
    }
    assert_eq!(stats.mismatches, 0, "{label}: tidemark disagreed with the oracle (see above)");
    assert_eq!(
        (stats.queries, stats.both_failed),
        (queries.len(), 0),
        "{label}: every query answers"
    );
    assert!(stats.split >= 12, "{label}: only {} queries were split", stats.split);
    assert!(stats.passthrough >= 8, "{label}: only {} passed through", stats.passthrough);
}

/// Queries over the Redshift profile: text under the folding collation, backslashes and
/// quotes in literals, the user-defined aggregate, getdate()/SYSDATE/dateadd ranges, and plain
/// splits beside them.
/// A split aggregate whose legs return more partial groups than the engine merges cheaply
/// (one group per event) runs the next time as one statement over the union of the layers at
/// W, where the warehouse merges: the oracle's answer both times, and the second answer reports
/// its single `union` leg (the answer cache is bypassed: it would serve the repeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_groups_run_as_one_union_statement() {
    let stack = common::start_stack("union", 56_000, suite_seed(5), "pool_size = 4").await;
    let sql = "SELECT id, count(*) AS n, sum(amount) AS total, max(country) AS c FROM events \
               WHERE amount IS NOT NULL GROUP BY id ORDER BY total DESC, id LIMIT 7";
    let expected =
        common::oracle(&stack.db, &sql.replace("FROM events", "FROM events_oracle"), &[])
            .await
            .expect("oracle");
    let mut legs_seen = Vec::new();
    for _ in 0..2 {
        let reply = stack
            .http
            .post(stack.url("/v1/query"))
            .header("cache-control", "no-cache")
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .expect("POST /v1/query");
        assert_eq!(reply.status(), 200);
        let body: Value = reply.json().await.expect("JSON");
        let answer = common::answer_from_json(&body).expect("answer");
        common::compare_answers(&expected, &answer, true).expect("the oracle's answer");
        let legs = body["freshness"]["legs"].as_array().expect("legs").clone();
        legs_seen.push(
            legs.iter().map(|l| l["name"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>(),
        );
        assert_eq!(body["freshness"]["plan"], "split", "{body}");
    }
    assert_eq!(legs_seen[0], ["batch", "speed"], "the first run splits");
    assert_eq!(legs_seen[1], ["union"], "the second runs as one union statement");
    // EXPLAIN ANALYZE of the same query (its text printed anew) knows it too
    let (status, body) = stack.query(&format!("EXPLAIN ANALYZE {sql}"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("union leg: 7 row(s)"), "{body}");
    stack.stop().await;
}

/// A pass-through query on a logical table reads the layers split at W itself (W a literal),
/// not the view `tidemark setup` made: with the view replaced by a wrong one (the batch table
/// alone, junk included) it still answers as the oracle; a query the text splice does not
/// handle (a CTE could shadow the name) still uses the view, and so gets the view's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_reads_the_layers_at_w_not_the_view() {
    let stack = common::start_stack("inline", 3_000, suite_seed(6), "").await;
    common::exec(&stack.db, "CREATE OR REPLACE VIEW events AS SELECT * FROM events_batch").await;
    let sql = "SELECT country, count(DISTINCT user_id) AS users FROM events e \
               WHERE e.amount > 0 GROUP BY country ORDER BY country";
    let expected =
        common::oracle(&stack.db, &sql.replace("FROM events", "FROM events_oracle"), &[])
            .await
            .expect("oracle");
    let (status, body) = stack.query(sql, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["freshness"]["plan"], "passthrough", "{body}");
    let answer = common::answer_from_json(&body).expect("answer");
    common::compare_answers(&expected, &answer, true).expect("the oracle's answer");
    let cte = "WITH x AS (SELECT 1) SELECT count(DISTINCT user_id) FROM events";
    let on_view = common::oracle(&stack.db, cte, &[]).await.expect("the view's answer");
    let (status, body) = stack.query(cte, &[]).await;
    assert_eq!(status, 200, "{body}");
    let answer = common::answer_from_json(&body).expect("answer");
    common::compare_answers(&on_view, &answer, true).expect("the CTE form reads the view");
    stack.stop().await;
}

fn redshift_profile_queries() -> Vec<Query> {
    let ordered = [
        "SELECT count(*), sum(qty) FROM {T} GROUP BY device ORDER BY 1, 2",
        "SELECT lower(device) AS d, count(*) FROM {T} GROUP BY lower(device) ORDER BY 1",
        "SELECT id, lower(device) FROM {T} ORDER BY device, id LIMIT 25",
        "SELECT id, amount FROM {T} WHERE qty > 3 ORDER BY id LIMIT 30",
    ];
    let unordered = [
        "SELECT lower(min(device)), lower(max(device)) FROM {T}",
        "SELECT DISTINCT lower(device) FROM {T}",
        "SELECT count(*) FROM {T} WHERE device = 'IOS'",
        r"SELECT count(*) FROM {T} WHERE device = 'C:\\tmp'",
        r"SELECT count(*), 'a\\b' AS s FROM {T} WHERE device <> 'it\'s'",
        r#"SELECT count(*) FROM {T} WHERE (device COLLATE "C") LIKE '%\\\\%'"#,
        "SELECT count(*) FROM {T} WHERE device = 'it''s'",
        "SELECT tm_sum(qty) FROM {T}",
        "SELECT country, tm_sum(qty) FROM {T} GROUP BY country",
        "SELECT count(*) FROM {T} WHERE event_time < getdate()",
        "SELECT count(*), sum(qty) FROM {T} WHERE event_time >= getdate() - interval '2 hours'",
        "SELECT count(*), sum(qty) FROM {T} WHERE event_time >= {SYSDATE} - interval '3 hours'",
        "SELECT country, count(*) FROM {T} WHERE event_time >= dateadd('hour', -2, getdate()) GROUP BY country",
        "SELECT count(*) FROM {T} WHERE event_time BETWEEN dateadd('minute', -150, {SYSDATE}) AND getdate()",
        "SELECT count(*), max(qty) FROM {T} WHERE event_time >= date_trunc('day', getdate()) - interval '1 day'",
        "SELECT count(*) FROM {T} WHERE event_time >= current_date - 2",
        "SELECT country, count(*), sum(amount), min(score), max(day) FROM {T} GROUP BY country",
        "SELECT count(*), sum(big) FROM {T} WHERE flag",
        "SELECT country, count(*) FROM {T} WHERE device = 'android' GROUP BY country",
    ];
    let mut out: Vec<Query> = ordered.iter().map(|s| Query::new(s.to_string()).ordered()).collect();
    out.extend(unordered.iter().map(|s| Query::new(s.to_string())));
    out
}

async fn growth_views(db: &Client) {
    common::exec(db, "CREATE TABLE growth (id int8 PRIMARY KEY, gen int4 NOT NULL)").await;
    for g in 0..=GENERATIONS {
        let sql = format!(
            "CREATE VIEW oracle_g{g} AS SELECT o.* FROM events_oracle o WHERE NOT EXISTS \
             (SELECT 1 FROM growth x WHERE x.id = o.id AND x.gen > {g})"
        );
        common::exec(db, &sql).await;
    }
}

/// Adds a generation every ~100 ms to the speed table and the oracle in one statement, while
/// no tidemark request is in flight (the gate), and records its commit instant.
async fn grow(
    db_name: String,
    layout: Layout,
    gate: Arc<tokio::sync::RwLock<()>>,
    commits: Arc<std::sync::Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
) -> i64 {
    let db = common::connect(&db_name).await;
    let rest: Vec<&str> = common::EVENT_COLUMNS.split(", ").skip(1).collect();
    let rest = rest.join(", ");
    let mut g = 0;
    while !stop.load(Ordering::Relaxed) && g < GENERATIONS {
        tokio::time::sleep(Duration::from_millis(100)).await;
        g += 1;
        let sql = format!(
            "WITH src AS (SELECT * FROM events_oracle WHERE event_time >= {w1} AND id < 1000000000 \
                          ORDER BY id LIMIT 25 OFFSET {off}), \
             o AS (INSERT INTO events_oracle SELECT id + 1000000000::int8 * {g}, {rest} FROM src RETURNING id), \
             s AS (INSERT INTO events_speed SELECT id + 1000000000::int8 * {g}, {rest} FROM src) \
             INSERT INTO growth SELECT id, {g} FROM o",
            w1 = ts_lit(layout.w1),
            off = 25 * g,
        );
        let _w = gate.write().await;
        common::exec(&db, &sql).await;
        commits.lock().unwrap().push(chrono::Utc::now().timestamp_micros());
    }
    g
}

impl Suite {
    /// Runs one query through tidemark (no growth meanwhile) and compares it with the oracle
    /// view of the generation its `realtime_as_of` saw.
    async fn check_as_of(
        &self,
        i: usize,
        q: &Query,
        gate: &tokio::sync::RwLock<()>,
        commits: &std::sync::Mutex<Vec<i64>>,
    ) -> Verdict {
        let tm_sql = q.sql.replace(T, "events");
        let call = common::query(&self.stack.http, self.stack.addr, &tm_sql, &q.params);
        let (status, body) = {
            let _r = gate.read().await;
            match tokio::time::timeout(QUERY_TIMEOUT, call).await {
                Ok(r) => r,
                Err(_) => (0, Value::Null),
            }
        };
        let read_at = body["freshness"]["realtime_as_of"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z").ok());
        let seen = {
            let c = commits.lock().unwrap();
            match read_at {
                Some(t) => c.iter().filter(|at| **at < t.timestamp_micros()).count() - 1,
                None => c.len() - 1,
            }
        };
        let oracle_sql = q.sql.replace(T, &format!("oracle_g{seen}"));
        let oracle =
            common::oracle(&self.oracles[i % self.oracles.len()], &oracle_sql, &q.params).await;
        let tm: Result<Answer, String> = match status {
            200 => common::answer_from_json(&body),
            0 => Err(format!("no answer within {QUERY_TIMEOUT:?}")),
            s => Err(format!("HTTP {s}: {body}")),
        };
        let plan = tm.as_ref().ok().and_then(|a| a.plan.clone()).unwrap_or_else(|| "error".into());
        let outcome = match (&oracle, &tm) {
            (Err(_), Err(_)) => return Verdict::BothFailed,
            (Ok(o), Ok(t)) => common::compare_answers(o, t, q.ordered),
            (Err(e), Ok(_)) => Err(format!("the oracle failed ({e}) but tidemark answered")),
            (Ok(_), Err(e)) => Err(format!("tidemark failed: {}", common::truncate(e, 800))),
        };
        match outcome {
            Ok(()) => Verdict::Match { plan, watermark: tm.ok().and_then(|a| a.watermark) },
            Err(reason) => {
                let reason = format!("{reason} (compared with generation {seen})");
                let report = self.report(i, q, &tm_sql, &reason, &oracle, &tm);
                Verdict::Mismatch { plan, report }
            }
        }
    }
}

/// Advances the watermark every `pace` by at least one step, keeping pace with the share of
/// queries done, until W1 is reached or the run ends. Returns the number of updates.
async fn move_watermark(
    db_name: String,
    layout: Layout,
    total: usize,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    pace: Duration,
) -> usize {
    let db = common::connect(&db_name).await;
    let total = total.max(1) as i64;
    let mut k: i64 = 0;
    let mut moves = 0;
    while !stop.load(Ordering::Relaxed) && k < WM_STEPS {
        tokio::time::sleep(pace).await;
        let progress = done.load(Ordering::Relaxed) as i64 * WM_STEPS / total;
        let next = if progress > k { progress } else { k + 1 };
        k = next.min(WM_STEPS);
        common::set_watermark(&db, "events", layout.wm_step(k)).await;
        moves += 1;
    }
    moves
}

// ---------------------------------------------------------------------------------------------
// Running and comparing
// ---------------------------------------------------------------------------------------------

/// The seed: `TIDEMARK_DIFF_SEED` when set, else drawn from the clock.
fn suite_seed(salt: u64) -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => common::parse_seed(&text)
            .unwrap_or_else(|| panic!("{SEED_ENV}={text:?} is not an unsigned integer")),
        Err(_) => common::time_seed() ^ salt,
    }
}

/// The number of queries: `TIDEMARK_DIFF_QUERIES` when set, else `default`.
fn query_count(default: usize) -> usize {
    match std::env::var(QUERIES_ENV) {
        Ok(text) => {
            text.trim().parse().unwrap_or_else(|_| panic!("{QUERIES_ENV}={text:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// Writes a line straight to stderr, past the test harness's output capture, so that it shows
/// in every run (not only in failing ones).
fn always_print(line: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{line}");
}

fn announce(label: &str, seed: u64, count: usize) {
    always_print(&format!(
        "{label}: seed {seed}, {count} queries ({SEED_ENV}={seed} reproduces this run)"
    ));
}

/// A database with the layout, tidemark in front of it, and one oracle connection per
/// concurrent query.
struct Suite {
    stack: Stack,
    oracles: Vec<Client>,
    seed: u64,
}

/// The outcome of one query.
enum Verdict {
    /// Same answer on both sides.
    Match { plan: String, watermark: Option<String> },
    /// Both sides refused the query (error parity).
    BothFailed,
    /// A difference, with its report.
    Mismatch { plan: String, report: String },
}

impl Suite {
    async fn start(prefix: &str, seed: u64) -> Suite {
        Suite::start_with(prefix, seed, "pool_size = 8").await
    }

    /// A suite whose config adds `extra` after the `[warehouse]` lines.
    async fn start_with(prefix: &str, seed: u64, extra: &str) -> Suite {
        let stack = common::start_stack(prefix, EVENTS_IN_SUITE, seed, extra).await;
        let mut oracles = Vec::with_capacity(CONCURRENCY);
        for _ in 0..CONCURRENCY {
            oracles.push(common::connect(&stack.db_name).await);
        }
        Suite { stack, oracles, seed }
    }

    async fn stop(self) {
        drop(self.oracles);
        self.stack.stop().await;
    }

    /// Runs every query on both sides, `CONCURRENCY` at a time, counting finished queries in
    /// `done`.
    async fn run(&self, queries: &[Query], done: &AtomicUsize) -> Stats {
        let verdicts: Vec<(usize, Verdict)> = stream::iter(queries.iter().enumerate())
            .map(move |(i, q)| async move {
                let verdict = self.check(i, q).await;
                done.fetch_add(1, Ordering::Relaxed);
                (i, verdict)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        Stats::from_verdicts(verdicts)
    }

    /// Runs one query through tidemark and on the oracle and compares the answers.
    async fn check(&self, i: usize, q: &Query) -> Verdict {
        let tm_sql = q.sql.replace(T, "events").replace(SYSDATE, "SYSDATE");
        let oracle_sql = q.sql.replace(T, "events_oracle").replace(SYSDATE, "getdate()");
        let oracle_db = &self.oracles[i % self.oracles.len()];
        let tm_call = tokio::time::timeout(
            QUERY_TIMEOUT,
            common::query(&self.stack.http, self.stack.addr, &tm_sql, &q.params),
        );
        let (tm, oracle) = tokio::join!(tm_call, common::oracle(oracle_db, &oracle_sql, &q.params));
        let tm: Result<Answer, String> = match tm {
            Err(_) => Err(format!("no answer within {QUERY_TIMEOUT:?}")),
            Ok((200, body)) => common::answer_from_json(&body),
            Ok((status, body)) => Err(format!("HTTP {status}: {body}")),
        };
        let plan = match &tm {
            Ok(a) => a.plan.clone().unwrap_or_else(|| "unknown".to_string()),
            Err(_) => "error".to_string(),
        };
        let outcome = match (&oracle, &tm) {
            (Err(_), Err(_)) => return Verdict::BothFailed,
            (Ok(o), Ok(t)) => common::compare_answers(o, t, q.ordered),
            (Err(e), Ok(_)) => Err(format!("the oracle failed ({e}) but tidemark answered")),
            (Ok(_), Err(e)) => Err(format!("tidemark failed: {}", common::truncate(e, 800))),
        };
        match outcome {
            Ok(()) => Verdict::Match { plan, watermark: tm.ok().and_then(|a| a.watermark) },
            Err(reason) => {
                let report = self.report(i, q, &tm_sql, &reason, &oracle, &tm);
                Verdict::Mismatch { plan, report }
            }
        }
    }

    fn report(
        &self,
        i: usize,
        q: &Query,
        sql: &str,
        reason: &str,
        oracle: &Result<Answer, String>,
        tm: &Result<Answer, String>,
    ) -> String {
        let side = |r: &Result<Answer, String>| match r {
            Ok(a) => common::render_answer(a, 6),
            Err(e) => format!("error: {}", common::truncate(e, 600)),
        };
        format!(
            "--- mismatch: seed {} query #{i}{}\n  sql: {sql}\n  params: {}\n  reason: {}\n  \
             oracle: {}\n  tidemark: {}",
            self.seed,
            if q.ordered { " (ordered)" } else { "" },
            Value::Array(q.params.clone()),
            common::truncate(reason, 1200),
            side(oracle),
            side(tm),
        )
    }
}

/// Counts of one run.
#[derive(Default)]
struct Stats {
    queries: usize,
    mismatches: usize,
    split: usize,
    passthrough: usize,
    local: usize,
    both_failed: usize,
    watermarks: BTreeSet<String>,
    reports: Vec<String>,
}

impl Stats {
    fn from_verdicts(mut verdicts: Vec<(usize, Verdict)>) -> Stats {
        verdicts.sort_by_key(|(i, _)| *i);
        let mut stats = Stats::default();
        for (_, verdict) in verdicts {
            stats.queries += 1;
            match verdict {
                Verdict::Match { plan, watermark } => {
                    stats.count_plan(&plan);
                    stats.watermarks.extend(watermark);
                }
                Verdict::BothFailed => stats.both_failed += 1,
                Verdict::Mismatch { plan, report } => {
                    stats.count_plan(&plan);
                    stats.mismatches += 1;
                    if stats.reports.len() < MAX_REPORTS {
                        stats.reports.push(report);
                    }
                }
            }
        }
        stats
    }

    fn count_plan(&mut self, plan: &str) {
        match plan {
            "split" => self.split += 1,
            "passthrough" => self.passthrough += 1,
            "local" => self.local += 1,
            _ => {}
        }
    }

    /// Mismatch reports and details (shown when the test fails), then the one summary line.
    fn print(&self, label: &str, seed: u64, elapsed: Duration) {
        for report in &self.reports {
            eprintln!("{report}");
        }
        eprintln!(
            "{label}: seed {seed}; {} failed on both sides, {} local, {} distinct watermarks; {:.1}s",
            self.both_failed,
            self.local,
            self.watermarks.len(),
            elapsed.as_secs_f64()
        );
        always_print(&format!(
            "{label}: {} queries, {} mismatches (split: {}, passthrough: {})",
            self.queries, self.mismatches, self.split, self.passthrough
        ));
    }

    fn assert_clean(&self, label: &str, count: usize, floor: usize) {
        assert_eq!(self.mismatches, 0, "{label}: tidemark disagreed with the oracle (see above)");
        assert_eq!(self.queries, count, "{label}: not every query was run");
        if std::env::var_os(QUERIES_ENV).is_none() {
            assert!(self.queries >= floor, "{label}: only {} queries", self.queries);
        }
        // Only the error family (about 3%) should fail on both sides; more means generated SQL
        // is broken and the run covers less than it claims.
        assert!(
            self.both_failed <= count * 6 / 100,
            "{label}: {} queries failed on both sides",
            self.both_failed
        );
        assert!(
            self.split >= count * 5 / 12,
            "{label}: only {} of {count} queries were split",
            self.split
        );
        assert!(
            self.passthrough >= count / 12,
            "{label}: only {} of {count} queries were passed through",
            self.passthrough
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The query generator
// ---------------------------------------------------------------------------------------------

/// One generated query: SQL over `{T}`, JSON params, and whether row order is significant (only
/// when the ORDER BY is a total order, or ties are identical rows).
#[derive(Debug, Clone)]
struct Query {
    sql: String,
    params: Vec<Value>,
    ordered: bool,
}

impl Query {
    fn new(sql: String) -> Query {
        Query { sql, params: Vec::new(), ordered: false }
    }

    fn ordered(mut self) -> Query {
        self.ordered = true;
        self
    }

    fn ordered_if(mut self, ordered: bool) -> Query {
        self.ordered = ordered;
        self
    }

    fn with_params(mut self, params: Vec<Value>) -> Query {
        self.params = params;
        self
    }
}

fn generate(seed: u64, layout: Layout, count: usize) -> Vec<Query> {
    let mut generator = Gen { rng: Rng::new(seed ^ 0xD1FF_D1FF_D1FF_D1FF), layout };
    (0..count).map(|_| generator.query()).collect()
}

/// How the logical table is referenced: `FROM {T}` or `FROM {T} e` with `e.` before columns.
#[derive(Clone, Copy)]
struct Alias {
    decl: &'static str,
    prefix: &'static str,
}

const NO_ALIAS: Alias = Alias { decl: "", prefix: "" };
const E_ALIAS: Alias = Alias { decl: " e", prefix: "e." };

/// Expands `{a}` in an expression template to the alias prefix.
fn x(template: &str, al: Alias) -> String {
    template.replace("{a}", al.prefix)
}

/// An aggregate select item: SQL (`{a}` = alias prefix), a default alias, and whether its value
/// is exact (floats are not, so they never serve as sort keys).
struct Agg {
    sql: &'static str,
    name: &'static str,
    exact: bool,
}

const fn agg(sql: &'static str, name: &'static str, exact: bool) -> Agg {
    Agg { sql, name, exact }
}

const AGGS: &[Agg] = &[
    agg("count(*)", "n", true),
    agg("count({a}device)", "n_device", true),
    agg("count({a}amount)", "n_amount", true),
    agg("count({a}flag)", "n_flag", true),
    agg("sum({a}qty)", "sum_qty", true),
    agg("sum({a}user_id)", "sum_user", true),
    agg("sum({a}big)", "sum_big", true),
    agg("sum({a}amount)", "sum_amount", true),
    agg("sum({a}score)", "sum_score", false),
    agg("min({a}qty)", "min_qty", true),
    agg("max({a}qty)", "max_qty", true),
    agg("min({a}amount)", "min_amount", true),
    agg("max({a}amount)", "max_amount", true),
    agg("min({a}big)", "min_big", true),
    agg("max({a}big)", "max_big", true),
    agg("min({a}score)", "min_score", false),
    agg("max({a}score)", "max_score", false),
    agg("min({a}user_id)", "min_user", true),
    agg("max({a}user_id)", "max_user", true),
    agg("min({a}country)", "min_country", true),
    agg("min({a}device)", "min_device", true),
    agg("max({a}device)", "max_device", true),
    agg("min({a}event_time)", "first_seen", true),
    agg("max({a}event_time)", "last_seen", true),
    agg("min({a}day)", "min_day", true),
    agg("max({a}day)", "max_day", true),
    agg("avg({a}qty)", "avg_qty", true),
    agg("avg({a}user_id)", "avg_user", true),
    agg("avg({a}big)", "avg_big", true),
    agg("avg({a}amount)", "avg_amount", true),
    agg("avg({a}score)", "avg_score", false),
    agg("bool_and({a}flag)", "all_flag", true),
    agg("bool_or({a}flag)", "any_flag", true),
    agg("sum({a}amount) / nullif(count(*), 0)", "amount_per_event", true),
    agg("avg({a}qty) * 2", "double_avg_qty", true),
    agg("round(avg({a}amount), 2)", "avg_amount_2", true),
    agg("max({a}big) - min({a}big)", "big_range", true),
    agg("coalesce(sum({a}qty), 0) + 1", "qty_plus_one", true),
    agg("CASE WHEN count(*) > 10 THEN 'many' ELSE 'few' END", "size", true),
    agg("count(*) - count({a}device)", "no_device", true),
    agg("max({a}amount) - min({a}amount)", "amount_range", true),
    agg("sum({a}qty) * 2", "double_qty", true),
    agg("sum({a}score) / nullif(count({a}score), 0)", "mean_score", false),
    agg("max({a}score) - min({a}score)", "score_range", false),
    agg("sum({a}big) / nullif(count({a}big), 0)", "mean_big", true),
    agg("abs(sum({a}amount))", "abs_amount", true),
    agg("-sum({a}qty)", "neg_qty", true),
    agg("greatest(max({a}qty), 0)", "max_qty_pos", true),
    agg("sum({a}qty) % 7", "qty_mod", true),
    agg("min({a}event_time)::date", "first_day", true),
    agg("count(*) FILTER (WHERE {a}flag)", "n_flagged", true),
];

/// Group keys (expression, alias); none is a float, so ordering by all keys is a total order.
const KEYS: &[(&str, &str)] = &[
    ("{a}country", "country"),
    ("{a}device", "device"),
    ("{a}flag", "flag"),
    ("{a}qty % 3", "q3"),
    ("date_trunc('day', {a}event_time)", "d"),
    ("lower({a}device)", "ldev"),
    ("{a}day", "day"),
    ("{a}event_time::date", "edate"),
    ("{a}user_id % 10", "u10"),
    ("{a}amount > 0", "positive"),
    ("extract(dow from {a}event_time)", "dow"),
    ("date_trunc('week', {a}event_time)", "wk"),
    ("substr({a}device, 1, 2)", "dev2"),
    ("coalesce({a}country, '?')", "cc"),
    ("{a}big > 0", "big_pos"),
    ("length({a}device)", "dlen"),
];

const DISTINCT_EXPRS: &[&str] = &[
    "{a}country",
    "{a}device",
    "{a}flag",
    "{a}qty % 3",
    "{a}day",
    "lower({a}device)",
    "{a}user_id % 5",
    "date_trunc('day', {a}event_time)",
];

const RAW_COLUMNS: &[&str] =
    &["event_time", "user_id", "country", "device", "amount", "qty", "score", "big", "flag", "day"];

/// Group keys of the join queries.
const JOIN_KEYS: &[&[&str]] = &[
    &["c.region"],
    &["c.region", "e.device"],
    &["c.code"],
    &["coalesce(c.region, 'none')"],
    &["e.country", "c.population"],
];

const DIRECTIONS: &[&str] =
    &["", " ASC", " DESC", " NULLS FIRST", " DESC NULLS LAST", " ASC NULLS LAST"];

struct Gen {
    rng: Rng,
    layout: Layout,
}

impl Gen {
    /// One query; about 70% are split-class, 25% passthrough-class, the rest errors.
    fn query(&mut self) -> Query {
        match self.rng.below(100) {
            0..=12 => self.global_agg(),
            13..=36 => self.group_agg(),
            37..=41 => self.distinct(),
            42..=51 => self.raw_rows(),
            52..=61 => self.join(),
            62..=67 => self.with_params(),
            68..=70 => self.empty(),
            71..=96 => self.passthrough(),
            _ => self.error_query(),
        }
    }

    fn alias(&mut self) -> Alias {
        if self.rng.chance(0.35) {
            E_ALIAS
        } else {
            NO_ALIAS
        }
    }

    fn direction(&mut self) -> &'static str {
        let d: &&'static str = self.rng.pick(DIRECTIONS);
        d
    }

    fn limit_offset(&mut self) -> String {
        match self.rng.below(4) {
            0 => String::new(),
            1 => format!(" LIMIT {}", self.rng.range(0, 25)),
            2 => format!(" LIMIT {} OFFSET {}", self.rng.range(1, 25), self.rng.range(0, 10)),
            _ => format!(" OFFSET {}", self.rng.range(1, 5)),
        }
    }

    /// ` AS name` half of the time.
    fn maybe_alias(&mut self, expr: String, name: &str) -> (String, bool) {
        if self.rng.chance(0.5) {
            (format!("{expr} AS {name}"), true)
        } else {
            (expr, false)
        }
    }

    // --- WHERE and HAVING ---------------------------------------------------------------------

    fn where_clause(&mut self, al: Alias) -> Option<String> {
        let mut preds = Vec::new();
        if self.rng.chance(0.45) {
            preds.push(self.time_pred(al));
        }
        let others = match self.rng.below(10) {
            0..=4 => 0,
            5..=8 => 1,
            _ => 2,
        };
        for _ in 0..others {
            preds.push(self.other_pred(al));
        }
        if preds.len() >= 2 && self.rng.chance(0.15) {
            let b = preds.pop().unwrap_or_default();
            let a = preds.pop().unwrap_or_default();
            preds.push(format!("({a} OR {b})"));
        }
        if preds.is_empty() {
            None
        } else {
            Some(preds.join(" AND "))
        }
    }

    /// ` WHERE ...` or nothing.
    fn where_sql(&mut self, al: Alias) -> String {
        self.where_clause(al).map(|w| format!(" WHERE {w}")).unwrap_or_default()
    }

    fn between(&mut self, from: NaiveDateTime, to: NaiveDateTime) -> NaiveDateTime {
        Layout::random_between(&mut self.rng, from, to)
    }

    /// An instant for a time predicate: at the watermarks, just below W0, entirely before W0,
    /// entirely after W1, at a watermark step, or anywhere (a day either side included).
    fn instant(&mut self) -> NaiveDateTime {
        let l = self.layout;
        let day = TimeDelta::days(1);
        match self.rng.below(8) {
            0 => l.w0,
            1 => l.w1,
            2 => l.w0 - TimeDelta::microseconds(1),
            3 => self.between(l.start - day, l.w0 - day),
            4 => self.between(l.w1 + day, l.end + day),
            5 => {
                let k = self.rng.range(0, WM_STEPS);
                l.wm_step(k)
            }
            _ => self.between(l.start - day, l.end + day),
        }
    }

    fn instant_pair(&mut self) -> (NaiveDateTime, NaiveDateTime) {
        let a = self.instant();
        let b = self.instant();
        if a <= b {
            (a, b)
        } else {
            (b, a)
        }
    }

    fn time_pred(&mut self, al: Alias) -> String {
        let l = self.layout;
        let c = format!("{}event_time", al.prefix);
        match self.rng.below(11) {
            0 => format!("{c} < {}", ts_lit(self.instant())),
            1 => format!("{c} <= {}", ts_lit(self.instant())),
            2 => format!("{c} > {}", ts_lit(self.instant())),
            3 => format!("{c} >= {}", ts_lit(self.instant())),
            4 => {
                let (a, b) = self.instant_pair();
                format!("{c} BETWEEN {} AND {}", ts_lit(a), ts_lit(b))
            }
            5 => {
                let exact = [l.w0, l.w1, l.wm_step(400), l.w0 - TimeDelta::microseconds(1)];
                format!("{c} = {}", ts_lit(*self.rng.pick(&exact)))
            }
            6 => format!("{c} >= '{}'", ts_text(self.instant())),
            7 => {
                let (a, b) = self.instant_pair();
                format!("{c} >= {} AND {c} < {}", ts_lit(a), ts_lit(b))
            }
            8 => format!("{}day >= DATE '{}'", al.prefix, self.instant().date()),
            9 => {
                // Entirely below W0: the speed leg can be pruned.
                let t = self.between(l.start, l.w0 - TimeDelta::hours(1));
                format!("{c} < {}", ts_lit(t))
            }
            _ => {
                // Entirely at or above W1: the batch leg can be pruned.
                let t = self.between(l.w1 + TimeDelta::hours(1), l.end);
                format!("{c} >= {}", ts_lit(t))
            }
        }
    }

    fn other_pred(&mut self, al: Alias) -> String {
        let p = al.prefix;
        match self.rng.below(22) {
            0 => {
                format!("{p}country = '{}'", self.rng.pick(&["DE", "US", "日本", "ZZ", "GB", "XX"]))
            }
            1 => format!("{p}country <> '{}'", self.rng.pick(&["US", "DE", "CH"])),
            2 => format!("{p}country IN ('DE', 'FR', '日本')"),
            3 => format!("{p}country NOT IN ('US', 'XX')"),
            4 => format!("{p}device IS NULL"),
            5 => format!("{p}device IS NOT NULL"),
            6 => {
                let pattern = self.rng.pick(&["i%", "%e%", "東%", "%phone", "W%", "o''b%", "_OS"]);
                format!("{p}device LIKE '{pattern}'")
            }
            7 => format!("{p}qty > {}", self.rng.range(-100, 1000)),
            8 => format!("{p}qty <= {}", self.rng.range(-100, 1000)),
            9 => format!("{p}amount < {}", cents_text(self.rng.range(-60_000, 600_000))),
            10 => {
                let lo = self.rng.range(-60_000, 500_000);
                let hi = lo + self.rng.range(0, 200_000);
                format!("{p}amount BETWEEN {} AND {}", cents_text(lo), cents_text(hi))
            }
            11 => format!("{p}score >= {}", self.rng.range(-50, 1000)),
            12 => format!("{p}flag"),
            13 => format!("NOT {p}flag"),
            14 => format!("{p}flag IS NULL"),
            15 => format!("{p}user_id % 7 = {}", self.rng.range(0, 6)),
            16 => format!("{p}big > 0"),
            17 => format!("{p}id % 10 = {}", self.rng.range(0, 9)),
            18 => format!("{p}amount IS NULL"),
            19 => format!("{p}qty IN (1, 2, 3, {})", self.rng.range(4, 1000)),
            20 => format!("coalesce({p}device, '') = ''"),
            _ => format!("{p}device = 'o''brien'"),
        }
    }

    fn having(&mut self, al: Alias) -> String {
        let p = al.prefix;
        match self.rng.below(6) {
            0 => format!("count(*) > {}", self.rng.range(0, 300)),
            1 => format!("sum({p}amount) < {}", cents_text(self.rng.range(-100_000, 200_000_000))),
            2 => format!("avg({p}qty) > {}", self.rng.range(-10, 600)),
            3 => format!("max({p}score) > {}", self.rng.range(0, 1000)),
            4 => format!("bool_or({p}flag)"),
            _ => format!("count({p}device) >= 1 AND min({p}qty) < {}", self.rng.range(-50, 200)),
        }
    }

    // --- split-class families -----------------------------------------------------------------

    /// Global aggregates: one row.
    fn global_agg(&mut self) -> Query {
        let al = self.alias();
        let n = 1 + self.rng.below(4) as usize;
        let aggs = self.rng.sample(AGGS, n);
        let mut items = Vec::with_capacity(n);
        for a in aggs {
            let (item, _) = self.maybe_alias(x(a.sql, al), a.name);
            items.push(item);
        }
        let w = self.where_sql(al);
        Query::new(format!("SELECT {} FROM {T}{}{w}", items.join(", "), al.decl))
    }

    /// GROUP BY by expression, alias or ordinal, with HAVING and a total ORDER BY at times.
    fn group_agg(&mut self) -> Query {
        let al = self.alias();
        if self.rng.chance(0.1) {
            return self.agg_only_ordered(al);
        }
        let nkeys = if self.rng.chance(0.65) { 1 } else { 2 };
        let keys = self.rng.sample(KEYS, nkeys);
        let naggs = 1 + self.rng.below(3) as usize;
        let aggs = self.rng.sample(AGGS, naggs);
        let mut select = Vec::new();
        let mut group_by = Vec::new();
        let mut key_refs = Vec::new();
        for (i, (expr, name)) in keys.iter().enumerate() {
            let e = x(expr, al);
            let (item, aliased) = self.maybe_alias(e.clone(), name);
            select.push(item);
            let ordinal = (i + 1).to_string();
            group_by.push(match self.rng.below(3) {
                0 => e.clone(),
                1 if aliased => name.to_string(),
                _ => ordinal.clone(),
            });
            key_refs.push(match self.rng.below(3) {
                0 => e,
                1 if aliased => name.to_string(),
                _ => ordinal,
            });
        }
        let mut exact_agg_ref = None;
        for (j, a) in aggs.iter().enumerate() {
            let (item, aliased) = self.maybe_alias(x(a.sql, al), a.name);
            select.push(item);
            if a.exact && exact_agg_ref.is_none() {
                let ordinal = (keys.len() + j + 1).to_string();
                exact_agg_ref = Some(if aliased { a.name.to_string() } else { ordinal });
            }
        }
        let mut sql = format!("SELECT {} FROM {T}{}", select.join(", "), al.decl);
        sql.push_str(&self.where_sql(al));
        sql.push_str(&format!(" GROUP BY {}", group_by.join(", ")));
        if self.rng.chance(0.25) {
            let having = self.having(al);
            sql.push_str(&format!(" HAVING {having}"));
        }
        let ordered = self.rng.chance(0.5);
        if ordered {
            let mut order = Vec::new();
            if let Some(r) = exact_agg_ref.filter(|_| self.rng.chance(0.3)) {
                order.push(format!("{r}{}", self.direction()));
            }
            for k in &key_refs {
                order.push(format!("{k}{}", self.direction()));
            }
            let limit = self.limit_offset();
            sql.push_str(&format!(" ORDER BY {}{limit}", order.join(", ")));
        }
        Query::new(sql).ordered_if(ordered)
    }

    /// Only an exact aggregate is selected and it is the sort key: tied rows are identical, so
    /// the order (and LIMIT) is deterministic.
    fn agg_only_ordered(&mut self, al: Alias) -> Query {
        let exact: Vec<&Agg> = AGGS.iter().filter(|a| a.exact).collect();
        let a = *self.rng.pick(&exact);
        let (key, _) = *self.rng.pick(KEYS);
        let dir = self.direction();
        let limit = self.limit_offset();
        let sql = format!(
            "SELECT {} AS v FROM {T}{} GROUP BY {} ORDER BY 1{dir}{limit}",
            x(a.sql, al),
            al.decl,
            x(key, al)
        );
        Query::new(sql).ordered()
    }

    /// SELECT DISTINCT over columns and expressions, and DISTINCT over aggregates.
    fn distinct(&mut self) -> Query {
        let al = self.alias();
        if self.rng.chance(0.15) {
            let (key, _) = *self.rng.pick(KEYS);
            let sql = format!(
                "SELECT DISTINCT count(*) AS n FROM {T}{} GROUP BY {}",
                al.decl,
                x(key, al)
            );
            return Query::new(sql);
        }
        let n = 1 + self.rng.below(2) as usize;
        let exprs: Vec<String> =
            self.rng.sample(DISTINCT_EXPRS, n).into_iter().map(|e| x(e, al)).collect();
        let w = self.where_sql(al);
        let mut sql = format!("SELECT DISTINCT {} FROM {T}{}{w}", exprs.join(", "), al.decl);
        let ordered = self.rng.chance(0.5);
        if ordered {
            let mut order = Vec::new();
            for i in 1..=exprs.len() {
                order.push(format!("{i}{}", self.direction()));
            }
            let limit = self.limit_offset();
            sql.push_str(&format!(" ORDER BY {}{limit}", order.join(", ")));
        }
        Query::new(sql).ordered_if(ordered)
    }

    /// Rows without aggregation: ORDER BY a column then id (total) with LIMIT/OFFSET, or a
    /// selective unordered filter, or the events exactly at a watermark instant.
    fn raw_rows(&mut self) -> Query {
        let al = self.alias();
        let p = al.prefix;
        let d = al.decl;
        match self.rng.below(10) {
            0..=5 => {
                let n = 2 + self.rng.below(3) as usize;
                let mut cols = vec![format!("{p}id")];
                cols.extend(self.rng.sample(RAW_COLUMNS, n).into_iter().map(|c| format!("{p}{c}")));
                let sort = format!("{p}{}", self.rng.pick(RAW_COLUMNS));
                if self.rng.chance(0.8) && !cols.contains(&sort) {
                    cols.push(sort.clone());
                }
                let w = self.where_sql(al);
                let dir = self.direction();
                let id_dir = *self.rng.pick(&["", " DESC"]);
                let limit = self.rng.range(0, 40);
                let offset = self.rng.range(0, 10);
                let sql = format!(
                    "SELECT {} FROM {T}{d}{w} ORDER BY {sort}{dir}, {p}id{id_dir} LIMIT {limit} OFFSET {offset}",
                    cols.join(", ")
                );
                Query::new(sql).ordered()
            }
            6 | 7 => {
                let m = *self.rng.pick(&[97_i64, 211, 499, 1009]);
                let k = self.rng.range(0, m - 1);
                Query::new(format!("SELECT * FROM {T}{d} WHERE {p}id % {m} = {k}"))
            }
            8 => {
                let m = *self.rng.pick(&[97_i64, 211, 499]);
                let k = self.rng.range(0, m - 1);
                Query::new(format!(
                    "SELECT {p}id, {p}amount * 2 AS double_amount, upper({p}device) AS udev, \
                     {p}event_time + interval '1 hour' AS later, {p}qty::int8 * 1000 AS q1000, \
                     {p}score / 2 AS half_score FROM {T}{d} WHERE {p}id % {m} = {k}"
                ))
            }
            _ => {
                let l = self.layout;
                let k = 4 * self.rng.range(1, WM_STEPS / 4 - 1);
                let at =
                    *self.rng.pick(&[l.w0, l.w1, l.w0 - TimeDelta::microseconds(1), l.wm_step(k)]);
                Query::new(format!(
                    "SELECT {p}id, {p}event_time, {p}amount FROM {T}{d} WHERE {p}event_time = {}",
                    ts_lit(at)
                ))
            }
        }
    }

    /// Joins from the logical table to the dimension table (inner, left, comma join).
    fn join(&mut self) -> Query {
        let al = E_ALIAS;
        let kind = *self.rng.pick(&["JOIN", "LEFT JOIN", "INNER JOIN"]);
        let on = *self.rng.pick(&["c.code = e.country", "e.country = c.code"]);
        let from = format!("{T} e {kind} countries c ON {on}");
        match self.rng.below(6) {
            0 | 1 => {
                let keys = *self.rng.pick(JOIN_KEYS);
                let n = 1 + self.rng.below(2) as usize;
                let mut select: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                for a in self.rng.sample(AGGS, n) {
                    select.push(x(a.sql, al));
                }
                if self.rng.chance(0.4) {
                    select.push("sum(c.population) AS pop".to_string());
                }
                let w = self.where_sql(al);
                let group: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
                let mut sql = format!(
                    "SELECT {} FROM {from}{w} GROUP BY {}",
                    select.join(", "),
                    group.join(", ")
                );
                let ordered = self.rng.chance(0.5);
                if ordered {
                    let mut order = Vec::new();
                    for i in 1..=keys.len() {
                        order.push(format!("{i}{}", self.direction()));
                    }
                    let limit = self.limit_offset();
                    sql.push_str(&format!(" ORDER BY {}{limit}", order.join(", ")));
                }
                Query::new(sql).ordered_if(ordered)
            }
            2 => {
                let region = *self.rng.pick(&["Europe", "Asia", "Zürich–Ost", "Americas"]);
                let a = self.rng.pick(AGGS);
                let extra =
                    self.where_clause(al).map(|w| format!(" AND ({w})")).unwrap_or_default();
                Query::new(format!(
                    "SELECT count(*) AS n, sum(c.population) AS pop, max(c.region) AS region, {} \
                     FROM {from} WHERE c.region = '{region}'{extra}",
                    x(a.sql, al)
                ))
            }
            3 => {
                let w = self.where_sql(al);
                let limit = self.rng.range(1, 30);
                Query::new(format!(
                    "SELECT e.id, c.region, e.amount FROM {from}{w} ORDER BY e.id DESC LIMIT {limit}"
                ))
                .ordered()
            }
            4 => Query::new(format!(
                "SELECT c.region, count(*) AS n, sum(e.qty) AS q FROM {T} e, countries c \
                 WHERE c.code = e.country GROUP BY c.region"
            )),
            _ => {
                let k = self.rng.range(0, 100);
                Query::new(format!(
                    "SELECT e.id, e.country, c.population FROM {from} WHERE e.id % 101 = {k}"
                ))
            }
        }
    }

    /// Queries with `$n` parameters sent as JSON (bound the same way on the oracle).
    fn with_params(&mut self) -> Query {
        let al = self.alias();
        let p = al.prefix;
        let d = al.decl;
        match self.rng.below(7) {
            0 => Query::new(format!(
                "SELECT count(*) AS n, sum({p}amount) AS total FROM {T}{d} WHERE {p}qty > $1"
            ))
            .with_params(vec![json!(self.rng.range(-100, 1000))]),
            1 => {
                let country = *self.rng.pick(&["DE", "US", "日本", "nowhere", "CH"]);
                Query::new(format!(
                    "SELECT {p}country, count(*) AS n, avg({p}qty) AS avg_qty FROM {T}{d} \
                     WHERE {p}country = $1 GROUP BY {p}country"
                ))
                .with_params(vec![json!(country)])
            }
            2 => {
                let lo = self.rng.range(-10, 1500);
                let hi = lo + self.rng.range(0, 800);
                Query::new(format!(
                    "SELECT count(*) AS n, min({p}event_time) AS first_seen FROM {T}{d} \
                     WHERE {p}user_id BETWEEN $1 AND $2"
                ))
                .with_params(vec![json!(lo), json!(hi)])
            }
            3 => {
                let device = *self.rng.pick(&["ios", "Ünïcødé", "📱 phone", "o'brien", ""]);
                Query::new(format!(
                    "SELECT {p}device, sum({p}qty) AS s FROM {T}{d} WHERE {p}device = $1 OR {p}qty < $2 \
                     GROUP BY 1 ORDER BY 1 NULLS FIRST"
                ))
                .with_params(vec![json!(device), json!(self.rng.range(-100, 100))])
                .ordered()
            }
            4 => {
                let t = self.instant();
                Query::new(format!(
                    "SELECT count(*) AS n, max({p}amount) AS top FROM {T}{d} WHERE {p}event_time >= $1"
                ))
                .with_params(vec![json!(ts_text(t))])
            }
            5 => {
                let threshold = self.rng.range(-5_000, 100_000) as f64 / 100.0;
                Query::new(format!(
                    "SELECT count(*) AS n, avg({p}score) AS mean FROM {T}{d} WHERE {p}score > $1"
                ))
                .with_params(vec![json!(threshold)])
            }
            _ => Query::new(format!(
                "SELECT {p}id, {p}amount FROM {T}{d} WHERE {p}qty = $1 ORDER BY {p}id LIMIT 5"
            ))
            .with_params(vec![json!(self.rng.range(-100, 1000))])
            .ordered(),
        }
    }

    /// Queries over no rows: one row of count 0 / NULLs for global aggregates, none otherwise.
    fn empty(&mut self) -> Query {
        let al = self.alias();
        let p = al.prefix;
        let d = al.decl;
        let l = self.layout;
        let pred = match self.rng.below(6) {
            0 => format!("{p}qty > 32000"),
            1 => format!("{p}country = 'nowhere'"),
            2 => "1 = 0".to_string(),
            3 => format!("{p}event_time < TIMESTAMP '2000-01-01 00:00:00'"),
            4 => format!("{p}event_time > TIMESTAMP '2030-01-01 00:00:00'"),
            _ => format!("{p}event_time > {} AND {p}event_time < {}", ts_lit(l.w1), ts_lit(l.w0)),
        };
        match self.rng.below(3) {
            0 => Query::new(format!(
                "SELECT count(*), sum({p}amount), min({p}event_time), avg({p}qty), bool_and({p}flag), \
                 max({p}device), coalesce(sum({p}qty), 0) + 1 AS q FROM {T}{d} WHERE {pred}"
            )),
            1 => Query::new(format!(
                "SELECT {p}country, count(*) AS n FROM {T}{d} WHERE {pred} GROUP BY {p}country ORDER BY 1"
            ))
            .ordered(),
            _ => Query::new(format!(
                "SELECT {p}id, {p}score FROM {T}{d} WHERE {pred} ORDER BY {p}id LIMIT 10"
            ))
            .ordered(),
        }
    }

    // --- passthrough-class and error families -------------------------------------------------

    /// Queries the split cannot answer (or must not answer naively); tidemark passes them to
    /// the warehouse, where the logical table is the exactly-once view.
    fn passthrough(&mut self) -> Query {
        let al = self.alias();
        let p = al.prefix;
        let d = al.decl;
        let w = self.where_sql(al);
        let m = *self.rng.pick(&[53_i64, 101, 211]);
        let k = self.rng.range(0, m - 1);
        let (key, _) = *self.rng.pick(KEYS);
        let key = x(key, al);
        let sql = match self.rng.below(24) {
            0 => format!("SELECT count(DISTINCT {p}user_id) FROM {T}{d}{w}"),
            1 => format!(
                "SELECT {key} AS g, count(DISTINCT {p}device) AS devices FROM {T}{d}{w} GROUP BY 1"
            ),
            2 => format!(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {p}amount) AS median FROM {T}{d}{w}"
            ),
            3 => format!(
                "SELECT {p}country, percentile_disc(0.9) WITHIN GROUP (ORDER BY {p}qty) AS p90 \
                 FROM {T}{d}{w} GROUP BY {p}country"
            ),
            4 => format!(
                "SELECT {p}country, count(*) AS n, rank() OVER (ORDER BY count(*) DESC) AS r \
                 FROM {T}{d}{w} GROUP BY {p}country"
            ),
            5 => format!(
                "SELECT {p}id, sum({p}amount) OVER (PARTITION BY {p}country ORDER BY {p}id) AS running \
                 FROM {T}{d} WHERE {p}id % {m} = {k}"
            ),
            6 => format!(
                "WITH x AS (SELECT {p}country, sum({p}amount) AS s, count(*) AS n FROM {T}{d}{w} \
                 GROUP BY {p}country) SELECT count(*), sum(s), max(n) FROM x"
            ),
            7 => format!(
                "WITH x AS (SELECT device, min(event_time) AS first_seen FROM {T} GROUP BY device) \
                 SELECT * FROM x"
            ),
            8 => format!("SELECT count(*) AS users FROM (SELECT DISTINCT {p}user_id FROM {T}{d}{w}) s"),
            9 => format!(
                "SELECT country, count(*) FROM {T} WHERE amount > (SELECT avg(amount) FROM {T}) \
                 GROUP BY country"
            ),
            10 => format!(
                "SELECT code, region FROM countries WHERE code IN \
                 (SELECT country FROM {T} WHERE qty > {})",
                self.rng.range(500, 1000)
            ),
            11 => format!(
                "SELECT count(*), sum(a.amount) FROM {T} a JOIN {T} b ON a.id = b.id \
                 WHERE a.id % {m} = {k}"
            ),
            12 => format!("SELECT country FROM {T} UNION SELECT code FROM countries"),
            13 => format!(
                "SELECT string_agg(DISTINCT {p}device, '|' ORDER BY {p}device) AS devices FROM {T}{d}{w}"
            ),
            14 => format!(
                "SELECT stddev_samp({p}score) AS sd, variance({p}qty) AS var FROM {T}{d}{w}"
            ),
            15 => format!("SELECT count(*) FROM {T}{d} WHERE random() >= 0"),
            16 => format!(
                "SELECT c.code, count(*) AS n, count(e.id) AS matched \
                 FROM countries c LEFT JOIN {T} e ON e.country = c.code GROUP BY c.code"
            ),
            17 => format!(
                "SELECT {p}country, {p}device, count(*) FROM {T}{d}{w} \
                 GROUP BY GROUPING SETS (({p}country), ({p}device))"
            ),
            18 => format!(
                "SELECT {p}country, count(*) AS n FROM {T}{d}{w} GROUP BY ROLLUP ({p}country)"
            ),
            19 => {
                let sql = format!(
                    "SELECT DISTINCT ON ({p}country) {p}country, {p}id FROM {T}{d}{w} \
                     ORDER BY {p}country, {p}id"
                );
                return Query::new(sql).ordered();
            }
            20 => format!(
                "SELECT max(n) AS busiest FROM (SELECT {p}country, count(*) AS n FROM {T}{d}{w} \
                 GROUP BY {p}country) s"
            ),
            21 => format!(
                "SELECT e.country, count(*) AS n FROM {T} e WHERE EXISTS \
                 (SELECT 1 FROM countries c WHERE c.code = e.country) GROUP BY 1"
            ),
            22 => format!(
                "SELECT count(*) AS n FROM {T} WHERE country IN \
                 (SELECT code FROM countries WHERE region = 'Europe')"
            ),
            _ => format!(
                "SELECT count(*) AS n, max(event_time) AS last_seen FROM {T} \
                 WHERE event_time < now() - interval '1 day'"
            ),
        };
        Query::new(sql)
    }

    /// Queries that fail on the oracle (or, depending on the data, do not): tidemark must fail
    /// exactly when the oracle does.
    fn error_query(&mut self) -> Query {
        let w = self.where_sql(NO_ALIAS);
        let sql = match self.rng.below(8) {
            0 => format!("SELECT nosuchcol FROM {T}"),
            1 => format!("SELECT sum(device) FROM {T}"),
            2 => format!("SELECT sum(qty) / 0 FROM {T}{w}"),
            3 => format!("SELECT count(*) FROM {T} WHERE qty > 'abc'"),
            4 => format!("SELECT max(big) * 4 FROM {T}{w}"),
            5 => format!("SELECT country, count(*) FROM {T}"),
            6 => format!("SELECT count(*) FROM {T} WHERE event_time > 'not a time'"),
            _ => format!("SELECT count(* FROM {T}"),
        };
        Query::new(sql)
    }
}
