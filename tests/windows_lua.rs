//! The windows writer script (`scripts/windows.lua`) on its own against a real Redis:
//! micro-batches, NULL measures, concurrent writers, TTLs and argument errors.

use std::time::{SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Script};

const REDIS: &str = "redis://127.0.0.1:6379";

async fn redis() -> MultiplexedConnection {
    let client = redis::Client::open(REDIS).expect("redis url");
    client.get_multiplexed_async_connection().await.unwrap_or_else(|e| {
        panic!("Redis not reachable on 127.0.0.1:6379 ({e}): run scripts/test.sh, which starts it")
    })
}

fn script() -> Script {
    Script::new(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/windows.lua"))
            .expect("script"),
    )
}

/// A bucket key unique to this test run.
fn bucket(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("tidemark:w:{{test_{name}_{}_{nanos}:1732600000}}", std::process::id())
}

const SPECS: [&str; 4] = ["count", "sum:amount", "min:amount", "max:amount"];

async fn apply(con: &mut MultiplexedConnection, key: &str, events: &[(&str, &str)]) -> i64 {
    let inv = script();
    let mut call = inv.key(key);
    call.arg(60).arg(SPECS.len());
    for s in SPECS {
        call.arg(s);
    }
    for (dims, v) in events {
        call.arg(*dims).arg("").arg(*v).arg(*v).arg(*v);
    }
    call.invoke_async(con).await.expect("EVALSHA windows.lua")
}

async fn field(con: &mut MultiplexedConnection, key: &str, f: &str) -> Option<String> {
    con.hget(key, f).await.unwrap()
}

/// A micro-batch updates count, sum, non-null count, min and max per dimension combination.
#[tokio::test]
async fn micro_batch_aggregates_exactly() {
    let mut con = redis().await;
    let key = bucket("batch");
    let de = "DE\u{1f}mobile";
    let n = apply(
        &mut con,
        &key,
        &[(de, "1250"), (de, "-300"), (de, ""), ("FR\u{1f}\u{0}", "99999999999")],
    )
    .await;
    assert_eq!(n, 4);
    assert_eq!(field(&mut con, &key, &format!("count|{de}")).await.as_deref(), Some("3"));
    assert_eq!(field(&mut con, &key, &format!("sum:amount|{de}")).await.as_deref(), Some("950"));
    assert_eq!(field(&mut con, &key, &format!("nn:amount|{de}")).await.as_deref(), Some("2"));
    assert_eq!(field(&mut con, &key, &format!("min:amount|{de}")).await.as_deref(), Some("-300"));
    assert_eq!(field(&mut con, &key, &format!("max:amount|{de}")).await.as_deref(), Some("1250"));
    assert_eq!(
        field(&mut con, &key, "sum:amount|FR\u{1f}\u{0}").await.as_deref(),
        Some("99999999999")
    );
    let ttl: i64 = con.ttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl <= 60, "ttl {ttl}");
    let _: () = con.del(&key).await.unwrap();
}

/// Concurrent writers on one bucket lose nothing (each call is atomic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_atomic() {
    let key = bucket("concurrent");
    let mut tasks = Vec::new();
    for w in 0..8 {
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut con = redis().await;
            for b in 0..25 {
                let v = format!("{}", w * 1000 + b);
                let events: Vec<(&str, &str)> =
                    (0..8).map(|_| ("US\u{1f}web", v.as_str())).collect();
                assert_eq!(apply(&mut con, &key, &events).await, 8);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut con = redis().await;
    assert_eq!(field(&mut con, &key, "count|US\u{1f}web").await.as_deref(), Some("1600"));
    let want: i64 = (0..8).map(|w| (0..25).map(|b| 8 * (w * 1000 + b)).sum::<i64>()).sum();
    assert_eq!(field(&mut con, &key, "sum:amount|US\u{1f}web").await, Some(want.to_string()));
    assert_eq!(field(&mut con, &key, "min:amount|US\u{1f}web").await.as_deref(), Some("0"));
    assert_eq!(field(&mut con, &key, "max:amount|US\u{1f}web").await.as_deref(), Some("7024"));
    let _: () = con.del(&key).await.unwrap();
}

/// Malformed calls are refused with a clear error and change nothing.
#[tokio::test]
async fn malformed_calls_are_refused() {
    let mut con = redis().await;
    let key = bucket("bad");
    let err = script()
        .key(&key)
        .arg(60)
        .arg(1)
        .arg("count")
        .arg("dims-without-value")
        .invoke_async::<i64>(&mut con)
        .await
        .expect_err("odd argument count");
    assert!(err.to_string().contains("windows.lua"), "{err}");
    let err = script()
        .key(&key)
        .arg(60)
        .arg(1)
        .arg("median:amount")
        .arg("d")
        .arg("5")
        .invoke_async::<i64>(&mut con)
        .await
        .expect_err("unknown measure");
    assert!(err.to_string().contains("unknown measure"), "{err}");
    let exists: bool = con.exists(&key).await.unwrap();
    assert!(!exists || field(&mut con, &key, "median:amount|d").await.is_none());
    let _: () = con.del(&key).await.unwrap();
}
