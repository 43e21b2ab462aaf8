//! `tidemark demo`: a live Lambda Architecture on one PostgreSQL.
//!
//! Creates the `tidemark_demo` database with a month of history in the batch table and the
//! last hour or two in the speed table, runs setup, serves REST, pgwire and Flight SQL, and
//! simulates both pipelines until Ctrl-C:
//! - the stream processor: every 100 ms new events land in `events_stream` (the demo's
//!   Kinesis) and, at once, in the Redis windows (1 s buckets, the Lua script of
//!   docs/windows.md); every 5 s its speed-table loader moves the events older than H (now
//!   minus one second) into the speed table in one transaction and then publishes H;
//! - the batch pipeline: the watermark W advances every minute (never past H), copying rows
//!   from speed to batch in one transaction.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use redis::aio::MultiplexedConnection;
use tokio::time::MissedTickBehavior;
use tokio_postgres::{Client, NoTls, Row, Statement, Transaction};
use tracing::{debug, info, warn};

use crate::config::{Config, WindowsConfig};
use crate::error::{Error, Result};
use crate::windows::{WindowEvent, WindowsWriter};

mod banner;
mod windows_sink;
use banner::{print_banner, print_clients};
use windows_sink::*;

/// Options of `tidemark demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// URL of a database on the server where the demo database is created (needs CREATEDB).
    pub warehouse_admin_url: String,
    /// Name of the demo database.
    pub database: String,
    /// REST listen address.
    pub http: String,
    /// PostgreSQL wire protocol listen address (psql, BI tools).
    pub pg: String,
    /// Arrow Flight SQL listen address (ADBC, pandas, Polars).
    pub flight: String,
    /// Redis that holds the windows (`redis://host:port`); the demo runs on without it.
    pub redis_url: String,
    /// Historic events loaded into the batch table (spread over 30 days).
    pub events: u64,
    /// Live events per second the simulator streams (into `events_stream` and the windows).
    pub rate_per_sec: u64,
    /// How often the simulated batch pipeline advances the watermark.
    pub advance_every: Duration,
    /// How long speed rows are kept after a published watermark has passed them.
    pub grace: Duration,
    /// Drop and recreate the demo database even when it is complete.
    pub reset: bool,
    /// A TOML file of `[[users]]` tables: with it every frontend and the console ask for
    /// credentials (an API key for REST and the console).
    pub users_file: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            warehouse_admin_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            database: "tidemark_demo".into(),
            http: "127.0.0.1:8080".into(),
            pg: "127.0.0.1:5439".into(),
            flight: "127.0.0.1:50051".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            events: 1_000_000,
            rate_per_sec: 200,
            advance_every: Duration::from_secs(60),
            grace: Duration::from_secs(5 * 60),
            reset: false,
            users_file: None,
        }
    }
}

/// The logical table of the demo.
const TABLE: &str = "events";
/// Its batch layer table.
const BATCH: &str = "events_batch";
/// Its speed layer table.
const SPEED: &str = "events_speed";
/// The stream the simulated stream processor reads (the demo's Kinesis): a staging table.
const STREAM: &str = "events_stream";
/// Creates the stream in a demo database made by a version of the demo without it.
const STREAM_SQL: &str = "CREATE TABLE IF NOT EXISTS events_stream (LIKE events_speed)";
/// Dimensions of the demo table's windows, in field order.
const WINDOW_DIMENSIONS: [&str; 2] = ["country", "device"];
/// Measures of the demo table's windows, in order.
const WINDOW_MEASURES: [&str; 4] = ["count", "sum:amount", "min:amount", "max:amount"];
/// The watermark table (tidemark's default name).
const WATERMARKS: &str = "tidemark_watermarks";
/// Columns of both layer tables, in order.
const COLUMNS: &str = "event_id, event_time, user_id, country, device, page, amount, duration_ms";
/// History span: from the current hour minus 30 days up to the initial watermark
/// (the current hour minus 1 hour), in milliseconds.
const HISTORY_SPAN_MS: i64 = (30 * 24 - 1) * 3600 * 1000;
/// Simulator tick.
const TICK: Duration = Duration::from_millis(100);
/// How often the speed-table loader moves stream rows below H into the speed table.
const SPEED_LOAD_EVERY: Duration = Duration::from_secs(5);
/// How long the simulator waits before connecting to Redis again after a failure.
const REDIS_RETRY: Duration = Duration::from_secs(2);
/// At most one warning about Redis per this interval.
const REDIS_WARN_EVERY: Duration = Duration::from_secs(10);
/// How far behind now (in seconds) the simulated batch pipeline puts the new watermark.
const WATERMARK_LAG_SECS: i64 = 10;
/// How often the simulator logs how many live events it inserted.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Bound on connecting to PostgreSQL.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tables, dimension rows, id sequence and watermark table of a fresh demo database.
const SCHEMA_SQL: &str = "
CREATE TABLE events_batch (event_id bigint, event_time timestamp, user_id int, country text,
    device text, page text, amount numeric(12,2), duration_ms int);
CREATE TABLE events_speed (event_id bigint, event_time timestamp, user_id int, country text,
    device text, page text, amount numeric(12,2), duration_ms int);
CREATE TABLE events_stream (event_id bigint, event_time timestamp, user_id int, country text,
    device text, page text, amount numeric(12,2), duration_ms int);
CREATE TABLE countries (code text PRIMARY KEY, name text, region text);
INSERT INTO countries VALUES
    ('US', 'United States', 'Americas'), ('CA', 'Canada', 'Americas'),
    ('BR', 'Brazil', 'Americas'), ('DE', 'Germany', 'Europe'),
    ('GB', 'United Kingdom', 'Europe'), ('FR', 'France', 'Europe'),
    ('NL', 'Netherlands', 'Europe'), ('IN', 'India', 'Asia'),
    ('JP', 'Japan', 'Asia'), ('AU', 'Australia', 'Oceania');
CREATE SEQUENCE demo_event_id_seq;
CREATE TABLE IF NOT EXISTS tidemark_watermarks (table_name text PRIMARY KEY,
    batch_watermark timestamp, updated_at timestamptz);
";

/// Indexes and statistics, after the bulk load.
const INDEX_SQL: &str = "
CREATE INDEX events_batch_event_time_idx ON events_batch (event_time);
CREATE INDEX events_speed_event_time_idx ON events_speed (event_time);
ANALYZE events_batch; ANALYZE events_speed; ANALYZE countries;
";

/// Event ids and times of the history: $1 start, $2 count, $3 step in ms (ids 1..=$2).
const HISTORY_SRC: &str = "SELECT g AS id, $1::timestamp + ((g - 1) * $3::bigint
    + (hashint8(g + 1000003) & 2147483647) % $3::bigint) * interval '1 millisecond' AS t
    FROM generate_series(1::bigint, $2::bigint) g";

/// Event ids and times of a backfill of the speed table: $1 start, $2 count, $3 step in ms.
const BACKFILL_SRC: &str = "SELECT id, $1::timestamp + ((k - 1) * $3::bigint
    + (hashint8(id + 1000003) & 2147483647) % $3::bigint) * interval '1 millisecond' AS t
    FROM (SELECT k, nextval('demo_event_id_seq') AS id
          FROM generate_series(1::bigint, $2::bigint) k) s";

/// Event ids and times of live events: $1 count, times within the last 100 ms (UTC).
///
/// Live events are never stamped more than 100 ms in the past, so once the loader has moved
/// the stream below H = now - 1 s into the speed table, no event below H can still arrive.
const LIVE_SRC: &str = "SELECT id, (now() AT TIME ZONE 'UTC')
    - ((hashint8(id + 1000003) & 2147483647) % 100) * interval '1 millisecond' AS t
    FROM (SELECT nextval('demo_event_id_seq') AS id
          FROM generate_series(1::bigint, $1::bigint) k) s";

/// Upserts the watermark row of the demo table: $1 table name, $2 watermark.
const UPSERT_WATERMARK_SQL: &str = "INSERT INTO tidemark_watermarks
    (table_name, batch_watermark, updated_at) VALUES ($1, $2, now())
    ON CONFLICT (table_name) DO UPDATE
    SET batch_watermark = EXCLUDED.batch_watermark, updated_at = EXCLUDED.updated_at";

/// Runs the demo until Ctrl-C: prepares the database, runs setup, serves and simulates.
pub async fn run(mut opts: DemoOptions) -> Result<()> {
    validate(&opts)?;
    let url = prepare_database(&opts).await?;
    let users = match &opts.users_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read the users file {path}: {e}")))?,
        None => String::new(),
    };
    let listen = (opts.http.as_str(), opts.pg.as_str(), opts.flight.as_str());
    let config = Arc::new(demo_config(&url, listen, &opts.redis_url, &users)?);
    if let Some(redis) = &config.redis {
        opts.redis_url = redis.url.clone(); // after TIDEMARK_REDIS_URL
    }
    let windows = WindowsSink::new(&opts.redis_url, demo_windows(&config)?)?;
    crate::setup::run(&config).await?;
    let server = crate::server::Server::start(config.clone()).await?;
    let simulator = tokio::spawn(simulate(url.clone(), Simulator::new(&opts), windows));
    print_banner(server.http_addr, &url, &opts);
    print_clients(server.pg_addr, server.flight_addr);
    if let Some(http) = server.http_addr {
        println!("=== console: http://{http}/console\n");
    }
    let stopped = tokio::signal::ctrl_c().await;
    info!("demo: stopping");
    simulator.abort();
    server.shutdown().await;
    stopped.map_err(|e| Error::internal(format!("cannot wait for Ctrl-C: {e}")))
}

/// Rejects options the demo cannot honour.
fn validate(opts: &DemoOptions) -> Result<()> {
    let name_ok = opts.database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && opts.database.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if !name_ok {
        return Err(Error::Config(format!(
            "demo database name {:?} must be letters, digits and _",
            opts.database
        )));
    }
    if opts.events == 0 || opts.events > HISTORY_SPAN_MS as u64 {
        return Err(Error::Config(format!(
            "demo events must be between 1 and {HISTORY_SPAN_MS} (one per millisecond)"
        )));
    }
    if opts.advance_every.is_zero() {
        return Err(Error::Config("demo watermark advance interval must be positive".into()));
    }
    Ok(())
}

/// Connects with a bounded wait; the connection task runs until the client is dropped.
async fn connect(url: &str) -> Result<Client> {
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(url, NoTls));
    let (client, connection) = match connecting.await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(unreachable_warehouse(url, &e)),
        Err(_) => return Err(unreachable_warehouse(url, &"connection timed out")),
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "demo: warehouse connection ended");
        }
    });
    Ok(client)
}

/// The error for a PostgreSQL the demo cannot reach, with what to do about it.
fn unreachable_warehouse(url: &str, cause: &dyn std::fmt::Display) -> Error {
    Error::Unavailable(format!(
        "cannot connect to PostgreSQL at {url}: {cause}. Run scripts/demo.sh, which installs \
         and starts PostgreSQL and Redis on 127.0.0.1 and then starts the demo"
    ))
}

/// The admin URL with its database replaced by `db` (URL or key=value form).
fn with_database(url: &str, db: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return format!("{url} dbname={db}");
    };
    let (base, query) = match url[scheme_end..].find('?') {
        Some(q) => url.split_at(scheme_end + q),
        None => (url, ""),
    };
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |p| scheme_end + p);
    format!("{}/{db}{query}", &base[..authority_end])
}

/// Creates (or reuses) the demo database and returns its URL.
async fn prepare_database(opts: &DemoOptions) -> Result<String> {
    let admin = connect(&opts.warehouse_admin_url).await?;
    let url = with_database(&opts.warehouse_admin_url, &opts.database);
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&opts.database])
        .await?
        .is_some();
    if exists && !opts.reset && has_demo_tables(&url).await? {
        info!(database = %opts.database, "demo: reusing the existing demo database");
        backfill_gap(&mut connect(&url).await?, opts.events).await?;
        return Ok(url);
    }
    recreate_database(&admin, &opts.database, exists).await?;
    load(&mut connect(&url).await?, opts.events).await?;
    Ok(url)
}

/// True when the demo database has every table the demo needs and a watermark row.
async fn has_demo_tables(url: &str) -> Result<bool> {
    let client = connect(url).await?;
    let row = client
        .query_one(
            "SELECT to_regclass('public.events_batch') IS NOT NULL
                AND to_regclass('public.events_speed') IS NOT NULL
                AND to_regclass('public.countries') IS NOT NULL
                AND to_regclass('public.demo_event_id_seq') IS NOT NULL
                AND to_regclass('public.tidemark_watermarks') IS NOT NULL",
            &[],
        )
        .await?;
    if !row.try_get::<_, bool>(0)? {
        return Ok(false);
    }
    let sql = "SELECT 1 FROM tidemark_watermarks WHERE table_name = $1 \
               AND batch_watermark IS NOT NULL";
    Ok(client.query_opt(sql, &[&TABLE]).await?.is_some())
}

/// Drops the demo database when it exists, then creates it (sessions in UTC).
async fn recreate_database(admin: &Client, database: &str, exists: bool) -> Result<()> {
    if exists {
        info!(database, "demo: dropping the demo database");
        admin.batch_execute(&format!("DROP DATABASE \"{database}\" WITH (FORCE)")).await?;
    }
    info!(database, "demo: creating the demo database");
    admin.batch_execute(&format!("CREATE DATABASE \"{database}\"")).await?;
    admin.batch_execute(&format!("ALTER DATABASE \"{database}\" SET timezone TO 'UTC'")).await?;
    Ok(())
}

/// Milliseconds between two historic events when `events` fill the history span.
fn step_ms(events: u64) -> i64 {
    (HISTORY_SPAN_MS / events.max(1) as i64).max(1)
}

/// Creates the tables and loads history, speed rows and the watermark in one transaction.
async fn load(client: &mut Client, events: u64) -> Result<()> {
    let started = Instant::now();
    let tx = client.transaction().await?;
    tx.batch_execute(SCHEMA_SQL).await?;
    let row = tx
        .query_one(
            "SELECT date_trunc('hour', now() AT TIME ZONE 'UTC') - interval '30 days',
                    date_trunc('hour', now() AT TIME ZONE 'UTC') - interval '1 hour',
                    now() AT TIME ZONE 'UTC'",
            &[],
        )
        .await?;
    let (start, watermark, now): (NaiveDateTime, NaiveDateTime, NaiveDateTime) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    let step = step_ms(events);
    let history = insert_events_sql(BATCH, HISTORY_SRC);
    let loaded = tx.execute(&history, &[&start, &(events as i64), &step]).await?;
    tx.execute("SELECT setval('demo_event_id_seq', $1)", &[&(events as i64)]).await?;
    let recent = backfill(&tx, watermark, now, step).await?;
    tx.execute(UPSERT_WATERMARK_SQL, &[&TABLE, &watermark]).await?;
    tx.batch_execute(INDEX_SQL).await?;
    tx.commit().await?;
    info!(
        batch_rows = loaded,
        speed_rows = recent,
        watermark = %watermark,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo: loaded {loaded} historic events into {BATCH} and {recent} into {SPEED}"
    );
    Ok(())
}

/// Generates events at the history's density from `from` up to `to` into the speed table.
async fn backfill(
    tx: &Transaction<'_>,
    from: NaiveDateTime,
    to: NaiveDateTime,
    step: i64,
) -> Result<u64> {
    let count = (to - from).num_milliseconds() / step;
    if count <= 0 {
        return Ok(0);
    }
    let sql = insert_events_sql(SPEED, BACKFILL_SRC);
    Ok(tx.execute(&sql, &[&from, &count, &step]).await?)
}

/// On reuse: fills the time the demo was not running, from the newest speed row (or W) to now.
async fn backfill_gap(client: &mut Client, events: u64) -> Result<()> {
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            "SELECT greatest((SELECT max(event_time) FROM events_speed),
                             (SELECT batch_watermark FROM tidemark_watermarks
                              WHERE table_name = $1)),
                    now() AT TIME ZONE 'UTC'",
            &[&TABLE],
        )
        .await?;
    let (from, now): (NaiveDateTime, NaiveDateTime) = (row.try_get(0)?, row.try_get(1)?);
    let added = backfill(&tx, from, now, step_ms(events)).await?;
    tx.commit().await?;
    info!(speed_rows = added, from = %from, "demo: backfilled {added} events into {SPEED}");
    Ok(())
}

/// `INSERT ... SELECT` of demo events into `table`, from `src` yielding `id` and `t`.
///
/// Every other column is a deterministic function of a hash of the event id.
fn insert_events_sql(table: &str, src: &str) -> String {
    format!(
        "INSERT INTO {table} ({COLUMNS})
        SELECT id, t, 1 + (h1 % 50000)::int,
            (ARRAY['US','US','US','US','DE','DE','GB','GB','FR','IN','IN','BR','JP','CA','AU',
                   'NL'])[1 + h2 % 16],
            (ARRAY['mobile','mobile','mobile','desktop','desktop','tablet'])[1 + h2 / 16 % 6],
            page,
            CASE WHEN page = '/checkout' THEN round(4.99 + (h1 / 50000 % 20000) / 100.0, 2) END,
            (20 + h2 / 96 % 6000)::int
        FROM (SELECT id, t, h1, h2,
                (ARRAY['/','/','/search','/search','/product','/product','/product','/cart',
                       '/checkout','/account'])[1 + h2 / 576 % 10] AS page
              FROM (SELECT id, t, (hashint8(id) & 2147483647)::bigint AS h1,
                           (hashint8(id # 6700417) & 2147483647)::bigint AS h2
                    FROM ({src}) src) hashed) paged"
    )
}

/// Quotes a value as a TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of basic strings.
fn toml_array(values: &[&str]) -> String {
    let items: Vec<String> = values.iter().copied().map(toml_string).collect();
    format!("[{}]", items.join(", "))
}

/// The configuration tidemark serves the demo database with.
/// The demo's configuration: its listeners (REST, pgwire, Flight), database, Redis, the
/// `events` table with windows, and `users` (TOML `[[users]]` tables, or empty).
fn demo_config(
    url: &str,
    (http, pg, flight): (&str, &str, &str),
    redis: &str,
    users: &str,
) -> Result<Config> {
    let text = format!(
        "[listen]\nhttp = {http}\npg = {pg}\nflight = {flight}\n\n\
         [warehouse]\nurl = {url}\ndialect = \"postgres\"\n\
         watermark_table = \"{WATERMARKS}\"\nwatermark_poll = \"1s\"\n\n\
         [redis]\nurl = {redis}\n\n\
         [[tables]]\nname = \"{TABLE}\"\ntime_column = \"event_time\"\n\
         batch_table = \"{BATCH}\"\nspeed_table = \"{SPEED}\"\n\n\
         [tables.windows]\nbucket = \"1s\"\ndimensions = {dimensions}\n\
         measures = {measures}\nretention = \"15m\"\n",
        http = toml_string(http),
        pg = toml_string(pg),
        flight = toml_string(flight),
        url = toml_string(url),
        redis = toml_string(redis),
        dimensions = toml_array(&WINDOW_DIMENSIONS),
        measures = toml_array(&WINDOW_MEASURES),
    );
    // the repository's named queries for the demo table, when run from the checkout
    let text = if Path::new("queries").is_dir() {
        format!("{text}\n[queries]\ndir = \"queries\"\n")
    } else {
        text
    };
    Config::from_toml_str(&format!("{text}\n{users}\n"))
}

/// State of the simulated stream processor and batch pipeline; survives reconnects.
#[derive(Debug)]
struct Simulator {
    /// Live events per second.
    rate_per_sec: u64,
    /// Watermark advance interval.
    advance_every: Duration,
    /// Retention of speed rows after a published watermark passed them.
    grace: Duration,
    /// Ticks so far (spreads a rate that is not a multiple of 10 evenly).
    ticks: u64,
    /// Live events inserted into the stream since the last summary.
    inserted: u64,
    /// Live events applied to the Redis windows since the last summary.
    windowed: u64,
    /// Rows the loader moved from the stream into the speed table since the last summary.
    loaded: u64,
    /// When the last summary was logged.
    last_summary: Instant,
    /// When the speed-table loader runs next (the first tick: H is fresh from the start).
    next_load: Instant,
    /// H of the loader's last committed load: every event below it is in the speed table.
    loaded_h: Option<NaiveDateTime>,
    /// When the watermark advances next.
    next_advance: Instant,
    /// Watermarks this simulator published (or found), with when, oldest first.
    published: VecDeque<(Instant, NaiveDateTime)>,
}

impl Simulator {
    /// A simulator with the demo's rate, advance interval and grace period.
    fn new(opts: &DemoOptions) -> Self {
        let now = Instant::now();
        Simulator {
            rate_per_sec: opts.rate_per_sec,
            advance_every: opts.advance_every,
            grace: opts.grace,
            ticks: 0,
            inserted: 0,
            windowed: 0,
            loaded: 0,
            last_summary: now,
            next_load: now,
            loaded_h: None,
            next_advance: now + opts.advance_every,
            published: VecDeque::new(),
        }
    }

    /// Events due in the next tick: `rate/10` on average, exact over every second.
    fn due_this_tick(&mut self) -> i64 {
        self.ticks += 1;
        let total = |ticks: u64| (u128::from(self.rate_per_sec) * u128::from(ticks) / 10) as i64;
        total(self.ticks) - total(self.ticks - 1)
    }

    /// The newest watermark published at least `grace` ago: speed rows below it may go.
    fn cleanup_bound(&mut self) -> Option<NaiveDateTime> {
        let now = Instant::now();
        let old_enough = |at: &Instant| now.duration_since(*at) >= self.grace;
        while self.published.len() > 1 && old_enough(&self.published[1].0) {
            self.published.pop_front();
        }
        self.published.front().filter(|(at, _)| old_enough(at)).map(|(_, w)| *w)
    }

    /// The W the batch pipeline may publish next: `target`, but never past the loader's H,
    /// so the batch never claims events that are still in the stream (`old` before any load).
    fn next_watermark(&self, old: NaiveDateTime, target: NaiveDateTime) -> NaiveDateTime {
        self.loaded_h.map_or(old, |h| target.min(h))
    }
}

/// Runs the simulator forever on its own connection; errors are logged and retried.
async fn simulate(url: String, mut sim: Simulator, mut windows: WindowsSink) {
    loop {
        if let Err(e) = simulate_session(&url, &mut sim, &mut windows).await {
            warn!(error = %e, "simulator: step failed; reconnecting in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One connection's worth of simulation: returns only on an error.
async fn simulate_session(url: &str, sim: &mut Simulator, windows: &mut WindowsSink) -> Result<()> {
    let mut client = connect(url).await?;
    client.batch_execute(STREAM_SQL).await?;
    let insert = client.prepare(&stream_insert_sql()).await?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        stream_events(&client, &insert, sim, windows).await?;
        if Instant::now() >= sim.next_load {
            load_speed_table(&mut client, sim, windows).await?;
        }
        if Instant::now() >= sim.next_advance {
            advance_watermark(&mut client, sim).await?;
            clean_speed_table(&client, sim).await?;
            sim.next_advance = Instant::now() + sim.advance_every;
        }
        log_summary(sim);
    }
}

/// The stream processor's tick: the due events go into the stream and at once into the
/// windows, before any speed load can move them (that order counts each event once: the
/// windows cover buckets from H on, the speed table everything below H).
async fn stream_events(
    client: &Client,
    insert: &Statement,
    sim: &mut Simulator,
    windows: &mut WindowsSink,
) -> Result<()> {
    let due = sim.due_this_tick();
    if due <= 0 {
        return Ok(());
    }
    let rows = client.query(insert, &[&due]).await?;
    let events = rows.iter().map(window_event).collect::<Result<Vec<_>>>()?;
    let applied = windows.write(&events).await;
    debug!(events = events.len(), applied, "simulator: live events into {STREAM} and windows");
    sim.inserted += events.len() as u64;
    sim.windowed += applied as u64;
    Ok(())
}

/// The speed-table loader: in one transaction, H = now (UTC) minus one second, truncated to
/// the second (so no 1 s bucket straddles H), and every stream row below H moved into the
/// speed table; only after the commit is H published to Redis.
async fn load_speed_table(
    client: &mut Client,
    sim: &mut Simulator,
    windows: &mut WindowsSink,
) -> Result<()> {
    let tx = client.transaction().await?;
    let h_sql = "SELECT date_trunc('second', now() AT TIME ZONE 'UTC') - interval '1 second'";
    let h: NaiveDateTime = tx.query_one(h_sql, &[]).await?.try_get(0)?;
    let moved = tx.execute(&move_stream_sql(), &[&h]).await?;
    tx.commit().await?;
    sim.loaded_h = Some(h);
    sim.loaded += moved;
    sim.next_load = Instant::now() + SPEED_LOAD_EVERY;
    windows.publish_hwm(h.and_utc().timestamp_micros()).await;
    debug!(moved, h = %h, "simulator: loaded {moved} rows from {STREAM} into {SPEED}");
    Ok(())
}

/// Logs what the stream processor did since the last summary, every `SUMMARY_EVERY`.
fn log_summary(sim: &mut Simulator) {
    let elapsed = sim.last_summary.elapsed();
    if elapsed >= SUMMARY_EVERY {
        let secs = elapsed.as_secs();
        info!(
            events = sim.inserted,
            windows = sim.windowed,
            loaded = sim.loaded,
            "simulator: in the last {secs} s, {} events into {STREAM} ({} into the Redis \
             windows), {} rows loaded into {SPEED}",
            sim.inserted,
            sim.windowed,
            sim.loaded
        );
        (sim.inserted, sim.windowed, sim.loaded) = (0, 0, 0);
        sim.last_summary = Instant::now();
    }
}

/// The batch pipeline: in one transaction, copies speed rows in [old W, new W) into the
/// batch table and publishes new W (now, to the second, minus `WATERMARK_LAG_SECS`, but
/// never past the loader's H).
async fn advance_watermark(client: &mut Client, sim: &mut Simulator) -> Result<()> {
    let tx = client.transaction().await?;
    let (old, target) = lock_watermark(&tx).await?;
    if sim.published.is_empty() {
        sim.published.push_back((Instant::now(), old));
    }
    let new = sim.next_watermark(old, target);
    if new <= old {
        return Ok(());
    }
    let copy = format!(
        "INSERT INTO {BATCH} ({COLUMNS}) SELECT {COLUMNS} FROM {SPEED}
         WHERE event_time >= $1 AND event_time < $2"
    );
    let moved = tx.execute(&copy, &[&old, &new]).await?;
    tx.execute(UPSERT_WATERMARK_SQL, &[&TABLE, &new]).await?;
    tx.commit().await?;
    sim.published.push_back((Instant::now(), new));
    info!(moved, from = %old, to = %new, "simulator: watermark advanced, {moved} rows to {BATCH}");
    Ok(())
}

/// Locks the watermark row; returns the current W and the W to publish next.
async fn lock_watermark(tx: &Transaction<'_>) -> Result<(NaiveDateTime, NaiveDateTime)> {
    let sql = format!(
        "SELECT batch_watermark, date_trunc('second', now() AT TIME ZONE 'UTC')
                - interval '{WATERMARK_LAG_SECS} seconds'
         FROM tidemark_watermarks WHERE table_name = $1 FOR UPDATE"
    );
    let missing = || Error::internal(format!("no batch watermark for {TABLE} in {WATERMARKS}"));
    let row = tx.query_opt(&sql, &[&TABLE]).await?.ok_or_else(missing)?;
    let old: Option<NaiveDateTime> = row.try_get(0)?;
    Ok((old.ok_or_else(missing)?, row.try_get(1)?))
}

/// The stream processor's cleanup: deletes speed rows below the newest watermark that was
/// published at least `grace` ago, so a reader with a stale watermark still finds them.
async fn clean_speed_table(client: &Client, sim: &mut Simulator) -> Result<()> {
    let Some(bound) = sim.cleanup_bound() else {
        return Ok(());
    };
    let sql = format!("DELETE FROM {SPEED} WHERE event_time < $1");
    let deleted = client.execute(&sql, &[&bound]).await?;
    info!(deleted, below = %bound, "simulator: cleaned {deleted} rows from {SPEED}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        let d = "tidemark_demo";
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", d),
            "postgres://postgres@127.0.0.1:5432/tidemark_demo"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", d),
            "postgres://u:p@h/tidemark_demo?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h:5432", d), "postgresql://h:5432/tidemark_demo");
        assert_eq!(with_database("host=h user=u", d), "host=h user=u dbname=tidemark_demo");
    }

    #[test]
    fn spreads_the_rate_over_ticks() {
        let mut sim = Simulator::new(&DemoOptions { rate_per_sec: 25, ..Default::default() });
        let per_second: Vec<i64> = (0..10).map(|_| sim.due_this_tick()).collect();
        assert_eq!(per_second.iter().sum::<i64>(), 25);
        assert!(per_second.iter().all(|&n| n == 2 || n == 3));
    }

    #[test]
    fn demo_config_parses() {
        let cfg = demo_config(
            "postgres://postgres@127.0.0.1:5432/tidemark_demo",
            ("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"),
            "redis://127.0.0.1:6379",
            "",
        );
        let cfg = cfg.expect("demo config is valid");
        assert_eq!(cfg.tables.len(), 1);
        assert_eq!(cfg.tables[0].speed_table, SPEED);
        assert!(cfg.redis.is_some());
        let windows = demo_windows(&cfg).expect("the demo table has windows");
        assert_eq!(windows.bucket_secs().expect("bucket"), 1);
        assert_eq!(windows.dimensions, WINDOW_DIMENSIONS);
        assert_eq!(windows.measures, WINDOW_MEASURES);
        assert_eq!(windows.retention_secs().expect("retention"), 15 * 60);
        assert!(WindowsSink::new(&DemoOptions::default().redis_url, windows).is_ok());
        assert_eq!(toml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(toml_array(&["a", "b"]), "[\"a\", \"b\"]");
    }

    #[test]
    fn stream_sql_returns_what_the_windows_keep() {
        let insert = stream_insert_sql();
        assert!(insert.starts_with("INSERT INTO events_stream ("));
        assert!(insert.ends_with("RETURNING event_time, country, device, (amount * 100)::bigint"));
        assert_eq!(WINDOW_DIMENSIONS, ["country", "device"]);
        let load = move_stream_sql();
        assert!(load.starts_with("WITH moved AS (DELETE FROM events_stream WHERE event_time < $1"));
        assert!(load.contains("INSERT INTO events_speed ("));
        assert_eq!(window_values(Some(1999)), [None, Some(1999), Some(1999), Some(1999)]);
        assert_eq!(window_values(None), [None, None, None, None]);
    }

    #[test]
    fn watermark_never_passes_h() {
        let mut sim = Simulator::new(&DemoOptions::default());
        let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time");
        let (old, target) = (t("2024-01-01 00:00:00"), t("2024-01-01 00:01:00"));
        assert_eq!(sim.next_watermark(old, target), old, "no load yet: W stays");
        sim.loaded_h = Some(t("2024-01-01 00:00:30"));
        assert_eq!(sim.next_watermark(old, target), t("2024-01-01 00:00:30"));
        sim.loaded_h = Some(t("2024-01-01 00:05:00"));
        assert_eq!(sim.next_watermark(old, target), target);
    }

    #[test]
    fn rejects_bad_options() {
        let bad_name = DemoOptions { database: "x; drop".into(), ..Default::default() };
        assert!(validate(&bad_name).is_err());
        assert!(validate(&DemoOptions { events: 0, ..Default::default() }).is_err());
        assert!(validate(&DemoOptions::default()).is_ok());
        assert_eq!(step_ms(1_000_000), 2588);
    }

    #[test]
    fn cleanup_waits_for_the_grace_period() {
        let mut sim =
            Simulator::new(&DemoOptions { grace: Duration::from_secs(60), ..Default::default() });
        let w = NaiveDateTime::default();
        sim.published.push_back((Instant::now(), w));
        assert_eq!(sim.cleanup_bound(), None);
        sim.grace = Duration::ZERO;
        assert_eq!(sim.cleanup_bound(), Some(w));
    }
}
