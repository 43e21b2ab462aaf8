//! Faults under load, against a private PostgreSQL of each test (never the shared one):
//!
//! - the warehouse restarts (`pg_ctl restart -m fast`) while 32 clients query through pgwire,
//!   REST and Flight SQL: every response is the exact answer or a clean connection-class error
//!   (08xxx, 57P01-57P03, 53300), nothing hangs, and each protocol answers exactly again within
//!   5 s of PostgreSQL accepting connections;
//! - clients that vanish in the middle of an answer (pgwire, Flight, REST) leave no statement
//!   running in the warehouse.
//!
//! The caches are off, so every answer is read from the warehouse. Redis is not covered here:
//! `tests/windows.rs` stops and restarts it mid-run.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinHandle;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Row, SimpleQueryMessage};
use tonic::transport::Channel;

use common::pgserver::PgServer;
use common::{
    answer_from_json, build_layout, config_toml, parse_config, pg_error_text, set_watermark,
    truncate, Layout, Rows,
};
use tidemark::model::arrow::value_at;
use tidemark::server::Server;

/// The test database on the private server.
const DB: &str = "faults";
/// Seed of the layout's events.
const SEED: u64 = 0xFA17;
/// Events in the layout.
const N_EVENTS: usize = 2_000;
/// Client tasks per protocol.
const PG_CLIENTS: usize = 12;
/// REST client tasks.
const REST_CLIENTS: usize = 12;
/// Flight SQL client tasks.
const FLIGHT_CLIENTS: usize = 8;
/// Load before the warehouse restarts.
const BEFORE_RESTART: Duration = Duration::from_secs(3);
/// Shortest load in all.
const LOAD: Duration = Duration::from_secs(12);
/// Load kept up after the recovery limit has passed.
const AFTER_RECOVERY: Duration = Duration::from_secs(2);
/// Longest one request may take before it counts as a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest from "PostgreSQL accepts connections again" to the first exact answer.
const RECOVERY_LIMIT: Duration = Duration::from_secs(5);
/// Pause after a response that was not exact (no busy loop while the warehouse is away).
const ERROR_PAUSE: Duration = Duration::from_millis(20);
/// How long a vanished client's warehouse statement may outlive it.
const GONE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a started statement may take to show up in `pg_stat_activity`.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first rows of a large answer may take.
const FIRST_ROWS_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows of the large pass-through answers (never read to the end).
const BIG_ROWS: u32 = 5_000_000;
/// Rows a vanishing pgwire client reads before it goes.
const FIRST_ROWS: usize = 100;
/// Bad responses quoted per protocol in a failure message.
const MAX_REPORTS: usize = 10;

/// The fixed queries: `{T}` is `events` through tidemark and `events_oracle` for the oracle.
/// Two split aggregates, a passthrough over the logical table, a passthrough of a plain table.
const PROBES: &[&str] = &[
    "SELECT count(*) AS n, sum(qty) AS q FROM {T}",
    "SELECT country, count(*) AS n FROM {T} GROUP BY country ORDER BY country NULLS FIRST",
    "SELECT count(DISTINCT user_id) AS users, max(id) AS top FROM {T}",
    "SELECT count(*) AS n, min(id) AS low FROM events_batch",
];

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// PostgreSQL restarts under load from 32 clients on three protocols: every response is exact
/// or a clean connection-class error, none hangs, and each protocol is exact again within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_restart_under_load() {
    let pg = start_private_pg().await;
    let stack = FaultStack::start(&pg).await;
    let probes = expected_answers(&stack.db).await;
    let load = Arc::new(Load::new(probes, &stack));
    check_every_protocol(&load).await;

    let began = Instant::now();
    let tasks = spawn_clients(&load);
    tokio::time::sleep(BEFORE_RESTART).await;
    let (pg, restart) = restart_warehouse(pg).await;
    let until = (began + LOAD).max(restart.back + RECOVERY_LIMIT + AFTER_RECOVERY);
    tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
    load.stop.store(true, Ordering::Relaxed);
    let outcomes = collect(tasks).await;

    let tallies = tally(&outcomes, &restart);
    print_tallies(&tallies, &restart, began);
    stack.stop().await;
    drop(pg);
    assert_recovered(&tallies);
}

/// Clients that go away mid-answer (pgwire simple and extended, a Flight stream dropped after
/// its first batch, REST requests dropped while the warehouse sleeps) leave no statement
/// running in the warehouse 5 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_clients_leave_no_warehouse_query() {
    let pg = start_private_pg().await;
    let stack = FaultStack::start(&pg).await;
    let cases = [
        ("pgwire, simple protocol", pgwire_vanishes(&stack, true).await),
        ("pgwire, extended protocol", pgwire_vanishes(&stack, false).await),
        ("Flight SQL do_get", flight_vanishes(&stack).await),
        ("REST, request dropped while running", rest_vanishes(&stack).await),
        ("REST, reqwest timeout of 300 ms", rest_times_out(&stack).await),
    ];
    let mut problems = Vec::new();
    for (what, result) in cases {
        match result {
            Ok(()) => eprintln!("{what}: no warehouse statement left"),
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    stack.stop().await;
    drop(pg);
    assert!(problems.is_empty(), "vanished clients left work behind:\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The stack
// ---------------------------------------------------------------------------------------------

/// Starts a private PostgreSQL (on a blocking thread: it runs initdb and pg_ctl).
async fn start_private_pg() -> PgServer {
    tokio::task::spawn_blocking(PgServer::start)
        .await
        .unwrap_or_else(|e| panic!("the private PostgreSQL did not start: {e}"))
}

/// tidemark with REST, pgwire and Flight listeners over the layout on the private PostgreSQL.
struct FaultStack {
    /// A direct connection to the test database (oracle, `pg_stat_activity`).
    db: Client,
    /// The running server.
    server: Server,
    /// Its REST address.
    http: SocketAddr,
    /// Its pgwire address.
    pg: SocketAddr,
    /// Its Flight SQL address.
    flight: SocketAddr,
}

impl FaultStack {
    /// Creates the layout (watermark W0), runs `tidemark setup` and starts the server with a
    /// 1 s connect timeout and the caches off.
    async fn start(pg: &PgServer) -> FaultStack {
        let db = pg.fresh_database(DB).await;
        build_layout(&db, N_EVENTS, SEED).await;
        set_watermark(&db, "events", Layout::standard().w0).await;
        let listeners = "http = \"127.0.0.1:0\"\npg = \"127.0.0.1:0\"\nflight = \"127.0.0.1:0\"";
        let toml = config_toml(&pg.url(DB), "connect_timeout = \"1s\"", true)
            .replace("http = \"127.0.0.1:0\"", listeners)
            + "\n[cache]\nenabled = false\n";
        let config = parse_config(&toml);
        let server = common::serve(config).await;
        let http = server.http_addr.expect("the REST listener is bound");
        let pg = server.pg_addr.expect("the pgwire listener is bound");
        let flight = server.flight_addr.expect("the Flight listener is bound");
        FaultStack { db, server, http, pg, flight }
    }

    /// Shuts the server down (the private PostgreSQL goes with its [`PgServer`]).
    async fn stop(self) {
        self.server.shutdown().await;
        drop(self.db);
    }
}

/// When the warehouse went down and when it accepted connections again.
struct Restart {
    /// `pg_ctl restart` was called.
    began: Instant,
    /// `pg_isready` first said yes afterwards.
    back: Instant,
}

/// Restarts the private PostgreSQL on a blocking thread (the load keeps running).
async fn restart_warehouse(mut pg: PgServer) -> (PgServer, Restart) {
    let began = Instant::now();
    let (pg, back) = tokio::task::spawn_blocking(move || {
        let back = pg.restart();
        (pg, back)
    })
    .await
    .unwrap_or_else(|e| panic!("restarting the private PostgreSQL failed: {e}"));
    (pg, Restart { began, back })
}

// ---------------------------------------------------------------------------------------------
// Queries and answers
// ---------------------------------------------------------------------------------------------

/// One query of the fixed set and its exact answer.
struct Probe {
    /// The SQL sent to tidemark.
    sql: String,
    /// The oracle's rows, as PostgreSQL text.
    want: Rows,
}

/// Runs every probe's oracle form on the warehouse.
async fn expected_answers(db: &Client) -> Vec<Probe> {
    let mut probes = Vec::new();
    for template in PROBES {
        let oracle_sql = template.replace("{T}", "events_oracle");
        let answer = common::oracle(db, &oracle_sql, &[])
            .await
            .unwrap_or_else(|e| panic!("oracle query failed: {e}\n  {oracle_sql}"));
        assert!(!answer.rows.is_empty(), "the oracle has no rows for {oracle_sql}");
        probes.push(Probe { sql: template.replace("{T}", "events"), want: answer.rows });
    }
    probes
}

/// What every client task shares.
struct Load {
    /// The fixed queries.
    probes: Vec<Probe>,
    /// tidemark's REST address.
    http: SocketAddr,
    /// tidemark's pgwire address.
    pg: SocketAddr,
    /// tidemark's Flight SQL address.
    flight: SocketAddr,
    /// Set when the clients should stop.
    stop: AtomicBool,
}

impl Load {
    /// The load for these probes against this stack.
    fn new(probes: Vec<Probe>, stack: &FaultStack) -> Load {
        Load {
            probes,
            http: stack.http,
            pg: stack.pg,
            flight: stack.flight,
            stop: AtomicBool::new(false),
        }
    }

    /// The `i`-th probe, round robin.
    fn probe(&self, i: usize) -> &Probe {
        &self.probes[i % self.probes.len()]
    }

    /// Whether the `i`-th pgwire request uses the simple protocol (else the extended one).
    fn simple(&self, i: usize) -> bool {
        (i / self.probes.len()).is_multiple_of(2)
    }
}

/// The protocols under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    /// PostgreSQL wire protocol (tokio-postgres).
    Pgwire,
    /// POST /v1/query (reqwest).
    Rest,
    /// Arrow Flight SQL (FlightSqlServiceClient).
    Flight,
}

/// How one response ended.
#[derive(Debug)]
enum Kind {
    /// Exactly the expected rows.
    Exact,
    /// A clean connection-class error with this SQLSTATE.
    Clean(String),
    /// Anything else, described.
    Bad(String),
}

/// One request of one client task.
struct Outcome {
    /// Through which protocol.
    proto: Proto,
    /// When it was sent.
    started: Instant,
    /// When its response was complete.
    finished: Instant,
    /// What the response was.
    kind: Kind,
}

/// SQLSTATEs a warehouse restart may cause: connection exceptions (class 08 but not a protocol
/// violation), the 57P01-57P03 shutdown and startup family, and too many connections.
fn is_clean(sqlstate: &str) -> bool {
    sqlstate.len() == 5
        && ((sqlstate.starts_with("08") && sqlstate != "08P01")
            || matches!(sqlstate, "57P01" | "57P02" | "57P03" | "53300"))
}

/// Exact when the rows equal the expected ones, bad otherwise.
fn judge(proto: Proto, probe: &Probe, got: Rows) -> Kind {
    if got == probe.want {
        return Kind::Exact;
    }
    Kind::Bad(format!(
        "{proto:?}: wrong answer to {}\n    got  {}\n    want {}",
        probe.sql,
        truncate(&format!("{got:?}"), 400),
        truncate(&format!("{:?}", probe.want), 400)
    ))
}

/// Runs one request with the per-request time limit; a hang is a bad response.
async fn timed(proto: Proto, sql: &str, request: impl Future<Output = Kind>) -> Kind {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(kind) => kind,
        Err(_) => Kind::Bad(format!("{proto:?}: no answer within {REQUEST_TIMEOUT:?} to {sql}")),
    }
}

/// Records an outcome; pauses briefly after anything but an exact answer.
async fn record(outcomes: &mut Vec<Outcome>, proto: Proto, started: Instant, kind: Kind) {
    let pause = !matches!(kind, Kind::Exact);
    outcomes.push(Outcome { proto, started, finished: Instant::now(), kind });
    if pause {
        tokio::time::sleep(ERROR_PAUSE).await;
    }
}

/// Before any fault: every probe is exact through REST, Flight and both pgwire protocols.
async fn check_every_protocol(load: &Load) {
    let http = common::http_client();
    let mut flight = flight_connect(load.flight).await;
    let mut conn = None;
    for probe in &load.probes {
        let mut kinds = vec![
            ("REST", rest_request(&http, load.http, probe).await),
            ("Flight", flight_request(&mut flight, probe).await),
        ];
        for simple in [true, false] {
            kinds.push((pg_mode(simple), pg_request(load, &mut conn, probe, simple).await));
        }
        for (what, kind) in kinds {
            assert!(
                matches!(kind, Kind::Exact),
                "before the restart, {what} must answer {} exactly: {kind:?}",
                probe.sql
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client tasks
// ---------------------------------------------------------------------------------------------

/// Starts every client task.
fn spawn_clients(load: &Arc<Load>) -> Vec<JoinHandle<Vec<Outcome>>> {
    let mut tasks = Vec::new();
    for id in 0..PG_CLIENTS {
        tasks.push(tokio::spawn(pg_client(load.clone(), id)));
    }
    for id in 0..REST_CLIENTS {
        tasks.push(tokio::spawn(rest_client(load.clone(), id)));
    }
    for id in 0..FLIGHT_CLIENTS {
        tasks.push(tokio::spawn(flight_client(load.clone(), id)));
    }
    tasks
}

/// Waits for every client task (each stops within one request after the stop flag).
async fn collect(tasks: Vec<JoinHandle<Vec<Outcome>>>) -> Vec<Outcome> {
    let limit = REQUEST_TIMEOUT * 2;
    let mut all = Vec::new();
    for task in tasks {
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(outcomes)) => all.extend(outcomes),
            Ok(Err(e)) => panic!("a client task failed: {e}"),
            Err(_) => panic!("a client task did not stop within {limit:?} of the end of the load"),
        }
    }
    all
}

/// A pgwire client: one connection to tidemark (a new one when it closes), the probes in
/// turn, alternating between the simple and the extended protocol.
async fn pg_client(load: Arc<Load>, id: usize) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut conn = None;
    for i in id.. {
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let (probe, simple) = (load.probe(i), load.simple(i));
        let started = Instant::now();
        let request = pg_request(&load, &mut conn, probe, simple);
        let kind = timed(Proto::Pgwire, &probe.sql, request).await;
        record(&mut outcomes, Proto::Pgwire, started, kind).await;
    }
    outcomes
}

/// A REST client with its own connection pool, the probes in turn.
async fn rest_client(load: Arc<Load>, id: usize) -> Vec<Outcome> {
    let http = common::http_client();
    let mut outcomes = Vec::new();
    for i in id.. {
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let probe = load.probe(i);
        let started = Instant::now();
        let kind = timed(Proto::Rest, &probe.sql, rest_request(&http, load.http, probe)).await;
        record(&mut outcomes, Proto::Rest, started, kind).await;
    }
    outcomes
}

/// A Flight SQL client on its own channel, the probes in turn.
async fn flight_client(load: Arc<Load>, id: usize) -> Vec<Outcome> {
    let mut client = flight_connect(load.flight).await;
    let mut outcomes = Vec::new();
    for i in id.. {
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let probe = load.probe(i);
        let started = Instant::now();
        let kind = timed(Proto::Flight, &probe.sql, flight_request(&mut client, probe)).await;
        record(&mut outcomes, Proto::Flight, started, kind).await;
    }
    outcomes
}

// ---------------------------------------------------------------------------------------------
// pgwire
// ---------------------------------------------------------------------------------------------

/// Which pgwire protocol, for messages.
fn pg_mode(simple: bool) -> &'static str {
    if simple {
        "pgwire simple"
    } else {
        "pgwire extended"
    }
}

/// Connects to tidemark's pgwire listener; the connection task is returned (abort it to
/// drop the TCP connection).
async fn pg_connect(addr: SocketAddr) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
    let conn = format!(
        "host={} port={} user=analyst dbname={DB} connect_timeout=5",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn, NoTls).await?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

/// One probe through pgwire on the task's connection (connecting first when there is none or
/// tidemark closed it).
async fn pg_request(load: &Load, conn: &mut Option<Client>, probe: &Probe, simple: bool) -> Kind {
    if conn.as_ref().is_none_or(Client::is_closed) {
        match pg_connect(load.pg).await {
            Ok((client, _task)) => *conn = Some(client),
            Err(e) => return pg_error_kind(&e, "connect"),
        }
    }
    let Some(client) = conn.as_ref() else {
        return Kind::Bad("pgwire: no connection".into());
    };
    let result = if simple {
        pg_simple(client, &probe.sql).await
    } else {
        pg_extended(client, &probe.sql).await
    };
    match result {
        Ok(rows) => judge(Proto::Pgwire, probe, rows),
        Err(kind) => kind,
    }
}

/// A pgwire error: clean when its SQLSTATE is one a restart may cause. A connection to
/// tidemark that closes without one is bad (tidemark keeps client connections open).
fn pg_error_kind(e: &tokio_postgres::Error, what: &str) -> Kind {
    match e.code() {
        Some(code) if is_clean(code.code()) => Kind::Clean(code.code().to_string()),
        Some(_) => Kind::Bad(format!("pgwire {what}: unexpected {}", pg_error_text(e))),
        None => Kind::Bad(format!("pgwire {what}: error without a SQLSTATE: {e}")),
    }
}

/// Rows of a simple-protocol query, as PostgreSQL text.
async fn pg_simple(client: &Client, sql: &str) -> Result<Rows, Kind> {
    let messages = client.simple_query(sql).await.map_err(|e| pg_error_kind(&e, "simple query"))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

/// Rows of an extended-protocol query (binary results), as PostgreSQL text.
async fn pg_extended(client: &Client, sql: &str) -> Result<Rows, Kind> {
    let rows = client.query(sql, &[]).await.map_err(|e| pg_error_kind(&e, "extended query"))?;
    rows.iter()
        .map(row_texts)
        .collect::<Result<Rows, String>>()
        .map_err(|e| Kind::Bad(format!("pgwire extended: {e}")))
}

/// A binary row as PostgreSQL text (the column types of the probes).
fn row_texts(row: &Row) -> Result<Vec<Option<String>>, String> {
    row.columns().iter().enumerate().map(|(i, c)| cell_text(row, i, c.type_())).collect()
}

/// One binary cell as PostgreSQL text: integers and text.
fn cell_text(row: &Row, i: usize, ty: &Type) -> Result<Option<String>, String> {
    let text = if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i).map(|v| v.map(|v| v.to_string()))
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i).map(|v| v.map(|v| v.to_string()))
    } else if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i).map(|v| v.map(|v| v.to_string()))
    } else if *ty == Type::TEXT || *ty == Type::VARCHAR {
        row.try_get::<_, Option<String>>(i)
    } else {
        return Err(format!("column {i} has type {}, which this test does not decode", ty.name()));
    };
    text.map_err(|e| format!("column {i} ({}): {e}", ty.name()))
}

// ---------------------------------------------------------------------------------------------
// REST and Flight
// ---------------------------------------------------------------------------------------------

/// One probe through `POST /v1/query`: 200 with the exact rows, or 503 with a clean SQLSTATE.
async fn rest_request(http: &reqwest::Client, addr: SocketAddr, probe: &Probe) -> Kind {
    let (status, body) = common::query(http, addr, &probe.sql, &[]).await;
    let text = || truncate(&body.to_string(), 300);
    match status {
        200 => match answer_from_json(&body) {
            Ok(answer) => judge(Proto::Rest, probe, answer.rows),
            Err(e) => Kind::Bad(format!("REST: 200 with a malformed body ({e}): {}", text())),
        },
        503 => match body["sqlstate"].as_str() {
            Some(code) if is_clean(code) => Kind::Clean(code.to_string()),
            _ => Kind::Bad(format!("REST: 503 without a clean SQLSTATE: {}", text())),
        },
        _ => Kind::Bad(format!("REST: status {status} for {}: {}", probe.sql, text())),
    }
}

/// A Flight SQL client on a new channel to tidemark.
async fn flight_connect(addr: SocketAddr) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a valid Flight URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to tidemark's Flight listener {addr}: {e}"));
    FlightSqlServiceClient::new(channel)
}

/// One probe through Flight SQL (execute, then do_get of its ticket).
async fn flight_request(client: &mut FlightSqlServiceClient<Channel>, probe: &Probe) -> Kind {
    let info = match client.execute(probe.sql.clone(), None).await {
        Ok(info) => info,
        Err(e) => return flight_error_kind(&e, "execute"),
    };
    let Some(ticket) = info.endpoint.first().and_then(|ep| ep.ticket.clone()) else {
        return Kind::Bad(format!("Flight: FlightInfo without a ticket for {}", probe.sql));
    };
    let stream = match client.do_get(ticket).await {
        Ok(stream) => stream,
        Err(e) => return flight_error_kind(&e, "do_get"),
    };
    match stream.try_collect::<Vec<RecordBatch>>().await {
        Ok(batches) => judge(Proto::Flight, probe, batch_texts(&batches)),
        Err(e) => flight_error_kind(&e, "do_get stream"),
    }
}

/// A Flight error: clean when it is UNAVAILABLE or RESOURCE_EXHAUSTED and its message starts
/// with a clean SQLSTATE (`08006: ...`).
fn flight_error_kind(e: &FlightError, what: &str) -> Kind {
    let FlightError::Tonic(status) = e else {
        return Kind::Bad(format!("Flight {what}: not a gRPC status: {e}"));
    };
    let message = status.message();
    let sqlstate = message.get(..5).unwrap_or_default();
    let leads = message.get(5..7) == Some(": ");
    let code = status.code();
    let retryable = matches!(code, tonic::Code::Unavailable | tonic::Code::ResourceExhausted);
    if retryable && leads && is_clean(sqlstate) {
        return Kind::Clean(sqlstate.to_string());
    }
    Kind::Bad(format!("Flight {what}: {code:?} {}", truncate(message, 300)))
}

/// Record batches as rows of PostgreSQL text.
fn batch_texts(batches: &[RecordBatch]) -> Rows {
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        for r in 0..batch.num_rows() {
            rows.push(
                (0..batch.num_columns())
                    .map(|c| value_at(batch.column(c), schema.field(c), r).to_pg_text())
                    .collect(),
            );
        }
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Tallies
// ---------------------------------------------------------------------------------------------

/// What one protocol's clients saw.
#[derive(Debug, Default)]
struct Tally {
    /// Exact answers.
    exact: usize,
    /// Exact answers complete before the restart began.
    exact_before_restart: usize,
    /// Clean errors by SQLSTATE.
    clean: BTreeMap<String, usize>,
    /// Bad responses.
    bad: usize,
    /// The first few bad responses.
    reports: Vec<String>,
    /// Of requests sent once PostgreSQL accepted connections again: the earliest exact
    /// answer, measured from that instant.
    recovery: Option<Duration>,
    /// Of the same requests: the latest clean error, measured from that instant.
    last_error: Option<Duration>,
}

impl Tally {
    /// Counts one outcome.
    fn add(&mut self, o: &Outcome, restart: &Restart) {
        let after_back = o.started >= restart.back;
        let since_back = o.finished.saturating_duration_since(restart.back);
        match &o.kind {
            Kind::Exact => {
                self.exact += 1;
                if o.finished < restart.began {
                    self.exact_before_restart += 1;
                }
                if after_back && self.recovery.is_none_or(|r| since_back < r) {
                    self.recovery = Some(since_back);
                }
            }
            Kind::Clean(code) => {
                *self.clean.entry(code.clone()).or_default() += 1;
                if after_back && self.last_error.is_none_or(|l| since_back > l) {
                    self.last_error = Some(since_back);
                }
            }
            Kind::Bad(why) => {
                self.bad += 1;
                if self.reports.len() < MAX_REPORTS {
                    self.reports.push(why.clone());
                }
            }
        }
    }
}

/// Tallies per protocol.
fn tally(outcomes: &[Outcome], restart: &Restart) -> BTreeMap<Proto, Tally> {
    let mut tallies: BTreeMap<Proto, Tally> = BTreeMap::new();
    for o in outcomes {
        tallies.entry(o.proto).or_default().add(o, restart);
    }
    tallies
}

/// Seconds with two decimals, or `never`.
fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// The restart's timeline and each protocol's counts and recovery time.
fn print_tallies(tallies: &BTreeMap<Proto, Tally>, restart: &Restart, began: Instant) {
    eprintln!(
        "warehouse restart: pg_ctl restart at +{:.2} s, accepting connections again at +{:.2} s",
        restart.began.duration_since(began).as_secs_f64(),
        restart.back.duration_since(began).as_secs_f64()
    );
    for (proto, t) in tallies {
        eprintln!(
            "{proto:?}: {} exact answers ({} before the restart), clean errors {:?}, {} bad; \
             first exact answer {} after PostgreSQL was back, last clean error {} after",
            t.exact,
            t.exact_before_restart,
            t.clean,
            t.bad,
            secs(t.recovery),
            secs(t.last_error)
        );
    }
}

/// No bad response; per protocol: exact answers before the restart, an exact answer within
/// [`RECOVERY_LIMIT`] of PostgreSQL accepting connections, and no clean error after that.
fn assert_recovered(tallies: &BTreeMap<Proto, Tally>) {
    let bad: usize = tallies.values().map(|t| t.bad).sum();
    let reports: Vec<&str> =
        tallies.values().flat_map(|t| t.reports.iter().map(String::as_str)).collect();
    assert_eq!(
        bad,
        0,
        "{bad} responses were neither exact nor a clean connection-class error:\n{}",
        reports.join("\n")
    );
    for proto in [Proto::Pgwire, Proto::Rest, Proto::Flight] {
        let t = tallies.get(&proto).unwrap_or_else(|| panic!("{proto:?}: no requests at all"));
        assert!(t.exact_before_restart > 0, "{proto:?}: no exact answer before the restart");
        let Some(recovery) = t.recovery else {
            panic!("{proto:?}: no exact answer after PostgreSQL accepted connections again");
        };
        assert!(
            recovery < RECOVERY_LIMIT,
            "{proto:?}: first exact answer {recovery:?} after PostgreSQL accepted connections \
             again (limit {RECOVERY_LIMIT:?})"
        );
        if let Some(last) = t.last_error {
            assert!(
                last < RECOVERY_LIMIT,
                "{proto:?}: connection errors went on until {last:?} after PostgreSQL accepted \
                 connections again (limit {RECOVERY_LIMIT:?})"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Vanishing clients
// ---------------------------------------------------------------------------------------------

/// A large pass-through answer whose statement text carries `tag`.
fn big_sql(tag: &str) -> String {
    format!("SELECT g, repeat('x', 200) AS {tag} FROM generate_series(1, {BIG_ROWS}) g")
}

/// Warehouse sessions (other than this one) running a statement that mentions `tag`.
async fn active(db: &Client, tag: &str) -> i64 {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 \
               AND pid <> pg_backend_pid()";
    let pattern = format!("%{tag}%");
    match db.query_one(sql, &[&pattern]).await {
        Ok(row) => row.get(0),
        Err(e) => panic!("cannot read pg_stat_activity: {}", pg_error_text(&e)),
    }
}

/// Whether a statement mentioning `tag` shows up as active within [`ACTIVE_TIMEOUT`].
async fn wait_active(db: &Client, tag: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < ACTIVE_TIMEOUT {
        if active(db, tag).await > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Ok when no statement mentioning `tag` is active within [`GONE_TIMEOUT`].
async fn expect_gone(db: &Client, tag: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let left = active(db, tag).await;
        if left == 0 {
            eprintln!("{tag}: gone {:.2} s after the client", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if started.elapsed() >= GONE_TIMEOUT {
            return Err(format!(
                "{left} warehouse statement(s) ({tag}) still active {GONE_TIMEOUT:?} after the \
                 client went away"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pgwire client reads the first rows of a large pass-through answer, then its TCP
/// connection is dropped (its connection task aborted).
async fn pgwire_vanishes(stack: &FaultStack, simple: bool) -> Result<(), String> {
    let tag = if simple { "vanish_pg_simple" } else { "vanish_pg_extended" };
    let (client, connection) =
        pg_connect(stack.pg).await.map_err(|e| format!("cannot connect through tidemark: {e}"))?;
    let sql = big_sql(tag);
    let read = if simple {
        tokio::time::timeout(FIRST_ROWS_TIMEOUT, read_some_simple(&client, &sql)).await
    } else {
        tokio::time::timeout(FIRST_ROWS_TIMEOUT, read_some_extended(&client, &sql)).await
    };
    let running = wait_active(&stack.db, tag).await;
    connection.abort();
    drop(client);
    match read {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("reading the first rows failed: {e}")),
        Err(_) => return Err(format!("no {FIRST_ROWS} rows within {FIRST_ROWS_TIMEOUT:?}")),
    }
    if !running {
        return Err("the warehouse statement was not running while the client read".into());
    }
    expect_gone(&stack.db, tag).await
}

/// Reads [`FIRST_ROWS`] rows of a simple-protocol query and stops reading.
async fn read_some_simple(client: &Client, sql: &str) -> Result<(), String> {
    let stream = client.simple_query_raw(sql).await.map_err(|e| pg_error_text(&e))?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = 0;
    while rows < FIRST_ROWS {
        match stream.next().await {
            Some(Ok(SimpleQueryMessage::Row(_))) => rows += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(pg_error_text(&e)),
            None => return Err(format!("the answer ended after {rows} rows")),
        }
    }
    Ok(())
}

/// Reads [`FIRST_ROWS`] rows of an extended-protocol query and stops reading.
async fn read_some_extended(client: &Client, sql: &str) -> Result<(), String> {
    let stream =
        client.query_raw(sql, Vec::<String>::new()).await.map_err(|e| pg_error_text(&e))?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = 0;
    while rows < FIRST_ROWS {
        match stream.next().await {
            Some(Ok(_)) => rows += 1,
            Some(Err(e)) => return Err(pg_error_text(&e)),
            None => return Err(format!("the answer ended after {rows} rows")),
        }
    }
    Ok(())
}

/// A Flight client takes the first batch of a large pass-through answer, then drops the
/// do_get stream and its channel.
async fn flight_vanishes(stack: &FaultStack) -> Result<(), String> {
    let tag = "vanish_flight";
    let mut client = flight_connect(stack.flight).await;
    let info = client.execute(big_sql(tag), None).await.map_err(|e| format!("execute: {e}"))?;
    let ticket = info
        .endpoint
        .first()
        .and_then(|ep| ep.ticket.clone())
        .ok_or("FlightInfo without a ticket")?;
    let mut stream = client.do_get(ticket).await.map_err(|e| format!("do_get: {e}"))?;
    let first = tokio::time::timeout(FIRST_ROWS_TIMEOUT, stream.next()).await;
    let running = wait_active(&stack.db, tag).await;
    drop(stream);
    drop(client);
    match first {
        Ok(Some(Ok(batch))) if batch.num_rows() > 0 => {}
        Ok(Some(Ok(_))) => return Err("the first batch was empty".into()),
        Ok(Some(Err(e))) => return Err(format!("the first batch failed: {e}")),
        Ok(None) => return Err("the stream ended without a batch".into()),
        Err(_) => return Err(format!("no batch within {FIRST_ROWS_TIMEOUT:?}")),
    }
    if !running {
        return Err("the warehouse statement was not running while the client read".into());
    }
    expect_gone(&stack.db, tag).await
}

/// `POST /v1/query` of a statement that sleeps in the warehouse before any row.
fn sleeping_request(
    http: &reqwest::Client,
    addr: SocketAddr,
    tag: &str,
) -> reqwest::RequestBuilder {
    let sql = format!("SELECT pg_sleep(30) AS {tag}");
    http.post(format!("http://{addr}/v1/query")).json(&serde_json::json!({ "sql": sql }))
}

/// A REST request whose future is dropped (its connection closed) once the warehouse is
/// seen running its statement, which sleeps before any row.
///
/// tidemark collects the whole answer before it responds, so it can only notice the client
/// through the HTTP connection (hyper drops the handler when the client's side closes).
async fn rest_vanishes(stack: &FaultStack) -> Result<(), String> {
    let tag = "vanish_rest";
    let http = common::http_client();
    let request = sleeping_request(&http, stack.http, tag);
    let pending = tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    let running = wait_active(&stack.db, tag).await;
    pending.abort();
    drop(http);
    if !running {
        return Err("the warehouse statement was never seen running".into());
    }
    expect_gone(&stack.db, tag).await
}

/// A REST request given up by reqwest after 300 ms while the warehouse sleeps: whether or
/// not the statement had started by then, none may be left running.
async fn rest_times_out(stack: &FaultStack) -> Result<(), String> {
    let tag = "vanish_rest_timeout";
    let http = common::http_client();
    let request = sleeping_request(&http, stack.http, tag).timeout(Duration::from_millis(300));
    match request.send().await {
        Err(e) if e.is_timeout() => {}
        Err(e) => return Err(format!("expected a client timeout, got {e}")),
        Ok(resp) => return Err(format!("expected a client timeout, got status {}", resp.status())),
    }
    drop(http);
    // Time for a statement that tidemark had not sent yet to show up if it still runs it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    expect_gone(&stack.db, tag).await
}
