//! Windows (issue 5): answers that read per-bucket aggregates in Redis past the speed table's
//! high-water mark H, compared with an oracle table that holds every event exactly once.
//!
//! Every test builds its own database with events over the last 40 minutes (UTC, none in the
//! future) of one logical table `<t>`:
//! - `<t>_batch`: every event before the batch watermark W;
//! - `<t>_speed`: every event from W up to the *loaded* mark, which is H plus a slice that is
//!   loaded but whose H is not published yet (so the speed leg must stop at H);
//! - windows (Redis): every event from W on, so `[W, H)` is in both the speed table and the
//!   windows, and the newest events are in the windows only;
//! - junk the legs must ignore: changed copies on the wrong side of W in both tables, rows
//!   without a time, and a bucket far below H.
//!
//! Each test has its own `redis-server` (never the shared 127.0.0.1:6379); the cluster test
//! uses a logical table name unique to its run. Two tests run Redis like ElastiCache with
//! in-transit encryption and RBAC: TLS only, certificates of a throw-away CA, an ACL user. `TIDEMARK_WINDOWS_SEED=<n>` reproduces the
//! queries and the data (relative to the time of the run).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{NaiveDateTime, TimeDelta, Utc};
use common::certs::TestCa;
use common::redis::{RedisCluster, RedisServer, RedisTls};
use common::{cents_text, ts_lit, Answer, Layout, Rng, WATERMARK_TABLE};
use futures::stream::{self, StreamExt};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use serde_json::Value;
use tidemark::config::WindowsConfig;
use tidemark::server::Server;
use tidemark::windows::{bucket_key, hwm_key, WindowEvent, WindowsWriter};
use tokio_postgres::Client;

/// Placeholder for the table in generated SQL: the logical table (tidemark, or the warehouse
/// view of the same name) or `<t>_oracle`.
const T: &str = "{T}";
/// Placeholder for "now" as a UTC timestamp: `(now() AT TIME ZONE 'UTC')` for tidemark, a
/// literal instant on the reference side.
const NOW: &str = "{NOW}";
const SEED_ENV: &str = "TIDEMARK_WINDOWS_SEED";
const BUCKET_SECS: i64 = 10;
const N_EVENTS: usize = 3_000;
const CONCURRENCY: usize = 4;
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REPORTS: usize = 20;

const WINDOWS_TOML: &str = "[tables.windows]\nbucket = \"10s\"\n\
    dimensions = [\"country\", \"device\"]\n\
    measures = [\"count\", \"sum:amount\", \"min:amount\", \"max:amount\"]\nretention = \"1h\"\n";

const COUNTRIES: &[&str] = &["US", "US", "DE", "DE", "FR", "JP", "日本", "BR"];
const DEVICES: &[&str] =
    &["ios", "ios", "android", "web", "Web", "Ünïcødé", "📱 phone", "", "o'brien"];

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// 300 generated window-eligible queries equal the oracle and all read windows; queries the
/// windows cannot answer equal the warehouse view and say why windows were not used; queries
/// with bounds just at a bucket boundary equal whichever reference matches their plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_leg_matches_the_oracle() {
    let label = "windows differential";
    let seed = suite_seed(1);
    announce(label, seed);
    let redis = RedisServer::start();
    let w = WinStack::start("windiff", "events", &single_redis(&redis.url(), "2s"), "", seed).await;
    w.load_windows(&mut redis_connection(&redis.url()).await, w.data.times.h0).await;

    let mut generator = Gen::new(seed, w.data.times);
    let eligible: Vec<Query> = (0..300).map(|_| generator.eligible()).collect();
    let outcomes = w.run(&eligible, Expect::Oracle, None).await;
    let mut reports = failures(&eligible, &outcomes, windows_used);

    let ineligible = ineligible_queries(&w.data.times);
    let outcomes = w.run(&ineligible, Expect::View, None).await;
    reports.extend(failures(&ineligible, &outcomes, windows_not_used));

    let edges = edge_queries(&w.data);
    let outcomes = w.run(&edges, Expect::OracleIfWindowsUsed, None).await;
    reports.extend(failures(&edges, &outcomes, |_| Ok(())));

    let total = eligible.len() + ineligible.len() + edges.len();
    w.stop().await;
    assert_clean(label, seed, total, &reports);
}

/// The eligible queries, each with a `now - N minutes` bound, in sessions whose TimeZone is
/// five hours behind UTC (the database default, America/Bogota, which keeps no daylight
/// time): every spelling of now is folded in that zone as PostgreSQL compares it, so each
/// query still reads the windows and equals the oracle asked the same spelling at the same
/// instant. Folding in UTC instead fails most of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_leg_in_a_session_zone_behind_utc() {
    let label = "windows (session zone America/Bogota)";
    let seed = suite_seed(7);
    announce(label, seed);
    let redis = RedisServer::start();
    let redis_toml = single_redis(&redis.url(), "2s");
    let zone = Some(("America/Bogota", TimeDelta::hours(-5)));
    let w = WinStack::start_in_zone("winzone", "events", (&redis_toml, ""), seed, zone).await;
    w.load_windows(&mut redis_connection(&redis.url()).await, w.data.times.h0).await;

    let mut generator = Gen { relative: true, ..Gen::new(seed, w.data.times) };
    let eligible: Vec<Query> = (0..120).map(|_| generator.eligible()).collect();
    let outcomes = w.run(&eligible, Expect::Oracle, None).await;
    let reports = failures(&eligible, &outcomes, windows_used);
    w.stop().await;
    assert_clean(label, seed, eligible.len(), &reports);
}

/// 200 eligible queries while a background task loads slices of windows-only events into the
/// speed table (publishing a larger H after each) and advances W (copying speed rows to the
/// batch table in the same transaction): every answer equals the oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_leg_while_h_and_w_advance() {
    let label = "windows (H and W advancing)";
    let seed = suite_seed(2);
    announce(label, seed);
    let redis = RedisServer::start();
    let w = WinStack::start("winmove", "events", &single_redis(&redis.url(), "2s"), "", seed).await;
    w.load_windows(&mut redis_connection(&redis.url()).await, w.data.times.h0).await;

    let queries: Vec<Query> = {
        let mut generator = Gen::new(seed, w.data.times);
        (0..200).map(|_| generator.eligible()).collect()
    };
    let mover = Mover::new(&w, &redis.url(), seed).await;
    let moves = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let run_then_stop = async {
        let outcomes = w.run(&queries, Expect::Oracle, Some(&moves)).await;
        stop.store(true, Ordering::Relaxed);
        outcomes
    };
    let (outcomes, (h_moves, w_moves)) = tokio::join!(run_then_stop, mover.run(&moves, &stop));
    let reports = failures(&queries, &outcomes, windows_used);
    print_seen(label, &outcomes);
    w.stop().await;
    assert_clean(label, seed, queries.len(), &reports);
    assert!(h_moves >= 10, "H was published only {h_moves} times during the run");
    assert!(w_moves >= 10, "W moved only {w_moves} times during the run");
}

/// Redis stopped mid-run: eligible queries still succeed, degraded, equal to the warehouse view
/// (the speed table without the upper bound); after a restart and a rewrite of the windows they
/// use windows again by themselves and equal the oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_to_the_speed_table_then_recovers() {
    let label = "windows (Redis stopped and restarted)";
    let seed = suite_seed(3);
    announce(label, seed);
    let mut redis = RedisServer::start();
    let redis_toml = single_redis(&redis.url(), "1s");
    let w =
        WinStack::start("windown", "events", &redis_toml, "[cache]\nenabled = false\n", seed).await;
    let h0 = w.data.times.h0;
    w.load_windows(&mut redis_connection(&redis.url()).await, h0).await;
    let queries: Vec<Query> = {
        let mut generator = Gen::new(seed, w.data.times);
        (0..20).map(|_| generator.eligible()).collect()
    };
    let mut reports =
        failures(&queries, &w.run(&queries, Expect::Oracle, None).await, windows_used);

    redis.stop();
    let down = w.run(&queries, Expect::View, None).await;
    reports.extend(failures(&queries, &down, degraded_fallback));

    redis.restart();
    w.load_windows(&mut redis_connection(&redis.url()).await, h0).await;
    if let Err(e) = w.await_windows(Duration::from_secs(5)).await {
        reports.push(format!("--- windows did not come back after Redis restarted: {e}"));
    }
    let back = w.run(&queries, Expect::Oracle, None).await;
    reports.extend(failures(&queries, &back, windows_used));

    w.stop().await;
    assert_clean(label, seed, 3 * queries.len(), &reports);
}

/// The window leg against a three-master Redis Cluster (buckets spread over the slots):
/// eligible queries equal the oracle and read windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_leg_on_a_redis_cluster() {
    let label = "windows (Redis Cluster)";
    let seed = suite_seed(4);
    announce(label, seed);
    let cluster = RedisCluster::start();
    let seeds = cluster.seeds();
    let table = unique_table_name("wcl");
    let w = WinStack::start("wincluster", &table, &cluster_redis(&seeds, "2s"), "", seed).await;
    let client = redis::cluster::ClusterClient::new(seeds.clone())
        .unwrap_or_else(|e| panic!("cluster client for {seeds:?}: {e}"));
    let mut con = client
        .get_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the Redis Cluster {seeds:?}: {e}"));
    w.load_windows(&mut con, w.data.times.h0).await;

    let queries: Vec<Query> = {
        let mut generator = Gen::new(seed, w.data.times);
        (0..16).map(|_| generator.eligible()).collect()
    };
    let reports = failures(&queries, &w.run(&queries, Expect::Oracle, None).await, windows_used);

    w.clear_windows(&mut con).await;
    w.stop().await;
    drop(cluster);
    assert_clean(label, seed, queries.len(), &reports);
}

/// TLS settings of a test Redis: a server certificate for 127.0.0.1 from `ca`, ACL user
/// `tidemark`.
fn redis_tls(ca: &TestCa) -> RedisTls {
    RedisTls {
        cert: ca.server("redis", "DNS:localhost,IP:127.0.0.1"),
        ca: ca.cert(),
        user: "tidemark".into(),
        password: format!("redis-pw-{:x}", std::process::id()),
    }
}

/// `[redis]` lines for that user with `password`, trusting `root`.
fn tls_auth_toml(user: &str, password: &str, root: &std::path::Path) -> String {
    format!(
        "username = \"{user}\"\npassword = \"{password}\"\n[redis.tls]\nroot_cert = \"{}\"\n",
        root.display()
    )
}

/// The test's own TLS connection to a single node as the ACL user.
async fn tls_connection(url: &str, tls: &RedisTls) -> MultiplexedConnection {
    tls_client(url, tls)
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Redis at {url} over TLS: {e}"))
}

fn tls_client(url: &str, tls: &RedisTls) -> redis::Client {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info().expect("redis url");
    let settings =
        info.redis_settings().clone().set_username(&tls.user).set_password(&tls.password);
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(&tls.ca).expect("CA file")),
    };
    redis::Client::build_with_tls(info.set_redis_settings(settings), certs)
        .unwrap_or_else(|e| panic!("TLS client for {url}: {e}"))
}

/// GET `path` of a server: status and body text.
async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) =
        common::send(common::http_client().get(format!("http://{addr}{path}"))).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of `tidemark_redis_up{use="<role>"}` in /metrics.
async fn redis_up(addr: SocketAddr, role: &str) -> Option<f64> {
    let (_, text) = get_text(addr, "/metrics").await;
    let prefix = format!("tidemark_redis_up{{use=\"{role}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok())
}

/// Waits (bounded) until `tidemark_redis_up{use="<role>"}` is `want`.
async fn await_redis_up(addr: SocketAddr, role: &str, want: f64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = redis_up(addr, role).await;
        if got == Some(want) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("tidemark_redis_up{{use=\"{role}\"}} is {got:?}, not {want}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis like ElastiCache with in-transit encryption and RBAC (TLS only, an ACL user): window
/// answers equal the oracle and read windows; tidemark subscribes to the watermark channel and
/// announces a move of W over TLS as that user. A wrong password and an untrusted certificate
/// each give degraded answers equal to the warehouse view, never an error, with the reason on
/// /readyz (still 200) and `tidemark_redis_up` 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_leg_over_tls_with_an_acl_user() {
    let label = "windows (TLS, ACL user)";
    let seed = suite_seed(5);
    announce(label, seed);
    let (ca, other_ca) = (TestCa::new("redis test CA"), TestCa::new("another CA"));
    let tls = redis_tls(&ca);
    let redis = RedisServer::start_tls(&tls);
    let good =
        single_redis(&redis.url(), "2s") + &tls_auth_toml(&tls.user, &tls.password, &ca.cert());
    let mut w = WinStack::start("wintls", "events", &good, "", seed).await;
    let mut con = tls_connection(&redis.url(), &tls).await;
    w.load_windows(&mut con, w.data.times.h0).await;
    let queries: Vec<Query> = {
        let mut generator = Gen::new(seed, w.data.times);
        (0..12).map(|_| generator.eligible()).collect()
    };
    let mut reports =
        failures(&queries, &w.run(&queries, Expect::Oracle, None).await, windows_used);

    let wrong_password =
        single_redis(&redis.url(), "1s") + &tls_auth_toml(&tls.user, "wrong", &ca.cert());
    let untrusted = single_redis(&redis.url(), "1s")
        + &tls_auth_toml(&tls.user, &tls.password, &other_ca.cert());
    for (what, toml, cause) in [
        ("wrong password", wrong_password, "authentication failed"),
        ("untrusted certificate", untrusted, "UnknownIssuer"),
    ] {
        let config = common::parse_config(&config_toml(&w.db_name, &w.table, &toml, ""));
        let bad = Server::start(Arc::new(config)).await.expect("starts without Redis");
        let good_addr = std::mem::replace(&mut w.addr, bad.http_addr.expect("http"));
        let outcomes = w.run(&queries[..6], Expect::View, None).await;
        reports.extend(
            failures(&queries[..6], &outcomes, degraded_fallback)
                .into_iter()
                .map(|r| format!("{what}: {r}")),
        );
        let (status, ready) = get_text(w.addr, "/readyz").await;
        if status != 200 || !ready.contains("windows unavailable") || !ready.contains(cause) {
            reports.push(format!("--- {what}: /readyz {status}: {ready}"));
        }
        reports.extend(
            await_redis_up(w.addr, "windows", 0.0).await.err().map(|e| format!("--- {what}: {e}")),
        );
        assert!(!ready.contains(&tls.password), "/readyz shows the Redis password");
        w.addr = good_addr;
        bad.shutdown().await;
    }
    // last: it moves W (the answers above are checked at W0)
    reports.extend(watermark_push_over_tls(&w, &redis.url(), &tls, &mut con).await.err());
    w.stop().await;
    assert_clean(label, seed, queries.len() + 12, &reports);
}

/// tidemark is subscribed to the watermark channel (PUBSUB NUMSUB) and announces a move of W
/// on it, both over TLS as the ACL user; /readyz and /metrics say Redis is up.
async fn watermark_push_over_tls(
    w: &WinStack,
    url: &str,
    tls: &RedisTls,
    con: &mut MultiplexedConnection,
) -> Result<(), String> {
    let channel = "tidemark:watermarks";
    await_redis_up(w.addr, "watermark_push", 1.0).await?;
    await_redis_up(w.addr, "windows", 1.0).await?;
    let (numsub, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(con)
        .await
        .map_err(|e| format!("PUBSUB NUMSUB: {e}"))?;
    if numsub != channel || n < 1 {
        return Err(format!("--- tidemark is not subscribed to {channel}: {n}"));
    }
    let mut pubsub = tls_client(url, tls).get_async_pubsub().await.map_err(|e| e.to_string())?;
    pubsub.subscribe(channel).await.map_err(|e| e.to_string())?;
    common::set_watermark(&w.db, &w.table, w.data.times.w_max).await;
    let mut messages = pubsub.on_message();
    let message =
        tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut messages))
            .await;
    match message {
        Ok(Some(m))
            if m.get_payload::<String>().is_ok_and(|t| t.eq_ignore_ascii_case(&w.table)) => {}
        other => return Err(format!("--- no announcement of the new W on {channel}: {other:?}")),
    }
    let (status, ready) = get_text(w.addr, "/readyz").await;
    match (status, ready.trim()) {
        (200, "ready") => Ok(()),
        _ => Err(format!("--- /readyz with Redis up: {status} {ready}")),
    }
}

/// The window leg on a three-master Redis Cluster in TLS mode (`tls-cluster yes`) with an ACL
/// user on every node: eligible queries equal the oracle and read windows; the watermark
/// push is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_leg_on_a_tls_cluster() {
    let label = "windows (Redis Cluster, TLS)";
    let seed = suite_seed(6);
    announce(label, seed);
    let ca = TestCa::new("redis cluster test CA");
    let tls = redis_tls(&ca);
    let cluster = RedisCluster::start_tls(&tls);
    let seeds = cluster.seeds();
    let toml = cluster_redis(&seeds, "2s") + &tls_auth_toml(&tls.user, &tls.password, &ca.cert());
    let w = WinStack::start("wintlscl", "events", &toml, "", seed).await;
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(&tls.ca).unwrap()),
    };
    let client = redis::cluster::ClusterClient::builder(seeds.clone())
        .username(tls.user.clone())
        .password(tls.password.clone())
        .tls(redis::TlsMode::Secure)
        .certs(certs)
        .build()
        .unwrap_or_else(|e| panic!("cluster client for {seeds:?}: {e}"));
    let mut con = client
        .get_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the TLS cluster {seeds:?}: {e}"));
    w.load_windows(&mut con, w.data.times.h0).await;
    let queries: Vec<Query> = {
        let mut generator = Gen::new(seed, w.data.times);
        (0..12).map(|_| generator.eligible()).collect()
    };
    let mut reports =
        failures(&queries, &w.run(&queries, Expect::Oracle, None).await, windows_used);
    reports.extend(await_redis_up(w.addr, "watermark_push", 1.0).await.err());
    w.stop().await;
    drop(cluster);
    assert_clean(label, seed, queries.len(), &reports);
}

// ---------------------------------------------------------------------------------------------
// Seeds, reporting
// ---------------------------------------------------------------------------------------------

/// The seed: `TIDEMARK_WINDOWS_SEED` when set, else drawn from the clock.
fn suite_seed(salt: u64) -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => common::parse_seed(&text)
            .unwrap_or_else(|| panic!("{SEED_ENV}={text:?} is not an unsigned integer")),
        Err(_) => common::time_seed() ^ salt,
    }
}

/// Writes a line past the test harness's output capture.
fn always_print(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn announce(label: &str, seed: u64) {
    always_print(&format!("{label}: seed {seed} ({SEED_ENV}={seed} reproduces this run)"));
}

/// Prints the reports (at most [`MAX_REPORTS`]) and fails when there are any.
fn assert_clean(label: &str, seed: u64, total: usize, reports: &[String]) {
    for r in reports.iter().take(MAX_REPORTS) {
        eprintln!("{r}");
    }
    always_print(&format!("{label}: {total} queries, {} failures", reports.len()));
    assert!(
        reports.is_empty(),
        "{label}: {} of {total} queries failed; {SEED_ENV}={seed} reproduces this run \
         (reports above)",
        reports.len()
    );
}

/// The distinct W and H the answers reported (shows that the run saw both move).
fn print_seen(label: &str, outcomes: &[Result<Fresh, String>]) {
    let ok = || outcomes.iter().filter_map(|o| o.as_ref().ok());
    let ws: std::collections::BTreeSet<String> =
        ok().filter_map(|f| f.raw["batch_watermark"].as_str().map(str::to_string)).collect();
    let hs: std::collections::BTreeSet<String> = ok().filter_map(|f| f.hwm.clone()).collect();
    always_print(&format!(
        "{label}: answers saw {} distinct W and {} distinct H",
        ws.len(),
        hs.len()
    ));
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

fn us(n: i64) -> TimeDelta {
    TimeDelta::microseconds(n)
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn mins(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

/// Microseconds since 1970 (a timestamp without time zone taken as UTC).
fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// `t` rounded down to a multiple of `step` seconds.
fn align(t: NaiveDateTime, step: i64) -> NaiveDateTime {
    t - us(micros(t).rem_euclid(step * 1_000_000))
}

fn is_aligned(t: NaiveDateTime) -> bool {
    micros(t).rem_euclid(BUCKET_SECS * 1_000_000) == 0
}

/// The instants of one test's data. Events span `[start, end)`, `end` being the start of the
/// test truncated to the second.
#[derive(Debug, Clone, Copy)]
struct Times {
    start: NaiveDateTime,
    end: NaiveDateTime,
    /// Initial batch watermark (about 27 minutes ago, not on a bucket boundary).
    w0: NaiveDateTime,
    /// Initial high-water mark (about 13 minutes ago, not on a bucket boundary).
    h0: NaiveDateTime,
    /// The speed table initially holds every event in `[w0, loaded0)` (`loaded0 > h0`).
    loaded0: NaiveDateTime,
    /// The moving test never moves W past this (it stays below every S).
    w_max: NaiveDateTime,
    /// ... nor loads the speed table (so H) past this.
    loaded_max: NaiveDateTime,
}

impl Times {
    fn now() -> Times {
        let end = align(Utc::now().naive_utc(), 1);
        let start = align(end - mins(40), 60);
        let w0 = start + mins(13) + us(437_251);
        let h0 = start + mins(27) + secs(3) + us(250_017);
        Times {
            start,
            end,
            w0,
            h0,
            loaded0: h0 + secs(95) + us(1_234),
            w_max: w0 + mins(8),
            loaded_max: end - mins(4),
        }
    }

    /// S at the start: H aligned down to a bucket boundary; the window range begins there.
    fn window_from(&self) -> NaiveDateTime {
        align(self.h0, BUCKET_SECS)
    }

    /// Above every S any test reaches (H never passes `loaded_max`).
    fn window_from_max(&self) -> NaiveDateTime {
        align(self.loaded_max, BUCKET_SECS) + secs(BUCKET_SECS)
    }
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// One event.
#[derive(Debug, Clone)]
struct Event {
    id: i64,
    time: NaiveDateTime,
    country: Option<&'static str>,
    device: Option<&'static str>,
    cents: Option<i64>,
}

fn sql_text(v: Option<&str>) -> String {
    v.map_or_else(|| "NULL".to_string(), |s| format!("'{}'", s.replace('\'', "''")))
}

impl Event {
    fn random(rng: &mut Rng, id: i64, time: NaiveDateTime) -> Event {
        let country = if rng.chance(0.1) { None } else { Some(*rng.pick(COUNTRIES)) };
        let device = if rng.chance(0.08) { None } else { Some(*rng.pick(DEVICES)) };
        let cents = match rng.below(100) {
            0..=7 => None,
            8..=11 => {
                let v = rng.range(10_000_000_000, 99_999_999_999);
                Some(if rng.chance(0.4) { -v } else { v })
            }
            _ => Some(rng.range(-50_000, 500_000)),
        };
        Event { id, time, country, device, cents }
    }

    fn sql_tuple(&self) -> String {
        format!(
            "({}, {}, {}, {}, {})",
            self.id,
            ts_lit(self.time),
            sql_text(self.country),
            sql_text(self.device),
            self.cents.map_or_else(|| "NULL".to_string(), cents_text)
        )
    }

    /// The event as the stream processor writes it into the windows.
    fn window_event(&self, measures: &[String]) -> WindowEvent {
        WindowEvent {
            time_micros: micros(self.time),
            dims: vec![self.country.map(str::to_string), self.device.map(str::to_string)],
            values: measures.iter().map(|m| if m == "count" { None } else { self.cents }).collect(),
        }
    }
}

/// Event times: the seams (at and a microsecond around W, H, S and the loaded mark), bursts of
/// events at one instant, about 8% exactly on bucket boundaries, the rest anywhere; shuffled.
fn event_times(t: &Times, n: usize, rng: &mut Rng) -> Vec<NaiveDateTime> {
    let s0 = t.window_from();
    let mut times = vec![
        t.start,
        t.w0,
        t.w0 - us(1),
        t.w0 + us(1),
        t.h0,
        t.h0 - us(1),
        s0,
        s0 - us(1),
        s0 + secs(BUCKET_SECS),
        t.loaded0,
        t.loaded0 - us(1),
        t.end - us(1),
    ];
    for _ in 0..25 {
        let at = Layout::random_between(rng, t.start, t.end);
        for _ in 0..rng.range(2, 5) {
            times.push(at);
        }
    }
    while times.len() < n {
        let at = Layout::random_between(rng, t.start, t.end);
        times.push(if rng.chance(0.08) { align(at, BUCKET_SECS) } else { at });
    }
    rng.shuffle(&mut times);
    times
}

/// The events of one test and where they are.
struct WinData {
    times: Times,
    events: Vec<Event>,
    /// Event times, sorted (to tell whether an instant range holds an event).
    sorted: Vec<NaiveDateTime>,
}

impl WinData {
    /// Creates `<t>_oracle`, `<t>_batch`, `<t>_speed` and the watermark table and fills them.
    /// Does not set the watermark.
    async fn build(db: &Client, table: &str, seed: u64) -> WinData {
        let times = Times::now();
        let mut rng = Rng::new(seed ^ 0x7769_6E64_6F77_7321);
        let events: Vec<Event> = event_times(&times, N_EVENTS, &mut rng)
            .into_iter()
            .enumerate()
            .map(|(i, at)| Event::random(&mut rng, i as i64 + 1, at))
            .collect();
        let ddl = "(event_id bigint, event_time timestamp, country text, device text, \
                   amount numeric(12,2))";
        for suffix in ["oracle", "batch", "speed"] {
            common::exec(db, &format!("CREATE TABLE {table}_{suffix} {ddl}")).await;
        }
        for chunk in events.chunks(500) {
            let rows: Vec<String> = chunk.iter().map(Event::sql_tuple).collect();
            let sql = format!("INSERT INTO {table}_oracle VALUES {}", rows.join(",\n"));
            common::exec(db, &sql).await;
        }
        let (w0, h0, loaded0) = (ts_lit(times.w0), ts_lit(times.h0), ts_lit(times.loaded0));
        common::exec(
            db,
            &format!(
                "INSERT INTO {table}_batch SELECT * FROM {table}_oracle WHERE event_time < {w0};
                 INSERT INTO {table}_speed SELECT * FROM {table}_oracle
                   WHERE event_time >= {w0} AND event_time < {loaded0};
                 -- junk: changed copies of newer events in the batch table (never below W)
                 INSERT INTO {table}_batch
                   SELECT event_id, event_time, country, 'junk', amount + 1 FROM {table}_oracle
                   WHERE event_time >= {h0} AND event_id % 5 = 0;
                 -- junk: changed copies of older events in the speed table (below W)
                 INSERT INTO {table}_speed
                   SELECT event_id, event_time, 'JUNK', device, amount - 7 FROM {table}_oracle
                   WHERE event_time < {w0} AND event_id % 4 = 0;
                 -- junk: rows without a time belong to no layer
                 INSERT INTO {table}_batch VALUES (-1, NULL, 'DE', 'junk-null-time', 1.00);
                 INSERT INTO {table}_speed VALUES (-2, NULL, 'FR', 'junk-null-time', 2.00);
                 CREATE TABLE IF NOT EXISTS {WATERMARK_TABLE} (
                   table_name text PRIMARY KEY, batch_watermark timestamp, updated_at timestamptz);
                 ANALYZE;"
            ),
        )
        .await;
        let mut sorted: Vec<NaiveDateTime> = events.iter().map(|e| e.time).collect();
        sorted.sort();
        WinData { times, events, sorted }
    }

    /// Whether some event lies in `[from, to]`.
    fn any_event_within(&self, from: NaiveDateTime, to: NaiveDateTime) -> bool {
        let i = self.sorted.partition_point(|t| *t < from);
        self.sorted.get(i).is_some_and(|t| *t <= to)
    }

    /// What the windows hold: every event from W0 on, plus a junk bucket far below H that no
    /// window leg may read.
    fn window_events(&self, measures: &[String]) -> Vec<WindowEvent> {
        let mut out: Vec<WindowEvent> = self
            .events
            .iter()
            .filter(|e| e.time >= self.times.w0)
            .map(|e| e.window_event(measures))
            .collect();
        let junk_at = micros(self.times.start + secs(95));
        for k in 0..3 {
            out.push(WindowEvent {
                time_micros: junk_at + k,
                dims: vec![Some("JUNK".to_string()), Some("junk".to_string())],
                values: measures
                    .iter()
                    .map(|m| if m == "count" { None } else { Some(123_456) })
                    .collect(),
            });
        }
        out
    }
}

/// A logical table name no other run uses (cluster keys are per table).
fn unique_table_name(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

// ---------------------------------------------------------------------------------------------
// Configuration and Redis connections
// ---------------------------------------------------------------------------------------------

/// `[redis]` for one node.
fn single_redis(url: &str, timeout: &str) -> String {
    format!("[redis]\nurl = \"{url}\"\ntimeout = \"{timeout}\"\n")
}

/// `[redis]` for a cluster: the first seed as `url`, the others as `nodes`.
fn cluster_redis(seeds: &[String], timeout: &str) -> String {
    let nodes: Vec<String> = seeds.iter().skip(1).map(|s| format!("\"{s}\"")).collect();
    format!(
        "[redis]\ncluster = true\nurl = \"{}\"\nnodes = [{}]\ntimeout = \"{timeout}\"\n",
        seeds[0],
        nodes.join(", ")
    )
}

/// HTTP on a free port, the test database, `redis_toml`, `extra` sections, and the logical
/// table with its windows.
fn config_toml(db: &str, table: &str, redis_toml: &str, extra: &str) -> String {
    let mut toml = common::config_toml(&common::db_url(db), "pool_size = 8", false);
    toml.push_str(&format!("\n{redis_toml}\n{extra}\n"));
    toml.push_str(&format!(
        "[[tables]]\nname = \"{table}\"\ntime_column = \"event_time\"\n\
         batch_table = \"{table}_batch\"\nspeed_table = \"{table}_speed\"\n\n{WINDOWS_TOML}"
    ));
    toml
}

async fn redis_connection(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("redis url {url}: {e}"));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Redis at {url}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// A running tidemark with windows
// ---------------------------------------------------------------------------------------------

/// What a test compares tidemark's answer with.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `<t>_oracle`: every event once (windows-only events included).
    Oracle,
    /// The warehouse view `<t>`: batch rows before W and every speed row from W on.
    View,
    /// The oracle when the answer says it used windows, else the view.
    OracleIfWindowsUsed,
}

/// `freshness` of one answer, the parts these tests look at.
#[derive(Debug, Clone)]
struct Fresh {
    used: bool,
    buckets: i64,
    reason: Option<String>,
    hwm: Option<String>,
    from: Option<String>,
    degraded: bool,
    windows_leg: bool,
    raw: Value,
}

fn fresh(body: &Value) -> Fresh {
    let f = &body["freshness"];
    let w = &f["windows"];
    Fresh {
        used: w["used"].as_bool().unwrap_or(false),
        buckets: w["buckets"].as_i64().unwrap_or(0),
        reason: w["reason"].as_str().map(str::to_string),
        hwm: w["high_water_mark"].as_str().map(str::to_string),
        from: w["from"].as_str().map(str::to_string),
        degraded: f["degraded"].as_bool().unwrap_or(false),
        windows_leg: f["legs"]
            .as_array()
            .is_some_and(|legs| legs.iter().any(|l| l["name"] == "windows")),
        raw: f.clone(),
    }
}

/// Windows answered the query (and Redis was fine).
fn windows_used(f: &Fresh) -> Result<(), String> {
    if !f.used {
        return Err(format!("windows were not used (reason {:?})", f.reason));
    }
    if f.buckets < 1 {
        return Err("the windows leg read no bucket".into());
    }
    if !f.windows_leg {
        return Err("no leg named \"windows\" in freshness.legs".into());
    }
    if f.hwm.is_none() || f.from.is_none() {
        return Err("windows used without high_water_mark or from".into());
    }
    if f.degraded {
        return Err("degraded although Redis is up".into());
    }
    Ok(())
}

/// A query windows cannot answer: not used, with a reason.
fn windows_not_used(f: &Fresh) -> Result<(), String> {
    if f.used {
        return Err("windows were used for a query they cannot answer".into());
    }
    match f.reason.as_deref() {
        Some(r) if !r.trim().is_empty() => Ok(()),
        _ => Err("windows.reason does not say why windows were not used".into()),
    }
}

/// Redis is down: the answer comes from the whole speed table and says it is degraded.
fn degraded_fallback(f: &Fresh) -> Result<(), String> {
    if f.used {
        return Err("windows.used is true while Redis is down".into());
    }
    if !f.degraded {
        return Err("freshness.degraded is false while Redis is down".into());
    }
    Ok(())
}

/// Failure reports: queries that failed to compare, and answers that break `rule`.
fn failures(
    queries: &[Query],
    outcomes: &[Result<Fresh, String>],
    rule: fn(&Fresh) -> Result<(), String>,
) -> Vec<String> {
    queries
        .iter()
        .zip(outcomes)
        .filter_map(|(q, outcome)| match outcome {
            Err(report) => Some(report.clone()),
            Ok(f) => rule(f).err().map(|why| {
                format!(
                    "--- {why}\n  sql: {}\n  freshness: {}",
                    q.sql,
                    common::truncate(&f.raw.to_string(), 800)
                )
            }),
        })
        .collect()
}

/// The test database with the data, tidemark in front of it, and one reference connection per
/// concurrent query.
struct WinStack {
    table: String,
    db_name: String,
    db: Client,
    refs: Vec<Client>,
    data: WinData,
    windows: WindowsConfig,
    writer: WindowsWriter,
    server: Server,
    addr: SocketAddr,
    http: reqwest::Client,
    seed: u64,
    /// How far the session zone (the database default) is ahead of UTC.
    zone_offset: TimeDelta,
}

impl WinStack {
    /// Fresh database with the data of `seed`, watermark W0, `tidemark setup`, and a server
    /// on a free port. The windows are empty until [`WinStack::load_windows`].
    async fn start(
        prefix: &str,
        table: &str,
        redis_toml: &str,
        extra_toml: &str,
        seed: u64,
    ) -> WinStack {
        Self::start_in_zone(prefix, table, (redis_toml, extra_toml), seed, None).await
    }

    /// [`WinStack::start`] with the database's default TimeZone set to `(zone, offset)` (a
    /// zone without daylight time) before tidemark and the reference sessions connect.
    async fn start_in_zone(
        prefix: &str,
        table: &str,
        (redis_toml, extra_toml): (&str, &str),
        seed: u64,
        zone: Option<(&str, TimeDelta)>,
    ) -> WinStack {
        let (db_name, db) = common::fresh_db(prefix).await;
        if let Some((name, _)) = zone {
            common::exec(&db, &format!("ALTER DATABASE \"{db_name}\" SET TimeZone = '{name}'"))
                .await;
        }
        let data = WinData::build(&db, table, seed).await;
        // Set before setup, so setup keeps our W0 instead of choosing its own.
        common::set_watermark(&db, table, data.times.w0).await;
        let config = common::parse_config(&config_toml(&db_name, table, redis_toml, extra_toml));
        let redis_url = config.redis.as_ref().map(|r| r.url.clone()).unwrap_or_default();
        assert!(
            redis_toml.contains(&format!("url = \"{redis_url}\"")),
            "the test's Redis was replaced by {redis_url:?} (unset TIDEMARK_REDIS_URL)"
        );
        let windows = config.tables[0].windows.clone().expect("the logical table has windows");
        let writer = WindowsWriter::new(table, &windows)
            .unwrap_or_else(|e| panic!("windows writer for {table}: {e}"));
        let _report = tidemark::setup::run(&config)
            .await
            .unwrap_or_else(|e| panic!("tidemark setup failed: {e}"));
        let server = Server::start(Arc::new(config))
            .await
            .unwrap_or_else(|e| panic!("tidemark server did not start: {e}"));
        let addr = server.http_addr.expect("the HTTP listener is bound");
        let mut refs = Vec::with_capacity(CONCURRENCY);
        for _ in 0..CONCURRENCY {
            refs.push(common::connect(&db_name).await);
        }
        WinStack {
            table: table.to_string(),
            db_name,
            db,
            refs,
            data,
            windows,
            writer,
            server,
            addr,
            http: common::http_client(),
            seed,
            zone_offset: zone.map(|(_, o)| o).unwrap_or_default(),
        }
    }

    /// Writes the windows (every event from W0 on, plus junk far below H) and publishes `h`.
    async fn load_windows<C: ConnectionLike + Send>(&self, con: &mut C, h: NaiveDateTime) {
        let events = self.data.window_events(&self.windows.measures);
        let applied = self
            .writer
            .write(&mut *con, &events)
            .await
            .unwrap_or_else(|e| panic!("writing the windows failed: {e}"));
        assert_eq!(applied, events.len(), "the writer applied only part of the events");
        self.writer
            .publish_hwm(&mut *con, micros(h))
            .await
            .unwrap_or_else(|e| panic!("publishing H failed: {e}"));
    }

    /// Deletes this table's bucket keys and H (the cluster outlives the test).
    async fn clear_windows<C: ConnectionLike + Send>(&self, con: &mut C) {
        let events = self.data.window_events(&self.windows.measures);
        let mut starts: Vec<i64> =
            events.iter().map(|e| self.writer.bucket_of(e.time_micros)).collect();
        starts.sort_unstable();
        starts.dedup();
        let mut keys: Vec<String> = starts.iter().map(|s| bucket_key(&self.table, *s)).collect();
        keys.push(hwm_key(&self.table));
        for key in &keys {
            let _: redis::RedisResult<i64> =
                redis::cmd("DEL").arg(key).query_async(&mut *con).await;
        }
    }

    /// Shuts the server down and drops the database.
    async fn stop(self) {
        let WinStack { db_name, db, refs, server, .. } = self;
        server.shutdown().await;
        drop(refs);
        drop(db);
        common::drop_db(&db_name).await;
    }

    /// Runs every query ([`CONCURRENCY`] at a time) and checks it against `expect`. With
    /// `paced`, query `i` first waits until the mover has made `i / 10` moves, so the moves
    /// interleave with the whole run.
    async fn run(
        &self,
        queries: &[Query],
        expect: Expect,
        paced: Option<&AtomicUsize>,
    ) -> Vec<Result<Fresh, String>> {
        let mut outcomes: Vec<(usize, Result<Fresh, String>)> =
            stream::iter(queries.iter().enumerate())
                .map(move |(i, q)| async move {
                    if let Some(moves) = paced {
                        wait_for_moves(moves, i / 10).await;
                    }
                    (i, self.check(i, q, expect).await)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        outcomes.sort_by_key(|(i, _)| *i);
        outcomes.into_iter().map(|(_, o)| o).collect()
    }

    /// Runs one query through tidemark and on the reference, and compares the answers. A
    /// query with a bound relative to now is asked again when an event lies between the
    /// bound before and after the call (the answer would then depend on the exact instant).
    async fn check(&self, i: usize, q: &Query, expect: Expect) -> Result<Fresh, String> {
        let db = &self.refs[i % self.refs.len()];
        let sql = q.tidemark_sql(&self.table, self.zone_offset);
        for _ in 0..5 {
            let before = Utc::now().naive_utc();
            let call = common::query(&self.http, self.addr, &sql, &[]);
            let (status, body) = tokio::time::timeout(QUERY_TIMEOUT, call)
                .await
                .map_err(|_| self.report(q, &format!("no answer within {QUERY_TIMEOUT:?}")))?;
            let after = Utc::now().naive_utc();
            if let Some(n) = q.rel_minutes {
                // An answer from the answer cache was computed (and its now() pinned) up to one
                // cache slot (speed_ttl, 1 s here) before this call.
                let cached = body["freshness"]["cache"] == "hit";
                let earliest = if cached { before - TimeDelta::milliseconds(1100) } else { before };
                if self.data.any_event_within(earliest - mins(n), after - mins(n)) {
                    if cached {
                        tokio::time::sleep(Duration::from_millis(1100)).await;
                    }
                    continue;
                }
            }
            if status != 200 {
                let body = common::truncate(&body.to_string(), 800);
                return Err(self.report(q, &format!("HTTP {status}: {body}")));
            }
            let tm = common::answer_from_json(&body).map_err(|e| self.report(q, &e))?;
            let f = fresh(&body);
            let oracle_table = format!("{}_oracle", self.table);
            let target = match expect {
                Expect::Oracle => &oracle_table,
                Expect::View => &self.table,
                Expect::OracleIfWindowsUsed if f.used => &oracle_table,
                Expect::OracleIfWindowsUsed => &self.table,
            };
            let reference =
                common::oracle(db, &q.reference_sql(target, before, self.zone_offset), &[])
                    .await
                    .map_err(|e| {
                    self.report(q, &format!("the reference query on {target} failed: {e}"))
                })?;
            return match common::compare_answers(&reference, &tm, q.ordered) {
                Ok(()) => Ok(f),
                Err(reason) => Err(self.mismatch(q, target, &reason, &reference, &tm, &f)),
            };
        }
        Err(self.report(q, "the bound relative to now kept passing over events"))
    }

    fn report(&self, q: &Query, what: &str) -> String {
        format!(
            "--- seed {}{}\n  sql: {}\n  {}",
            self.seed,
            if q.ordered { " (ordered)" } else { "" },
            q.tidemark_sql(&self.table, self.zone_offset),
            common::truncate(what, 1500)
        )
    }

    fn mismatch(
        &self,
        q: &Query,
        target: &str,
        reason: &str,
        reference: &Answer,
        tm: &Answer,
        f: &Fresh,
    ) -> String {
        self.report(
            q,
            &format!(
                "{reason}\n  reference ({target}): {}\n  tidemark: {}\n  freshness: {}",
                common::render_answer(reference, 6),
                common::render_answer(tm, 6),
                common::truncate(&f.raw.to_string(), 600)
            ),
        )
    }

    /// Polls a window-eligible query until its answer uses windows and equals the oracle.
    async fn await_windows(&self, limit: Duration) -> Result<(), String> {
        let probe = Query::new(format!(
            "SELECT country, count(*) AS n, sum(amount) AS total FROM {T} GROUP BY 1"
        ));
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.check(0, &probe, Expect::Oracle).await {
                Ok(f) if f.used => return Ok(()),
                Ok(f) => format!("windows not used: {}", common::truncate(&f.raw.to_string(), 600)),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("still after {limit:?}; last answer:\n{last}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until `moves` reaches `n` (bounded: a stuck mover shows in the move counts).
async fn wait_for_moves(moves: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while moves.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Moving H and W
// ---------------------------------------------------------------------------------------------

/// The stream processor and the batch pipeline of the moving test, with their own connections.
struct Mover {
    db: Client,
    redis: MultiplexedConnection,
    writer: WindowsWriter,
    table: String,
    times: Times,
    rng: Rng,
}

impl Mover {
    async fn new(w: &WinStack, redis_url: &str, seed: u64) -> Mover {
        Mover {
            db: common::connect(&w.db_name).await,
            redis: redis_connection(redis_url).await,
            writer: WindowsWriter::new(&w.table, &w.windows)
                .unwrap_or_else(|e| panic!("windows writer: {e}")),
            table: w.table.clone(),
            times: w.data.times,
            rng: Rng::new(seed ^ 0x6D6F_7665),
        }
    }

    /// Until `stop`: every ~15 ms loads the next slice of events into the speed table and then
    /// publishes H up to where the table is complete, and advances W (copying speed rows to the
    /// batch table and updating the watermark in one transaction). Each round adds one to
    /// `moves`. Returns how often H and W moved.
    async fn run(mut self, moves: &AtomicUsize, stop: &AtomicBool) -> (usize, usize) {
        let t = self.times;
        let table = self.table.clone();
        let (mut w, mut loaded) = (t.w0, t.loaded0);
        let (mut h_moves, mut w_moves) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(15)).await;
            let next_loaded = (loaded + secs(2) + us(self.rng.range(0, 999_999))).min(t.loaded_max);
            if next_loaded > loaded {
                let sql = format!(
                    "INSERT INTO {table}_speed SELECT * FROM {table}_oracle \
                     WHERE event_time >= {} AND event_time < {}",
                    ts_lit(loaded),
                    ts_lit(next_loaded)
                );
                common::exec(&self.db, &sql).await;
                // Every event before `loaded` was in the speed table already; H lags a slice.
                self.writer
                    .publish_hwm(&mut self.redis, micros(loaded))
                    .await
                    .unwrap_or_else(|e| panic!("publishing H failed: {e}"));
                loaded = next_loaded;
                h_moves += 1;
            }
            let next_w = (w + secs(2) + us(self.rng.range(0, 999_999))).min(t.w_max);
            if next_w > w {
                let sql = format!(
                    "BEGIN;
                     INSERT INTO {table}_batch SELECT * FROM {table}_speed
                       WHERE event_time >= {lo} AND event_time < {hi};
                     UPDATE {WATERMARK_TABLE} SET batch_watermark = {hi}, updated_at = now()
                       WHERE table_name = '{table}';
                     COMMIT;",
                    lo = ts_lit(w),
                    hi = ts_lit(next_w)
                );
                common::exec(&self.db, &sql).await;
                w = next_w;
                w_moves += 1;
            }
            moves.fetch_add(1, Ordering::Relaxed);
        }
        (h_moves, w_moves)
    }
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

/// One query over `{T}` (and maybe `{NOW}`); `ordered` when its ORDER BY is a total order.
#[derive(Debug, Clone)]
struct Query {
    sql: String,
    ordered: bool,
    /// N of a time bound `{NOW} - interval 'N minutes'`.
    rel_minutes: Option<i64>,
}

impl Query {
    fn new(sql: String) -> Query {
        Query { sql, ordered: false, rel_minutes: None }
    }

    fn ordered(mut self) -> Query {
        self.ordered = true;
        self
    }

    /// How "now" is spelled in this query: one of the ways users write it, chosen by the
    /// query text.
    fn spelling(&self) -> &'static str {
        const SPELLINGS: &[&str] = &[
            "(now() AT TIME ZONE 'UTC')",
            "localtimestamp",
            "now()::timestamp",
            "now()",
            "current_timestamp",
            "CAST(now() AS timestamp)",
        ];
        SPELLINGS[self.sql.bytes().map(usize::from).sum::<usize>() % SPELLINGS.len()]
    }

    /// "Now" as [`Query::spelling`] says, in a session whose zone is `offset` ahead of UTC:
    /// the spellings that meet the timestamp column in the session zone get `- offset`, so
    /// that every spelling means the UTC wall clock and the bound lies where the generator
    /// put it (only an exact fold in the session zone then cuts the windows right).
    fn spelled(&self, offset: TimeDelta) -> String {
        let s = self.spelling();
        if s.contains("AT TIME ZONE") || offset.is_zero() {
            return s.to_string();
        }
        format!("({s} - interval '{} minutes')", offset.num_minutes())
    }

    /// The SQL tidemark is asked, "now" [`Query::spelled`].
    fn tidemark_sql(&self, table: &str, offset: TimeDelta) -> String {
        self.sql.replace(T, table).replace(NOW, &self.spelled(offset))
    }

    /// The same spelling with the instant `now` (UTC) written out, read by the reference
    /// session in the same time zone as tidemark's.
    fn reference_sql(&self, target: &str, now: NaiveDateTime, offset: TimeDelta) -> String {
        let instant = format!("CAST('{}+00' AS timestamptz)", common::ts_text(now));
        let spelled = self
            .spelled(offset)
            .replace("now()", &instant)
            .replace("current_timestamp", &instant)
            .replace("localtimestamp", &format!("CAST({instant} AS timestamp)"));
        self.sql.replace(T, target).replace(NOW, &spelled)
    }
}

/// Group keys the windows keep: dimensions, and time truncated to a multiple of the bucket.
const DIM_KEYS: &[(&str, &str)] = &[("country", "c"), ("device", "dev")];
const TIME_KEYS: &[(&str, &str)] = &[
    ("date_trunc('minute', event_time)", "m"),
    ("date_trunc('hour', event_time)", "hr"),
    ("date_trunc('day', event_time)", "dy"),
];

/// Aggregates (and expressions over them) the windows can answer; all exact.
const AGGS: &[(&str, &str)] = &[
    ("count(*)", "n"),
    ("count(amount)", "n_amount"),
    ("sum(amount)", "total"),
    ("min(amount)", "lo"),
    ("max(amount)", "hi"),
    ("avg(amount)", "mean"),
    ("round(avg(amount), 2)", "mean2"),
    ("sum(amount) / nullif(count(*), 0)", "per_event"),
    ("max(amount) - min(amount)", "spread"),
    ("count(*) - count(amount)", "no_amount"),
    ("coalesce(sum(amount), 0) + 1", "total_plus"),
    ("CASE WHEN count(*) > 20 THEN 'many' ELSE 'few' END", "size"),
    ("abs(sum(amount))", "abs_total"),
    ("count(*) * 100 / nullif(count(amount), 0)", "pct_amount"),
];

const DIRECTIONS: &[&str] =
    &["", " ASC", " DESC", " NULLS FIRST", " DESC NULLS LAST", " ASC NULLS LAST"];

/// A select item: the i-th group key or the i-th aggregate.
#[derive(Debug, Clone, Copy)]
enum Item {
    Key(usize),
    Agg(usize),
}

/// Generator of window-eligible queries whose time range always reaches into the window range
/// (so every one of them must read buckets).
struct Gen {
    rng: Rng,
    times: Times,
    /// Every query gets a `now - N minutes` lower bound.
    relative: bool,
}

impl Gen {
    fn new(seed: u64, times: Times) -> Gen {
        Gen { rng: Rng::new(seed ^ 0x5EED_0000_5EED), times, relative: false }
    }

    /// Group keys (none, dimensions, at most one time truncation), 1-3 aggregates, an AND of
    /// eligible predicates, sometimes HAVING, and sometimes a total ORDER BY with LIMIT/OFFSET.
    fn eligible(&mut self) -> Query {
        let ndims = self.rng.below(3) as usize;
        let mut keys: Vec<(&str, &str)> =
            self.rng.sample(DIM_KEYS, ndims).into_iter().copied().collect();
        if self.rng.chance(0.4) {
            keys.push(*self.rng.pick(TIME_KEYS));
        }
        self.rng.shuffle(&mut keys);
        let naggs = 1 + self.rng.below(3) as usize;
        let aggs: Vec<(&str, &str)> = self.rng.sample(AGGS, naggs).into_iter().copied().collect();
        let mut items: Vec<Item> =
            (0..keys.len()).map(Item::Key).chain((0..aggs.len()).map(Item::Agg)).collect();
        if !keys.is_empty() && self.rng.chance(0.2) {
            let first_agg = items.remove(keys.len());
            items.insert(0, first_agg);
        }

        let mut select = Vec::new();
        let mut group_refs = vec![String::new(); keys.len()];
        let mut order_refs = vec![String::new(); keys.len()];
        let mut agg_ref = None;
        for (pos, item) in items.iter().enumerate() {
            let ordinal = (pos + 1).to_string();
            let (expr, alias) = match *item {
                Item::Key(k) => keys[k],
                Item::Agg(a) => aggs[a],
            };
            let aliased = self.rng.chance(0.45);
            select.push(if aliased { format!("{expr} AS {alias}") } else { expr.to_string() });
            match *item {
                Item::Key(k) => {
                    group_refs[k] = self.key_ref(expr, alias, aliased, &ordinal);
                    order_refs[k] = self.key_ref(expr, alias, aliased, &ordinal);
                }
                Item::Agg(_) if agg_ref.is_none() => {
                    agg_ref = Some(if aliased { alias.to_string() } else { ordinal });
                }
                Item::Agg(_) => {}
            }
        }

        let (preds, rel_minutes) = self.where_preds();
        let mut sql = format!("SELECT {} FROM {T}", select.join(", "));
        if !preds.is_empty() {
            sql.push_str(&format!(" WHERE {}", preds.join(" AND ")));
        }
        let mut ordered = false;
        if !keys.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", group_refs.join(", ")));
            if self.rng.chance(0.25) {
                let having = self.having();
                sql.push_str(&format!(" HAVING {having}"));
            }
            if self.rng.chance(0.5) {
                ordered = true;
                let mut order = Vec::new();
                if let Some(r) = agg_ref.filter(|_| self.rng.chance(0.3)) {
                    order.push(format!("{r}{}", self.direction()));
                }
                for k in &order_refs {
                    order.push(format!("{k}{}", self.direction()));
                }
                let limit = self.limit_offset();
                sql.push_str(&format!(" ORDER BY {}{limit}", order.join(", ")));
            }
        }
        Query { sql, ordered, rel_minutes }
    }

    /// A group key by expression, alias (when aliased) or ordinal.
    fn key_ref(&mut self, expr: &str, alias: &str, aliased: bool, ordinal: &str) -> String {
        match self.rng.below(3) {
            0 => expr.to_string(),
            1 if aliased => alias.to_string(),
            _ => ordinal.to_string(),
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

    /// Time bounds and 0-2 dimension predicates, shuffled; and N of a bound relative to now.
    fn where_preds(&mut self) -> (Vec<String>, Option<i64>) {
        let (mut preds, rel_minutes) = self.time_preds();
        let ndims = match self.rng.below(20) {
            0..=8 => 0,
            9..=16 => 1,
            _ => 2,
        };
        for _ in 0..ndims {
            let p = self.dim_pred();
            preds.push(p);
        }
        self.rng.shuffle(&mut preds);
        (preds, rel_minutes)
    }

    /// A multiple of the bucket in `[lo, hi]` (`lo` rounded up).
    fn aligned_between(&mut self, lo: NaiveDateTime, hi: NaiveDateTime) -> NaiveDateTime {
        let first = align(lo + us(BUCKET_SECS * 1_000_000 - 1), BUCKET_SECS);
        let steps = ((hi - first).num_seconds() / BUCKET_SECS).max(0);
        first + secs(BUCKET_SECS * self.rng.range(0, steps))
    }

    /// A lower bound (none; on a bucket boundary anywhere; anywhere before the window range,
    /// W and a microsecond either side included; or `now - N minutes`, before the window range
    /// too) and sometimes an upper bound `<` a bucket boundary above every S of the run.
    fn time_preds(&mut self) -> (Vec<String>, Option<i64>) {
        let t = self.times;
        let mut preds = Vec::new();
        let mut rel_minutes = None;
        let mut lower = t.start - mins(1);
        let pick = self.rng.below(20);
        match if self.relative { 19 } else { pick } {
            0..=5 => {}
            6..=12 => {
                lower = self.aligned_between(t.start - mins(1), t.end - secs(30));
                preds.push(format!("event_time >= {}", ts_lit(lower)));
            }
            13..=16 => {
                let any = Layout::random_between(
                    &mut self.rng,
                    t.start - mins(1),
                    t.window_from() - mins(1),
                );
                let at = *self.rng.pick(&[t.w0, t.w0 - us(1), t.w0 + us(1), any, any]);
                let op = *self.rng.pick(&[">=", ">"]);
                preds.push(format!("event_time {op} {}", ts_lit(at)));
            }
            _ => {
                // The window range starts about 13 minutes ago; 20 minutes leaves room for a
                // slow run.
                let n = *self.rng.pick(&[20_i64, 25, 30, 45, 90]);
                let op = *self.rng.pick(&[">=", ">"]);
                preds.push(format!("event_time {op} {NOW} - interval '{n} minutes'"));
                rel_minutes = Some(n);
            }
        }
        if self.rng.chance(0.45) {
            let from = lower.max(t.window_from_max()) + secs(30);
            let upper = self.aligned_between(from, t.end + mins(2));
            preds.push(format!("event_time < {}", ts_lit(upper)));
        }
        (preds, rel_minutes)
    }

    /// `=`, `<>`, `IN`, `IS NULL`, `IS NOT NULL` on a dimension.
    fn dim_pred(&mut self) -> String {
        let country = *self.rng.pick(&["US", "DE", "日本", "FR", "nowhere"]);
        let device = *self.rng.pick(&["ios", "web", "Web", "", "o''brien", "📱 phone", "Ünïcødé"]);
        match self.rng.below(12) {
            0 => format!("country = '{country}'"),
            1 => format!("country <> '{country}'"),
            2 => "country IN ('DE', 'FR', '日本')".to_string(),
            3 => "country IS NULL".to_string(),
            4 => "country IS NOT NULL".to_string(),
            5 => format!("device = '{device}'"),
            6 => format!("device <> '{device}'"),
            7 => "device IN ('ios', 'android', '📱 phone')".to_string(),
            8 => "device IS NULL".to_string(),
            9 => "device IS NOT NULL".to_string(),
            10 => format!("country IN ('{country}')"),
            _ => format!("device IN ('{device}', '')"),
        }
    }

    fn having(&mut self) -> String {
        match self.rng.below(5) {
            0 => format!("count(*) > {}", self.rng.range(0, 40)),
            1 => format!("sum(amount) > {}", cents_text(self.rng.range(-100_000, 2_000_000))),
            2 => format!("max(amount) < {}", cents_text(self.rng.range(0, 600_000))),
            3 => format!("avg(amount) > {}", cents_text(self.rng.range(-10_000, 300_000))),
            _ => format!(
                "count(amount) >= 1 AND min(amount) < {}",
                cents_text(self.rng.range(-50_000, 100_000))
            ),
        }
    }
}

/// Queries the windows cannot answer (DISTINCT, a non-dimension filter or key, a bound inside
/// the window range off the bucket grid, a unit finer than the bucket, OR, LIKE, raw rows).
fn ineligible_queries(t: &Times) -> Vec<Query> {
    let recent = align(t.end - mins(5), BUCKET_SECS);
    let off_grid = ts_lit(recent + secs(3) + us(250_000));
    let recent = ts_lit(recent);
    vec![
        Query::new(format!(
            "SELECT count(DISTINCT device) AS devices FROM {T} WHERE event_time >= {recent}"
        )),
        Query::new(format!(
            "SELECT country, count(*) AS n, sum(amount) AS total FROM {T} \
             WHERE amount > 100.00 GROUP BY 1 ORDER BY 1"
        ))
        .ordered(),
        Query::new(format!(
            "SELECT device, count(*) AS n FROM {T} WHERE event_time >= {off_grid} GROUP BY 1"
        )),
        Query::new(format!(
            "SELECT date_trunc('second', event_time) AS sec, count(*) AS n FROM {T} \
             WHERE event_time >= {recent} GROUP BY 1"
        )),
        Query::new(format!("SELECT lower(device) AS ldev, count(*) AS n FROM {T} GROUP BY 1")),
        Query::new(format!("SELECT max(event_id) AS top_id, count(*) AS n FROM {T}")),
        Query::new(format!(
            "SELECT country, count(*) AS n FROM {T} WHERE country LIKE 'D%' GROUP BY 1"
        )),
        Query::new(format!("SELECT count(*) AS n FROM {T} WHERE country = 'DE' OR device = 'ios'")),
        Query::new(format!(
            "SELECT event_id, amount FROM {T} WHERE event_time >= {recent} ORDER BY event_id"
        ))
        .ordered(),
    ]
}

/// Bounds that include or exclude the boundary instant itself (`<=`, `>`, BETWEEN, `=`) at a
/// bucket boundary inside the window range where an event sits exactly. Windows cannot tell
/// that instant from the rest of its bucket; whatever the plan, the answer must be right.
fn edge_queries(data: &WinData) -> Vec<Query> {
    let t = data.times;
    let floor = t.window_from_max() + secs(BUCKET_SECS);
    let at = data
        .events
        .iter()
        .map(|e| e.time)
        .filter(|x| is_aligned(*x) && *x > floor && *x < t.end)
        .min()
        .unwrap_or_else(|| align(t.end - mins(2), BUCKET_SECS));
    let (b, w) = (ts_lit(at), ts_lit(t.w0));
    vec![
        Query::new(format!(
            "SELECT count(*) AS n, sum(amount) AS total FROM {T} WHERE event_time <= {b}"
        )),
        Query::new(format!(
            "SELECT country, count(*) AS n FROM {T} WHERE event_time > {b} GROUP BY 1"
        )),
        Query::new(format!(
            "SELECT count(*) AS n, max(amount) AS hi FROM {T} WHERE event_time BETWEEN {w} AND {b}"
        )),
        Query::new(format!(
            "SELECT device, min(amount) AS lo FROM {T} \
             WHERE event_time >= {b} AND event_time <= {b} GROUP BY 1"
        )),
        Query::new(format!("SELECT count(*) AS n FROM {T} WHERE event_time = {b}")),
    ]
}
