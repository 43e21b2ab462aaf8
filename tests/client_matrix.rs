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
use std::sync::OnceLock;

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
                let server = common::serve(config).await;
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

// ---------------------------------------------------------------------------------------------
// What the clients send, statement by statement, against PostgreSQL's own answers
// ---------------------------------------------------------------------------------------------

/// Each session sequence gives through tidemark exactly the rows, command tags, warnings and
/// ReadyForQuery statuses PostgreSQL gives on the warehouse database.
#[test]
fn session_statements_answer_as_postgres_does() {
    use common::raw::RawPg;
    let s = suite();
    let sequences: &[&[&str]] = &[
        &["SHOW TRANSACTION ISOLATION LEVEL", "SHOW TIME ZONE", "SHOW DateStyle"],
        &[
            "SET TIME ZONE 'Europe/Berlin'",
            "SHOW TIME ZONE",
            "SELECT current_setting('TimeZone')",
            "RESET TIME ZONE",
            "SHOW timezone",
        ],
        &[
            "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
            "SHOW TRANSACTION ISOLATION LEVEL",
            "COMMIT",
            "SHOW transaction_isolation",
        ],
        &[
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            "SHOW default_transaction_isolation",
            "SHOW transaction_isolation",
            "START TRANSACTION",
            "SHOW transaction_isolation",
            "COMMIT",
        ],
        &[
            "START TRANSACTION",
            "SET LOCAL search_path = pg_catalog",
            "SHOW search_path",
            "COMMIT",
            "SHOW search_path",
        ],
        &["SET LOCAL search_path = x", "SHOW search_path"],
        &[
            "BEGIN",
            "SET search_path = a",
            "SAVEPOINT s",
            "SET search_path = b",
            "ROLLBACK TO s",
            "SHOW search_path",
            "RELEASE s",
            "SHOW search_path",
            "ROLLBACK",
            "SHOW search_path",
        ],
        &[
            "BEGIN",
            "SAVEPOINT s",
            "SELECT 1/0",
            "SELECT 1",
            "ROLLBACK TO SAVEPOINT s",
            "SELECT 2",
            "RELEASE SAVEPOINT s",
            "COMMIT",
        ],
        &["BEGIN", "SELECT 1/0", "COMMIT", "SELECT 3"],
        &["SAVEPOINT s", "RELEASE s", "ROLLBACK TO s", "COMMIT", "BEGIN", "BEGIN", "ROLLBACK"],
        &["BEGIN; SELECT 1; SAVEPOINT p; SELECT 2", "ROLLBACK TO p; COMMIT"],
        &[
            "SELECT set_config('application_name', 'matrix', false)",
            "SHOW application_name",
            "SELECT current_setting('application_name') AS a, current_setting('nope.x', true) AS b",
        ],
        &[
            "SET myapp.v = '5'",
            "SELECT current_setting('myapp.v')",
            "SHOW myapp.v",
            "BEGIN",
            "SELECT set_config('myapp.v', '6', true)",
            "SHOW myapp.v",
            "COMMIT",
            "SHOW myapp.v",
        ],
        &[
            "SET extra_float_digits = 2",
            "SET application_name = 'x'",
            "DISCARD ALL",
            "SHOW extra_float_digits",
            "SHOW application_name",
            "BEGIN",
            "DISCARD ALL",
            "ROLLBACK",
        ],
        &["SELECT current_setting('no_such_setting')", "SELECT 4"],
        &["SHOW no_such_setting", "BEGIN", "SHOW no_such_setting", "ROLLBACK"],
        &["DEALLOCATE ALL", "UNLISTEN *", "CLOSE ALL", "DISCARD PLANS"],
    ];
    for seq in sequences {
        let mut tm = RawPg::connect(s.pg_port, "postgres", &s.db_name);
        let mut pg = RawPg::connect(5432, "postgres", &s.db_name);
        for sql in *seq {
            let (got, want) = (tm.query(sql), pg.query(sql));
            let view = |r: &common::raw::Reply| {
                let rows: Vec<Vec<u8>> =
                    r.msgs.iter().filter(|m| m.tag == b'D').map(|m| m.body.clone()).collect();
                (r.tags(), rows, r.error(), r.notices(), r.status)
            };
            assert_eq!(view(&got), view(&want), "{sql:?} in {seq:?}: tidemark, then PostgreSQL");
        }
    }
}

/// SHOW ALL lists every parameter the warehouse has (name, setting, description), with the
/// session's own values in place.
#[test]
fn show_all_lists_the_warehouse_parameters_with_the_sessions_values() {
    use common::raw::RawPg;
    let s = suite();
    let mut tm = RawPg::connect(s.pg_port, "analyst", &s.db_name);
    let mut pg = RawPg::connect(5432, "postgres", &s.db_name);
    let names = |r: &common::raw::Reply| -> Vec<(String, String)> {
        r.msgs
            .iter()
            .filter(|m| m.tag == b'D')
            .map(|m| {
                let cells = data_row(&m.body);
                (cells[0].clone().unwrap_or_default(), cells[1].clone().unwrap_or_default())
            })
            .collect()
    };
    tm.query("SET search_path = app, public");
    let (got, want) = (names(&tm.query("SHOW ALL")), names(&pg.query("SHOW ALL")));
    let keys = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(&want), "the same parameters, in the same order");
    let value = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(value("search_path"), Some("app, public"), "the session's value");
    assert_eq!(value("transaction_read_only"), Some("on"));
    assert_eq!(value("application_name"), Some(""));
}

/// The cells of a DataRow body.
fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    (0..n)
        .map(|_| {
            let len = i32::from_be_bytes(body[at..at + 4].try_into().expect("a length"));
            at += 4;
            if len < 0 {
                return None;
            }
            let cell = String::from_utf8_lossy(&body[at..at + len as usize]).into_owned();
            at += len as usize;
            Some(cell)
        })
        .collect()
}

/// What tidemark refuses gets the right SQLSTATE and leaves the connection usable, in the right
/// transaction state.
#[test]
fn refused_statements_leave_the_session_usable() {
    use common::raw::RawPg;
    let s = suite();
    let mut c = RawPg::connect(s.pg_port, "analyst", &s.db_name);
    for (sql, code) in [
        ("LISTEN events", "25006"),
        ("COPY events_batch FROM STDIN", "25006"),
        ("COPY (SELECT 1) TO '/tmp/tidemark_copy'", "25006"),
        ("COPY (SELECT 1) TO PROGRAM 'true'", "25006"),
        ("BEGIN READ WRITE", "25006"),
        ("SET TRANSACTION READ WRITE", "25006"),
        ("SET client_encoding = 'LATIN1'", "0A000"),
        ("COMMIT AND CHAIN", "0A000"),
        ("MOVE BACKWARD 1 FROM c", "0A000"),
        ("FETCH 1 FROM no_such_cursor", "34000"),
        ("COPY (SELECT 1) TO STDOUT (FORMAT csv, FORCE_QUOTE (nope))", "42P10"),
    ] {
        let r = c.query(sql);
        assert_eq!(r.error().as_deref(), Some(code), "{sql}: {:?}", r.msgs);
        assert_eq!(r.status, 'I', "{sql} outside a block leaves it idle");
        let r = c.query(&format!("BEGIN; {sql}"));
        assert_eq!((r.error().as_deref(), r.status), (Some(code), 'E'), "{sql} in a block");
        assert_eq!(c.query("SELECT 1").error().as_deref(), Some("25P02"));
        let r = c.query("ROLLBACK");
        assert_eq!((r.tags(), r.status), (vec!["ROLLBACK".to_string()], 'I'));
        assert_eq!(c.query("SELECT 1").tags(), vec!["SELECT 1"], "usable after {sql}");
    }
}

/// COPY TO STDOUT in every format and option gives PostgreSQL's bytes, message by message,
/// for split, row and pass-through queries over the logical table (against the same query
/// over the oracle table); bad options give PostgreSQL's SQLSTATE.
#[test]
fn copy_out_is_postgres_byte_for_byte() {
    use common::raw::RawPg;
    let s = suite();
    let queries = [
        // (no float aggregate: merged float sums may differ in the last bits, by design)
        "SELECT country, count(*), sum(amount), avg(qty), min(event_time), sum(big), \
         bool_or(flag), max(score) FROM {T} GROUP BY 1 ORDER BY 1",
        "SELECT * FROM {T} ORDER BY id LIMIT 700",
        "SELECT * FROM {T} WHERE id < 0",
        "SELECT device, count(DISTINCT user_id), array_agg(DISTINCT country ORDER BY country) \
         FROM {T} GROUP BY 1 ORDER BY 1",
        "SELECT id, device, E'tab\\there' AS t, '' AS e, NULL::text AS n, interval '1 day 02:03' \
         AS i, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '{\"k\": [1, 2]}'::jsonb AS j \
         FROM {T} ORDER BY id LIMIT 50",
    ];
    let options = [
        "",
        "(FORMAT text)",
        "(FORMAT text, HEADER, DELIMITER '|', NULL 'NUL')",
        "(FORMAT csv)",
        "(FORMAT csv, HEADER true, QUOTE '''', ESCAPE '\\', FORCE_QUOTE *)",
        "(FORMAT csv, HEADER, DELIMITER ';', NULL '-', FORCE_QUOTE (device))",
        "(FORMAT binary)",
        "WITH BINARY",
        "WITH CSV HEADER",
        "WITH CSV HEADER QUOTE AS '|' FORCE QUOTE device",
        "DELIMITER AS ',' NULL AS ''",
    ];
    let mut tm = RawPg::connect(s.pg_port, "analyst", &s.db_name);
    let mut pg = RawPg::connect(5432, "postgres", &s.db_name);
    for q in queries {
        for o in options {
            let (a, b) = (q.replace("{T}", "events"), q.replace("{T}", "events_oracle"));
            if o.contains("device") && !q.contains("device") {
                continue;
            }
            let got = tm.query(&format!("COPY ({a}) TO STDOUT {o}"));
            let want = pg.query(&format!("COPY ({b}) TO STDOUT {o}"));
            assert_eq!(want.error(), None, "the oracle's COPY ({b}) {o}");
            assert_eq!(got.error(), None, "COPY ({a}) {o}: {:?}", got.msgs);
            let shown = |r: &common::raw::Reply| -> Vec<String> {
                r.copy_data().iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect()
            };
            assert_eq!(shown(&got), shown(&want), "COPY ({a}) TO STDOUT {o}");
            assert!(got.copy_data() == want.copy_data(), "COPY ({a}) TO STDOUT {o}: bytes");
            assert_eq!((got.tags(), got.status), (want.tags(), want.status), "{a} {o}");
            let start = |r: &common::raw::Reply| r.msgs.iter().find(|m| m.tag == b'H').cloned();
            assert_eq!(
                start(&got).map(|m| m.body),
                start(&want).map(|m| m.body),
                "CopyOutResponse"
            );
        }
    }
    let got = tm.query("COPY countries (code, region) TO STDOUT (FORMAT csv)");
    let want = pg.query("COPY countries (code, region) TO STDOUT (FORMAT csv)");
    assert_eq!(got.copy_data(), want.copy_data(), "COPY table (columns)");
    for bad in [
        "(FORMAT xml)",
        "(FORMAT binary, DELIMITER ',')",
        "(FORMAT binary, NULL 'x')",
        "(FORMAT binary, HEADER)",
        "(DELIMITER 'ab')",
        "(QUOTE '\"')",
        "(ESCAPE '\\')",
        "(FORCE_QUOTE *)",
        "(FORMAT csv, DELIMITER '\"')",
        "(DELIMITER '\\')",
        "(DELIMITER 'a')",
        "(FORMAT csv, NULL '\"')",
        "(DELIMITER ',', NULL 'a,b')",
        "(HEADER match)",
        "(FORMAT csv, FORCE_NOT_NULL (a))",
        "(FORMAT csv, FORCE_NULL (a))",
        "(HEADER, HEADER)",
        "(ENCODING 'LATIN1')",
    ] {
        let got = tm.query(&format!("COPY (SELECT 1 AS a) TO STDOUT {bad}"));
        let want = pg.query(&format!("COPY (SELECT 1 AS a) TO STDOUT {bad}"));
        let expected = match bad {
            // PostgreSQL converts to LATIN1; tidemark speaks UTF8 only
            "(ENCODING 'LATIN1')" => Some("0A000".to_string()),
            _ => want.error(),
        };
        assert!(expected.is_some(), "PostgreSQL accepted COPY {bad}");
        assert_eq!(got.error(), expected, "COPY ... TO STDOUT {bad}");
        assert_eq!(got.status, 'I');
    }
}

/// A startup `TimeZone` (pgjdbc sends the JVM's zone; libpq `options=-c TimeZone=...`) acts
/// like SET on split queries: the warehouse legs evaluate timestamptz in that zone, and an
/// answer computed for a UTC session is not served to it.
#[test]
fn startup_time_zone_acts_like_set() {
    let s = suite();
    let sql = "SELECT date_trunc('hour', event_time::timestamptz)::text AS h, count(*) \
               FROM events GROUP BY 1 ORDER BY 1";
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rows = |conninfo: String| {
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect {conninfo}: {e}"));
            tokio::spawn(conn);
            let rows = client.simple_query(sql).await.expect(sql);
            rows.iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                        r.get(0).unwrap_or("").to_string(),
                        r.get(1).unwrap_or("").to_string(),
                    )),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
    };
    let plan = rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&s.tm_conninfo(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let rows = client.simple_query(&format!("EXPLAIN {sql}")).await.expect("EXPLAIN");
        rows.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    assert!(plan.contains("leg batch") && plan.contains("leg speed"), "split: {plan}");
    let utc = rows(s.tm_conninfo());
    assert!(utc.first().is_some_and(|(h, _)| h.ends_with("+00")), "{utc:?}");
    let zone = " options='-c TimeZone=America/New_York'";
    let tm = rows(format!("{}{zone}", s.tm_conninfo()));
    let pg = rows(format!("{}{zone}", s.oracle_conninfo()));
    assert_eq!(tm, pg, "tidemark answers in the startup zone, as PostgreSQL does");
    assert!(tm.first().is_some_and(|(h, _)| !h.ends_with("+00")), "{tm:?}");
}
