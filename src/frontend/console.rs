//! The web console at `/console`: a page embedded in the binary at build time from
//! `console/` (build.rs), so it needs no network at run time. It is static code holding no
//! data; everything it shows comes from the REST endpoints with the user's API key.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// What the browser may load and where it may connect: this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The console's routes: the page at `/console` and its files under `/console/`.
pub fn router() -> Router {
    Router::new()
        .route("/console", get(|h: HeaderMap| async move { asset("index.html", &h) }))
        .route("/console/", get(|h: HeaderMap| async move { asset("index.html", &h) }))
        .route(
            "/console/{*path}",
            get(|Path(p): Path<String>, h: HeaderMap| async move { asset(&p, &h) }),
        )
}

/// One embedded file with its type, an ETag of this build's console and strict headers;
/// 304 when the browser holds it already, 404 for anything else.
fn asset(path: &str, headers: &HeaderMap) -> Response {
    let Some((_, kind, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let etag = format!("\"{VERSION}\"");
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut resp =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { (*body).into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
