//! What the demo prints at start: the URLs, example queries and how each client connects.

use super::*;

/// Copy-paste examples: (what it shows, SQL).
pub(super) const EXAMPLES: [(&str, &str); 4] = [
    (
        "live: events and revenue per country over the last 5 minutes (run it every second: \
         the numbers move; the newest seconds come from the Redis windows)",
        "SELECT country, count(*) AS events, sum(amount) AS revenue FROM events \
         WHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '5 minutes' \
         GROUP BY country ORDER BY events DESC",
    ),
    (
        "revenue per day over the last 7 days",
        "SELECT date_trunc('day', event_time) AS day, count(*) AS orders, \
         sum(amount) AS revenue FROM events WHERE page = '/checkout' \
         AND event_time >= date_trunc('day', now() AT TIME ZONE 'UTC') - interval '6 days' \
         GROUP BY 1 ORDER BY 1",
    ),
    (
        "events per minute over the last 10 minutes, as CSV",
        "SELECT date_trunc('minute', event_time) AS minute, count(*) AS event_count \
         FROM events WHERE event_time >= now() AT TIME ZONE 'UTC' - interval '10 minutes' \
         GROUP BY 1 ORDER BY 1",
    ),
    (
        "revenue per region: a join to the countries dimension table",
        "SELECT c.region, count(*) AS orders, sum(e.amount) AS revenue \
         FROM events e JOIN countries c ON c.code = e.country \
         WHERE e.page = '/checkout' GROUP BY c.region ORDER BY revenue DESC",
    ),
];

/// What to look for in the answer of the live example (`EXAMPLES[0]`).
pub(super) const LIVE_NOTE: &str =
    "# freshness.windows.used is true; stop Redis and the answer is marked degraded\n";

/// A curl command posting `{"sql": sql}` to `path`, with a quoted here-document body.
pub(super) fn curl(base: &str, path: &str, sql: &str, accept: Option<&str>) -> String {
    let body = serde_json::json!({ "sql": sql }).to_string();
    let accept = accept.map(|a| format!(" -H 'accept: {a}'")).unwrap_or_default();
    format!(
        "curl -s {base}{path} -H 'content-type: application/json'{accept} \
         --data-binary @- <<'JSON'\n{body}\nJSON\n"
    )
}

/// Prints how psql / BI tools and Python connect.
pub(super) fn print_clients(pg: Option<SocketAddr>, flight: Option<SocketAddr>) {
    if let Some(pg) = pg {
        println!("# psql (or any BI tool's PostgreSQL driver) through tidemark");
        println!(
            "psql \"host={} port={} user=analyst dbname=tidemark sslmode=disable\" -c \"{}\" -c \"SHOW tidemark.freshness\"\n",
            pg.ip(),
            pg.port(),
            EXAMPLES[0].1
        );
    }
    if let Some(f) = flight {
        println!(
            "# Python (pip install adbc-driver-flightsql pyarrow pandas) through Arrow Flight SQL"
        );
        println!(
            "python3 -c \"import adbc_driver_flightsql.dbapi as f; c = f.connect('grpc://{f}').cursor(); \
             c.execute('SELECT country, count(*) FROM events GROUP BY 1'); print(c.fetch_arrow_table().to_pandas())\"\n"
        );
    }
}

/// Prints what is running and copy-paste examples.
pub(super) fn print_banner(http: Option<SocketAddr>, url: &str, opts: &DemoOptions) {
    let Some(addr) = http else {
        println!("tidemark demo is running without a REST listener; stop it with Ctrl-C");
        return;
    };
    let base = format!("http://{addr}");
    println!("\n=== tidemark demo: REST on {base}, warehouse {url}");
    println!("=== console: {base}/console  (open it in a browser: query, the split drawn, freshness, health, recent queries)");
    if opts.users_file.is_some() {
        println!(
            "users are configured: REST and the console take a user's API key \
             (-H 'authorization: Bearer <key>' below)"
        );
    }
    println!(
        "logical table `{TABLE}` = {BATCH} (event_time < W) + {SPEED} (W <= event_time < H)\n\
         + the Redis windows at {} (1 s buckets from H on);\n\
         {} live events/s go into {STREAM} (the stream) and the windows; every {} s the \
         loader moves them into {SPEED} and publishes H;\nW advances every {} s. \
         Stop with Ctrl-C.\n",
        opts.redis_url,
        opts.rate_per_sec,
        SPEED_LOAD_EVERY.as_secs(),
        opts.advance_every.as_secs()
    );
    for (i, (what, sql)) in EXAMPLES.iter().enumerate() {
        let accept = (i == 2).then_some("text/csv");
        let note = if i == 0 { LIVE_NOTE } else { "" };
        println!("# {what}\n{note}{}", curl(&base, "/v1/query", sql, accept));
    }
    println!("# the lambda plan: class, W, each leg's SQL, pruning");
    println!("{}", curl(&base, "/v1/explain", EXAMPLES[0].1, None));
    println!("# logical tables, their layers, columns and current watermark");
    println!("curl -s {base}/v1/tables\n");
    println!(
        "# the same question straight to the warehouse (the `{TABLE}` view: no windows, so \
         up to {} s behind), to compare",
        SPEED_LOAD_EVERY.as_secs() + 2
    );
    println!("psql \"{url}\" -c \"{}\"\n", EXAMPLES[0].1);
}
