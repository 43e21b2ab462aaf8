//! Production connectivity (issue 14) against a warehouse set up like a real one: a private
//! PostgreSQL with `ssl = on`, a certificate of a throw-away CA made here, and TCP logins only
//! over TLS with a password (`hostssl ... scram-sha-256`).
//!
//! - verify-full with the right CA and host name: the differential sample equals the oracle,
//!   the pass-through fast path and cancel requests work, and every connection is TLS;
//! - a wrong CA, a wrong host name and a plain connection each fail naming the cause;
//! - credentials that rotate (a file, a command) while 8 clients query: no query fails;
//! - Redshift IAM: `tidemark serve` (a child process, with AWS credentials in its
//!   environment) asks a local stand-in of the Redshift API for credentials that expire in
//!   seconds, refreshes them before they expire and serves throughout; `tidemark check` logs
//!   in through `GetClusterCredentialsWithIAM` and Redshift Serverless `GetCredentials` too;
//! - no secret (passwords, AWS keys) in logs at debug level, `tidemark check`, `/metrics`,
//!   errors or EXPLAIN.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::certs::TestCa;
use common::pgserver::PgServer;
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The login tidemark uses (a superuser, so `tidemark setup` can run as it).
const LOGIN: &str = "tm_login";
const FIRST_PASSWORD: &str = "first-pw-5d1e77a0";
/// The Redshift user the IAM stand-in hands out credentials for (Redshift names it `IAM:<user>`).
const IAM_USER: &str = "tm_iam";
/// AWS credentials of the IAM test (never to appear anywhere).
const AWS_KEY_ID: &str = "AKIDTIDEMARKTEST0001";
const AWS_SECRET: &str = "aws-secret-9c3b0e5f7d2a";
/// How long the stand-in's credentials live.
const IAM_LIFE: Duration = Duration::from_secs(6);

/// Every test's generated queries over `{T}`: `events` for tidemark, `events_oracle` for the
/// oracle; true when the order is part of the answer.
const SAMPLE: &[(&str, bool)] = &[
    ("SELECT count(*) FROM {T}", false),
    ("SELECT country, count(*), sum(amount) FROM {T} GROUP BY country ORDER BY country NULLS FIRST", true),
    (
        "SELECT count(*), sum(qty) FROM {T} WHERE event_time >= TIMESTAMP '2024-03-19 12:00:00' \
         AND event_time < TIMESTAMP '2024-03-22 00:00:00'",
        false,
    ),
    ("SELECT device, max(score), min(qty) FROM {T} GROUP BY device", false),
    ("SELECT date_trunc('day', event_time) AS d, count(*) FROM {T} GROUP BY 1 ORDER BY 1", true),
    (
        "SELECT id, country, amount FROM {T} WHERE event_time >= TIMESTAMP '2024-03-23 00:00:00' \
         ORDER BY id LIMIT 20",
        true,
    ),
    ("SELECT avg(amount) FROM {T} WHERE flag", false),
    ("SELECT count(DISTINCT user_id) FROM {T}", false),
    ("SELECT sum(big) FROM {T} WHERE country = 'DE'", false),
    (
        "SELECT country, count(*) FROM {T} WHERE event_time < TIMESTAMP '2024-03-20 00:00:00' \
         GROUP BY country HAVING count(*) > 3",
        false,
    ),
];

// ---------------------------------------------------------------------------------------------
// A TLS-only warehouse
// ---------------------------------------------------------------------------------------------

/// A private PostgreSQL that takes TCP logins only over TLS, with the layout in database `db`,
/// the CA that signed its certificate (for `localhost` only), and a second, unrelated CA.
struct TlsWarehouse {
    pg: PgServer,
    ca: TestCa,
    other_ca: TestCa,
    /// The test's own connection to `db` (over the Unix socket).
    db: Client,
    scratch: PathBuf,
}

impl TlsWarehouse {
    async fn start() -> TlsWarehouse {
        let ca = TestCa::new("tidemark test CA");
        let other_ca = TestCa::new("some other CA");
        let mut pg = PgServer::start();
        pg.require_tls(&ca.server("pg", "DNS:localhost"));
        let db = pg.fresh_database("db").await;
        common::build_layout(&db, 600, 14).await;
        common::set_watermark(&db, "events", common::Layout::standard().w0).await;
        let role = format!("CREATE ROLE {LOGIN} LOGIN SUPERUSER PASSWORD '{FIRST_PASSWORD}'");
        common::exec(&db, &role).await;
        let scratch = std::env::temp_dir().join(format!(
            "tidemark-prod-{}-{}",
            std::process::id(),
            pg.port()
        ));
        std::fs::create_dir_all(&scratch).expect("scratch directory");
        TlsWarehouse { pg, ca, other_ca, db, scratch }
    }

    /// A libpq URL of `db` as `user[:password]` on `host`, with these TLS parameters.
    fn url(&self, user: &str, password: Option<&str>, host: &str, tls: &str) -> String {
        let login = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_string(),
        };
        format!("postgres://{login}@{host}:{}/db?{tls}", self.pg.port())
    }

    /// `sslmode=verify-full` with the right CA.
    fn verify_full(&self) -> String {
        format!("sslmode=verify-full&sslrootcert={}", self.ca.cert().display())
    }

    /// Config TOML for `url`: REST and pgwire on free ports, the cache off (every query reaches
    /// the warehouse), `extra` lines in `[warehouse]`, and `sections` after it.
    fn config(&self, url: &str, extra: &str, sections: &str) -> String {
        let toml = common::config_toml(url, extra, true)
            .replace("http = \"127.0.0.1:0\"", "http = \"127.0.0.1:0\"\npg = \"127.0.0.1:0\"");
        format!("{toml}\n[cache]\nenabled = false\n{sections}")
    }

    /// Runs `tidemark setup` and starts a server for `toml`.
    async fn serve(&self, toml: &str) -> tidemark::server::Server {
        let config = common::parse_config(toml);
        tidemark::setup::run(&config).await.unwrap_or_else(|e| panic!("setup: {e}"));
        tidemark::server::Server::start(Arc::new(config)).await.expect("server")
    }

    /// Backends of `user` now: (uses TLS, backend start as epoch seconds).
    async fn backends(&self, user: &str) -> Vec<(bool, f64)> {
        let rows = self
            .db
            .query(
                "SELECT s.ssl, extract(epoch FROM a.backend_start)::float8 \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1",
                &[&user],
            )
            .await
            .expect("pg_stat_activity");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    /// Statements of `user` running now whose text starts with `prefix`.
    async fn running(&self, prefix: &str) -> i64 {
        let sql = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 \
                   AND pid <> pg_backend_pid()";
        let like = format!("{prefix}%");
        self.db.query_one(sql, &[&like]).await.expect("pg_stat_activity").get(0)
    }

    async fn set_password(&self, user: &str, password: &str) {
        common::exec(&self.db, &format!("ALTER ROLE \"{user}\" PASSWORD '{password}'")).await;
    }
}

impl Drop for TlsWarehouse {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Runs the sample through REST on `http` and on the oracle; the reports of differences, and
/// how many answers were split (not passed through).
async fn differential_sample(http: std::net::SocketAddr, oracle: &Client) -> (Vec<String>, usize) {
    let client = common::http_client();
    let (mut reports, mut split) = (Vec::new(), 0);
    for (sql, ordered) in SAMPLE {
        let (status, body) = common::query(&client, http, &sql.replace("{T}", "events"), &[]).await;
        let want = common::oracle(oracle, &sql.replace("{T}", "events_oracle"), &[]).await;
        let got = match status {
            200 => common::answer_from_json(&body),
            _ => Err(format!("HTTP {status}: {body}")),
        };
        match (want, got) {
            (Ok(w), Ok(g)) => {
                split += usize::from(g.plan.as_deref() != Some("passthrough"));
                if let Err(e) = common::compare_answers(&w, &g, *ordered) {
                    reports.push(format!("{sql}: {e}"));
                }
            }
            (w, g) => reports.push(format!("{sql}: oracle {w:?}, tidemark {g:?}")),
        }
    }
    (reports, split)
}

fn forwarded(server: &tidemark::server::Server) -> u64 {
    server
        .engine
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("tidemark_forwarded_statements_total "))
        .and_then(|v| v.parse().ok())
        .expect("forwarded counter")
}

fn text_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// verify-full with the right CA and host name: setup, the differential sample, the fast
/// path and cancel requests (fast path and pool) all work, over TLS only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_serves_the_sample_the_fast_path_and_cancels() {
    let w = TlsWarehouse::start().await;
    let url = w.url(LOGIN, Some(FIRST_PASSWORD), "localhost", &w.verify_full());
    let server = w.serve(&w.config(&url, "pool_size = 4", "")).await;
    let (reports, split) = differential_sample(server.http_addr.unwrap(), &w.db).await;
    assert!(reports.is_empty(), "differences over TLS:\n{}", reports.join("\n"));
    assert!(split >= SAMPLE.len() / 2, "only {split} answers were split");

    let pg_port = server.pg_addr.expect("pg").port();
    let client = common::pg_client(pg_port, "anyone", None).await.expect("pgwire");
    let sql = "SELECT id, country, qty FROM events_batch WHERE id < 30 ORDER BY id";
    let want = text_rows(&w.db.simple_query(sql).await.unwrap());
    let before = forwarded(&server);
    assert_eq!(text_rows(&client.simple_query(sql).await.unwrap()), want);
    assert_eq!(forwarded(&server), before + 1, "the statement took the fast path");

    cancel_reaches_the_warehouse(&w, pg_port, true).await;
    cancel_reaches_the_warehouse(&w, pg_port, false).await;
    let backends = w.backends(LOGIN).await;
    assert!(!backends.is_empty(), "tidemark holds warehouse connections");
    assert!(backends.iter().all(|(ssl, _)| *ssl), "every connection is TLS: {backends:?}");
    server.shutdown().await;
}

/// A statement cancelled through tidemark (simple protocol: the fast path; extended: the
/// pool) ends with 57014 and stops running in the warehouse.
async fn cancel_reaches_the_warehouse(w: &TlsWarehouse, pg_port: u16, simple: bool) {
    let client = common::pg_client(pg_port, "anyone", None).await.expect("pgwire");
    let token = client.cancel_token();
    let sleep = "SELECT pg_sleep(30)";
    let task = tokio::spawn(async move {
        match simple {
            true => client.simple_query(sleep).await.map(|_| ()),
            false => client.query(sleep, &[]).await.map(|_| ()),
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.running(sleep).await == 0 {
        assert!(Instant::now() < deadline, "the sleep never reached the warehouse");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel_query(NoTls).await.expect("cancel request");
    let e = task.await.unwrap().expect_err("cancelled");
    assert_eq!(common::sqlstate_of(&e), "57014", "simple={simple}: {e:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.running(sleep).await > 0 {
        assert!(Instant::now() < deadline, "the warehouse still runs the cancelled sleep");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A wrong CA, a wrong host name and a plain connection each fail (setup and queries) with
/// an error naming the cause; never an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_name_their_cause() {
    let w = TlsWarehouse::start().await;
    let other = format!("sslmode=verify-full&sslrootcert={}", w.other_ca.cert().display());
    let cases = [
        (
            "wrong CA",
            w.url(LOGIN, Some(FIRST_PASSWORD), "localhost", &other),
            &["certificate", "issuer is unknown"][..],
        ),
        (
            "wrong host",
            w.url(LOGIN, Some(FIRST_PASSWORD), "127.0.0.1", &w.verify_full()),
            &["certificate", "not valid for name \"127.0.0.1\""][..],
        ),
        (
            "plain",
            w.url(LOGIN, Some(FIRST_PASSWORD), "localhost", "sslmode=disable"),
            &["pg_hba.conf", "no encryption"][..],
        ),
    ];
    for (what, url, causes) in cases {
        let config = common::parse_config(&w.config(&url, "connect_timeout = \"3s\"", ""));
        let e = tidemark::setup::run(&config).await.expect_err(what).to_string();
        let lower = e.to_lowercase();
        assert!(causes.iter().all(|c| lower.contains(c)), "{what}: setup said {e:?}");
        assert!(!e.contains(FIRST_PASSWORD), "{what}: the error shows the password: {e}");
        let server = tidemark::server::Server::start(Arc::new(config)).await.expect("starts");
        let addr = server.http_addr.unwrap();
        let (status, body) =
            common::query(&common::http_client(), addr, "SELECT count(*) FROM events", &[]).await;
        assert_eq!(status, 503, "{what}: {body}");
        let message = body["detail"].as_str().unwrap_or_default().to_lowercase();
        assert!(causes.iter().all(|c| message.contains(c)), "{what}: REST said {body}");
        server.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Rotating credentials
// ---------------------------------------------------------------------------------------------

/// What the 8 clients did: answers, and the failures (with their reasons).
#[derive(Default)]
struct Load {
    answered: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// 8 clients querying until `stop`: fast-path pgwire, split REST and extended pass-through.
fn start_load(
    server: &tidemark::server::Server,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = server.http_addr.expect("http");
    let pg_port = server.pg_addr.expect("pg").port();
    (0..8i32)
        .map(|i| {
            let (stop, load) = (stop.clone(), load.clone());
            tokio::spawn(async move {
                let rest = common::http_client();
                let pg = common::pg_client(pg_port, "anyone", None).await.expect("pgwire");
                while !stop.load(Ordering::Relaxed) {
                    let outcome = match i % 3 {
                        0 => pg
                            .simple_query("SELECT count(*) FROM events_batch")
                            .await
                            .map(|_| ())
                            .map_err(|e| common::pg_error_text(&e)),
                        1 => match common::query(&rest, http, "SELECT count(*) FROM events", &[])
                            .await
                        {
                            (200, _) => Ok(()),
                            (s, body) => Err(format!("HTTP {s}: {body}")),
                        },
                        _ => pg
                            .query("SELECT max(id) FROM events_batch WHERE qty > $1::int", &[&i])
                            .await
                            .map(|_| ())
                            .map_err(|e| common::pg_error_text(&e)),
                    };
                    match outcome {
                        Ok(()) => drop(load.answered.fetch_add(1, Ordering::Relaxed)),
                        Err(e) => load.failures.lock().unwrap().push(e),
                    }
                }
            })
        })
        .collect()
}

/// Runs the load while `rotate` runs, then stops it; panics when a query failed.
async fn serve_through(
    server: &tidemark::server::Server,
    rotate: impl std::future::Future<Output = ()>,
) -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let clients = start_load(server, stop.clone(), load.clone());
    rotate.await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let failures = load.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} queries failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    load.answered.load(Ordering::Relaxed)
}

/// Writes a file the way Kubernetes updates a mounted secret: a new file renamed over it.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn epoch_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Three rotations, each changing `first` then `second` a moment apart (the source and the
/// warehouse never change at the same instant); returns when the last rotation happened.
async fn rotate_three_times(w: &TlsWarehouse, source_first: bool, write: impl Fn(&str)) -> f64 {
    let mut last = 0.0;
    for k in 1..=3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let password = format!("rotated-{k}-{:x}", std::process::id());
        if source_first {
            write(&password);
            tokio::time::sleep(Duration::from_millis(30)).await;
            w.set_password(LOGIN, &password).await;
        } else {
            w.set_password(LOGIN, &password).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            write(&password);
        }
        last = epoch_now();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    last
}

/// A password file changed (and the role's password with it) three times while 8 clients
/// query: no query fails, and connections opened after the last change log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_credentials_rotate_while_eight_clients_query() {
    let w = TlsWarehouse::start().await;
    let file = w.scratch.join("password");
    replace_file(&file, &format!("{FIRST_PASSWORD}\n"));
    let url = w.url(LOGIN, None, "localhost", &w.verify_full());
    let creds =
        format!("[warehouse.credentials]\nsource = \"file\"\npath = \"{}\"\n", file.display());
    let server =
        w.serve(&w.config(&url, "pool_size = 6\nmax_connection_age = \"300ms\"", &creds)).await;
    let rotation = async {
        let last = rotate_three_times(&w, true, |p| replace_file(&file, &format!("{p}\n"))).await;
        let fresh = w.backends(LOGIN).await.iter().filter(|(_, start)| *start > last).count();
        assert!(fresh > 0, "no connection logged in after the last rotation");
    };
    let answered = serve_through(&server, rotation).await;
    assert!(answered > 50, "only {answered} answers");
    server.shutdown().await;
}

/// A command printing the password as JSON, rotated three times (the warehouse first, so
/// tidemark learns of each rotation from a refused login) while 8 clients query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_credentials_rotate_while_eight_clients_query() {
    let w = TlsWarehouse::start().await;
    let file = w.scratch.join("credential.json");
    let json = |p: &str| json!({ "password": p, "expiration": "2099-01-01T00:00:00Z" }).to_string();
    replace_file(&file, &json(FIRST_PASSWORD));
    let url = w.url(LOGIN, None, "localhost", &w.verify_full());
    let creds = format!(
        "[warehouse.credentials]\nsource = \"command\"\ncommand = [\"cat\", \"{}\"]\n",
        file.display()
    );
    let server =
        w.serve(&w.config(&url, "pool_size = 6\nmax_connection_age = \"300ms\"", &creds)).await;
    let rotation = async {
        let last = rotate_three_times(&w, false, |p| replace_file(&file, &json(p))).await;
        let fresh = w.backends(LOGIN).await.iter().filter(|(_, start)| *start > last).count();
        assert!(fresh > 0, "no connection logged in after the last rotation");
    };
    let answered = serve_through(&server, rotation).await;
    assert!(answered > 50, "only {answered} answers");
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Redshift IAM through a local stand-in of the Redshift API, and secrets
// ---------------------------------------------------------------------------------------------

/// One `GetClusterCredentials` the stand-in answered: when, the password, its expiry.
#[derive(Clone, Debug)]
struct Issued {
    at: SystemTime,
    password: String,
    expires: SystemTime,
    api: &'static str,
}

/// The stand-in's state: the warehouse it sets passwords in, and what it issued.
struct StandIn {
    admin: Client,
    issued: Mutex<Vec<Issued>>,
    problems: Mutex<Vec<String>>,
}

fn form(body: &str) -> std::collections::HashMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2F", "/")))
        .collect()
}

/// Which API a request calls, what it must say, and the database user Redshift would hand out.
struct Call {
    api: &'static str,
    wrong: Vec<String>,
    user: String,
}

/// Reads a request as Redshift (awsQuery: a form) or Redshift Serverless (awsJson 1.1 with
/// `X-Amz-Target`) would, checking its parameters and its SigV4 signature's key.
fn read_call(headers: &axum::http::HeaderMap, body: &str) -> Call {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (api, user, expected): (&'static str, String, Vec<(&str, String)>) =
        match header("x-amz-target") {
            "RedshiftServerless.GetCredentials" => {
                let v: Value = serde_json::from_str(body).unwrap_or_default();
                let got = |k: &str| v[k].to_string().trim_matches('"').to_string();
                let want = [
                    ("workgroupName", "test-workgroup"),
                    ("dbName", "db"),
                    ("durationSeconds", "900"),
                ];
                let wrong = want
                    .iter()
                    .filter(|(k, w)| got(k) != *w)
                    .map(|(k, w)| (*k, format!("{} (want {w})", got(k))))
                    .collect();
                ("GetCredentials", "IAMR:tm_serverless".to_string(), wrong)
            }
            _ => {
                let f = form(body);
                let action = f.get("Action").cloned().unwrap_or_default();
                let mut want = vec![
                    ("ClusterIdentifier", "test-cluster"),
                    ("DbName", "db"),
                    ("DurationSeconds", "900"),
                ];
                let (api, user) = match action.as_str() {
                    "GetClusterCredentials" => {
                        want.push(("DbUser", IAM_USER));
                        ("GetClusterCredentials", format!("IAM:{IAM_USER}"))
                    }
                    "GetClusterCredentialsWithIAM" => {
                        ("GetClusterCredentialsWithIAM", "IAMR:tm_role".to_string())
                    }
                    _ => ("unknown", String::new()),
                };
                let got = |k: &str| f.get(k).cloned().unwrap_or_default();
                let wrong = want
                    .iter()
                    .filter(|(k, w)| got(k) != *w)
                    .map(|(k, w)| (*k, format!("{} (want {w})", got(k))))
                    .collect();
                (api, user, wrong)
            }
        };
    let mut wrong: Vec<String> =
        expected.into_iter().map(|(k, why)| format!("{api}: {k} = {why}")).collect();
    if api == "unknown" {
        wrong.push(format!("an unknown call: {body}"));
    }
    let auth = header("authorization");
    if !auth.starts_with("AWS4-HMAC-SHA256") || !auth.contains(&format!("Credential={AWS_KEY_ID}/"))
    {
        wrong.push(format!("not signed with the test's key: {auth:?}"));
    }
    Call { api, wrong, user }
}

/// `POST /`: checks the request as the API would, sets a new password valid for
/// [`IAM_LIFE`] on the user it hands out, and answers in the API's own format.
async fn stand_in(
    axum::extract::State(s): axum::extract::State<Arc<StandIn>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let call = read_call(&headers, &body);
    if !call.wrong.is_empty() {
        s.problems.lock().unwrap().extend(call.wrong);
        return (axum::http::StatusCode::BAD_REQUEST, "bad request").into_response();
    }
    let at = SystemTime::now();
    let expires = at + IAM_LIFE;
    let password = format!("iam-{}", at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos());
    let until = chrono::DateTime::<chrono::Utc>::from(expires);
    let sql = format!(
        "ALTER ROLE \"{}\" PASSWORD '{password}' VALID UNTIL '{}'",
        call.user,
        until.format("%Y-%m-%d %H:%M:%S%.6f+00")
    );
    if let Err(e) = s.admin.batch_execute(&sql).await {
        s.problems.lock().unwrap().push(format!("ALTER ROLE: {e}"));
    }
    s.issued.lock().unwrap().push(Issued {
        at,
        password: password.clone(),
        expires,
        api: call.api,
    });
    if call.api == "GetCredentials" {
        let body =
            json!({ "dbUser": call.user, "dbPassword": password, "expiration": until.timestamp() });
        return ([("content-type", "application/x-amz-json-1.1")], body.to_string())
            .into_response();
    }
    let xml = format!(
        "<{api}Response xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\">\
         <{api}Result><DbUser>{}</DbUser>\
         <DbPassword>{password}</DbPassword><Expiration>{}</Expiration>\
         </{api}Result><ResponseMetadata><RequestId>r-1</RequestId>\
         </ResponseMetadata></{api}Response>",
        call.user,
        until.format("%Y-%m-%dT%H:%M:%SZ"),
        api = call.api
    );
    ([("content-type", "text/xml")], xml).into_response()
}

/// Starts the stand-in on a free port: its address and state.
async fn start_stand_in(w: &TlsWarehouse) -> (std::net::SocketAddr, Arc<StandIn>) {
    let state = Arc::new(StandIn {
        admin: w.pg.connect("db").await,
        issued: Mutex::default(),
        problems: Mutex::default(),
    });
    let app =
        axum::Router::new().route("/", axum::routing::post(stand_in)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

/// `tidemark serve` as a child process (AWS credentials in its environment, JSON logs at
/// debug level into `log`), and the REST and pgwire addresses it logged.
struct Child {
    child: std::process::Child,
    log: PathBuf,
    http: std::net::SocketAddr,
    pg_port: u16,
}

impl Child {
    fn spawn(config: &Path, log: PathBuf) -> Child {
        let out = std::fs::File::create(&log).expect("log file");
        let child = tidemark_command()
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "debug")
            .env("TIDEMARK_LOG_FORMAT", "json")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn tidemark serve");
        let mut c = Child { child, log, http: ([0, 0, 0, 0], 0).into(), pg_port: 0 };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.http.port() == 0 || c.pg_port == 0 {
            assert!(Instant::now() < deadline, "tidemark serve did not start:\n{}", c.log_text());
            std::thread::sleep(Duration::from_millis(100));
            for line in c.log_text().lines() {
                let v: Value = serde_json::from_str(line).unwrap_or_default();
                let addr = v["fields"]["addr"].as_str().and_then(|a| a.parse().ok());
                match (v["fields"]["message"].as_str(), addr) {
                    (Some("REST listening"), Some(a)) => c.http = a,
                    (Some("PostgreSQL wire protocol listening"), Some(a)) => c.pg_port = a.port(),
                    _ => {}
                }
            }
        }
        c
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        self.log_text()
    }
}

/// The tidemark binary with the test environment's overrides and AWS settings removed, and
/// the test's AWS credentials set (the SDK's default chain reads them).
fn tidemark_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TIDEMARK_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials");
    cmd
}

/// 8 clients against a child process for `for_how_long`: (answers, failures).
async fn load_child(c: &Child, for_how_long: Duration) -> (usize, Vec<String>) {
    let pg = common::pg_client(c.pg_port, "anyone", None).await.expect("pgwire");
    let rest = common::http_client();
    let deadline = Instant::now() + for_how_long;
    let answered = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let client = |i: usize| {
        let (pg, rest, answered, failures) = (&pg, &rest, &answered, &failures);
        async move {
            while Instant::now() < deadline {
                let outcome = match i % 2 {
                    0 => pg
                        .simple_query("SELECT count(*) FROM events_batch")
                        .await
                        .map(|_| ())
                        .map_err(|e| common::pg_error_text(&e)),
                    _ => {
                        match common::query(rest, c.http, "SELECT count(*) FROM events", &[]).await
                        {
                            (200, _) => Ok(()),
                            (s, body) => Err(format!("HTTP {s}: {body}")),
                        }
                    }
                };
                match outcome {
                    Ok(()) => drop(answered.fetch_add(1, Ordering::Relaxed)),
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }
    };
    futures::future::join_all((0..8).map(client)).await;
    (answered.into_inner(), failures.into_inner().unwrap())
}

/// tidemark as a child process logs in with Redshift IAM credentials from the stand-in that
/// expire in seconds, asks again before they expire (not for every connection) and serves 8
/// clients throughout; nothing secret reaches its debug log, /metrics, EXPLAIN, or
/// `tidemark check` (which succeeds, or fails naming Redis, without its password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_iam_credentials_refresh_before_expiry_and_no_secret_leaks() {
    let w = TlsWarehouse::start().await;
    for role in [format!("IAM:{IAM_USER}"), "IAMR:tm_role".into(), "IAMR:tm_serverless".into()] {
        common::exec(&w.db, &format!("CREATE ROLE \"{role}\" LOGIN SUPERUSER")).await;
    }
    // `tidemark setup` runs once, in-process, with the static login.
    let static_url = w.url(LOGIN, Some(FIRST_PASSWORD), "localhost", &w.verify_full());
    let setup = common::parse_config(&w.config(&static_url, "", ""));
    tidemark::setup::run(&setup).await.expect("setup");

    let (api, stand) = start_stand_in(&w).await;
    let creds = format!(
        "[warehouse.credentials]\nsource = \"redshift-iam\"\nregion = \"us-east-1\"\n\
         cluster = \"test-cluster\"\ndb_user = \"{IAM_USER}\"\nendpoint = \"http://{api}\"\n"
    );
    let url = w.url(IAM_USER, None, "localhost", &w.verify_full());
    let config = w.scratch.join("iam.toml");
    let toml = w.config(&url, "pool_size = 6\nmax_connection_age = \"500ms\"", &creds);
    std::fs::write(&config, toml).unwrap();
    let child = Child::spawn(&config, w.scratch.join("iam.log"));
    let (answered, failures) = load_child(&child, Duration::from_secs(14)).await;
    assert!(
        failures.is_empty(),
        "{} of {} queries failed: {:?}",
        failures.len(),
        answered + failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(answered > 50, "only {answered} answers");
    let iam_backends = w.backends(&format!("IAM:{IAM_USER}")).await;
    assert!(
        !iam_backends.is_empty() && iam_backends.iter().all(|(ssl, _)| *ssl),
        "{iam_backends:?}"
    );

    let problems = stand.problems.lock().unwrap().clone();
    assert!(problems.is_empty(), "the stand-in saw: {problems:?}");
    let issued = stand.issued.lock().unwrap().clone();
    assert!(issued.iter().all(|i| i.api == "GetClusterCredentials"), "{issued:?}");
    assert!(issued.len() >= 3, "credentials were not refreshed: {issued:?}");
    assert!(issued.len() <= 14, "credentials fetched for every connection: {} times", issued.len());
    for pair in issued.windows(2) {
        assert!(pair[1].at < pair[0].expires, "asked only after expiry: {pair:?}");
    }

    let rest = common::http_client();
    let metrics = common::send(rest.get(format!("http://{}/metrics", child.http))).await;
    let metrics = String::from_utf8_lossy(&metrics.2).into_owned();
    let (_, explain) =
        common::query(&rest, child.http, "EXPLAIN SELECT count(*) FROM events", &[]).await;
    let log = child.stop();
    assert!(
        log.contains("warehouse credentials fetched"),
        "the log is not the one expected:\n{log}"
    );
    // the child processes block this worker; the stand-in answers on the other
    let check = tokio::task::block_in_place(|| {
        check_outputs(&w, &static_url) + &other_iam_forms(&w, api, &stand)
    });
    let issued = stand.issued.lock().unwrap().clone();
    let mut secrets: Vec<String> = issued.iter().map(|i| i.password.clone()).collect();
    secrets.extend([AWS_SECRET.to_string(), FIRST_PASSWORD.to_string()]);
    for (what, text) in [
        ("log", &log),
        ("/metrics", &metrics),
        ("EXPLAIN", &explain.to_string()),
        ("check", &check),
    ] {
        assert!(text.len() > 40, "{what} is empty: {text}");
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{what} shows the secret {s}");
        }
    }
}

/// `tidemark check` logging in through `GetClusterCredentialsWithIAM` (no `db_user`: the IAM
/// identity's own user) and through Redshift Serverless `GetCredentials`: both connect.
fn other_iam_forms(w: &TlsWarehouse, api: std::net::SocketAddr, stand: &StandIn) -> String {
    let forms = [
        ("GetClusterCredentialsWithIAM", "source = \"redshift-iam\"\ncluster = \"test-cluster\""),
        ("GetCredentials", "source = \"redshift-serverless-iam\"\nworkgroup = \"test-workgroup\""),
    ];
    let mut out = String::new();
    for (api_name, source) in forms {
        let creds = format!(
            "[warehouse.credentials]\n{source}\nregion = \"us-east-1\"\nendpoint = \"http://{api}\"\n"
        );
        let path = w.scratch.join(format!("{api_name}.toml"));
        let url = w.url("nobody", None, "localhost", &w.verify_full());
        std::fs::write(&path, w.config(&url, "", &creds)).unwrap();
        let o = tidemark_command().args(["check", "--config"]).arg(&path).output().expect("check");
        let text =
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success() && text.contains("reachable"), "{api_name}: {text}");
        let n = stand.issued.lock().unwrap().iter().filter(|i| i.api == api_name).count();
        assert!(n >= 1, "{api_name} was never called");
        out.push_str(&text);
    }
    out
}

/// `tidemark check` with the static login's password in the URL (succeeds) and with a Redis
/// password for a Redis that is not there (fails naming Redis): both outputs, joined.
fn check_outputs(w: &TlsWarehouse, url: &str) -> String {
    let ok = w.scratch.join("check.toml");
    std::fs::write(&ok, w.config(url, "", "")).unwrap();
    let redis = w.scratch.join("check-redis.toml");
    let sections = format!("[redis]\nurl = \"redis://127.0.0.1:1\"\npassword = \"{AWS_SECRET}\"\ntimeout = \"300ms\"\n");
    std::fs::write(&redis, w.config(url, "", &sections)).unwrap();
    let run = |path: &Path| {
        tidemark_command().args(["check", "--config"]).arg(path).output().expect("tidemark check")
    };
    let (good, bad) = (run(&ok), run(&redis));
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    assert!(good.status.success(), "check failed: {}", text(&good));
    assert!(
        text(&good).contains("localhost:") && text(&good).contains("reachable"),
        "{}",
        text(&good)
    );
    assert!(!bad.status.success(), "check passed without Redis: {}", text(&bad));
    assert!(text(&bad).to_lowercase().contains("redis"), "{}", text(&bad));
    format!("{}\n{}", text(&good), text(&bad))
}
