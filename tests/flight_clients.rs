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

use std::net::SocketAddr;
use std::path::PathBuf;

use common::clients::*;
use tidemark::server::Server;

const EVENTS: usize = 3_000;
const SEED: u64 = 20_240_321;
/// Longest a client program may run before it is killed and the test fails.
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
        let server = common::serve(config).await;
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
