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

    let batch_runs = s.server.engine.legs_run()["batch"];
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
    // a new W is a new key: the batch leg ran again (for the request, or for the re-warm)
    assert!(s.server.engine.legs_run()["batch"] > batch_runs, "{moved}");
    let oracle =
        s.db.query("SELECT count(*) FROM events_oracle", &[]).await.unwrap()[0].get::<_, i64>(0);
    let total: i64 = moved["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, oracle, "still exactly once after the watermark moved");

    // the old W's batch legs can never be asked for again: they leave the cache at once
    let old_w = first["freshness"]["batch_watermark"].as_str().unwrap().to_string();
    let mut left = Vec::new();
    for _ in 0..100 {
        left = s.server.engine.cached_batch_sql();
        left.retain(|sql| sql.contains(&old_w));
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(left.is_empty(), "batch legs of the old watermark still cached: {left:?}");
    let new_w = moved["freshness"]["batch_watermark"].as_str().unwrap();
    assert!(
        s.server.engine.cached_batch_sql().iter().any(|sql| sql.contains(new_w)),
        "the new watermark's batch leg is cached"
    );
    s.stop().await;
}

/// 100 identical concurrent requests run each leg on the warehouse once, and all get the
/// same answer (single flight through the answer and leg caches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_requests_share_one_execution() {
    let s = start_stack("single_flight", 2_000, 6, "").await;
    // warm the describe cache and the catalog facts with a different query
    let (st, _) = s.query("SELECT count(*) FROM events", &[]).await;
    assert_eq!(st, 200);
    let before = s.server.engine.legs_run();
    let sql = "SELECT device, count(*), sum(amount) FROM events GROUP BY 1 ORDER BY 1";
    let answers = futures::future::join_all((0..100).map(|_| s.query(sql, &[]))).await;
    let after = s.server.engine.legs_run();
    let ran = |layer: &str| after.get(layer).unwrap_or(&0) - before.get(layer).unwrap_or(&0);
    // an epoch boundary (the 1 s answer TTL) may fall inside the burst: at most one re-run
    assert!((1..=2).contains(&ran("speed")), "speed leg ran {} times", ran("speed"));
    assert_eq!(ran("batch"), 1, "the batch leg is cached until W moves, whatever the epoch");
    let first = &answers[0].1["rows"];
    for (st, body) in &answers {
        assert_eq!(*st, 200, "{body}");
        assert_eq!(&body["rows"], first);
    }
    s.stop().await;
}

/// REST answers carry a weak ETag and max-age; If-None-Match with it gives 304 until W or
/// the realtime epoch moves; /metrics counts what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_answer_304_and_metrics_count() {
    let s = start_stack("etag", 1_000, 7, "").await;
    let sql = "SELECT country, count(*) FROM events GROUP BY 1 ORDER BY 1";
    let post = || s.http.post(s.url("/v1/query")).json(&serde_json::json!({"sql": sql}));
    let resp = post().send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(resp.headers()["cache-control"], "max-age=1");
    // within the epoch the same validator gives 304 (retry once across an epoch boundary)
    let mut status = 0;
    for _ in 0..2 {
        let again = post().send().await.unwrap();
        let tag = again.headers()["etag"].to_str().unwrap().to_string();
        let r = post().header("if-none-match", &tag).send().await.unwrap();
        status = r.status().as_u16();
        if status == 304 {
            assert_eq!(r.headers()["etag"].to_str().unwrap(), tag);
            assert!(r.bytes().await.unwrap().is_empty());
            break;
        }
    }
    assert_eq!(status, 304);
    let stale = post().header("if-none-match", "W/\"0000000000000000\"").send().await.unwrap();
    assert_eq!(stale.status(), 200);
    let csv = post().header("accept", "text/csv").send().await.unwrap();
    assert_ne!(csv.headers()["etag"].to_str().unwrap(), etag, "each representation has its own");
    let bypass = post().header("cache-control", "no-cache").send().await.unwrap();
    assert!(bypass.headers().get("etag").is_none(), "no validator for a bypassed answer");

    let metrics = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for needle in [
        "tidemark_query_duration_seconds_count{frontend=\"rest\",plan=\"split\"}",
        "tidemark_cache_requests_total{cache=\"answer\",result=\"hit\"}",
        "tidemark_warehouse_legs_total{layer=\"batch\"} 2",
        "tidemark_cache_bytes{cache=\"batch\"}",
        "tidemark_watermark_age_seconds{table=\"events\"}",
        "tidemark_warehouse_pool_connections{state=\"open\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics:\n{text}");
    }
    s.stop().await;
}

/// Runs `sql` (with `{t}` for the table) through tidemark and on the oracle table; the
/// select list must be country, count, sum, min. Returns tidemark's body.
async fn check_against_oracle(s: &Stack, sql: &str) -> Value {
    let (st, body) = s.query(&sql.replace("{t}", "events"), &[]).await;
    assert_eq!(st, 200, "{body}");
    let oracle_sql = format!(
        "SELECT x.country, x.count::text, x.sum::text, x.min::text FROM ({}) x ORDER BY 1",
        sql.replace("{t}", "events_oracle")
    );
    let oracle: Vec<Value> = s
        .db
        .query(&oracle_sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let cell = |i: usize| r.get::<_, Option<String>>(i).map_or(Value::Null, Value::from);
            Value::Array((0..4).map(cell).collect())
        })
        .collect();
    assert_eq!(body["rows"].as_array().unwrap(), &oracle, "{sql}");
    body
}

/// A sliding lower bound (the dashboard's "last N days") cuts the batch leg into day
/// chunks: the first request computes every chunk in one warehouse statement and caches each,
/// after it only the fringe is computed, and every answer equals the oracle; bounds that also
/// cap the range, or sit on a chunk boundary, stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_ranges_reuse_whole_chunks() {
    let s = start_stack("chunks", 3_000, 8, "").await;
    let head = "SELECT country, count(*), sum(amount), min(event_time) FROM {t} WHERE";
    let mut batch_runs = Vec::new();
    for k in 0..12 {
        let minutes = k * 37;
        let sql = format!(
            "{head} event_time >= TIMESTAMP '2024-03-10 00:00:00' + interval '{minutes} minutes' \
             GROUP BY 1 ORDER BY 1"
        );
        let before = s.server.engine.legs_run().get("batch").copied().unwrap_or(0);
        let body = check_against_oracle(&s, &sql).await;
        batch_runs.push(s.server.engine.legs_run()["batch"] - before);
        if k > 0 {
            assert_eq!(leg_cache(&body, "batch"), "partial", "chunks hit, fringe fresh: {body}");
        }
    }
    assert_eq!(batch_runs[0], 1, "the first request computes its chunks in one statement");
    assert!(batch_runs[1..].iter().all(|n| *n <= 2), "then only the fringe: {batch_runs:?}");
    for filter in [
        "event_time BETWEEN TIMESTAMP '2024-03-11 05:00:00' AND TIMESTAMP '2024-03-15 00:00:00'",
        "event_time > TIMESTAMP '2024-03-12 00:00:00' AND country <> 'US'",
        "event_time > TIMESTAMP '2024-03-12 00:00:00' OR country = 'US'",
        "event_time >= TIMESTAMP '2024-03-11 00:00:00' AND event_time < TIMESTAMP '2024-03-16 12:00:00'",
        "TIMESTAMP '2024-03-13 07:00:00' <= event_time AND event_time >= TIMESTAMP '2024-03-12 00:00:00'",
    ] {
        check_against_oracle(&s, &format!("{head} {filter} GROUP BY 1 ORDER BY 1")).await;
    }
    s.stop().await;
}
