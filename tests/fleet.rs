//! A fleet of replicas over one warehouse and one Redis (also a TLS Redis Cluster with an ACL
//! user, as ElastiCache in cluster mode): after W moves,
//! each batch leg and chunk of a dashboard's queries runs once on the warehouse for the whole
//! fleet — counted from the warehouse's own statement log — while 30 clients spread over the
//! replicas query and every answer equals the oracle; with Redis stopped answers stay exact
//! and each replica computes alone, and sharing resumes when Redis is back. A pgwire query,
//! a REST request and a Flight DoGet on one replica are cancelled through another.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus};
use chrono::NaiveDateTime;
use common::certs::TestCa;
use common::pgserver::PgServer;
use common::raw::RawPg;
use common::redis::{RedisCluster, RedisServer, RedisTls};
use common::*;
use futures::TryStreamExt;
use prost::Message;
use serde_json::{json, Value};
use tidemark::server::Server;
use tonic::transport::Channel;

const EVENTS: usize = 1_500;
const SEED: u64 = 19;
const CLIENTS: usize = 30;
const ROUNDS: usize = 8;

/// The dashboard: split aggregates over `events` (two of them cut into day chunks), each with
/// its fixed parameters; `{T}` is the logical table (or the oracle).
fn dashboard(l: &Layout) -> Vec<(String, Vec<Value>)> {
    let since = |days: i64, hours: i64| {
        ts_text(l.start + chrono::TimeDelta::days(days) + chrono::TimeDelta::hours(hours))
    };
    vec![
        (
            "SELECT country, count(*) AS n, sum(amount) AS revenue FROM {T} \
             WHERE event_time >= $1 GROUP BY country ORDER BY country"
                .into(),
            vec![json!(since(5, 0))],
        ),
        (
            "SELECT date_trunc('day', event_time) AS day, count(*) AS n, max(qty) AS most \
             FROM {T} WHERE event_time >= $1 GROUP BY 1 ORDER BY 1"
                .into(),
            vec![json!(since(10, 3))],
        ),
        (
            "SELECT device, count(*) AS n, min(amount) AS low, max(amount) AS high FROM {T} \
             GROUP BY device ORDER BY device"
                .into(),
            vec![],
        ),
        ("SELECT count(*) AS n, sum(big) AS total FROM {T} WHERE country = 'US'".into(), vec![]),
    ]
}

/// One PostgreSQL that logs every statement, a test database with the layout, and `n`
/// replicas configured with `redis_toml`.
struct Fleet {
    pg: PgServer,
    db: tokio_postgres::Client,
    layout: Layout,
    replicas: Vec<Server>,
}

impl Fleet {
    async fn start(n: usize, redis_toml: &str) -> Fleet {
        let mut pg = PgServer::start();
        pg.log_statements();
        let db = pg.fresh_database("fleet").await;
        let layout = build_layout(&db, EVENTS, SEED).await;
        set_watermark(&db, "events", layout.w0).await;
        let toml = config_toml(&pg.url("fleet"), "pool_size = 6", true).replace(
            "http = \"127.0.0.1:0\"",
            "http = \"127.0.0.1:0\"\npg = \"127.0.0.1:0\"\nflight = \"127.0.0.1:0\"",
        ) + redis_toml;
        let mut replicas = Vec::new();
        for _ in 0..n {
            replicas.push(serve(parse_config(&toml)).await);
        }
        Fleet { pg, db, layout, replicas }
    }

    async fn stop(self) {
        for r in self.replicas {
            r.shutdown().await;
        }
    }

    /// Moves W and waits until every replica serves it.
    async fn move_w(&self, w: NaiveDateTime) {
        set_watermark(&self.db, "events", w).await;
        let want = ts_text(w);
        for r in &self.replicas {
            let addr = r.http_addr.expect("http");
            for i in 0.. {
                let (_, tables) = get_json(&http_client(), addr, "/v1/tables").await;
                if tables[0]["batch_watermark"].as_str() == Some(&want) {
                    break;
                }
                assert!(i < 100, "a replica did not see W move to {want}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// `CLIENTS` clients, spread over the replicas, each asking every dashboard query
    /// `ROUNDS` times; every answer is compared with the oracle's. Returns the failures.
    async fn clients(&self, also_move_to: Option<NaiveDateTime>) -> Vec<String> {
        let queries = Arc::new(dashboard(&self.layout));
        let mut expected = Vec::new();
        for (sql, params) in queries.iter() {
            let sql = sql.replace("{T}", "events_oracle");
            expected.push(oracle(&self.db, &sql, params).await.expect("the oracle answers"));
        }
        let expected = Arc::new(expected);
        let addrs: Vec<_> = self.replicas.iter().map(|r| r.http_addr.expect("http")).collect();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (addr, queries, expected) =
                (addrs[c % addrs.len()], queries.clone(), expected.clone());
            tasks.push(tokio::spawn(async move {
                let http = http_client();
                let mut failures = Vec::new();
                for round in 0..ROUNDS {
                    let q = (c + round) % queries.len();
                    let (sql, params) = &queries[q];
                    let sql = sql.replace("{T}", "events");
                    let (status, body) = query(&http, addr, &sql, params).await;
                    let got = answer_from_json(&body).map_err(|e| format!("{status}: {e}"));
                    let ordered = sql.contains("ORDER BY");
                    if let Err(e) = got.and_then(|a| compare_answers(&expected[q], &a, ordered)) {
                        failures.push(format!("client {c} on {addr}: {sql}\n  {e}"));
                    }
                }
                failures
            }));
        }
        if let Some(w) = also_move_to {
            tokio::time::sleep(Duration::from_millis(30)).await;
            set_watermark(&self.db, "events", w).await;
        }
        let mut failures = Vec::new();
        for t in tasks {
            failures.extend(t.await.expect("a client"));
        }
        failures
    }

    /// Per batch leg or chunk read at W = `w` (its SQL), how many times the warehouse ran it
    /// since log offset `from` (a chunk counts once per tagged union it is a branch of).
    fn batch_runs(&self, from: u64, w: NaiveDateTime) -> BTreeMap<String, usize> {
        let literal = format!("'{}'", ts_text(w));
        let mut runs = BTreeMap::new();
        for sql in logged_statements(&self.pg.log_since(from)) {
            for leg in branches(&sql) {
                if leg.contains("\"events_batch\"") && leg.contains(&literal) {
                    *runs.entry(leg).or_default() += 1;
                }
            }
        }
        runs
    }

    /// A counter of `/metrics` summed over the replicas.
    async fn metric(&self, line_start: &str) -> f64 {
        let mut total = 0.0;
        for r in &self.replicas {
            let url = format!("http://{}/metrics", r.http_addr.expect("http"));
            let text =
                http_client().get(url).send().await.expect("metrics").text().await.expect("text");
            total += text
                .lines()
                .filter(|l| l.starts_with(line_start))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        total
    }
}

/// The statements PostgreSQL logged (`log_statement = 'all'`), simple and extended.
fn logged_statements(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let at = l.find("LOG:  statement: ").map(|i| i + "LOG:  statement: ".len());
            let at = at.or_else(|| {
                let i = l.find("LOG:  execute ")? + "LOG:  execute ".len();
                l[i..].find(": ").map(|j| i + j + 2)
            })?;
            Some(l[at..].to_string())
        })
        .collect()
}

/// The legs of a statement: the branches of a tagged union of chunks, or itself.
fn branches(sql: &str) -> Vec<String> {
    if !sql.starts_with("SELECT 0 AS \"__tm_piece\"") {
        return vec![sql.to_string()];
    }
    sql.split(" UNION ALL ")
        .filter_map(|b| {
            let inner = &b[b.find("* FROM (")? + "* FROM (".len()..];
            Some(inner[..inner.rfind(") AS \"__tm_p")?].to_string())
        })
        .collect()
}

fn single_redis(url: &str) -> String {
    format!("\n[redis]\nurl = \"{url}\"\ntimeout = \"1s\"\n")
}

fn assert_once(runs: &BTreeMap<String, usize>, what: &str) {
    println!(
        "{what}: {} batch legs and chunks, each run {:?} time(s)",
        runs.len(),
        runs.values().collect::<std::collections::BTreeSet<_>>()
    );
    assert!(runs.len() >= 4, "{what}: the dashboard's batch legs and chunks ran: {runs:#?}");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "{what}: legs run more than once across the fleet: {twice:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_computes_each_batch_leg_once_and_works_without_redis() {
    let mut redis = RedisServer::start();
    let fleet = Fleet::start(3, &single_redis(&redis.url())).await;
    let l = fleet.layout;
    assert!(fleet.clients(None).await.is_empty(), "warming at W0");

    // W moves while 30 clients query the three replicas: each new leg runs once
    let w1 = l.wm_step(700);
    let from = fleet.pg.log_len();
    let failures = fleet.clients(Some(w1)).await;
    assert!(failures.is_empty(), "answers differ from the oracle:\n{}", failures.join("\n"));
    fleet.move_w(w1).await;
    assert!(fleet.clients(None).await.is_empty());
    assert_once(&fleet.batch_runs(from, w1), "after W moved");
    assert!(fleet.metric("tidemark_shared_cache_total{result=\"hit\"}").await > 0.0);

    // Redis stopped while 30 clients query across a W move: every answer stays exact
    let w2 = l.wm_step(1100);
    let stopping = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(40));
        redis.stop();
        redis
    });
    let failures = fleet.clients(Some(w2)).await;
    let mut redis = stopping.await.expect("Redis stopped");
    assert!(failures.is_empty(), "answers while Redis stopped:\n{}", failures.join("\n"));

    // Redis away: still exact, every replica on its own
    let w2 = l.wm_step(1400);
    let from = fleet.pg.log_len();
    fleet.move_w(w2).await;
    let failures = fleet.clients(None).await;
    assert!(failures.is_empty(), "answers without Redis:\n{}", failures.join("\n"));
    let alone = fleet.batch_runs(from, w2);
    println!("without Redis: {} legs, {} runs", alone.len(), alone.values().sum::<usize>());
    assert!(
        alone.values().sum::<usize>() > alone.len(),
        "without Redis legs ran per replica: {alone:#?}"
    );
    assert_eq!(fleet.metric("tidemark_redis_up{use=\"shared_cache\"}").await, 0.0);

    // Redis back (empty): sharing resumes
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1200)).await; // the links' retry interval
    let w3 = l.wm_step(2000);
    let from = fleet.pg.log_len();
    fleet.move_w(w3).await;
    assert!(fleet.clients(None).await.is_empty(), "answers after Redis came back");
    assert_once(&fleet.batch_runs(from, w3), "after Redis came back");
    assert_eq!(fleet.metric("tidemark_redis_up{use=\"shared_cache\"}").await, 3.0);
    fleet.stop().await;
}

/// Like ElastiCache in cluster mode with in-transit encryption and an RBAC user: a
/// three-master Redis Cluster speaking TLS only, with one ACL user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_a_tls_redis_cluster_shares_legs() {
    let ca = TestCa::new("fleet redis CA");
    let tls = RedisTls {
        cert: ca.server("redis", "DNS:localhost,IP:127.0.0.1"),
        ca: ca.cert(),
        user: "tidemark".into(),
        password: format!("fleet-pw-{:x}", std::process::id()),
    };
    let cluster = RedisCluster::start_tls(&tls);
    let seeds = cluster.seeds();
    let nodes: Vec<String> = seeds[1..].iter().map(|s| format!("\"{s}\"")).collect();
    let toml = format!(
        "\n[redis]\nurl = \"{}\"\ncluster = true\nnodes = [{}]\ntimeout = \"2s\"\n\
         username = \"{}\"\npassword = \"{}\"\n[redis.tls]\nroot_cert = \"{}\"\n",
        seeds[0],
        nodes.join(", "),
        tls.user,
        tls.password,
        ca.cert().display()
    );
    let fleet = Fleet::start(3, &toml).await;
    let l = fleet.layout;
    assert!(fleet.clients(None).await.is_empty());
    let w = l.wm_step(900);
    let from = fleet.pg.log_len();
    fleet.move_w(w).await;
    let failures = fleet.clients(None).await;
    assert!(failures.is_empty(), "answers differ from the oracle:\n{}", failures.join("\n"));
    assert_once(&fleet.batch_runs(from, w), "on a TLS Redis Cluster");
    assert_eq!(fleet.metric("tidemark_redis_up{use=\"shared_cache\"}").await, 3.0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaching_another_replica_is_relayed() {
    let redis = RedisServer::start();
    let fleet = Fleet::start(2, &single_redis(&redis.url())).await;
    let (a, b) = (&fleet.replicas[0], &fleet.replicas[1]);
    tokio::time::sleep(Duration::from_millis(500)).await; // the relays subscribe
    let sleeping = "%pg_sleep(30)%";

    // pgwire: the query on A, the CancelRequest to B
    let pg_a = a.pg_addr.expect("pg").port();
    let (key_tx, key_rx) = std::sync::mpsc::channel();
    let running = tokio::task::spawn_blocking(move || {
        let mut c = RawPg::connect(pg_a, "postgres", "fleet");
        let _ = key_tx.send(c.backend_key().expect("BackendKeyData"));
        c.query("SELECT pg_sleep(30)")
    });
    let key = key_rx.recv_timeout(Duration::from_secs(10)).expect("the client's key");
    wait_running(&fleet, sleeping).await;
    RawPg::cancel(b.pg_addr.expect("pg").port(), (key.0, &key.1));
    let reply = running.await.expect("the pgwire client");
    assert_eq!(reply.error().as_deref(), Some("57014"), "{:?}", reply.error());
    assert_eq!(wait_gone(&fleet.db, sleeping).await, 0, "the warehouse query was cancelled");

    // REST: the request on A, POST /v1/cancel on B
    let a_http = a.http_addr.expect("http");
    let slow = tokio::spawn(async move {
        let req = http_client()
            .post(format!("http://{a_http}/v1/query"))
            .header("tidemark-request-id", "fleet-slow-1")
            .json(&json!({ "sql": "SELECT pg_sleep(30) AS slept" }));
        send(req).await
    });
    wait_running(&fleet, sleeping).await;
    let b_http = b.http_addr.expect("http");
    let (status, body) =
        post_json(&http_client(), b_http, "/v1/cancel", &json!({ "request_id": "fleet-slow-1" }))
            .await;
    assert_eq!((status, &body["relayed"]), (202, &json!(true)), "{body}");
    let (status, _, bytes) = slow.await.expect("the REST request");
    assert_eq!((status, body_json(&bytes)["sqlstate"].as_str()), (499, Some("57014")));
    assert_eq!(wait_gone(&fleet.db, sleeping).await, 0);

    // Flight: DoGet on A, CancelFlightInfo on B
    flight_cancel_through(&fleet, sleeping).await;
    fleet.stop().await;
}

/// Polls until the warehouse runs a statement matching `pattern`.
async fn wait_running(fleet: &Fleet, pattern: &str) {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active' \
               AND pid <> pg_backend_pid()";
    for _ in 0..100 {
        let n: i64 = fleet.db.query_one(sql, &[&pattern]).await.expect("activity").get(0);
        if n > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no statement like {pattern} reached the warehouse");
}

/// A Flight SQL client of a replica.
async fn flight_client(server: &Server) -> FlightSqlServiceClient<Channel> {
    let url = format!("http://{}", server.flight_addr.expect("flight"));
    let channel = Channel::from_shared(url).expect("url").connect().await.expect("connect");
    FlightSqlServiceClient::new(channel)
}

/// A DoGet on replica A cancelled by CancelFlightInfo on replica B: B relays (CANCELLING),
/// A's stream ends CANCELLED, and the warehouse query is gone.
async fn flight_cancel_through(fleet: &Fleet, pattern: &str) {
    let (a, b) = (&fleet.replicas[0], &fleet.replicas[1]);
    let mut on_a = flight_client(a).await;
    let info = on_a.execute("SELECT pg_sleep(30) AS slept".into(), None).await.expect("info");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let running = tokio::spawn(async move {
        let stream = on_a.do_get(ticket).await?;
        stream.try_collect::<Vec<_>>().await
    });
    wait_running(fleet, pattern).await;
    let mut on_b = flight_client(b).await;
    let body = CancelFlightInfoRequest { info: Some(info) }.encode_to_vec();
    let action = Action { r#type: "CancelFlightInfo".into(), body: body.into() };
    let results: Vec<_> =
        on_b.do_action(action).await.expect("the action").try_collect().await.expect("results");
    let result =
        CancelFlightInfoResult::decode(results[0].body.clone()).expect("a CancelFlightInfoResult");
    assert_eq!(result.status, CancelStatus::Cancelling as i32, "B relayed the cancel");
    let err = running.await.expect("the DoGet").expect_err("the DoGet was cancelled");
    assert!(err.to_string().contains("57014"), "{err}");
    assert_eq!(wait_gone(&fleet.db, pattern).await, 0);
}
