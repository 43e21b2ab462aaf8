//! The clients people point at a PostgreSQL-compatible endpoint, unmodified, against one
//! tidemark: SQLAlchemy 2 (psycopg2 and psycopg 3) with pandas, asyncpg, the ADBC PostgreSQL
//! driver with Polars and connectorx, psqlODBC through pyodbc, pgjdbc's DatabaseMetaData as
//! DBeaver and Metabase call it, psql's meta-commands and `\copy`. One test per client; every
//! answer is compared with the oracle (`events_oracle`, every event once) or, for catalog
//! calls, with the same call made directly on the warehouse database.
//!
//! The suite shares one stack (a database of 10,000 events, `tidemark setup`, a server with
//! the pgwire listener), started once by the first test and served from its own thread for
//! the life of the test process; clients only read through it. scripts/clients.sh (called by
//! scripts/test.sh) installs the clients; a missing one fails its test, never skips it.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use common::clients::*;

const EVENTS: usize = 10_000;
const SEED: u64 = 20_261_201;
/// pgjdbc from Debian's libpostgresql-jdbc-java.
const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Extra tables the catalog checks look at: a foreign key (SQLAlchemy's get_foreign_keys,
/// pgjdbc's getImportedKeys) and a SQL function (psql's `\df`, pgjdbc's getFunctions).
const CATALOG_SQL: &str = "
    CREATE TABLE country_notes (code text REFERENCES countries (code), note text);
    INSERT INTO country_notes VALUES ('DE', 'Germany'), ('JP', NULL);
    CREATE FUNCTION revenue_share(part numeric, whole numeric) RETURNS numeric
      LANGUAGE sql IMMUTABLE AS 'SELECT part / nullif(whole, 0)';";

/// The suite's stack, as the clients see it.
struct Suite {
    /// The test database (the warehouse tidemark serves, and the oracle side).
    db_name: String,
    /// tidemark's pgwire port.
    pg_port: u16,
}

/// Clients connect to tidemark with the warehouse's database name, as README advises: tidemark
/// accepts any name, but catalog browsers (ADBC's get_objects, psqlODBC's SQLTables, pgjdbc's
/// getCatalogs) match the name they connected with against `pg_database`.
impl Suite {
    /// libpq key/value string for tidemark.
    fn tm_conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=analyst dbname={}", self.pg_port, self.db_name)
    }

    /// libpq key/value string for the warehouse database itself.
    fn oracle_conninfo(&self) -> String {
        format!("host=127.0.0.1 port=5432 user=postgres dbname={}", self.db_name)
    }

    /// `postgresql://` URL for tidemark.
    fn tm_url(&self) -> String {
        format!("postgresql://analyst@127.0.0.1:{}/{}", self.pg_port, self.db_name)
    }

    /// `postgresql://` URL for the warehouse database.
    fn oracle_url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:5432/{}", self.db_name)
    }
}

static SUITE: OnceLock<Suite> = OnceLock::new();

/// The shared stack, started on first use on a thread of its own that serves it until the
/// test process exits (its database is dropped by the next test run's stale-database sweep).
fn suite() -> &'static Suite {
    SUITE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the suite's server");
            rt.block_on(async move {
                let (db_name, db) = common::fresh_db("matrix").await;
                let layout = common::build_layout(&db, EVENTS, SEED).await;
                common::exec(&db, CATALOG_SQL).await;
                common::set_watermark(&db, "events", layout.w0).await;
                let toml = common::config_toml(&common::db_url(&db_name), "", true)
                    .replace("http = \"127.0.0.1:0\"", "pg = \"127.0.0.1:0\"");
                let config = common::parse_config(&toml);
                tidemark::setup::run(&config).await.expect("tidemark setup");
                let server = tidemark::server::Server::start(Arc::new(config))
                    .await
                    .expect("tidemark server");
                let pg_port = server.pg_addr.expect("the pgwire listener is bound").port();
                tx.send(Suite { db_name, pg_port }).expect("hand the stack to the tests");
                let _keep = (server, db);
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("the suite's stack started")
    })
}

/// The venv's Python (scripts/clients.sh makes it).
fn python() -> std::path::PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "the Python venv .venv is missing: {INSTALL_HINT}");
    p
}

/// Runs `tests/clients/python/<script>` with `args` and asserts it printed
/// `<prefix>N checks passed`.
fn run_python(script: &str, args: &[String], prefix: &str) {
    let mut cmd = client_command(python());
    cmd.arg(repo().join("tests/clients/python").join(script)).args(args);
    let run = run_blocking(script.to_string(), cmd);
    assert_client_passed(&run, prefix);
}

/// SQLAlchemy 2 with psycopg2: connect (SHOW TRANSACTION ISOLATION LEVEL and friends),
/// inspect() catalog calls, pandas.read_sql of split, row and pass-through queries,
/// stream_results over 100k rows.
#[test]
fn sqlalchemy_psycopg2() {
    let s = suite();
    run_python(
        "test_sqlalchemy.py",
        &["psycopg2".into(), s.tm_url(), s.oracle_url()],
        "sqlalchemy+psycopg2: ",
    );
}

/// The same with psycopg 3 (server-side binding; stream_results uses server cursors that it
/// Describes as portals).
#[test]
fn sqlalchemy_psycopg3() {
    let s = suite();
    run_python(
        "test_sqlalchemy.py",
        &["psycopg".into(), s.tm_url(), s.oracle_url()],
        "sqlalchemy+psycopg: ",
    );
}

/// asyncpg: parameters, a prepared statement run many times, a cursor in a transaction,
/// numerics/timestamptz/NULLs in binary, copy_from_query into a file, a pool's reset.
#[test]
fn asyncpg_client() {
    let s = suite();
    run_python("test_asyncpg.py", &[s.tm_url(), s.oracle_url()], "asyncpg: ");
}

/// ADBC's PostgreSQL driver (binary COPY), Polars read_database_uri with ADBC and with
/// connectorx (binary COPY and cursor protocols).
#[test]
fn adbc_postgresql_polars_connectorx() {
    let s = suite();
    run_python("test_adbc_postgresql.py", &[s.tm_url(), s.oracle_url()], "adbc-postgresql: ");
}

/// psqlODBC (Debian's odbc-postgresql, unixODBC) through pyodbc: SQLTables, SQLColumns, a
/// parameterized query, 100k rows with UseDeclareFetch=1.
#[test]
fn psqlodbc_pyodbc() {
    let s = suite();
    let odbc = |port: u16, user: &str, db: &str| {
        format!(
            "DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={port};DATABASE={db};UID={user};\
             PWD=;UseDeclareFetch=1;Fetch=1000"
        )
    };
    let tm = odbc(s.pg_port, "analyst", &s.db_name);
    let oracle = odbc(5432, "postgres", &s.db_name);
    run_python("test_odbc.py", &[tm, oracle], "psqlodbc: ");
}

/// pgjdbc's DatabaseMetaData as DBeaver and Metabase call it: every call's rows equal the
/// same call made on the warehouse database directly.
#[test]
fn pgjdbc_database_metadata() {
    let s = suite();
    assert!(Path::new(JDBC_JAR).exists(), "pgjdbc is missing at {JDBC_JAR}: {INSTALL_HINT}");
    let classes = std::env::temp_dir().join(format!("tidemark_jdbc_meta_{}", std::process::id()));
    std::fs::create_dir_all(&classes).expect("a directory for the classes");
    let mut javac = client_command("javac");
    javac
        .arg("-d")
        .arg(&classes)
        .args(["-cp", JDBC_JAR])
        .arg(repo().join("tests/clients/java/TidemarkJdbcMetadata.java"));
    let compiled = run_blocking("javac TidemarkJdbcMetadata.java".into(), javac);
    assert!(compiled.success(), "{}", compiled.report());
    let mut java = client_command("java");
    java.arg("-Duser.timezone=UTC")
        .arg("-cp")
        .arg(format!("{}:{JDBC_JAR}", classes.display()))
        .arg("TidemarkJdbcMetadata")
        .arg(format!("jdbc:postgresql://127.0.0.1:{}/{}?user=analyst", s.pg_port, s.db_name))
        .arg(format!("jdbc:postgresql://127.0.0.1:5432/{}?user=postgres", s.db_name));
    let run = run_blocking("TidemarkJdbcMetadata".into(), java);
    let _ = std::fs::remove_dir_all(classes);
    assert_client_passed(&run, "pgjdbc-metadata: ");
}

/// psql meta-commands (`\d`, `\d+ events`, `\dt`, `\dv`, `\dn`, `\df`, `\l`) print what they
/// print on the warehouse itself, `\conninfo` names tidemark, and `\copy ... with (format csv,
/// header)` writes the oracle's rows.
#[test]
fn psql_meta_commands_and_copy() {
    let s = suite();
    let meta = ["\\d", "\\d+ events", "\\dt", "\\dv", "\\dn", "\\df", "\\l"];
    for m in meta {
        let got = psql(&s.tm_conninfo(), &[m]);
        let want = psql(&s.oracle_conninfo(), &[m]);
        assert!(got.success() && want.success(), "{m}:\n{}\n{}", got.report(), want.report());
        assert_eq!(got.stdout, want.stdout, "psql {m} through tidemark and on the warehouse");
        assert!(!got.stdout.trim().is_empty(), "psql {m} printed nothing");
    }
    let info = psql(&s.tm_conninfo(), &["\\conninfo"]);
    assert!(
        info.success() && info.stdout.contains(&format!("port \"{}\"", s.pg_port)),
        "{}",
        info.report()
    );
    let copy = |table: &str| {
        format!(
            "\\copy (SELECT id, event_time, country, device, amount, score, flag, day FROM {table} \
             ORDER BY id LIMIT 500) to stdout with (format csv, header)"
        )
    };
    let got = psql(&s.tm_conninfo(), &[&copy("events")]);
    let want = psql(&s.oracle_conninfo(), &[&copy("events_oracle")]);
    assert!(got.success(), "{}", got.report());
    assert_eq!(got.stdout.lines().count(), 501, "a header and 500 rows");
    assert_eq!(got.stdout, want.stdout, "\\copy csv header through tidemark and on the oracle");
}

/// `psql -X -w -c ... -d conninfo` (aligned output, as people read it).
fn psql(conninfo: &str, commands: &[&str]) -> ClientRun {
    let mut cmd: Command = client_command("psql");
    cmd.args(["-X", "-w", "-v", "ON_ERROR_STOP=1"]);
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    cmd.arg("-d").arg(conninfo).env("PAGER", "").env("COLUMNS", "200");
    run_blocking(format!("psql {}", commands.join(" ")), cmd)
}
