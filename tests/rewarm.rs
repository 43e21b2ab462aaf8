//! When the batch watermark moves, a replica that announces it on Redis makes the other
//! replicas move at once (pub/sub), and each re-warms its named queries in the background,
//! so the first request after the move already finds the batch leg cached for the new W.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use common::*;
use serde_json::Value;
use tidemark::server::Server;

const NAMED: &str = "-- name: by_country
-- description: events and amount per country since March 5
SELECT country, count(*), sum(amount) FROM events
WHERE event_time >= TIMESTAMP '2024-03-05 00:00:00' GROUP BY 1 ORDER BY 1
";

/// A replica's config: its own watermark poll interval, Redis for the push, the queries dir.
fn replica_toml(db: &str, poll: &str, redis: &str, queries: &str) -> String {
    config_toml(&db_url(db), "", true)
        .replace("watermark_poll = \"100ms\"", &format!("watermark_poll = \"{poll}\""))
        + &format!("\n[redis]\nurl = \"{redis}\"\n\n[queries]\ndir = \"{queries}\"\n")
}

async fn named(http: &reqwest::Client, server: &Server) -> Value {
    let url = format!("http://{}/v1/queries/by_country", server.http_addr.unwrap());
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

fn batch_status(body: &Value) -> &str {
    body["freshness"]["legs"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "batch"))
        .and_then(|l| l["cache"].as_str())
        .unwrap_or("absent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_watermark_reaches_every_replica_and_is_prewarmed() {
    let redis = RedisServer::start();
    let (db_name, db) = fresh_db("rewarm").await;
    let layout = build_layout(&db, 2_000, 11).await;
    set_watermark(&db, "events", layout.w0).await;
    let dir = tempfile_dir();
    std::fs::write(dir.join("by_country.sql"), NAMED).unwrap();
    let queries = dir.to_string_lossy().to_string();
    // A polls quickly; B polls once an hour, so only the push can move it in time
    let a_cfg = parse_config(&replica_toml(&db_name, "200ms", &redis.url(), &queries));
    let b_cfg = parse_config(&replica_toml(&db_name, "1h", &redis.url(), &queries));
    tidemark::setup::run(&a_cfg).await.unwrap();
    let a = Server::start(Arc::new(a_cfg)).await.unwrap();
    let b = Server::start(Arc::new(b_cfg)).await.unwrap();
    let http = http_client();
    let before = named(&http, &b).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the subscriptions settle

    set_watermark(&db, "events", layout.w1).await;
    let mut after = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let w = b.engine.tables().await.unwrap()[0].batch_watermark.clone();
        if w != before["freshness"]["batch_watermark"].as_str().map(str::to_string) {
            // give the background re-warm a moment, then ask as a dashboard would
            tokio::time::sleep(Duration::from_millis(1500)).await;
            after = named(&http, &b).await;
            break;
        }
    }
    assert!(!after.is_null(), "replica B never saw the new watermark (push failed)");
    assert_ne!(after["freshness"]["batch_watermark"], before["freshness"]["batch_watermark"]);
    assert_eq!(batch_status(&after), "hit", "the new W was re-warmed: {after}");
    assert_eq!(after["rows"], before["rows"], "the same events, exactly once, at either W");
    a.shutdown().await;
    b.shutdown().await;
    drop(db);
    drop_db(&db_name).await;
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tidemark-rewarm-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
