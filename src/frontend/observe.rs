//! What the console reads besides queries, as REST endpoints anyone with an API key may call:
//! the recent statements (`GET /v1/recent`, `GET /v1/recent/{id}`), each logical table's
//! freshness over the last hour (`GET /v1/freshness`), the health numbers of `/metrics` over
//! the last hour (`GET /v1/stats`) and cancelling a running request (`POST /v1/cancel`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::request::{decode_json, user_of, Problem};
use crate::engine::activity::RecentFilter;
use crate::engine::{CancelOutcome, Engine};
use crate::error::Error;

/// Most recent statements one request lists.
const LIST_MAX: usize = 1000;

/// A query string value parsed as `T`, or 22023 naming the parameter.
fn parsed<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, Problem> {
    q.get(name)
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                Problem::from(Error::InvalidInput(format!("bad value for {name}: {v:?}")))
            })
        })
        .transpose()
}

/// `GET /v1/recent`: the recent statements, newest first, filtered by the query string
/// (`user`, `frontend`, `plan`, `failed`, `q`, `before`, `limit`); each without its plan
/// and freshness (`GET /v1/recent/{id}` has them).
pub async fn recent(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let viewer = engine.viewer(&user_of(&engine, &headers)?);
    let text = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let filter = RecentFilter {
        user: text("user"),
        frontend: text("frontend"),
        plan: text("plan"),
        failed: parsed(&q, "failed")?,
        text: text("q"),
        before: parsed(&q, "before")?,
        limit: parsed::<usize>(&q, "limit")?.unwrap_or(100).min(LIST_MAX),
    };
    let list: Vec<Json> = engine
        .recent(&filter, &viewer)
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Json::Null);
            if let Some(o) = v.as_object_mut() {
                o.remove("explain");
                o.remove("freshness");
            }
            v
        })
        .collect();
    Ok(axum::Json(json!({ "statements": list, "read_all": viewer.all })).into_response())
}

/// `GET /v1/recent/{id}`: one recent statement with its plan and freshness; 404 when it is
/// no longer kept.
pub async fn recent_one(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let viewer = engine.viewer(&user_of(&engine, &headers)?);
    let id: u64 = id
        .parse()
        .map_err(|_| Error::InvalidInput(format!("a statement id is a number, not {id:?}")))?;
    match engine.recent_statement(id, &viewer) {
        Some(r) => Ok(axum::Json(r).into_response()),
        None => Err(Error::NotFound(format!("statement {id} is not among the recent ones")).into()),
    }
}

/// `GET /v1/freshness?since=`: each logical table the user may read, with W, H, how far
/// behind each layer is, the windows' state and retention margin, and its samples since
/// `since` (ms since 1970; default: the whole hour).
pub async fn freshness(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let user = user_of(&engine, &headers)?;
    let since = parsed::<i64>(&q, "since")?.unwrap_or(0);
    let grants = engine.access().restricted(&user).cloned();
    let visible = |t: &str| grants.as_ref().is_none_or(|g| g.table(t));
    let tables = engine.table_freshness(since, visible).await;
    Ok(axum::Json(json!({ "tables": tables })).into_response())
}

/// `GET /v1/stats?since=`: the health samples (the numbers of `/metrics` per interval) taken
/// after `since` (ms since 1970; default: the whole hour).
pub async fn stats(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    user_of(&engine, &headers)?;
    let since = parsed::<i64>(&q, "since")?.unwrap_or(0);
    let every = crate::engine::history::SAMPLE_EVERY.as_secs_f64();
    let samples = engine.health_history(since);
    Ok(axum::Json(json!({ "interval_s": every, "samples": samples })).into_response())
}

#[derive(Deserialize)]
struct CancelRequest {
    request_id: String,
}

/// `POST /v1/cancel {"request_id": ...}`: stops the caller's request running with that
/// `tidemark-request-id` (it answers 499 / 57014): 200 when it ran here; 202 when it does
/// not and the cancel went to the other replicas (over Redis); 404 when none can be asked.
pub async fn cancel(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let user = user_of(&engine, &headers)?;
    let req: CancelRequest = decode_json(body)?;
    match engine.cancel_anywhere(&user, &req.request_id).await? {
        CancelOutcome::Cancelled => Ok(axum::Json(json!({ "canceled": true })).into_response()),
        CancelOutcome::Relayed => {
            let body = json!({ "canceled": false, "relayed": true });
            Ok((axum::http::StatusCode::ACCEPTED, axum::Json(body)).into_response())
        }
        CancelOutcome::NotFound => {
            let why = format!("no request {:?} of yours is running", req.request_id);
            Err(Error::NotFound(why).into())
        }
    }
}
