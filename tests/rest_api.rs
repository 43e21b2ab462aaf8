//! REST behaviour of tidemark: the response shape and value encodings, CSV and Arrow output,
//! EXPLAIN, the catalog endpoints, and every kind of bad input with its HTTP status and
//! SQLSTATE. Each test runs its own database and server.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::{header, Stack};
use serde_json::{json, Value};
use tidemark::server::Server;

const REST_EVENTS: usize = 1_500;
const REST_SEED: u64 = 42;
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// A database with the small layout (watermark W0) and a server in front of it.
async fn stack(prefix: &str) -> Stack {
    common::start_stack(prefix, REST_EVENTS, REST_SEED, "pool_size = 4").await
}

/// The oracle's answer for SQL written over `{T}`.
async fn oracle(s: &Stack, sql: &str) -> common::Answer {
    let sql = sql.replace("{T}", "events_oracle");
    common::oracle(&s.db, &sql, &[]).await.unwrap_or_else(|e| panic!("oracle failed: {e}\n{sql}"))
}

/// `POST /v1/query` with an `Accept` header: status, headers and raw body.
async fn query_accept(
    s: &Stack,
    sql: &str,
    accept: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let request =
        s.http.post(s.url("/v1/query")).header("accept", accept).json(&json!({ "sql": sql }));
    common::send(request).await
}

/// POSTs a raw body as `application/json` to `/v1/query`.
async fn post_raw(s: &Stack, body: &[u8]) -> (u16, reqwest::header::HeaderMap, Value) {
    let request = s
        .http
        .post(s.url("/v1/query"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    let (status, headers, bytes) = common::send(request).await;
    (status, headers, common::body_json(&bytes))
}

/// Asserts an RFC 7807 problem with this HTTP status and SQLSTATE.
fn assert_problem(ctx: &str, status: u16, body: &Value, want_status: u16, want_sqlstate: &str) {
    assert_eq!(status, want_status, "{ctx}: HTTP status (body {body})");
    assert_eq!(body["sqlstate"].as_str(), Some(want_sqlstate), "{ctx}: sqlstate (body {body})");
    assert_eq!(body["status"].as_u64(), Some(u64::from(want_status)), "{ctx}: problem status");
    assert!(body["title"].is_string(), "{ctx}: problem without a title: {body}");
    assert!(body["detail"].is_string(), "{ctx}: problem without a detail: {body}");
}

/// Asserts a client error (4xx, never 5xx) that still carries a five-character SQLSTATE.
fn assert_client_error(ctx: &str, status: u16, body: &Value) {
    assert!((400..500).contains(&status), "{ctx}: expected a 4xx, got {status}: {body}");
    let code = body["sqlstate"].as_str().unwrap_or_else(|| panic!("{ctx}: no sqlstate in {body}"));
    assert_eq!(code.len(), 5, "{ctx}: malformed sqlstate {code:?}");
}

/// The server still answers a valid split query after bad input.
async fn assert_still_serving(s: &Stack) {
    let (status, body) = s.query("SELECT count(*) AS n FROM events", &[]).await;
    assert_eq!(status, 200, "the server stopped answering after bad input: {body}");
    let expected = oracle(s, "SELECT count(*) AS n FROM {T}").await;
    let answer = common::answer_from_json(&body).expect("answer");
    common::compare_answers(&expected, &answer, true).unwrap_or_else(|e| panic!("{e}"));
}

/// A text fingerprint of everything a write could change: row counts and sums of both layer
/// tables, every relation in `public` with its kind, column count and ACL, and the watermark.
async fn fingerprint(s: &Stack) -> String {
    let sql = "SELECT (SELECT count(*) FROM events_batch) || '/' || (SELECT count(*) FROM events_speed) \
        || '/' || (SELECT coalesce(sum(qty), 0) FROM events_batch) \
        || '/' || (SELECT coalesce(sum(qty), 0) FROM events_speed) \
        || '/' || (SELECT string_agg(relname || ':' || relkind::text || ':' || relnatts::text || ':' \
                   || coalesce(relacl::text, '-'), ',' ORDER BY relname) \
                   FROM pg_class WHERE relnamespace = 'public'::regnamespace) \
        || '/' || (SELECT batch_watermark FROM tidemark_watermarks WHERE table_name = 'events') AS fp";
    let answer = common::oracle(&s.db, sql, &[]).await.expect("fingerprint query");
    answer.rows[0][0].clone().expect("fingerprint is not NULL")
}

// ---------------------------------------------------------------------------------------------
// Happy paths
// ---------------------------------------------------------------------------------------------

/// A split aggregate answers with columns and PostgreSQL type names, rows equal to the oracle's,
/// int8/numeric as strings, and freshness in the body and in the headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_returns_columns_rows_and_freshness() {
    let s = stack("rest_shape").await;
    let sql = "SELECT country, count(*) AS n, sum(big) AS sum_big, sum(amount) AS total, \
               min(event_time) AS first_seen, bool_or(flag) AS any_flag, avg(score) AS avg_score \
               FROM {T} GROUP BY country ORDER BY country";
    let (status, headers, bytes) =
        query_accept(&s, &sql.replace("{T}", "events"), "application/json").await;
    let body = common::body_json(&bytes);
    assert_eq!(status, 200, "{body}");
    let content_type = header(&headers, "content-type").unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "content-type {content_type:?}");

    let answer = common::answer_from_json(&body).expect("well-formed answer");
    let names: Vec<&str> = answer.columns.iter().map(|(n, _)| n.as_str()).collect();
    let types: Vec<&str> = answer.columns.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(names, ["country", "n", "sum_big", "total", "first_seen", "any_flag", "avg_score"]);
    assert_eq!(types, ["text", "int8", "numeric", "numeric", "timestamp", "bool", "float8"]);
    let expected = oracle(&s, sql).await;
    common::compare_answers(&expected, &answer, true).unwrap_or_else(|e| panic!("{e}"));

    for row in body["rows"].as_array().expect("rows") {
        assert!(row[1].is_string(), "int8 must be a JSON string: {row}");
        assert!(row[2].is_string() || row[2].is_null(), "numeric must be a JSON string: {row}");
        assert!(row[3].is_string() || row[3].is_null(), "numeric must be a JSON string: {row}");
        assert!(row[5].is_boolean() || row[5].is_null(), "bool must be a JSON bool: {row}");
        assert!(row[6].is_number() || row[6].is_null(), "float8 must be a JSON number: {row}");
    }

    let freshness = &body["freshness"];
    assert_eq!(freshness["plan"], "split", "freshness {freshness}");
    let watermark = freshness["batch_watermark"].as_str().unwrap_or_default();
    assert!(watermark.contains("2024-03-20"), "batch_watermark {watermark:?}");
    let legs = freshness["legs"].as_array().expect("freshness.legs");
    let mut leg_names: Vec<&str> = legs.iter().filter_map(|l| l["name"].as_str()).collect();
    leg_names.sort_unstable();
    assert_eq!(leg_names, ["batch", "speed"], "legs {legs:?}");
    for leg in legs {
        assert!(leg["rows"].is_u64(), "leg without a row count: {leg}");
    }

    assert_eq!(header(&headers, "tidemark-plan"), Some("split"));
    let wm_header = header(&headers, "tidemark-batch-watermark").unwrap_or_default();
    assert!(wm_header.contains("2024-03-20"), "tidemark-batch-watermark {wm_header:?}");
    s.stop().await;
}

/// SUM over int8 values passes 2^63 and comes back as the exact decimal string; numeric and
/// count keep their exact text too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_and_numeric_results_are_exact_strings() {
    let s = stack("rest_exact").await;
    let sql =
        "SELECT sum(big) AS sum_big, sum(amount) AS total, count(*) AS n, max(big) AS max_big, \
               avg(amount) AS avg_amount FROM {T}";
    let (status, body) = s.query(&sql.replace("{T}", "events"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let expected = oracle(&s, sql).await;
    let answer = common::answer_from_json(&body).expect("answer");
    common::compare_answers(&expected, &answer, true).unwrap_or_else(|e| panic!("{e}"));

    let sum_big = body["rows"][0][0].as_str().expect("sum(big) is a JSON string");
    let value: i128 = sum_big.parse().expect("sum(big) is an integer");
    assert!(value > i128::from(i64::MAX), "the test data should push sum(big) past 2^63: {value}");
    assert_eq!(Some(sum_big.to_string()), expected.rows[0][0]);
    assert!(body["rows"][0][1].is_string() && body["rows"][0][2].is_string());
    s.stop().await;
}

/// Every supported type is encoded as documented: int2/int4/float as numbers, int8/numeric as
/// exact strings, NaN/Infinity as strings, dates and timestamps in PostgreSQL's text form
/// (timestamptz in UTC), NULL as null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_is_encoded_as_documented() {
    let s = stack("rest_types").await;
    let sql = "SELECT 1::int2 AS a, 2::int4 AS b, 3::int8 AS c, 1.50::numeric(5,2) AS d, \
        1.5::float4 AS e, 2.25::float8 AS f, 'x'::text AS g, 'y'::varchar AS h, DATE '2024-01-02' AS i, \
        TIMESTAMP '2024-01-02 03:04:05.120' AS j, TIMESTAMPTZ '2024-01-02 03:04:05+02' AS k, true AS l, \
        NULL::int4 AS m, 'NaN'::float8 AS n, 'Infinity'::float8 AS o, '-Infinity'::float8 AS p, \
        (-9223372036854775807 - 1)::int8 AS q, 123456789012345678901234567890.123456789 AS r, \
        TIMESTAMP '2024-01-02 03:04:05' AS s, ''::text AS t, 'Zürich–Ost 東京 📱'::text AS u, \
        9223372036854775807::int8 AS v, -0.001 AS w, TIMESTAMP '2024-01-02 03:04:05.000001' AS x";
    let expected = [
        ("a", "int2", json!(1)),
        ("b", "int4", json!(2)),
        ("c", "int8", json!("3")),
        ("d", "numeric", json!("1.50")),
        ("e", "float4", json!(1.5)),
        ("f", "float8", json!(2.25)),
        ("g", "text", json!("x")),
        ("h", "varchar", json!("y")),
        ("i", "date", json!("2024-01-02")),
        ("j", "timestamp", json!("2024-01-02 03:04:05.12")),
        ("k", "timestamptz", json!("2024-01-02 01:04:05+00")),
        ("l", "bool", json!(true)),
        ("m", "int4", Value::Null),
        ("n", "float8", json!("NaN")),
        ("o", "float8", json!("Infinity")),
        ("p", "float8", json!("-Infinity")),
        ("q", "int8", json!("-9223372036854775808")),
        ("r", "numeric", json!("123456789012345678901234567890.123456789")),
        ("s", "timestamp", json!("2024-01-02 03:04:05")),
        ("t", "text", json!("")),
        ("u", "text", json!("Zürich–Ost 東京 📱")),
        ("v", "int8", json!("9223372036854775807")),
        ("w", "numeric", json!("-0.001")),
        ("x", "timestamp", json!("2024-01-02 03:04:05.000001")),
    ];
    let (status, body) = s.query(sql, &[]).await;
    assert_eq!(status, 200, "{body}");
    let columns = body["columns"].as_array().expect("columns");
    let row = body["rows"][0].as_array().expect("one row");
    assert_eq!(columns.len(), expected.len(), "{body}");
    for (i, (name, ty, value)) in expected.iter().enumerate() {
        assert_eq!(columns[i]["name"], *name, "column {i}");
        assert_eq!(columns[i]["type"], *ty, "type of column {name}");
        assert_eq!(&row[i], value, "value of column {name} ({ty})");
    }
    // The oracle agrees on names, types and text.
    let oracle_answer = oracle(&s, sql).await;
    let answer = common::answer_from_json(&body).expect("answer");
    common::compare_answers(&oracle_answer, &answer, true).unwrap_or_else(|e| panic!("{e}"));
    s.stop().await;
}

/// Parameters are bound as $1..$n (JSON numbers, strings and null), never spliced into the SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_are_bound_not_spliced() {
    let s = stack("rest_params").await;
    let before = fingerprint(&s).await;
    let cases = [
        (
            "SELECT count(*) AS n, sum(amount) AS total FROM {T} WHERE qty > $1 AND country = $2",
            vec![json!(10), json!("DE")],
        ),
        ("SELECT count(*) AS n FROM {T} WHERE device = $1", vec![json!("o'brien")]),
        ("SELECT count(*) AS n FROM {T} WHERE device = $1", vec![json!("Ünïcødé")]),
        ("SELECT count(*) AS n FROM {T} WHERE device IS NOT DISTINCT FROM $1", vec![Value::Null]),
        (
            "SELECT count(*) AS n FROM {T} WHERE device = $1",
            vec![json!("x'; DROP TABLE events_batch; --")],
        ),
        (
            "SELECT count(*) AS n FROM {T} WHERE event_time >= $1",
            vec![json!("2024-03-21 12:00:00")],
        ),
        ("SELECT count(*) AS n, avg(score) AS mean FROM {T} WHERE score > $1", vec![json!(500.25)]),
    ];
    for (sql, params) in cases {
        let (status, body) = s.query(&sql.replace("{T}", "events"), &params).await;
        assert_eq!(status, 200, "{sql} with {params:?}: {body}");
        let oracle_sql = sql.replace("{T}", "events_oracle");
        let expected = common::oracle(&s.db, &oracle_sql, &params).await.expect("oracle");
        let answer = common::answer_from_json(&body).expect("answer");
        common::compare_answers(&expected, &answer, true)
            .unwrap_or_else(|e| panic!("{sql} with {params:?}: {e}"));
    }
    assert_eq!(fingerprint(&s).await, before, "a parameter changed the database");
    s.stop().await;
}

/// `Accept: text/csv` gives CSV with a header row and the same values as the oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_output() {
    let s = stack("rest_csv").await;
    let sql = "SELECT country, count(*) AS n FROM {T} GROUP BY country ORDER BY country";
    let (status, headers, bytes) =
        query_accept(&s, &sql.replace("{T}", "events"), "text/csv").await;
    let text = String::from_utf8(bytes).expect("CSV is UTF-8");
    assert_eq!(status, 200, "{text}");
    let content_type = header(&headers, "content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/csv"), "content-type {content_type:?}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(csv_fields(lines[0]), ["country", "n"], "header row");
    let expected = oracle(&s, sql).await;
    assert_eq!(lines.len(), expected.rows.len() + 1, "{text}");
    for (line, row) in lines[1..].iter().zip(&expected.rows) {
        let want: Vec<String> = row.iter().map(|c| c.clone().unwrap_or_default()).collect();
        assert_eq!(csv_fields(line), want, "CSV line {line:?}");
    }
    s.stop().await;
}

/// Splits a CSV line without embedded commas, removing optional quotes.
fn csv_fields(line: &str) -> Vec<String> {
    line.split(',')
        .map(|f| {
            let f = f.trim_end_matches('\r');
            f.strip_prefix('"').and_then(|g| g.strip_suffix('"')).unwrap_or(f).replace("\"\"", "\"")
        })
        .collect()
}

/// `Accept: application/vnd.apache.arrow.stream` gives an Arrow IPC stream, numerics as
/// Decimal128 (`tidemark-numeric: text` keeps their exact text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_output() {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    use arrow_schema::DataType;
    let s = stack("rest_arrow").await;
    let sql = "SELECT country, count(*) AS n, sum(amount) AS total, min(amount) AS low \
               FROM events GROUP BY country ORDER BY country";
    let (status, headers, bytes) = query_accept(&s, sql, ARROW_STREAM).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let content_type = header(&headers, "content-type").unwrap_or_default();
    assert!(content_type.starts_with(ARROW_STREAM), "content-type {content_type:?}");
    assert_eq!(&bytes[..4], &[0xFF_u8; 4], "IPC continuation marker");
    let batches = arrow_batches(&bytes);
    let schema = batches[0].schema();
    assert_eq!(schema.field(2).data_type(), &DataType::Decimal128(38, 2), "sum(numeric(12,2))");
    // aggregates drop the type modifier: min(amount) is unconstrained numeric too
    assert_eq!(schema.field(3).data_type(), &DataType::Decimal128(38, 2), "min(numeric(12,2))");
    let (_, _, rows) =
        query_accept(&s, "SELECT id, amount FROM events ORDER BY id LIMIT 5", ARROW_STREAM).await;
    let declared = arrow_batches(&rows)[0].schema();
    assert_eq!(declared.field(1).data_type(), &DataType::Decimal128(12, 2), "numeric(12,2)");
    let oracle = s.db.query(&sql.replace("FROM events", "FROM events_oracle"), &[]).await.unwrap();
    let totals: Vec<Option<String>> = batches
        .iter()
        .flat_map(|b| {
            let a = b.column(2).as_primitive::<arrow_array::types::Decimal128Type>().clone();
            (0..a.len())
                .map(move |i| a.is_valid(i).then(|| a.value_as_string(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    let want: Vec<Option<String>> = oracle
        .iter()
        .map(|r| r.get::<_, Option<tidemark::model::value::Cell>>(2).and_then(|c| c.0.to_pg_text()))
        .collect();
    assert_eq!(totals, want, "Decimal128 totals equal the oracle's");
    let request = s
        .http
        .post(s.url("/v1/query"))
        .header("accept", ARROW_STREAM)
        .header("tidemark-numeric", "text")
        .json(&json!({ "sql": sql }));
    let (status, _, text_bytes) = common::send(request).await;
    assert_eq!(status, 200);
    let text = arrow_batches(&text_bytes);
    assert_eq!(text[0].schema().field(2).data_type(), &DataType::Utf8, "numerics as text");
    s.stop().await;
}

/// The record batches of an Arrow IPC stream.
fn arrow_batches(bytes: &[u8]) -> Vec<arrow_array::RecordBatch> {
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .expect("an Arrow IPC stream");
    reader.map(|b| b.expect("a record batch")).collect()
}

// ---------------------------------------------------------------------------------------------
// EXPLAIN, catalog, health, watermark
// ---------------------------------------------------------------------------------------------

/// `POST /v1/explain` and its 200 body.
async fn explain(s: &Stack, sql: &str) -> Value {
    let (status, body) =
        common::post_json(&s.http, s.addr, "/v1/explain", &json!({ "sql": sql })).await;
    assert_eq!(status, 200, "explain {sql}: {body}");
    body
}

/// Leg names and SQL of an explain answer.
fn legs(explained: &Value) -> Vec<(String, String)> {
    let legs = explained["legs"].as_array().unwrap_or_else(|| panic!("no legs in {explained}"));
    legs.iter()
        .map(|l| {
            let name = l["name"].as_str().unwrap_or_else(|| panic!("leg without name: {l}"));
            let sql = l["sql"].as_str().unwrap_or_else(|| panic!("leg without sql: {l}"));
            (name.to_string(), sql.to_string())
        })
        .collect()
}

/// EXPLAIN shows the class, W, each leg's SQL with the watermark literal, and what was pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_class_legs_and_pruning() {
    let s = stack("rest_explain").await;
    let w0 = "2024-03-20 00:00:00";

    let e = explain(&s, "SELECT country, count(*) AS n FROM events GROUP BY country").await;
    assert_eq!(e["class"], "split", "{e}");
    let wm = e["batch_watermark"].as_str().unwrap_or_default();
    assert!(wm.contains("2024-03-20"), "batch_watermark {wm:?}");
    let split_legs = legs(&e);
    let names: Vec<&str> = split_legs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 2, "{e}");
    let batch = &split_legs.iter().find(|(n, _)| n == "batch").expect("a batch leg").1;
    let speed = &split_legs.iter().find(|(n, _)| n == "speed").expect("a speed leg").1;
    assert!(batch.contains("events_batch") && batch.contains(w0), "batch leg: {batch}");
    assert!(speed.contains("events_speed") && speed.contains(w0), "speed leg: {speed}");
    assert!(!batch.contains("events_speed") && !speed.contains("events_batch"));
    assert_eq!(e["pruned"].as_array().map(Vec::len), Some(0), "nothing is pruned: {e}");

    let e = explain(
        &s,
        "SELECT count(*) FROM events WHERE event_time < TIMESTAMP '2024-03-10 00:00:00'",
    )
    .await;
    assert_eq!(e["class"], "split", "{e}");
    let names: Vec<String> = legs(&e).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["batch"], "the speed leg is pruned below W: {e}");
    let pruned = e["pruned"].as_array().expect("pruned array");
    assert!(!pruned.is_empty() && e["pruned"].to_string().contains("speed"), "pruned: {e}");

    let e = explain(
        &s,
        "SELECT count(*) FROM events WHERE event_time >= TIMESTAMP '2024-03-26 00:00:00'",
    )
    .await;
    let names: Vec<String> = legs(&e).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["speed"], "the batch leg is pruned at or above W: {e}");
    assert!(e["pruned"].to_string().contains("batch"), "pruned: {e}");

    let e = explain(&s, "SELECT count(DISTINCT user_id) FROM events").await;
    assert_eq!(e["class"], "passthrough", "{e}");
    s.stop().await;
}

/// `GET /v1/tables` lists the logical table with its layers, typed columns and watermark;
/// `GET /healthz` answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_healthz() {
    let s = stack("rest_tables").await;
    let (status, body) = common::get_json(&s.http, s.addr, "/v1/tables").await;
    assert_eq!(status, 200, "{body}");
    let tables = body.as_array().unwrap_or_else(|| panic!("/v1/tables is not an array: {body}"));
    let events = tables.iter().find(|t| t["name"] == "events").expect("events is listed");
    assert_eq!(events["time_column"], "event_time");
    assert_eq!(events["batch_table"], "events_batch");
    assert_eq!(events["speed_table"], "events_speed");
    let columns: Vec<(String, String)> = events["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            (name, c["type"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let expected = [
        ("id", "int8"),
        ("event_time", "timestamp"),
        ("user_id", "int4"),
        ("country", "text"),
        ("device", "text"),
        ("amount", "numeric"),
        ("qty", "int2"),
        ("score", "float8"),
        ("big", "int8"),
        ("flag", "bool"),
        ("day", "date"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    assert_eq!(columns, expected);
    let wm = events["batch_watermark"].as_str().unwrap_or_default();
    assert!(wm.contains("2024-03-20"), "batch_watermark {wm:?}");

    let (status, _, _) = common::send(s.http.get(s.url("/healthz"))).await;
    assert_eq!(status, 200);
    s.stop().await;
}

/// A new watermark in the warehouse is picked up by the tracker (polled every 100 ms), shows in
/// the headers, and the answer stays exactly-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_advance_is_visible() {
    let s = stack("rest_watermark").await;
    let sql = "SELECT count(*) AS n, sum(amount) AS total, sum(big) AS sum_big FROM {T}";
    let expected = oracle(&s, sql).await;
    common::set_watermark(&s.db, "events", s.layout.w0 + TimeDelta::days(2)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, headers, bytes) =
            query_accept(&s, &sql.replace("{T}", "events"), "application/json").await;
        let body = common::body_json(&bytes);
        assert_eq!(status, 200, "{body}");
        let answer = common::answer_from_json(&body).expect("answer");
        common::compare_answers(&expected, &answer, true).unwrap_or_else(|e| panic!("{e}"));
        let wm = header(&headers, "tidemark-batch-watermark").unwrap_or_default();
        if wm.contains("2024-03-22") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new watermark was not picked up within 10 s ({wm})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = explain(&s, "SELECT count(*) FROM events").await;
    let wm = e["batch_watermark"].as_str().unwrap_or_default();
    assert!(wm.contains("2024-03-22"), "explain still shows {wm:?}");
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// Malformed SQL is 400/42601, unknown tables 400/42P01, unknown columns 400/42703, as
/// `application/problem+json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_and_name_errors_are_400() {
    let s = stack("rest_names").await;
    let cases = [
        ("SELEC 1", "42601"),
        ("SELECT count(* FROM events", "42601"),
        ("SELECT FROM WHERE", "42601"),
        ("SELECT country, count(*) FROM events GROUP BY", "42601"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT count(*) FROM eventz", "42P01"),
        (
            "SELECT country, count(*) FROM events e JOIN no_dim d ON d.code = e.country GROUP BY 1",
            "42P01",
        ),
        ("SELECT nope FROM events", "42703"),
        ("SELECT count(*) FROM events WHERE nope > 1", "42703"),
        ("SELECT country, sum(nope) FROM events GROUP BY country", "42703"),
        ("SELECT e.nope FROM events e", "42703"),
        // found by schemathesis: NUL in SQL text used to reach the driver and give 503
        ("\u{ad}\u{b7}\u{0}", "22021"),
        ("SELECT 1 AS \"a\u{0}b\"", "22021"),
        ("SELECT count(*) FROM events WHERE country = 'a\u{0}b'", "22021"),
    ];
    for (sql, sqlstate) in cases {
        let (status, headers, bytes) = query_accept(&s, sql, "application/json").await;
        let body = common::body_json(&bytes);
        assert_problem(sql, status, &body, 400, sqlstate);
        let content_type = header(&headers, "content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/problem+json"), "{sql}: {content_type:?}");
    }
    assert_still_serving(&s).await;
    s.stop().await;
}

/// Every kind of write is refused with 403/25006 before it reaches the warehouse, and nothing
/// in the database changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_and_change_nothing() {
    let s = stack("rest_writes").await;
    let before = fingerprint(&s).await;
    let writes = [
        "INSERT INTO events_batch (id, event_time) VALUES (999999, TIMESTAMP '2024-03-02 00:00:00')",
        "insert into events_speed select * from events_batch",
        "INSERT INTO events (id) VALUES (1)",
        "UPDATE events_batch SET qty = 0",
        "DELETE FROM events_speed",
        "/* cleanup */ DELETE FROM events_batch WHERE id > 0",
        "DROP TABLE events_batch",
        "CREATE TABLE x (a int)",
        "CREATE VIEW v AS SELECT 1 AS one",
        "CREATE INDEX ON events_batch (id)",
        "ALTER TABLE events_batch ADD COLUMN y int",
        "TRUNCATE events_batch",
        "COPY events_batch FROM STDIN",
        "GRANT SELECT ON events_batch TO PUBLIC",
        "SELECT * INTO x FROM events",
        "WITH d AS (DELETE FROM events_speed RETURNING id) SELECT count(*) FROM d",
        "MERGE INTO events_batch b USING events_speed s ON b.id = s.id WHEN MATCHED THEN DELETE",
    ];
    for sql in writes {
        let (status, body) = s.query(sql, &[]).await;
        assert_problem(sql, status, &body, 403, "25006");
    }
    assert_eq!(fingerprint(&s).await, before, "a refused write changed the database");
    assert_still_serving(&s).await;
    s.stop().await;
}

/// Bodies that are not a valid query request are 4xx with a SQLSTATE: invalid JSON is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_request_bodies_are_4xx() {
    let s = stack("rest_bodies").await;
    let invalid_json: [&[u8]; 4] = [
        b"not json at all",
        b"{\"sql\": ",
        b"{\"sql\": \"\xff\xfe\"}",
        b"{\"sql\": \"SELECT 1\",}",
    ];
    for raw in invalid_json {
        let (status, _, body) = post_raw(&s, raw).await;
        let ctx = format!("invalid JSON {:?}", String::from_utf8_lossy(raw));
        assert_eq!(status, 400, "{ctx}: {body}");
        assert_client_error(&ctx, status, &body);
    }
    let wrong_shape: [&[u8]; 7] = [
        b"",
        b"[1, 2]",
        b"{\"params\": []}",
        b"{\"sql\": 42}",
        b"{\"sql\": null}",
        b"{\"sql\": \"SELECT 1\", \"params\": {\"a\": 1}}",
        b"{\"sql\": \"SELECT 1\", \"params\": \"x\"}",
    ];
    for raw in wrong_shape {
        let (status, _, body) = post_raw(&s, raw).await;
        assert_client_error(&format!("body {:?}", String::from_utf8_lossy(raw)), status, &body);
    }
    assert_still_serving(&s).await;
    s.stop().await;
}

/// A body over the 1 MiB limit (a 5 MB parameter) is 413; a 500 KB parameter in a valid
/// query is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_params_are_413_and_large_params_work() {
    let s = stack("rest_huge").await;
    let huge = "x".repeat(5 * 1024 * 1024);
    let body = serde_json::to_vec(&json!({ "sql": "SELECT length($1) AS n", "params": [huge] }))
        .expect("serialise");
    let addr = s.addr;
    let (status, text) = tokio::task::spawn_blocking(move || raw_post(addr, "/v1/query", &body))
        .await
        .expect("raw HTTP client");
    assert_eq!(status, 413, "5 MB body: {}", common::truncate(&text, 500));
    let problem = common::body_json(text.as_bytes());
    assert!(problem["sqlstate"].is_string(), "413 without a sqlstate: {problem}");

    let large = "y".repeat(500 * 1024);
    let (status, body) =
        s.query("SELECT count(*) AS n FROM events WHERE device = $1", &[json!(large)]).await;
    assert_eq!(status, 200, "{}", common::truncate(&body.to_string(), 500));
    assert_eq!(body["rows"], json!([["0"]]));
    let (status, body) = s.query("SELECT length($1::text) AS n", &[json!(large)]).await;
    assert_eq!(status, 200, "{}", common::truncate(&body.to_string(), 500));
    assert_eq!(body["rows"], json!([[512_000]]));
    assert_still_serving(&s).await;
    s.stop().await;
}

/// Wrong parameter counts and values are 4xx with a SQLSTATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_errors_are_4xx() {
    let s = stack("rest_paramerr").await;
    let sql = "SELECT count(*) AS n FROM events WHERE qty > $1";
    let cases = [
        (sql, json!([])),
        (sql, json!([1, 2])),
        (sql, json!([{ "a": 1 }])),
        (sql, json!(["abc"])),
        ("SELECT count(*) AS n FROM events WHERE qty > $2", json!([1, 2])),
    ];
    for (sql, params) in cases {
        let (status, body) = common::post_json(
            &s.http,
            s.addr,
            "/v1/query",
            &json!({ "sql": sql, "params": params }),
        )
        .await;
        assert_client_error(&format!("{sql} with {params}"), status, &body);
    }
    assert_still_serving(&s).await;
    s.stop().await;
}

/// Division by zero is 400/22012; empty SQL and two statements in one request are 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_errors_are_4xx() {
    let s = stack("rest_stmterr").await;
    let before = fingerprint(&s).await;
    let (status, body) = s.query("SELECT sum(qty)/0 FROM events", &[]).await;
    assert_problem("division by zero (split)", status, &body, 400, "22012");
    let (status, body) = s.query("SELECT 1/0", &[]).await;
    assert_problem("division by zero (passthrough)", status, &body, 400, "22012");
    for sql in [
        "",
        "   ",
        "-- only a comment",
        ";",
        "SELECT 1; SELECT 2",
        "SELECT count(*) FROM events; DELETE FROM events_batch",
    ] {
        let (status, body) = s.query(sql, &[]).await;
        assert_client_error(&format!("{sql:?}"), status, &body);
    }
    assert_eq!(fingerprint(&s).await, before, "a multi-statement request changed the database");
    assert_still_serving(&s).await;
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Warehouse failures
// ---------------------------------------------------------------------------------------------

/// With the warehouse unreachable the server still starts, a query fails fast with 503/08006,
/// and `/healthz` still answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_down_is_503_quickly() {
    let toml = common::config_toml(
        "postgres://postgres@127.0.0.1:1/nowhere",
        "connect_timeout = \"1s\"\npool_size = 2",
        false,
    );
    let config = common::parse_config(&toml);
    let server = tokio::time::timeout(Duration::from_secs(15), Server::start(Arc::new(config)))
        .await
        .expect("Server::start hung while the warehouse is down")
        .unwrap_or_else(|e| panic!("the server must start while the warehouse is down: {e}"));
    let addr = server.http_addr.expect("the HTTP listener is bound");
    let http = common::http_client();
    for attempt in 0..2 {
        let started = Instant::now();
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(10),
            common::query(&http, addr, "SELECT 1", &[]),
        )
        .await
        .expect("a query hung while the warehouse is down");
        assert_problem(&format!("warehouse down, attempt {attempt}"), status, &body, 503, "08006");
        assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    }
    let (status, _, _) = tokio::time::timeout(
        Duration::from_secs(5),
        common::send(http.get(format!("http://{addr}/healthz"))),
    )
    .await
    .expect("/healthz hung");
    assert_eq!(status, 200, "/healthz while the warehouse is down");
    server.shutdown().await;
}

/// A statement over `statement_timeout` is cancelled: 504/57014, quickly, and the server keeps
/// serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_is_504() {
    let s =
        common::start_bare_stack("rest_timeout", "statement_timeout = \"200ms\"\npool_size = 2")
            .await;
    let started = Instant::now();
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(15), s.query("SELECT pg_sleep(5)", &[]))
            .await
            .expect("the timed-out query hung");
    assert_problem("statement timeout", status, &body, 504, "57014");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    let (status, body) = s.query("SELECT 1 AS one", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([[1]]));
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client for bodies the server refuses before reading them
// ---------------------------------------------------------------------------------------------

/// POSTs `body` over a plain socket, writing from a second thread while reading, so an early
/// answer (413 before the body is read) is seen even when the server stops reading. Returns the
/// status (0 when none arrived) and the response body.
fn raw_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let mut writer = stream.try_clone().expect("clone the socket");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let sender = std::thread::spawn(move || {
        for chunk in request.chunks(64 * 1024) {
            if writer.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let mut reader = stream;
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !response_complete(&response) {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    let _ = reader.shutdown(Shutdown::Both);
    let _ = sender.join();
    parse_response(&response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Header lines (lowercased) and the offset of the body, once the head is complete.
fn split_head(data: &[u8]) -> Option<(Vec<String>, usize)> {
    let end = find(data, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
    Some((head.lines().map(str::to_string).collect(), end + 4))
}

fn content_length(lines: &[String]) -> Option<usize> {
    lines.iter().find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse().ok()))
}

fn is_chunked(lines: &[String]) -> bool {
    lines.iter().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"))
}

fn response_complete(data: &[u8]) -> bool {
    let Some((lines, body_start)) = split_head(data) else { return false };
    if let Some(len) = content_length(&lines) {
        data.len() >= body_start + len
    } else if is_chunked(&lines) {
        data.ends_with(b"0\r\n\r\n")
    } else {
        false
    }
}

fn parse_response(data: &[u8]) -> (u16, String) {
    let Some((lines, body_start)) = split_head(data) else {
        return (0, String::from_utf8_lossy(data).into_owned());
    };
    let status = lines
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let raw_body = &data[body_start..];
    let body = if is_chunked(&lines) { dechunk(raw_body) } else { raw_body.to_vec() };
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else { break };
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let stop = (start + size).min(data.len());
        out.extend_from_slice(&data[start..stop]);
        data = &data[(stop + 2).min(data.len())..];
    }
    out
}
