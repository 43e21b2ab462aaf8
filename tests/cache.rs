//! Leg caches: batch legs are reused until the watermark moves, speed legs for their TTL, and
//! clients can bypass both; answers stay equal to the oracle.

mod common;

use common::*;
use serde_json::Value;

fn leg_cache(body: &Value, leg: &str) -> String {
    body["freshness"]["legs"]
        .as_array()
        .and_then(|legs| legs.iter().find(|l| l["name"] == leg))
        .and_then(|l| l["cache"].as_str())
        .unwrap_or("absent")
        .to_string()
}

/// A repeated split query hits the batch leg; a moved watermark misses it; no-cache bypasses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_legs_are_reused_until_the_watermark_moves() {
    let s = start_stack("cache", 2_000, 5, "").await;
    let sql = "SELECT country, count(*), sum(amount) FROM events GROUP BY 1 ORDER BY 1";
    let (st, first) = s.query(sql, &[]).await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(leg_cache(&first, "batch"), "miss");
    let (_, second) = s.query(sql, &[]).await;
    assert_eq!(leg_cache(&second, "batch"), "hit");
    assert_eq!(first["rows"], second["rows"]);
    assert!(
        matches!(second["freshness"]["cache"].as_str(), Some("hit") | Some("partial")),
        "{second}"
    );

    let (status, _, bytes) = send(
        s.http
            .post(s.url("/v1/query"))
            .header("cache-control", "no-cache")
            .json(&serde_json::json!({"sql": sql})),
    )
    .await;
    let bypass = body_json(&bytes);
    assert_eq!(status, 200);
    assert_eq!(leg_cache(&bypass, "batch"), "bypass");
    assert_eq!(bypass["rows"], first["rows"]);

    set_watermark(&s.db, "events", s.layout.w1).await;
    let mut moved = Value::Null;
    for _ in 0..50 {
        let (_, b) = s.query(sql, &[]).await;
        if b["freshness"]["batch_watermark"] != first["freshness"]["batch_watermark"] {
            moved = b;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(leg_cache(&moved, "batch"), "miss", "a new watermark is a new key: {moved}");
    let oracle =
        s.db.query("SELECT count(*) FROM events_oracle", &[]).await.unwrap()[0].get::<_, i64>(0);
    let total: i64 = moved["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, oracle, "still exactly once after the watermark moved");
    s.stop().await;
}
