//! Shared helpers for tidemark's integration tests.
//!
//! - [`fresh_db`] creates a throw-away database (UTF8, C collation, UTC) and [`drop_db`] removes it;
//! - [`build_layout`] fills it with the exactly-once layout every suite uses: `events_oracle` holds
//!   every event once, `events_batch` every event before W1 and `events_speed` every event from W0 on
//!   (so `[W0, W1)` is in both), plus junk rows on the wrong side of the watermark in both tables;
//! - [`start_stack`] runs `tidemark setup` and starts a server on a free port;
//! - [`Rng`] is a tiny seeded PRNG (splitmix64);
//! - [`query`], [`oracle`] and [`compare_answers`] run a query on both sides and compare them.
#![allow(dead_code)]

pub mod certs;
pub mod clients;
pub mod pgserver;
pub mod raw;
pub mod redis;

use std::cmp::Ordering;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{NaiveDate, NaiveDateTime, TimeDelta, Timelike};
use serde_json::Value;
use tidemark::config::Config;
use tidemark::server::Server;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Where the tests expect PostgreSQL (scripts/test.sh starts it there).
pub const PG_ADDR: &str = "127.0.0.1:5432";
/// Name of the watermark table in every test database.
pub const WATERMARK_TABLE: &str = "tidemark_watermarks";
/// The watermark may be set to `W0 + k * (W1 - W0) / WM_STEPS` for `k` in `0..=WM_STEPS`;
/// events sit exactly at every fourth of these instants.
pub const WM_STEPS: i64 = 2000;
/// Columns of `events_batch`, `events_speed` and `events_oracle`, in order.
pub const EVENT_COLUMNS: &str =
    "id, event_time, user_id, country, device, amount, qty, score, big, flag, day";

const EVENT_COLUMNS_DDL: &str = "id int8, event_time timestamp, user_id int4, country text, \
     device text, amount numeric(12,2), qty int2, score float8, big int8, flag bool, day date";

/// The dimension table: `GB` has no events, `ZZ` has no region, and the events also use
/// countries (`XX`, `日本`) that have no row here.
const DIMENSION_SQL: &str =
    "CREATE TABLE countries (code text PRIMARY KEY, region text, population int8);
INSERT INTO countries VALUES
  ('US', 'Americas', 331900000), ('DE', 'Europe', 83200000), ('FR', 'Europe', 67800000),
  ('JP', 'Asia', 125100000), ('BR', 'Americas', 214300000), ('IN', 'Asia', 1408000000),
  ('CH', 'Zürich–Ost', 8700000), ('GB', 'Europe', 67300000), ('ZZ', NULL, NULL);";

const EVENT_COUNTRIES: &[&str] =
    &["US", "US", "US", "DE", "DE", "FR", "JP", "BR", "IN", "CH", "ZZ", "XX", "日本"];
const DEVICES: &[&str] = &[
    "ios",
    "ios",
    "android",
    "android",
    "web",
    "Web",
    "IOS",
    "Ünïcødé",
    "東京",
    "📱 phone",
    "",
    "o'brien",
];

/// Rows as text: `None` is SQL NULL.
pub type Rows = Vec<Vec<Option<String>>>;

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

/// Connects to a database on the test PostgreSQL; panics (never skips) when it is unreachable.
pub async fn connect(dbname: &str) -> Client {
    let conn = format!("host=127.0.0.1 port=5432 user=postgres dbname={dbname} connect_timeout=10");
    match tokio_postgres::connect(&conn, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
        Err(e) => panic!(
            "PostgreSQL not reachable on {PG_ADDR} (database {dbname}: {e}): \
             run scripts/test.sh, which starts it"
        ),
    }
}

static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates a uniquely named database (`tmtest_<prefix>_<pid>_<nanos>c<n>`, UTF8, C collation,
/// time zone UTC) and returns its name and a client connected to it. Databases left behind by
/// test processes that no longer run are dropped first.
pub async fn fresh_db(prefix: &str) -> (String, Client) {
    let admin = connect("postgres").await;
    drop_stale_dbs(&admin).await;
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(16)
        .collect::<String>()
        .to_lowercase();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = DB_COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
    let pid = std::process::id();
    let name = format!("tmtest_{prefix}_{pid}_{nanos}c{n}");
    exec(
        &admin,
        &format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ),
    )
    .await;
    exec(&admin, &format!("ALTER DATABASE {name} SET timezone = 'UTC'")).await;
    let client = connect(&name).await;
    (name, client)
}

/// Best effort `DROP DATABASE ... WITH (FORCE)`; call it at the end of a test.
pub async fn drop_db(name: &str) {
    let admin = connect("postgres").await;
    if let Err(e) =
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
    {
        eprintln!("warning: could not drop test database {name}: {}", pg_error_text(&e));
    }
}

/// Drops `tmtest_*` databases whose creating process is gone (a test that panicked before
/// its cleanup). Linux only; anything else keeps them.
async fn drop_stale_dbs(admin: &Client) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(rows) = admin
        .query("SELECT datname::text FROM pg_database WHERE datname LIKE 'tmtest\\_%'", &[])
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.rsplit('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ =
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

/// Runs SQL (possibly several statements) and panics with the SQLSTATE on failure.
pub async fn exec(db: &Client, sql: &str) {
    if let Err(e) = db.batch_execute(sql).await {
        let head: String = sql.chars().take(300).collect();
        panic!("test SQL failed: {}\n  in: {head}", pg_error_text(&e));
    }
}

/// `SQLSTATE xxxxx: message` for a database error, the plain message otherwise.
pub fn pg_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// The libpq URL of a test database.
pub fn db_url(db: &str) -> String {
    format!("postgres://postgres@{PG_ADDR}/{db}")
}

/// Config TOML: HTTP on a free port, the given warehouse URL plus extra `[warehouse]` lines,
/// and (when `with_events`) the logical table `events`.
pub fn config_toml(url: &str, warehouse_extra: &str, with_events: bool) -> String {
    let dialect =
        if warehouse_extra.contains("dialect =") { "" } else { "dialect = \"postgres\"\n" };
    let mut toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n\n[warehouse]\nurl = \"{url}\"\n{dialect}\
         watermark_table = \"{WATERMARK_TABLE}\"\nwatermark_poll = \"100ms\"\n{warehouse_extra}\n"
    );
    if with_events {
        toml.push_str(
            "\n[[tables]]\nname = \"events\"\ntime_column = \"event_time\"\n\
             batch_table = \"events_batch\"\nspeed_table = \"events_speed\"\n",
        );
    }
    toml
}

/// Parses a test config, panicking with the text when tidemark rejects it.
pub fn parse_config(toml: &str) -> Config {
    Config::from_toml_str(toml).unwrap_or_else(|e| panic!("test config rejected: {e}\n{toml}"))
}

/// The standard test config for a database holding the layout.
pub fn config_for(db: &str) -> Config {
    parse_config(&config_toml(&db_url(db), "", true))
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------------------------

/// A small seeded PRNG (splitmix64): deterministic for a seed, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for this seed.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "Rng::range({lo}, {hi})");
        let span = (i128::from(hi) - i128::from(lo) + 1) as u128;
        (i128::from(lo) + (u128::from(self.next_u64()) % span) as i128) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `k` distinct elements (fewer when the slice is shorter), in random order.
    pub fn sample<'a, T>(&mut self, items: &'a [T], k: usize) -> Vec<&'a T> {
        let mut idx: Vec<usize> = (0..items.len()).collect();
        self.shuffle(&mut idx);
        idx.into_iter().take(k).map(|i| &items[i]).collect()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A seed from the clock and the process id (for runs without an explicit seed).
pub fn time_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut rng = Rng::new((nanos as u64) ^ (u64::from(std::process::id()) << 32));
    // Keep seeds short enough to copy by hand.
    rng.next_u64() % 1_000_000_000_000
}

/// Parses a seed written in decimal or as `0x` hex.
pub fn parse_seed(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

// ---------------------------------------------------------------------------------------------
// Time helpers
// ---------------------------------------------------------------------------------------------

/// A timestamp from its parts (panics on an invalid date).
pub fn at(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|date| date.and_hms_opt(h, mi, s))
        .expect("valid date")
}

/// PostgreSQL's text form of a `timestamp`: `YYYY-MM-DD HH:MM:SS[.ffffff]`, trailing zeros trimmed.
pub fn ts_text(t: NaiveDateTime) -> String {
    let base = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let micros = t.nanosecond() / 1000;
    if micros == 0 {
        base
    } else {
        let frac = format!("{micros:06}");
        format!("{base}.{}", frac.trim_end_matches('0'))
    }
}

/// A typed SQL literal: `TIMESTAMP '...'`.
pub fn ts_lit(t: NaiveDateTime) -> String {
    format!("TIMESTAMP '{}'", ts_text(t))
}

/// A numeric(…,2) literal for an amount in cents, e.g. `-12.05`.
pub fn cents_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

// ---------------------------------------------------------------------------------------------
// The exactly-once layout
// ---------------------------------------------------------------------------------------------

/// The instants of the layout: events span `[start, end)`, the batch table holds every event
/// before `w1`, the speed table every event from `w0` on.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// First possible event time.
    pub start: NaiveDateTime,
    /// End of the event range (exclusive).
    pub end: NaiveDateTime,
    /// Lowest correct watermark (the initial one).
    pub w0: NaiveDateTime,
    /// Highest correct watermark.
    pub w1: NaiveDateTime,
}

impl Layout {
    /// 2024-03-01 .. 2024-03-31, W0 = 2024-03-20, W1 = 2024-03-24.
    pub fn standard() -> Layout {
        Layout {
            start: at(2024, 3, 1, 0, 0, 0),
            end: at(2024, 3, 31, 0, 0, 0),
            w0: at(2024, 3, 20, 0, 0, 0),
            w1: at(2024, 3, 24, 0, 0, 0),
        }
    }

    /// `W0 + k * (W1 - W0) / WM_STEPS`, exact to the microsecond.
    pub fn wm_step(&self, k: i64) -> NaiveDateTime {
        let span = (self.w1 - self.w0).num_microseconds().expect("span fits in i64 microseconds");
        self.w0 + TimeDelta::microseconds(span / WM_STEPS * k)
    }

    /// A random instant in `[from, to)`: whole seconds mostly, sometimes milli- or microseconds.
    pub fn random_between(rng: &mut Rng, from: NaiveDateTime, to: NaiveDateTime) -> NaiveDateTime {
        let secs = (to - from).num_seconds().max(1);
        let frac = match rng.below(10) {
            0..=6 => 0,
            7 | 8 => rng.range(0, 999) * 1000,
            _ => rng.range(0, 999_999),
        };
        from + TimeDelta::seconds(rng.range(0, secs - 1)) + TimeDelta::microseconds(frac)
    }
}

/// Creates `countries`, `events_oracle`, `events_batch`, `events_speed` and the watermark table,
/// and fills them with `n_events` seeded events (at least the special instants) in the
/// exactly-once layout, junk included. Does not set the watermark.
pub async fn build_layout(db: &Client, n_events: usize, seed: u64) -> Layout {
    let layout = Layout::standard();
    let mut rng = Rng::new(seed);
    exec(db, DIMENSION_SQL).await;
    for table in ["events_oracle", "events_batch", "events_speed"] {
        exec(db, &format!("CREATE TABLE {table} ({EVENT_COLUMNS_DDL})")).await;
    }
    let times = event_times(&layout, n_events, &mut rng);
    let mut id: i64 = 0;
    for chunk in times.chunks(500) {
        let mut rows = Vec::with_capacity(chunk.len());
        for t in chunk {
            id += 1;
            rows.push(event_row(&mut rng, id, *t));
        }
        let sql =
            format!("INSERT INTO events_oracle ({EVENT_COLUMNS}) VALUES {}", rows.join(",\n"));
        exec(db, &sql).await;
    }
    exec(db, &layer_sql(&layout)).await;
    layout
}

/// Derives the batch and speed tables from the oracle and adds the junk every query must ignore.
fn layer_sql(layout: &Layout) -> String {
    let w0 = ts_lit(layout.w0);
    let w1 = ts_lit(layout.w1);
    format!(
        "INSERT INTO events_batch SELECT * FROM events_oracle WHERE event_time < {w1};
         INSERT INTO events_speed SELECT * FROM events_oracle WHERE event_time >= {w0};
         -- junk: changed copies of later events in the batch table (at or after W1)
         INSERT INTO events_batch
           SELECT id, event_time, user_id, country, device, amount + 1, qty, score, big, flag, day
           FROM events_oracle
           WHERE event_time >= {w1} AND (id % 3 = 0 OR event_time < {w1} + interval '1 hour');
         -- junk: changed copies of earlier events in the speed table (before W0)
         INSERT INTO events_speed
           SELECT id, event_time, user_id, country, 'junk', amount - 7, qty, score, big, flag, day
           FROM events_oracle
           WHERE event_time < {w0} AND (id % 4 = 0 OR event_time >= {w0} - interval '1 hour');
         -- junk: rows without a time belong to no layer
         INSERT INTO events_batch ({EVENT_COLUMNS})
           VALUES (-1, NULL, 1, 'DE', 'junk-null-time', 1.00, 999, 1.5, 1, true, NULL);
         INSERT INTO events_speed ({EVENT_COLUMNS})
           VALUES (-2, NULL, 2, 'FR', 'junk-null-time', 2.00, 999, 2.5, 2, false, NULL);
         CREATE TABLE {WATERMARK_TABLE} (
           table_name text PRIMARY KEY, batch_watermark timestamp, updated_at timestamptz);
         ANALYZE;"
    )
}

/// Event times: the special instants (exactly at W0 and W1, a microsecond either side, and
/// every fourth watermark step) plus random instants up to `n`, shuffled.
fn event_times(layout: &Layout, n: usize, rng: &mut Rng) -> Vec<NaiveDateTime> {
    let us = TimeDelta::microseconds;
    let (w0, w1) = (layout.w0, layout.w1);
    let mut times =
        vec![w0, w0, w0, w1, w1, w1, w0 - us(1), w0 - us(1), w1 - us(1), w0 + us(1), w1 + us(1)];
    times.extend((4..WM_STEPS).step_by(4).map(|k| layout.wm_step(k)));
    while times.len() < n {
        times.push(Layout::random_between(rng, layout.start, layout.end));
    }
    rng.shuffle(&mut times);
    times
}

/// `None` with probability 5%, else `Some(f(rng))`.
fn maybe<T>(rng: &mut Rng, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
    if rng.chance(0.05) {
        None
    } else {
        Some(f(rng))
    }
}

fn sql_value<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "NULL".to_string(), |v| v.to_string())
}

fn sql_text(v: Option<&str>) -> String {
    v.map_or_else(|| "NULL".to_string(), |s| format!("'{}'", s.replace('\'', "''")))
}

/// One event as a SQL tuple: NULLs everywhere, negative and large numbers, unicode text.
fn event_row(rng: &mut Rng, id: i64, t: NaiveDateTime) -> String {
    let user_id = maybe(rng, |r| {
        if r.chance(0.02) {
            i64::from(*r.pick(&[i32::MAX, -7, 0]))
        } else {
            r.range(1, 2000)
        }
    });
    let country = maybe(rng, |r| *r.pick(EVENT_COUNTRIES));
    let device = maybe(rng, |r| *r.pick(DEVICES));
    let amount = maybe(rng, |r| {
        let cents = if r.chance(0.05) {
            let v = r.range(10_000_000_000, 99_999_999_999);
            if r.chance(0.4) {
                -v
            } else {
                v
            }
        } else {
            r.range(-50_000, 500_000)
        };
        cents_text(cents)
    });
    let qty = maybe(rng, |r| if r.chance(0.01) { 32_000 } else { r.range(-100, 1000) });
    let score = maybe(rng, |r| {
        if r.chance(0.3) {
            r.range(-500, 10_000) as f64 / 10.0
        } else {
            r.unit() * 1050.0 - 50.0
        }
    });
    let big = maybe(rng, |r| match r.below(10) {
        0..=3 => r.range(3_500_000_000_000_000_000, 4_600_000_000_000_000_000),
        4 | 5 => -r.range(3_500_000_000_000_000_000, 4_600_000_000_000_000_000),
        _ => r.range(-1_000_000, 1_000_000),
    });
    let flag = maybe(rng, |r| r.chance(0.5));
    let day = maybe(rng, |_| format!("DATE '{}'", t.date()));
    format!(
        "({id}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        ts_lit(t),
        sql_value(user_id),
        sql_text(country),
        sql_text(device),
        sql_value(amount),
        sql_value(qty),
        sql_value(score),
        sql_value(big),
        sql_value(flag),
        sql_value(day),
    )
}

/// Sets the batch watermark of a logical table (the watermark table must exist).
pub async fn set_watermark(db: &Client, table: &str, w: NaiveDateTime) {
    let sql = format!(
        "INSERT INTO {WATERMARK_TABLE} (table_name, batch_watermark, updated_at) \
         VALUES ('{table}', {}, now()) ON CONFLICT (table_name) DO UPDATE \
         SET batch_watermark = EXCLUDED.batch_watermark, updated_at = EXCLUDED.updated_at",
        ts_lit(w)
    );
    exec(db, &sql).await;
}

// ---------------------------------------------------------------------------------------------
// A running tidemark
// ---------------------------------------------------------------------------------------------

/// A test database, the tidemark server in front of it, and an HTTP client.
pub struct Stack {
    /// Name of the test database.
    pub db_name: String,
    /// A direct connection to the test database (the oracle side).
    pub db: Client,
    /// The instants of the layout.
    pub layout: Layout,
    /// The running server.
    pub server: Server,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// An HTTP client for it.
    pub http: reqwest::Client,
}

/// Fresh database with the layout (`n_events` events from `seed`), watermark W0, `tidemark
/// setup`, and a server on a free port. `warehouse_extra` adds lines to `[warehouse]`.
pub async fn start_stack(prefix: &str, n_events: usize, seed: u64, warehouse_extra: &str) -> Stack {
    start_inner(prefix, Some((n_events, seed)), warehouse_extra, "").await
}

/// [`start_stack`] with `prepare` (SQL) run on the database after the layout is built and
/// before setup and the server start (collations, database settings, functions).
pub async fn start_prepared_stack(
    prefix: &str,
    (n_events, seed): (usize, u64),
    warehouse_extra: &str,
    prepare: &str,
) -> Stack {
    start_inner(prefix, Some((n_events, seed)), warehouse_extra, prepare).await
}

/// Fresh empty database and a server with no logical tables.
pub async fn start_bare_stack(prefix: &str, warehouse_extra: &str) -> Stack {
    start_inner(prefix, None, warehouse_extra, "").await
}

async fn start_inner(
    prefix: &str,
    events: Option<(usize, u64)>,
    warehouse_extra: &str,
    prepare: &str,
) -> Stack {
    let (db_name, db) = fresh_db(prefix).await;
    let layout = Layout::standard();
    if let Some((n_events, seed)) = events {
        build_layout(&db, n_events, seed).await;
        // Set before setup, so setup keeps our W0 instead of choosing its own.
        set_watermark(&db, "events", layout.w0).await;
    }
    if !prepare.is_empty() {
        db.batch_execute(&prepare.replace("{db}", &db_name))
            .await
            .unwrap_or_else(|e| panic!("preparing the database failed: {e}"));
    }
    let config = parse_config(&config_toml(&db_url(&db_name), warehouse_extra, events.is_some()));
    let server = serve(config).await;
    let addr = server.http_addr.expect("the HTTP listener is bound");
    Stack { db_name, db, layout, server, addr, http: http_client() }
}

/// Runs `tidemark setup` for `config` and starts a server with it (every test's stack start).
pub async fn serve(config: Config) -> Server {
    let _report = tidemark::setup::run(&config)
        .await
        .unwrap_or_else(|e| panic!("tidemark setup failed: {e}"));
    Server::start(Arc::new(config))
        .await
        .unwrap_or_else(|e| panic!("tidemark server did not start: {e}"))
}

/// Polls until no warehouse session runs a statement matching the LIKE `pattern` (6 s at
/// most), as after a cancel; returns how many still do.
pub async fn wait_gone(db: &Client, pattern: &str) -> i64 {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active' \
               AND pid <> pg_backend_pid()";
    let mut left = 0;
    for _ in 0..60 {
        left = db.query_one(sql, &[&pattern]).await.expect("pg_stat_activity").get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    left
}

impl Stack {
    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /v1/query` with these params.
    pub async fn query(&self, sql: &str, params: &[Value]) -> (u16, Value) {
        query(&self.http, self.addr, sql, params).await
    }

    /// Shuts the server down and drops the database.
    pub async fn stop(self) {
        let Stack { db_name, db, server, .. } = self;
        server.shutdown().await;
        drop(db);
        drop_db(&db_name).await;
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An HTTP client with a generous overall timeout (a hang fails instead of blocking CI).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("reqwest client")
}

/// `POST /v1/query {"sql", "params"}`: the status and the body as JSON (a JSON string holding
/// the raw text when the body is not JSON; status 0 on a transport error).
pub async fn query(
    client: &reqwest::Client,
    addr: SocketAddr,
    sql: &str,
    params: &[Value],
) -> (u16, Value) {
    post_json(client, addr, "/v1/query", &serde_json::json!({ "sql": sql, "params": params })).await
}

/// POSTs a JSON body and returns the status and the JSON answer.
pub async fn post_json(
    client: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let (status, _, bytes) = send(client.post(format!("http://{addr}{path}")).json(body)).await;
    (status, body_json(&bytes))
}

/// GETs a path and returns the status and the JSON answer.
pub async fn get_json(client: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, bytes) = send(client.get(format!("http://{addr}{path}"))).await;
    (status, body_json(&bytes))
}

/// Sends a request: status, headers and raw body (status 0 and the error text on a transport
/// error).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            match resp.bytes().await {
                Ok(bytes) => (status, headers, bytes.to_vec()),
                Err(e) => {
                    (0, headers, format!("transport error reading the body: {e}").into_bytes())
                }
            }
        }
        Err(e) => {
            (0, reqwest::header::HeaderMap::new(), format!("transport error: {e}").into_bytes())
        }
    }
}

/// The body as JSON, or a JSON string with its (lossy) text.
pub fn body_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A header's value as text.
pub fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------------------------------------
// Answers: tidemark's JSON and the oracle's text, normalised and compared
// ---------------------------------------------------------------------------------------------

/// A result normalised to text: column (name, PostgreSQL type name) and rows.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Column names and PostgreSQL type names.
    pub columns: Vec<(String, String)>,
    /// Cells as PostgreSQL text (`t`/`f` for booleans).
    pub rows: Rows,
    /// `freshness.plan` (tidemark only).
    pub plan: Option<String>,
    /// `freshness.batch_watermark` (tidemark only).
    pub watermark: Option<String>,
}

/// A JSON cell as text: null → None, booleans → `t`/`f`, numbers and strings as written.
pub fn json_cell(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { "t" } else { "f" }.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Reads a 200 body of `/v1/query` into an [`Answer`], checking its shape.
pub fn answer_from_json(body: &Value) -> Result<Answer, String> {
    let cols =
        body["columns"].as_array().ok_or_else(|| format!("no \"columns\" array in {body}"))?;
    let mut columns = Vec::with_capacity(cols.len());
    for c in cols {
        let name = c["name"].as_str().ok_or_else(|| format!("column without a name: {c}"))?;
        let ty = c["type"].as_str().ok_or_else(|| format!("column without a type: {c}"))?;
        columns.push((name.to_string(), ty.to_string()));
    }
    let json_rows = body["rows"].as_array().ok_or_else(|| "no \"rows\" array".to_string())?;
    let mut rows = Vec::with_capacity(json_rows.len());
    for r in json_rows {
        let cells = r.as_array().ok_or_else(|| format!("a row is not an array: {r}"))?;
        if cells.len() != columns.len() {
            return Err(format!(
                "a row has {} cells for {} columns: {r}",
                cells.len(),
                columns.len()
            ));
        }
        rows.push(cells.iter().map(json_cell).collect());
    }
    let freshness = &body["freshness"];
    let plan = freshness["plan"].as_str().map(str::to_string);
    let watermark = match &freshness["batch_watermark"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    Ok(Answer { columns, rows, plan, watermark })
}

/// Runs a query directly on PostgreSQL: types from `prepare`, values as PostgreSQL's own text
/// through the simple protocol. Parameters are inlined as literals cast to the types PostgreSQL
/// inferred for them, which binds them exactly as a bound parameter would.
pub async fn oracle(client: &Client, sql: &str, params: &[Value]) -> Result<Answer, String> {
    let stmt = client.prepare(sql).await.map_err(|e| pg_error_text(&e))?;
    let columns = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().name().to_string()))
        .collect();
    let text_sql = inline_params(sql, stmt.params(), params)?;
    let messages = client.simple_query(&text_sql).await.map_err(|e| pg_error_text(&e))?;
    let rows = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect();
    Ok(Answer { columns, rows, plan: None, watermark: None })
}

/// Replaces `$n` by `'<text>'::<type>` (from the highest n down, so `$1` never eats `$10`).
pub fn inline_params(sql: &str, types: &[Type], params: &[Value]) -> Result<String, String> {
    if types.len() != params.len() {
        return Err(format!(
            "bind message supplies {} parameters, but the statement requires {}",
            params.len(),
            types.len()
        ));
    }
    let mut out = sql.to_string();
    for (i, (ty, value)) in types.iter().zip(params).enumerate().rev() {
        let literal = match value {
            Value::Null => format!("NULL::{}", ty.name()),
            Value::Bool(b) => format!("'{b}'::{}", ty.name()),
            Value::Number(n) => format!("'{n}'::{}", ty.name()),
            Value::String(s) => format!("'{}'::{}", s.replace('\'', "''"), ty.name()),
            other => return Err(format!("unsupported parameter {other}")),
        };
        out = out.replace(&format!("${}", i + 1), &literal);
    }
    Ok(out)
}

/// Whether values of this PostgreSQL type are compared with a tolerance.
pub fn is_float_type(ty: &str) -> bool {
    ty == "float4" || ty == "float8"
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// Floats agree when equal, both NaN, or within a relative 1e-9 (sums in another order).
pub fn float_eq(a: &str, b: &str) -> bool {
    match (parse_float(a), parse_float(b)) {
        (Some(x), Some(y)) => {
            x == y
                || (x.is_nan() && y.is_nan())
                || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) + 1e-12
        }
        _ => a == b,
    }
}

fn cell_eq(a: &Option<String>, b: &Option<String>, float: bool) -> bool {
    match (a, b) {
        (Some(x), Some(y)) if float => float_eq(x, y),
        _ => a == b,
    }
}

/// Orders rows by their exact columns first (as text), then by their float columns
/// (numerically), so that last-bit float differences cannot change the order.
fn row_cmp(x: &[Option<String>], y: &[Option<String>], floats: &[bool]) -> Ordering {
    for (j, float) in floats.iter().enumerate() {
        if !float {
            let o = x[j].cmp(&y[j]);
            if o != Ordering::Equal {
                return o;
            }
        }
    }
    for (j, float) in floats.iter().enumerate() {
        if *float {
            let fx = x[j].as_deref().and_then(parse_float);
            let fy = y[j].as_deref().and_then(parse_float);
            let o = match (fx, fy) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
    }
    Ordering::Equal
}

/// Compares tidemark's answer with the oracle's: column names and types exactly, rows in order
/// when `ordered` (else as multisets), exact text for every type but float4/float8.
pub fn compare_answers(oracle: &Answer, tidemark: &Answer, ordered: bool) -> Result<(), String> {
    if oracle.columns != tidemark.columns {
        return Err(format!(
            "columns differ: oracle {:?}, tidemark {:?}",
            oracle.columns, tidemark.columns
        ));
    }
    if oracle.rows.len() != tidemark.rows.len() {
        return Err(format!(
            "row counts differ: oracle {}, tidemark {}",
            oracle.rows.len(),
            tidemark.rows.len()
        ));
    }
    let floats: Vec<bool> = oracle.columns.iter().map(|(_, ty)| is_float_type(ty)).collect();
    let mut expected = oracle.rows.clone();
    let mut actual = tidemark.rows.clone();
    if !ordered {
        expected.sort_by(|x, y| row_cmp(x, y, &floats));
        actual.sort_by(|x, y| row_cmp(x, y, &floats));
    }
    for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
        if e.len() != a.len() {
            return Err(format!("row {i}: {} cells vs {}", e.len(), a.len()));
        }
        for (j, (ce, ca)) in e.iter().zip(a).enumerate() {
            if !cell_eq(ce, ca, floats[j]) {
                return Err(format!(
                    "row {i}, column {j} ({}): oracle {ce:?}, tidemark {ca:?}",
                    oracle.columns[j].0
                ));
            }
        }
    }
    Ok(())
}

/// At most `max` characters of `s` (on a char boundary), with a marker when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut} …[truncated]")
    }
}

/// A short rendering of an answer for mismatch reports.
pub fn render_answer(a: &Answer, max_rows: usize) -> String {
    let mut out = format!("columns {:?}, {} rows", a.columns, a.rows.len());
    for row in a.rows.iter().take(max_rows) {
        let cells: Vec<String> =
            row.iter().map(|c| c.clone().unwrap_or_else(|| "NULL".to_string())).collect();
        out.push_str("\n      [");
        out.push_str(&cells.join(" | "));
        out.push(']');
    }
    if a.rows.len() > max_rows {
        out.push_str("\n      ...");
    }
    truncate(&out, 2500)
}

/// The SQLSTATE of a client error, or what the error was when it carries none.
pub fn sqlstate_of(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no code: {e}"))
}

/// A pgwire client of tidemark on 127.0.0.1:`port` as `user` (with `password` when users are
/// configured); its connection task runs in the background.
pub async fn pg_client(
    port: u16,
    user: &str,
    password: Option<&str>,
) -> Result<Client, tokio_postgres::Error> {
    let mut conninfo = format!("host=127.0.0.1 port={port} user={user} dbname=x");
    if let Some(p) = password {
        conninfo.push_str(&format!(" password={p}"));
    }
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}
