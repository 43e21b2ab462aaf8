//! Named queries: listed, run with typed parameters bound (never spliced), defaults, clear 4xx
//! errors naming the parameter, and a start-up error naming the file and line of a bad file.

mod common;

use std::sync::Arc;

use common::*;

const TOP: &str = "-- name: by_country\n-- description: events and revenue per country since an instant\n\
-- param: since timestamp = 2024-03-01 00:00:00\n-- param: min_qty int4 = 0\n\
SELECT country, count(*) AS n, sum(amount) AS revenue FROM {T} WHERE event_time >= $1 AND qty >= $2 GROUP BY 1 ORDER BY 1\n";

fn write_dir(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tidemark_queries_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (f, text) in files {
        std::fs::write(dir.join(f), text).unwrap();
    }
    dir
}

/// Replaces a stack's server by one that also loads the named queries in `dir`.
async fn restart_with_queries(
    old: tidemark::server::Server,
    db_name: &str,
    dir: &std::path::Path,
) -> (tidemark::server::Server, std::net::SocketAddr) {
    old.shutdown().await;
    let toml = config_toml(&db_url(db_name), "", true)
        + &format!("\n[queries]\ndir = \"{}\"\n", dir.display());
    let server =
        tidemark::server::Server::start(Arc::new(parse_config(&toml))).await.expect("server");
    let addr = server.http_addr.unwrap();
    (server, addr)
}

/// Listing, running with and without defaults, and parameter errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_queries_run_with_bound_parameters() {
    let dir = write_dir("ok", &[("by_country.sql", &TOP.replace("{T}", "events"))]);
    let s = start_stack("named", 2_000, 9, "").await;
    let (server, addr) = restart_with_queries(s.server, &s.db_name, &dir).await;
    let (st, list) = get_json(&s.http, addr, "/v1/queries").await;
    assert_eq!(st, 200);
    assert_eq!(list[0]["name"], "by_country");
    assert_eq!(list[0]["params"][1]["type"], "int4");

    let oracle_sql = |since: &str, q: i32| {
        TOP.lines()
            .last()
            .unwrap()
            .replace("{T}", "events_oracle")
            .replace("$1", &format!("TIMESTAMP '{since}'"))
            .replace("$2", &q.to_string())
    };
    for (path, since, q) in [
        ("/v1/queries/by_country", "2024-03-01 00:00:00", 0),
        ("/v1/queries/by_country?since=2024-03-21%2000:00:00&min_qty=3", "2024-03-21 00:00:00", 3),
    ] {
        let (st, body) = get_json(&s.http, addr, path).await;
        assert_eq!(st, 200, "{body}");
        let want = oracle(&s.db, &oracle_sql(since, q), &[]).await.unwrap();
        let got = answer_from_json(&body).unwrap();
        assert_eq!(got.rows, want.rows, "{path}");
    }
    for (path, status, needle) in [
        ("/v1/queries/by_country?min_qty=three", 400, "min_qty"),
        ("/v1/queries/by_country?since=yesterday", 400, "since"),
        ("/v1/queries/by_country?bogus=1", 400, "bogus"),
        ("/v1/queries/nope", 404, "nope"),
        (
            "/v1/queries/by_country?since=2024-03-01%2000:00:00';DROP%20TABLE%20events_batch;--",
            400,
            "since",
        ),
    ] {
        let (st, body) = get_json(&s.http, addr, path).await;
        assert_eq!(st, status, "{path}: {body}");
        assert!(body["detail"].as_str().unwrap_or("").contains(needle), "{path}: {body}");
    }
    server.shutdown().await;
    drop(s.db);
    drop_db(&s.db_name).await;
    let _ = std::fs::remove_dir_all(&dir);
}

const TOP_N: &str = "-- name: top_countries\n-- param: since timestamp = 2024-03-01 00:00:00\n\
-- param: n int8 = 3\n-- param: skip int8 = 0\n\
SELECT country, count(*) AS n FROM {T} WHERE event_time >= $1 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2 OFFSET $3\n";

/// A parameterized LIMIT/OFFSET splits and caches like a literal one (it used to pass every
/// request through to the warehouse); a value the warehouse refuses still reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameterized_limit_splits_and_caches() {
    let dir = write_dir("limit", &[("top_countries.sql", &TOP_N.replace("{T}", "events"))]);
    let s = start_stack("named_limit", 2_000, 13, "").await;
    let (server, addr) = restart_with_queries(s.server, &s.db_name, &dir).await;
    let oracle_sql = |n: u32, skip: u32| {
        TOP_N.lines().last().unwrap().replace("{T}", "events_oracle").replace(
            "$1 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2 OFFSET $3",
            &format!("TIMESTAMP '2024-03-01 00:00:00' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {n} OFFSET {skip}"),
        )
    };
    for (query, n, skip) in [("", 3, 0), ("?n=2&skip=1", 2, 1), ("?n=2&skip=1", 2, 1)] {
        let path = format!("/v1/queries/top_countries{query}");
        let (st, body) = get_json(&s.http, addr, &path).await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(body["freshness"]["plan"], "split", "{path}: {body}");
        let want = oracle(&s.db, &oracle_sql(n, skip), &[]).await.unwrap();
        assert_eq!(answer_from_json(&body).unwrap().rows, want.rows, "{path}");
    }
    let (_, again) = get_json(&s.http, addr, "/v1/queries/top_countries?n=2&skip=1").await;
    assert_eq!(again["freshness"]["cache"], "hit", "{again}");
    let (st, body) = get_json(&s.http, addr, "/v1/queries/top_countries?n=-1").await;
    assert_eq!(st, 400, "a negative LIMIT is the warehouse's error: {body}");
    server.shutdown().await;
    drop(s.db);
    drop_db(&s.db_name).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad query file stops the start with the file and line named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_file_is_a_startup_error() {
    let dir =
        write_dir("bad", &[("broken.sql", "-- name: broken\n-- param: x notatype\nSELECT $1\n")]);
    let toml = config_toml("postgres://postgres@127.0.0.1:5432/postgres", "", false)
        + &format!("\n[queries]\ndir = \"{}\"\n", dir.display());
    let err = match tidemark::server::Server::start(Arc::new(parse_config(&toml))).await {
        Ok(_) => panic!("a bad query file must stop the start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("broken.sql:2"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
