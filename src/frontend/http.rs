//! REST over HTTP (axum): `POST /v1/query`, `POST /v1/explain`, `GET /v1/tables`,
//! `GET /v1/queries[/{name}]`, the console's data (`GET /v1/recent[/{id}]`,
//! `GET /v1/freshness`, `GET /v1/stats`, `POST /v1/cancel`, in `observe.rs`),
//! `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /openapi.json`. Each handler decodes,
//! calls the engine, encodes.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::arrow_out::convert_all;
use super::observe;
pub use super::request::{decode_json, user_of, Problem, BODY_LIMIT};
use crate::config::NumericMode;
use crate::engine::Engine;
use crate::error::Error;
use crate::model::arrow::{pg_type_name, value_at};
use crate::model::column::Param;
use crate::model::freshness::{CacheStatus, Freshness, PlanKind};
use crate::model::value::Value;

/// Media type of Arrow IPC streams.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// Request header naming a request so that `POST /v1/cancel` can stop it.
pub const REQUEST_ID: &str = "tidemark-request-id";
/// Response header with the statement's id in the recent statements (`GET /v1/recent/{id}`).
pub const QUERY_ID: &str = "tidemark-query-id";

/// The REST router over one engine.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/v1/query", post(query))
        .route("/v1/explain", post(explain))
        .route("/v1/tables", get(tables))
        .route("/v1/queries", get(list_queries))
        .route("/v1/queries/{name}", get(named_query))
        .route("/v1/recent", get(observe::recent))
        .route("/v1/recent/{id}", get(observe::recent_one))
        .route("/v1/freshness", get(observe::freshness))
        .route("/v1/stats", get(observe::stats))
        .route("/v1/cancel", post(observe::cancel))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(engine)
}

#[derive(Deserialize)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    params: Vec<Json>,
}

fn decode(body: Result<Bytes, BytesRejection>) -> Result<QueryRequest, Problem> {
    decode_json(body)
}

fn param(v: &Json) -> Result<Param, Problem> {
    Ok(match v {
        Json::Null => Param::Null,
        Json::Bool(b) => Param::Text(b.to_string()),
        Json::Number(n) => Param::Text(n.to_string()),
        Json::String(s) => Param::Text(s.clone()),
        _ => {
            return Err(Problem(Error::InvalidInput(
                "params must be JSON scalars (string, number, bool, null)".into(),
            )))
        }
    })
}

async fn query(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let req = decode(body)?;
    let params = req.params.iter().map(param).collect::<Result<Vec<_>, _>>()?;
    respond(&engine, &req.sql, &params, &headers).await
}

async fn list_queries(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    user_of(&engine, &headers)?;
    let list: Vec<_> = engine.named_queries().0.values().collect();
    Ok(axum::Json(list).into_response())
}

async fn named_query(
    State(engine): State<Arc<Engine>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::extract::Query(given): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (q, params) = engine.named_queries().bind(&name, &given)?;
    let sql = q.sql.clone();
    respond(&engine, &sql, &params, &headers).await
}

/// Runs one statement and encodes the answer as the client accepts (JSON, CSV, Arrow IPC).
async fn respond(
    engine: &Engine,
    sql: &str,
    params: &[Param],
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let user = user_of(engine, headers)?;
    let mut session = engine.session_for("rest", &user);
    session.forget_freshness = true;
    let request = headers.get(REQUEST_ID).map(|v| v.to_str().unwrap_or("\u{0}"));
    let cancellable = request.map(|k| engine.cancellable(&user, k)).transpose()?;
    session.cancel = cancellable.as_ref().map(|c| c.signal());
    let no_cache = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-cache"));
    if no_cache {
        session.bypass_cache();
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !no_cache && headers.contains_key(header::IF_NONE_MATCH) {
        // a 304 says something of the answer, so its reader must be allowed to read it;
        // otherwise execute authorizes
        engine.authorize(sql, &user, None).await?;
        if let Some(resp) = not_modified(engine, sql, params, headers, accept).await {
            return Ok(resp);
        }
    }
    let result = engine.execute(sql, params, &mut session).await?;
    let schema = result.schema.clone();
    let memo = result.memo.clone();
    let batches: Vec<RecordBatch> = result.stream.try_collect().await?;
    // a cached answer is encoded once per form and the bytes reused by every hit
    let encode = |kind: &'static str, make: &dyn Fn() -> Result<Bytes, Problem>| match &memo {
        Some(m) => m.get_or_make(kind, make),
        None => make(),
    };
    let numeric = numeric_mode(engine, headers);
    let mut resp = if accept.contains(ARROW_STREAM) {
        let kind = variant(accept, numeric);
        let body = encode(kind, &|| {
            let (schema, batches) = convert_all(&schema, &batches, numeric)?;
            Ok(arrow_ipc(&schema, &batches)?.into())
        })?;
        ([(header::CONTENT_TYPE, ARROW_STREAM)], body).into_response()
    } else if accept.contains("text/csv") {
        let body = encode("csv", &|| Ok(csv(&schema, &batches).into()))?;
        ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
    } else {
        let body = |fresh: &Freshness| -> Result<Bytes, Problem> {
            let head = encode("json", &|| Ok(json_head(&schema, &batches).into()))?;
            let fresh = serde_json::to_vec(fresh).unwrap_or_default();
            let mut body = Vec::with_capacity(head.len() + fresh.len() + 16);
            body.extend_from_slice(&head);
            body.extend_from_slice(b",\"freshness\":");
            body.extend_from_slice(&fresh);
            body.push(b'}');
            Ok(body.into())
        };
        // a hit's freshness is the same every time, so its whole body is encoded once
        let f = &result.freshness;
        let body = match f.cache {
            Some(CacheStatus::Hit) => encode("json-hit", &|| body(f))?,
            _ => body(f)?,
        };
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    freshness_headers(resp.headers_mut(), &result.freshness);
    resp.headers_mut().insert(QUERY_ID, HeaderValue::from(result.id));
    let f = &result.freshness;
    if let (false, PlanKind::Split, Some(w)) = (no_cache, f.plan, &f.batch_watermark) {
        if let Some(tag) = engine.etag(sql, params, w, variant(accept, numeric)) {
            validators(resp.headers_mut(), &tag, engine.max_age_secs());
        }
    }
    Ok(resp)
}

/// How numerics go into Arrow answers: the `tidemark-numeric: decimal | text` header, else
/// `[arrow] numeric`.
fn numeric_mode(engine: &Engine, headers: &HeaderMap) -> NumericMode {
    headers
        .get("tidemark-numeric")
        .and_then(|v| v.to_str().ok())
        .and_then(NumericMode::parse)
        .unwrap_or(engine.config().arrow.numeric)
}

/// The representation an Accept header (and the numeric mode) selects: part of the ETag.
fn variant(accept: &str, numeric: NumericMode) -> &'static str {
    if accept.contains(ARROW_STREAM) {
        match numeric {
            NumericMode::Decimal => "arrow",
            NumericMode::Text => "arrow-text",
        }
    } else if accept.contains("text/csv") {
        "csv"
    } else {
        "json"
    }
}

fn validators(h: &mut HeaderMap, etag: &str, max_age: u64) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
}

/// 304 when `If-None-Match` names the ETag the answer would have now (same query,
/// parameters, W and realtime epoch).
async fn not_modified(
    engine: &Engine,
    sql: &str,
    params: &[Param],
    headers: &HeaderMap,
    accept: &str,
) -> Option<Response> {
    let given = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let w = engine.current_watermark(sql).await?;
    let tag = engine.etag(sql, params, &w, variant(accept, numeric_mode(engine, headers)))?;
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if !given.split(',').any(|t| bare(t) == bare(&tag) || t.trim() == "*") {
        return None;
    }
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    validators(resp.headers_mut(), &tag, engine.max_age_secs());
    Some(resp)
}

async fn explain(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let user = user_of(&engine, &headers)?;
    let req = decode(body)?;
    engine.authorize(&req.sql, &user, None).await?;
    let plan = engine.explain(&req.sql, &Vec::new()).await?;
    Ok(axum::Json(plan).into_response())
}

async fn tables(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let user = user_of(&engine, &headers)?;
    let mut tables = engine.tables().await?;
    if let Some(g) = engine.access().restricted(&user) {
        tables.retain(|t| g.table(&t.name));
    }
    Ok(axum::Json(tables).into_response())
}

async fn metrics(State(engine): State<Arc<Engine>>) -> Response {
    let ct = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, ct)], engine.metrics_text()).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// 200 `ready` while the warehouse answers, else 503 with the reason (load balancers and
/// Kubernetes take the replica out of rotation meanwhile). Redis being unavailable degrades
/// answers but does not take the replica out: the body says what is degraded and why.
async fn readyz(State(engine): State<Arc<Engine>>) -> Response {
    match engine.ready().await {
        Ok(()) => {
            let degraded: Vec<String> = engine
                .redis_roles()
                .into_iter()
                .filter_map(|(role, why)| why.map(|w| format!("{role} unavailable ({w})")))
                .collect();
            match degraded.is_empty() {
                true => "ready".into_response(),
                false => format!("ready, degraded: {}", degraded.join("; ")).into_response(),
            }
        }
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response(),
    }
}

fn freshness_headers(h: &mut HeaderMap, f: &Freshness) {
    let mut put = |name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    put("tidemark-plan", f.plan.name());
    if let Some(w) = &f.batch_watermark {
        put("tidemark-batch-watermark", w);
    }
    if let Some(r) = &f.realtime_as_of {
        put("tidemark-realtime-as-of", r);
    }
    put("tidemark-legs", &f.legs.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(","));
    put("tidemark-degraded", if f.degraded { "true" } else { "false" });
    if let Some(c) = &f.cache {
        put("tidemark-cache", c.name());
    }
    if let Some(r) = &f.realtime_reaches {
        put("tidemark-realtime-reaches", r);
    }
    if let Some(w) = &f.windows {
        put("tidemark-windows", if w.used { "used" } else { "not-used" });
    }
}

/// `{"columns":[...],"rows":[...]` — the JSON body without its freshness and closing brace.
fn json_head(schema: &SchemaRef, batches: &[RecordBatch]) -> String {
    format!("{{\"columns\":{},\"rows\":{}", columns(schema), rows(batches))
}

fn columns(schema: &SchemaRef) -> Json {
    Json::Array(
        schema
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": pg_type_name(f)}))
            .collect(),
    )
}

/// Encodes rows as JSON arrays; int8 and numeric become strings so they round-trip exactly.
fn rows(batches: &[RecordBatch]) -> Json {
    let mut out = Vec::new();
    for b in batches {
        let fields = b.schema().fields().clone();
        for r in 0..b.num_rows() {
            let row = (0..b.num_columns())
                .map(|c| json_value(value_at(b.column(c), &fields[c], r), pg_type_name(&fields[c])))
                .collect();
            out.push(Json::Array(row));
        }
    }
    Json::Array(out)
}

fn json_value(v: Value, pg_type: &str) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::Int(i) if pg_type == "int8" => Json::String(i.to_string()),
        Value::Int(i) => json!(i),
        Value::Float(f) if f.is_finite() => json!(f),
        other => Json::String(other.to_pg_text().unwrap_or_default()),
    }
}

fn csv(schema: &SchemaRef, batches: &[RecordBatch]) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = schema.fields().iter().map(|f| quote(f.name())).collect::<Vec<_>>().join(",");
    out.push('\n');
    for b in batches {
        for r in 0..b.num_rows() {
            let line = (0..b.num_columns())
                .map(|c| {
                    value_at(b.column(c), b.schema().field(c), r)
                        .to_pg_text()
                        .map(|s| quote(&s))
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(",");
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn arrow_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, Problem> {
    let mut buf = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, schema).map_err(Error::from)?;
    for b in batches {
        w.write(b).map_err(Error::from)?;
    }
    w.finish().map_err(Error::from)?;
    drop(w);
    Ok(buf)
}

/// `GET /openapi.json`: openapi/openapi.yaml as JSON plus one path per named query.
async fn openapi_json(State(engine): State<Arc<Engine>>) -> Response {
    axum::Json(crate::frontend::openapi::spec(engine.named_queries())).into_response()
}
