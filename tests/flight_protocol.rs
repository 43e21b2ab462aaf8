//! Arrow Flight SQL driven by arrow-flight's FlightSqlServiceClient: statements, prepared
//! statements with parameters, catalog commands, freshness metadata, errors, auth, and
//! cancellation when the client drops the stream.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Int16Array, RecordBatch};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, CommandGetXdbcTypeInfo, SqlInfo};
use arrow_flight::{FlightInfo, Ticket};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::transport::Channel;

use common::*;
use tidemark::frontend::flight::proto;
use tidemark::model::arrow::value_at;

struct FlightStack {
    db_name: String,
    db: tokio_postgres::Client,
    server: tidemark::server::Server,
    addr: std::net::SocketAddr,
}

async fn flight_stack(prefix: &str, users: &str) -> FlightStack {
    let (db_name, db) = fresh_db(prefix).await;
    build_layout(&db, 2_000, 11).await;
    set_watermark(&db, "events", Layout::standard().w0).await;
    let toml = config_toml(&db_url(&db_name), "", true)
        .replace("http = \"127.0.0.1:0\"", "http = \"127.0.0.1:0\"\nflight = \"127.0.0.1:0\"")
        + users;
    let config = parse_config(&toml);
    let server = serve(config).await;
    let addr = server.flight_addr.expect("flight listener bound");
    FlightStack { db_name, db, server, addr }
}

impl FlightStack {
    async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        FlightSqlServiceClient::new(channel)
    }

    async fn stop(self) {
        self.server.shutdown().await;
        drop(self.db);
        drop_db(&self.db_name).await;
    }
}

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    client.do_get(ticket).await.expect("do_get").try_collect().await.expect("batches")
}

fn texts(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| value_at(b.column(c), b.schema().field(c), r).to_pg_text())
                    .collect(),
            );
        }
    }
    out
}

async fn oracle_texts(db: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    db.simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// A split aggregate through Flight equals the oracle; FlightInfo and the first FlightData
/// carry the freshness message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_matches_oracle_with_freshness() {
    let s = flight_stack("fl_stmt", "").await;
    let mut c = s.client().await;
    let q = "SELECT country, count(*) AS n, sum(amount) AS total, max(big) AS top FROM {T} GROUP BY country ORDER BY country";
    let info = c.execute(q.replace("{T}", "events"), None).await.expect("execute");
    let fresh =
        proto::Freshness::decode(info.app_metadata.as_ref()).expect("freshness in FlightInfo");
    assert_eq!(fresh.table, "events");
    assert!(!fresh.batch_watermark.is_empty());
    // sum(numeric) is unconstrained: its Decimal128 scale comes from the answer, so the
    // FlightInfo has no schema and the stream's schema says decimal128(38, 2)
    assert!(info.schema.is_empty(), "FlightInfo schema before the answer is known");
    let batches = fetch(&mut c, info.clone()).await;
    let schema = batches[0].schema();
    assert_eq!(schema.field(2).metadata().get("pg_type").map(String::as_str), Some("numeric"));
    assert_eq!(schema.field(2).data_type(), &arrow_schema::DataType::Decimal128(38, 2));
    let got = texts(&batches);
    assert_eq!(got, oracle_texts(&s.db, &q.replace("{T}", "events_oracle")).await);
    // the first FlightData message carries the freshness of the run
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut raw = c.inner_mut().do_get(ticket).await.unwrap().into_inner();
    let first = raw.next().await.unwrap().unwrap();
    let run =
        proto::Freshness::decode(first.app_metadata.as_ref()).expect("freshness in FlightData");
    assert_eq!(run.plan, "split");
    assert_eq!(run.legs.len(), 2);
    // x-tidemark-numeric: text keeps numerics as their exact text (the schema is then static)
    c.set_header("x-tidemark-numeric", "text");
    let info = c.execute(q.replace("{T}", "events"), None).await.expect("execute as text");
    let schema = info.clone().try_decode_schema().expect("a FlightInfo schema");
    assert_eq!(schema.field(2).data_type(), &arrow_schema::DataType::Utf8);
    assert_eq!(
        texts(&fetch(&mut c, info).await),
        oracle_texts(&s.db, &q.replace("{T}", "events_oracle")).await
    );
    s.stop().await;
}

/// Prepared statements with bound parameters (the path ADBC always takes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statement_with_parameters() {
    let s = flight_stack("fl_prep", "").await;
    let mut c = s.client().await;
    let q = "SELECT count(*) AS n, sum(amount) AS total FROM {T} WHERE qty > $1";
    let mut p = c.prepare(q.replace("{T}", "events"), None).await.expect("prepare");
    assert_eq!(p.parameter_schema().unwrap().fields().len(), 1);
    let params =
        RecordBatch::try_from_iter(vec![("$1", Arc::new(Int16Array::from(vec![2])) as ArrayRef)])
            .unwrap();
    p.set_parameters(params).unwrap();
    let info = p.execute().await.expect("execute prepared");
    let got = texts(&fetch(&mut c, info).await);
    assert_eq!(
        got,
        oracle_texts(&s.db, &q.replace("{T}", "events_oracle").replace("$1", "2")).await
    );
    p.close().await.unwrap();
    s.stop().await;
}

/// Catalog commands see the logical table with its real column types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_commands() {
    let s = flight_stack("fl_catalog", "").await;
    let mut c = s.client().await;
    let info = c.get_catalogs().await.unwrap();
    let catalogs = texts(&fetch(&mut c, info).await);
    assert_eq!(catalogs, vec![vec![Some(s.db_name.clone())]]);
    let info = c.get_db_schemas(CommandGetDbSchemas::default()).await.unwrap();
    let schemas = texts(&fetch(&mut c, info).await);
    assert!(schemas.iter().any(|r| r[1].as_deref() == Some("public")), "{schemas:?}");
    let req = CommandGetTables {
        table_name_filter_pattern: Some("events".into()),
        include_schema: true,
        ..Default::default()
    };
    let info = c.get_tables(req).await.unwrap();
    let tables = fetch(&mut c, info).await;
    let rows = texts(&tables);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][2].as_deref(), Some("events"));
    assert_eq!(rows[0][3].as_deref(), Some("VIEW"));
    let bytes = tables[0]
        .column(4)
        .as_any()
        .downcast_ref::<arrow_array::BinaryArray>()
        .unwrap()
        .value(0)
        .to_vec();
    let schema = arrow_ipc::convert::try_schema_from_ipc_buffer(&bytes).unwrap();
    assert_eq!(schema.fields().len(), 11);
    assert_eq!(
        schema.field_with_name("amount").unwrap().metadata().get("pg_type").map(String::as_str),
        Some("numeric")
    );
    let info = c.get_table_types().await.unwrap();
    let types = texts(&fetch(&mut c, info).await);
    assert!(types.contains(&vec![Some("VIEW".into())]));
    let info = c
        .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerReadOnly])
        .await
        .unwrap();
    assert_eq!(fetch(&mut c, info).await[0].num_rows(), 2);
    let info = c.get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None }).await.unwrap();
    assert!(fetch(&mut c, info).await[0].num_rows() >= 5);
    s.stop().await;
}

/// Errors map to gRPC codes with the SQLSTATE in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_grpc_codes() {
    let s = flight_stack("fl_errors", "").await;
    let mut c = s.client().await;
    let err = |e: arrow_flight::error::FlightError| match e {
        arrow_flight::error::FlightError::Tonic(st) => (st.code(), st.message().to_string()),
        other => panic!("not a status: {other}"),
    };
    let (code, msg) = err(c.execute("SELEC 1".into(), None).await.unwrap_err());
    assert_eq!(code, tonic::Code::InvalidArgument);
    assert!(msg.contains("42601"), "{msg}");
    let (code, msg) = err(c.execute("SELECT * FROM nowhere".into(), None).await.unwrap_err());
    assert_eq!((code, msg.contains("42P01")), (tonic::Code::InvalidArgument, true), "{msg}");
    let (code, msg) = err(c.execute("DELETE FROM events_batch".into(), None).await.unwrap_err());
    assert_eq!((code, msg.contains("25006")), (tonic::Code::PermissionDenied, true), "{msg}");
    let (code, _) =
        err(c.execute_update("DELETE FROM events_batch".into(), None).await.unwrap_err());
    assert_eq!(code, tonic::Code::PermissionDenied);
    s.stop().await;
}

/// With users configured, Handshake returns a bearer token; without it calls are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_bearer_tokens() {
    let verifier = tidemark::frontend::auth::make_verifier("s3cret");
    let s = flight_stack(
        "fl_auth",
        &format!("\n[[users]]\nname = \"alice\"\npassword_hash = \"{verifier}\"\n"),
    )
    .await;
    let mut anon = s.client().await;
    let e = anon.execute("SELECT 1".into(), None).await.unwrap_err().to_string();
    assert!(e.contains("Unauthenticated") || e.contains("bearer"), "{e}");
    let mut bad = s.client().await;
    let e = bad.handshake("alice", "wrong").await.unwrap_err().to_string();
    assert!(e.contains("28P01"), "{e}");
    let mut good = s.client().await;
    good.handshake("alice", "s3cret").await.expect("handshake");
    let info = good.execute("SELECT count(*) FROM events".into(), None).await.expect("authorized");
    assert_eq!(fetch(&mut good, info).await[0].num_rows(), 1);
    s.stop().await;
}

const KEY_1: &str = "replica key one, thirty-two bytes or more";
const KEY_2: &str = "replica key two, thirty-two bytes or more";

/// Another tidemark over the stack's database with these Flight users and token settings.
async fn replica(
    s: &FlightStack,
    flight: &str,
) -> (tidemark::server::Server, std::net::SocketAddr) {
    let toml = config_toml(&db_url(&s.db_name), "", true)
        .replace("http = \"127.0.0.1:0\"", "http = \"127.0.0.1:0\"\nflight = \"127.0.0.1:0\"")
        + flight;
    let server = serve(parse_config(&toml)).await;
    let addr = server.flight_addr.expect("flight listener bound");
    (server, addr)
}

async fn client_at(addr: std::net::SocketAddr) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    FlightSqlServiceClient::new(channel)
}

/// Flight settings with user alice and `token_keys = keys`.
fn fleet_settings(keys: &[&str], ttl: &str) -> String {
    let verifier = tidemark::frontend::auth::make_verifier("s3cret");
    let keys = keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "\n[flight]\ntoken_keys = [{keys}]\ntoken_ttl = \"{ttl}\"\n\
         [[users]]\nname = \"alice\"\npassword_hash = \"{verifier}\"\n"
    )
}

fn code_of(e: arrow_flight::error::FlightError) -> (tonic::Code, String) {
    match e {
        arrow_flight::error::FlightError::Tonic(st) => (st.code(), st.message().to_string()),
        other => panic!("not a status: {other}"),
    }
}

/// Replicas sharing `token_keys` accept each other's tokens: Handshake on A, GetFlightInfo on
/// B, DoGet on C (whose keys were rotated: a new first key, the old one still listed); a
/// replica that retired the key refuses the token, and an expired token is UNAUTHENTICATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_work_on_every_replica_sharing_the_keys() {
    let s = flight_stack("fl_fleet", &fleet_settings(&[KEY_1], "1h")).await;
    let (b, b_addr) = replica(&s, &fleet_settings(&[KEY_1], "1h")).await;
    let (c, c_addr) = replica(&s, &fleet_settings(&[KEY_2, KEY_1], "1h")).await;
    let (d, d_addr) = replica(&s, &fleet_settings(&[KEY_2], "1h")).await;
    let (e, e_addr) = replica(&s, &fleet_settings(&[KEY_1], "1s")).await;
    let mut on_a = s.client().await;
    on_a.handshake("alice", "s3cret").await.expect("handshake on A");
    let token = on_a.token().expect("a bearer token").clone();
    let mut on_b = client_at(b_addr).await;
    on_b.set_token(token.clone());
    let info = on_b.execute("SELECT count(*) FROM events".into(), None).await.expect("B accepts");
    let mut on_c = client_at(c_addr).await;
    on_c.set_token(token.clone());
    assert_eq!(fetch(&mut on_c, info).await[0].num_rows(), 1, "C serves B's ticket");
    let mut on_d = client_at(d_addr).await;
    on_d.set_token(token);
    let (code, _) = code_of(on_d.execute("SELECT 1".into(), None).await.unwrap_err());
    assert_eq!(code, tonic::Code::Unauthenticated, "D retired the key");
    let mut on_e = client_at(e_addr).await;
    on_e.handshake("alice", "s3cret").await.expect("handshake on E");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, msg) = code_of(on_e.execute("SELECT 1".into(), None).await.unwrap_err());
    assert_eq!(code, tonic::Code::Unauthenticated, "{msg}");
    assert!(msg.contains("expired"), "{msg}");
    for server in [b, c, d, e] {
        server.shutdown().await;
    }
    s.stop().await;
}

/// Dropping the stream cancels the warehouse query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stream_cancels_the_query() {
    let s = flight_stack("fl_cancel", "").await;
    let mut c = s.client().await;
    let info = c.execute("SELECT pg_sleep(20) AS slept".into(), None).await.unwrap();
    let ticket: Ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut c2 = c.clone();
    let running = tokio::spawn(async move {
        let mut stream = c2.do_get(ticket).await.unwrap();
        stream.next().await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    running.abort();
    drop(c);
    let left = wait_gone(&s.db, "SELECT pg_sleep(20)%").await;
    assert_eq!(left, 0, "the warehouse query is cancelled when the client goes away");
    s.stop().await;
}

/// A sample of the differential suite's query shapes through Flight: every answer equals the
/// oracle exactly (exact types only: counts, numerics, text, timestamps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_differential_sample() {
    let s = flight_stack("fl_diff", "").await;
    let mut c = s.client().await;
    let l = Layout::standard();
    let mut rng = Rng::new(0xF11647);
    let keys = ["country", "device", "qty", "flag", "day", "date_trunc('hour', event_time)"];
    let mut n = 0;
    let mut mismatches = Vec::new();
    for i in 0..120 {
        let key = *rng.pick(&keys);
        let at = l.wm_step(4 * rng.range(1, 6));
        let p = match i % 4 {
            0 => "true".to_string(),
            1 => format!("event_time < {}", ts_lit(at)),
            2 => format!("event_time >= {}", ts_lit(at)),
            _ => format!(
                "event_time BETWEEN {} AND {}",
                ts_lit(l.w0 - chrono::TimeDelta::days(2)),
                ts_lit(at)
            ),
        };
        let limit = rng.range(1, 30);
        let q = match i % 6 {
            0 => format!("SELECT count(*), sum(amount), avg(qty), min(event_time), max(big) FROM {{T}} WHERE {p}"),
            1 => format!("SELECT {key} AS k, count(*), sum(amount) FROM {{T}} WHERE {p} GROUP BY 1 ORDER BY 1 NULLS FIRST"),
            2 => format!("SELECT {key} AS k, count(*) AS n FROM {{T}} WHERE {p} GROUP BY 1 ORDER BY n DESC, k NULLS FIRST LIMIT {limit}"),
            3 => format!("SELECT id, event_time, amount FROM {{T}} WHERE {p} ORDER BY event_time DESC, id LIMIT {limit}"),
            4 => format!("SELECT count(DISTINCT user_id), max(amount) FROM {{T}} WHERE {p}"),
            _ => format!(
                "SELECT c.region, count(*), sum(e.amount) FROM {{T}} e JOIN countries c ON c.code = e.country WHERE e.{p} GROUP BY 1 ORDER BY 1"
            ),
        }
        .replace("e.true", "true");
        n += 1;
        let info = c
            .execute(q.replace("{T}", "events"), None)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        let got = texts(&fetch(&mut c, info).await);
        let want = oracle_texts(&s.db, &q.replace("{T}", "events_oracle")).await;
        if got != want {
            mismatches.push(format!("{q}\n  tidemark {got:?}\n  oracle   {want:?}"));
        }
    }
    println!("flight differential: {n} queries, {} mismatches", mismatches.len());
    assert!(mismatches.is_empty(), "{}", mismatches[0]);
    s.stop().await;
}

/// Statement timeout and an unreachable warehouse map to DEADLINE_EXCEEDED and UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_unavailable_codes() {
    let (db_name, db) = fresh_db("fl_codes").await;
    let toml = config_toml(&db_url(&db_name), "statement_timeout = \"200ms\"", false)
        .replace("http = \"127.0.0.1:0\"", "flight = \"127.0.0.1:0\"");
    let server =
        tidemark::server::Server::start(Arc::new(parse_config(&toml))).await.expect("server");
    let channel = Channel::from_shared(format!("http://{}", server.flight_addr.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = FlightSqlServiceClient::new(channel);
    let info = c.execute("SELECT pg_sleep(2)".into(), None).await.expect("describe only");
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let e = match c.do_get(ticket).await {
        Ok(s) => s.try_collect::<Vec<_>>().await.expect_err("timeout"),
        Err(e) => e,
    };
    let text = e.to_string();
    assert!(text.contains("DeadlineExceeded") || text.contains("Deadline"), "{text}");
    assert!(text.contains("57014"), "{text}");
    server.shutdown().await;
    drop(db);
    drop_db(&db_name).await;

    let toml =
        config_toml("postgres://postgres@127.0.0.1:1/none", "connect_timeout = \"1s\"", false)
            .replace("http = \"127.0.0.1:0\"", "flight = \"127.0.0.1:0\"");
    let server = tidemark::server::Server::start(Arc::new(parse_config(&toml)))
        .await
        .expect("server starts while the warehouse is down");
    let channel = Channel::from_shared(format!("http://{}", server.flight_addr.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = FlightSqlServiceClient::new(channel);
    match c.execute("SELECT 1".into(), None).await.unwrap_err() {
        arrow_flight::error::FlightError::Tonic(st) => {
            assert_eq!(st.code(), tonic::Code::Unavailable, "{st}");
            assert!(st.message().contains("08006"), "{st}");
        }
        other => panic!("not a status: {other}"),
    }
    server.shutdown().await;
}

/// With `[tls]`, Flight serves gRPC over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_over_tls() {
    let dir = std::env::temp_dir().join(format!("tidemark_flight_tls_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    make_certificates(&dir);
    let extra = format!("\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display());
    let s = flight_stack("fl_tls", &extra).await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&ca).unwrap()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{}", s.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connect");
    let mut c = FlightSqlServiceClient::new(channel);
    let info = c.execute("SELECT count(*) FROM events".into(), None).await.expect("query over TLS");
    assert_eq!(fetch(&mut c, info).await[0].num_rows(), 1);
    s.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A throwaway CA and a server certificate for `localhost` signed by it (openssl CLI).
fn make_certificates(dir: &std::path::Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tidemark-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    ];
    for args in steps {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed for the TLS test (scripts/test.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
