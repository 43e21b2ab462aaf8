//! What every REST handler shares: who the caller is (the API key), a JSON request body, and
//! the one mapping of the error type to an `application/problem+json` response.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::Engine;
use crate::error::Error;

/// Largest request body accepted (bigger bodies get 413).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// An error as an `application/problem+json` response.
pub struct Problem(pub Error);

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        Problem(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let e = self.0;
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let title = match status.as_u16() {
            499 => "Client Closed Request",
            _ => status.canonical_reason().unwrap_or("error"),
        };
        let body = json!({
            "type": "about:blank",
            "title": title,
            "status": status.as_u16(),
            "detail": e.to_string(),
            "sqlstate": e.sqlstate(),
        });
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A JSON request body (22023 when it is not the JSON expected, 54000 when too large).
pub fn decode_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Problem> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem(Error::data("54000", format!("request body larger than {BODY_LIMIT} bytes")))
        } else {
            Problem(Error::InvalidInput(format!("cannot read body: {r}")))
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| Problem(Error::InvalidInput(format!("invalid JSON body: {e}"))))
}

/// The user a request's `Authorization: Bearer <api key>` names; 401 (28000) without a valid
/// key when users are configured, "" (anonymous) when none are.
pub fn user_of(engine: &Engine, headers: &HeaderMap) -> Result<String, Problem> {
    if !engine.access().required() {
        return Ok(String::new());
    }
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match engine.access().user_for_key(key.trim()) {
        Some(user) => Ok(user.to_string()),
        None => Err(Problem(Error::Unauthenticated(
            "missing or invalid API key: send Authorization: Bearer <key>".into(),
        ))),
    }
}
