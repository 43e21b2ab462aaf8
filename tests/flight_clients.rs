//! A real Arrow Flight SQL client against tidemark's Flight SQL frontend: ADBC's Flight SQL
//! driver through its Python DBAPI (with pyarrow, pandas and Polars), without and with
//! authentication.
//!
//! Each test builds a fresh database with the exactly-once layout, runs `tidemark setup`, starts a
//! server with `[listen] flight` on a free port and runs tests/clients/python/test_flight.py (with
//! a timeout), which compares everything it reads through Flight with `events_oracle` queried
//! directly on PostgreSQL. scripts/clients.sh, called by scripts/test.sh, installs the Python
//! packages into .venv; a missing toolchain fails the test (never skips it).

mod common;

use std::ffi::OsStr;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tidemark::server::Server;

const EVENTS: usize = 3_000;
const SEED: u64 = 20_240_321;
/// Longest a client program may run before it is killed and the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);
const INSTALL_HINT: &str =
    "run scripts/test.sh, whose scripts/clients.sh installs the client toolchains";
/// The Python packages test_flight.py imports (tests/clients/python/requirements.txt).
const PYTHON_MODULES: &str = "adbc_driver_manager, adbc_driver_flightsql.dbapi, pyarrow, pandas, \
     polars, psycopg";
/// The users of the authentication test, all with [`PASSWORD`]: `user:password` is 21, 19 and 20
/// bytes long, so its base64 in the Basic credentials ends without padding, with `==` and with
/// `=` (ADBC's Go client sends it unpadded).
const USERS: [&str; 3] = ["alice", "bob", "dave"];
const PASSWORD: &str = "tidemark-secret";
/// The verifier PostgreSQL stores for `tidemark-secret` (the same as in tests/pg_clients.rs).
const SCRAM_VERIFIER: &str = "SCRAM-SHA-256$4096:MUiA+iaLoIZ3UAW9lZLlag==$\
     7Rx9jyEYWSJ7bTxdhsCqbCfJN+95vyth2+ZjJUSce/I=:Fs2ZTb7uBzAxqWPI/6n2jGXIlWShb0J7oId8FhT/KoA=";

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// ADBC's Flight SQL DBAPI without authentication: statements with and without parameters,
/// fetch_arrow_table (types, `pg_type` metadata, every row against the oracle), fetchall, a split
/// aggregate, pandas and Polars, adbc_get_objects, adbc_get_table_schema, adbc_get_table_types,
/// 42601 / 42P01 / 25006 errors with their gRPC codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_python_client() {
    let python = require_python().await;
    let stack = FlightStack::start("flightpy", "").await;
    let mut cmd = client_command(python);
    cmd.arg(repo().join("tests/clients/python/test_flight.py"))
        .arg(stack.uri())
        .arg(stack.oracle_conninfo());
    let run = run_client("tests/clients/python/test_flight.py", cmd).await;
    stack.stop().await;
    assert_client_passed(&run, "flight: ");
}

/// The same script with `[[users]]` configured: it logs in with basic auth (Handshake, then a
/// bearer token) as each user and checks that a wrong password, an unknown user and no login at
/// all are refused with UNAUTHENTICATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_python_client_with_auth() {
    let python = require_python().await;
    let users: String = USERS
        .iter()
        .map(|u| format!("[[users]]\nname = \"{u}\"\npassword_hash = \"{SCRAM_VERIFIER}\"\n"))
        .collect();
    let stack = FlightStack::start("flightauth", &users).await;
    let mut cmd = client_command(python);
    cmd.arg(repo().join("tests/clients/python/test_flight.py"))
        .arg(stack.uri())
        .arg(stack.oracle_conninfo())
        .arg(USERS.join(","))
        .arg(PASSWORD);
    let run = run_client("tests/clients/python/test_flight.py (with users)", cmd).await;
    stack.stop().await;
    assert_client_passed(&run, "flight: ");
    assert!(
        run.stdout.lines().any(|l| l == "flight: with authentication"),
        "the script did not run its authentication checks:\n{}",
        run.report()
    );
}

// ---------------------------------------------------------------------------------------------
// A tidemark with the Flight SQL listener
// ---------------------------------------------------------------------------------------------

/// A test database with the layout and a tidemark serving it over Flight SQL (and HTTP).
struct FlightStack {
    db_name: String,
    server: Server,
    flight_addr: SocketAddr,
}

impl FlightStack {
    /// Fresh database, ~3,000 events, watermark W0, `tidemark setup`, and a server with
    /// `[listen] flight` on a free port; `users_toml` is appended to the config (`[[users]]`).
    async fn start(prefix: &str, users_toml: &str) -> FlightStack {
        let (db_name, db) = common::fresh_db(prefix).await;
        let layout = common::build_layout(&db, EVENTS, SEED).await;
        common::set_watermark(&db, "events", layout.w0).await;
        drop(db);
        let config =
            common::parse_config(&flight_config_toml(&common::db_url(&db_name), users_toml));
        tidemark::setup::run(&config)
            .await
            .unwrap_or_else(|e| panic!("tidemark setup failed: {e}"));
        let server = Server::start(Arc::new(config))
            .await
            .unwrap_or_else(|e| panic!("tidemark server did not start: {e}"));
        let flight_addr =
            server.flight_addr.expect("the Flight SQL listener is bound ([listen] flight)");
        FlightStack { db_name, server, flight_addr }
    }

    /// The URI ADBC's Flight SQL driver connects to (plaintext gRPC).
    fn uri(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.flight_addr.port())
    }

    /// libpq key/value connection string for the test database itself.
    fn oracle_conninfo(&self) -> String {
        format!("host=127.0.0.1 port=5432 user=postgres dbname={}", self.db_name)
    }

    /// Shuts the server down and drops the database.
    async fn stop(self) {
        let FlightStack { db_name, server, .. } = self;
        server.shutdown().await;
        common::drop_db(&db_name).await;
    }
}

/// The test config (as `common::config_toml` builds it) plus the Flight SQL listener.
fn flight_config_toml(url: &str, users_toml: &str) -> String {
    format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\nflight = \"127.0.0.1:0\"\n\n\
         [warehouse]\nurl = \"{url}\"\ndialect = \"postgres\"\nwatermark_table = \"{}\"\n\
         watermark_poll = \"100ms\"\n\n\
         [[tables]]\nname = \"events\"\ntime_column = \"event_time\"\n\
         batch_table = \"events_batch\"\nspeed_table = \"events_speed\"\n\n{users_toml}",
        common::WATERMARK_TABLE
    )
}

// ---------------------------------------------------------------------------------------------
// Client programs
// ---------------------------------------------------------------------------------------------

/// The repository root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's Python with every package test_flight.py imports; fails (never skips), naming
/// scripts/test.sh, when the venv or a package is missing.
async fn require_python() -> PathBuf {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python venv .venv is missing ({}): {INSTALL_HINT}",
        python.display()
    );
    let mut cmd = client_command(&python);
    cmd.arg("-c").arg(format!("import {PYTHON_MODULES}"));
    let run = run_client("python -c 'import ...'", cmd).await;
    assert!(
        run.success(),
        "the venv .venv lacks a Python package ({PYTHON_MODULES}): {INSTALL_HINT}\n{}",
        run.report()
    );
    python
}

/// A command whose libpq environment cannot redirect it (no PGHOST, PGPASSWORD, ~/.pgpass ...).
fn client_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGSERVICE",
        "PGSSLMODE",
        "PGOPTIONS",
        "PGTZ",
        "PGDATESTYLE",
        "PGCLIENTENCODING",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGPASSFILE", "/dev/null")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TZ", "UTC");
    cmd
}

/// What a client process did.
struct ClientRun {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

impl ClientRun {
    fn success(&self) -> bool {
        !self.timed_out && self.code == Some(0)
    }

    /// How it ended, with its output.
    fn report(&self) -> String {
        let end = if self.timed_out {
            format!("was killed after {CLIENT_TIMEOUT:?}")
        } else {
            format!("exited with {:?}", self.code)
        };
        format!(
            "{} {end}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            common::truncate(&self.stdout, 20_000),
            common::truncate(&self.stderr, 10_000)
        )
    }
}

/// Asserts that a client program exited 0 and printed `<prefix>N checks passed`.
fn assert_client_passed(run: &ClientRun, prefix: &str) {
    let line = run.stdout.lines().find(|l| l.starts_with(prefix) && l.ends_with(" checks passed"));
    assert!(run.success() && line.is_some(), "{}", run.report());
    println!("{}", line.unwrap_or_default());
}

/// Runs a command on a blocking thread (stdin closed, output captured), killing it after
/// [`CLIENT_TIMEOUT`]. Panics, naming scripts/test.sh, when the program cannot be started.
async fn run_client(what: &str, cmd: Command) -> ClientRun {
    let what = what.to_string();
    match tokio::task::spawn_blocking(move || run_blocking(what, cmd)).await {
        Ok(run) => run,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the client runner was cancelled: {e}"),
    }
}

fn run_blocking(what: String, mut cmd: Command) -> ClientRun {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot start {what} ({:?}): {e}: {INSTALL_HINT}", cmd.get_program()),
    };
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    let collect = |h: Option<JoinHandle<String>>| h.map(|h| h.join().unwrap_or_default());
    ClientRun {
        what,
        code: status.and_then(|s| s.code()),
        stdout: collect(stdout).unwrap_or_default(),
        stderr: collect(stderr).unwrap_or_default(),
        timed_out,
    }
}

/// Reads a pipe to its end on its own thread.
fn drain<R: Read + Send + 'static>(mut pipe: R) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
