//! The OpenAPI document: openapi/openapi.yaml describes exactly the routes of the REST router
//! (a route it lacks or a path it has that is not routed fails), `GET /openapi.json` adds every
//! named query as its own path with typed parameters, and schemathesis (installed into .venv by
//! scripts/clients.sh, called by scripts/test.sh) finds no server error and no response that
//! does not match the document, against a server with data and the repository's queries/.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::clients::*;
use common::*;
use serde_json::{json, Value};
use tidemark::queries::NamedQueries;
use tidemark::server::Server;

const EVENTS: usize = 2_000;
const SEED: u64 = 20_240_321;
/// The keys of an OpenAPI path item that are operations.
const HTTP_METHODS: [&str; 8] =
    ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
/// How schemathesis runs: the server-error and conformance checks, the phases that need no
/// links, a bounded number of examples per operation (seconds, not minutes, on 2 cores) and a
/// fixed seed so a failure reproduces.
const SCHEMATHESIS_ARGS: &[&str] = &[
    "--checks",
    "not_a_server_error,status_code_conformance,content_type_conformance,\
     response_headers_conformance,response_schema_conformance",
    "--phases",
    "examples,coverage,fuzzing",
    "--max-examples",
    "100",
    "--seed",
    "1",
    "--workers",
    "1",
    "--generation-database",
    "none",
    "--suppress-health-check",
    "too_slow",
    "--request-timeout",
    "60",
    "--no-color",
];
/// The columns the repository's named queries read besides the test layout's (the demo's
/// `page` and `duration_ms`), added to every events table so those queries answer with rows.
const DEMO_COLUMNS_SQL: &str = "
ALTER TABLE events_oracle ADD COLUMN page text, ADD COLUMN duration_ms int4;
ALTER TABLE events_batch ADD COLUMN page text, ADD COLUMN duration_ms int4;
ALTER TABLE events_speed ADD COLUMN page text, ADD COLUMN duration_ms int4;
UPDATE events_oracle SET duration_ms = (id % 5000)::int4,
    page = CASE id % 3 WHEN 0 THEN '/checkout' WHEN 1 THEN '/' ELSE '/pricing' END;
UPDATE events_batch SET duration_ms = (id % 5000)::int4,
    page = CASE id % 3 WHEN 0 THEN '/checkout' WHEN 1 THEN '/' ELSE '/pricing' END;
UPDATE events_speed SET duration_ms = (id % 5000)::int4,
    page = CASE id % 3 WHEN 0 THEN '/checkout' WHEN 1 THEN '/' ELSE '/pricing' END;
";

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Every `.route(path, method(..)...)` of `router()` in src/frontend/http.rs is an operation of
/// openapi/openapi.yaml, and every operation there is a route; the server embeds the file as is.
#[test]
fn every_route_is_in_the_spec_and_back() {
    let doc = yaml_spec();
    assert!(
        doc == tidemark::frontend::openapi::spec(&NamedQueries::default()),
        "the server's document without named queries differs from openapi/openapi.yaml"
    );
    let routes = router_routes();
    let described = spec_routes(&doc);
    let undocumented: Vec<_> = routes.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&routes).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from openapi/openapi.yaml: {undocumented:?}\n\
         operations in openapi/openapi.yaml that src/frontend/http.rs does not route: {unrouted:?}"
    );
}

/// Every `$ref` of openapi/openapi.yaml points at something in it, and every operation has
/// responses.
#[test]
fn every_reference_resolves() {
    let doc = yaml_spec();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty(), "openapi/openapi.yaml has no $ref at all");
    for r in refs {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r:?}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {r:?} points at nothing");
    }
    for (method, path) in spec_routes(&doc) {
        let responses = &doc["paths"][&path][&method]["responses"];
        assert!(responses.as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
    }
}

/// `GET /openapi.json` of a server with the repository's queries/ has each named query as a GET
/// path with its parameters (typed schema, default, required without one) and the responses of
/// `/v1/queries/{name}`; the rest of the document is openapi/openapi.yaml.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_queries_are_paths_with_typed_parameters() {
    let dir = repo().join("queries");
    let named = NamedQueries::load(&dir).expect("the repository's queries/ load");
    assert!(!named.0.is_empty(), "queries/ holds no named query");
    assert!(named.0.values().flat_map(|q| &q.params).any(|p| p.ty != "text"), "no typed parameter");
    // No logical tables: the server starts without reading the warehouse.
    let toml = config_toml(&db_url("postgres"), "", false) + &queries_toml(&dir);
    let server = Server::start(Arc::new(parse_config(&toml))).await.expect("server");
    let addr = server.http_addr.expect("the HTTP listener is bound");
    let (status, headers, body) =
        send(http_client().get(format!("http://{addr}/openapi.json"))).await;
    server.shutdown().await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let ct = header(&headers, "content-type").unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let mut doc = body_json(&body);
    for q in named.0.values() {
        let path = format!("/v1/queries/{}", q.name);
        check_named_path(&doc, &path, q);
        doc["paths"].as_object_mut().expect("paths").remove(&path);
    }
    assert!(doc == yaml_spec(), "besides the named queries, /openapi.json is openapi/openapi.yaml");
}

/// schemathesis against `/openapi.json` of a server with data and the repository's named
/// queries: no 5xx, and every status, content type, header and body as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors() {
    let schemathesis = require_schemathesis().await;
    let (db_name, db) = fresh_db("openapi").await;
    let layout = build_layout(&db, EVENTS, SEED).await;
    exec(&db, DEMO_COLUMNS_SQL).await;
    set_watermark(&db, "events", layout.w0).await;
    let toml = config_toml(&db_url(&db_name), "", true) + &queries_toml(&repo().join("queries"));
    let config = parse_config(&toml);
    let server = serve(config).await;
    let addr = server.http_addr.expect("the HTTP listener is bound");
    let workdir =
        std::env::temp_dir().join(format!("tidemark_schemathesis_{}", std::process::id()));
    std::fs::create_dir_all(&workdir).expect("a work directory for schemathesis");
    let mut cmd = client_command(&schemathesis);
    cmd.current_dir(&workdir)
        .arg("run")
        .arg(format!("http://{addr}/openapi.json"))
        .args(SCHEMATHESIS_ARGS);
    let run = run_client("schemathesis run", cmd).await;
    server.shutdown().await;
    drop(db);
    drop_db(&db_name).await;
    let _ = std::fs::remove_dir_all(&workdir);
    assert!(run.success(), "schemathesis found problems:\n{}", run.report());
}

// ---------------------------------------------------------------------------------------------
// The document and the router
// ---------------------------------------------------------------------------------------------

/// openapi/openapi.yaml parsed from the file.
fn yaml_spec() -> Value {
    let path = repo().join("openapi/openapi.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(method, path)` of every operation of a document.
fn spec_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().into_iter().flat_map(|o| o.keys()) {
            if HTTP_METHODS.contains(&method.as_str()) {
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    out
}

/// `(method, path)` of every `.route("<path>", <method>(..)[.<method>(..)]*)` in `router()` of
/// src/frontend/http.rs (axum's `{name}` is OpenAPI's `{name}`; `{*rest}` becomes `{rest}`).
fn router_routes() -> BTreeSet<(String, String)> {
    let path = repo().join("src/frontend/http.rs");
    let src = std::fs::read_to_string(&path).expect("read src/frontend/http.rs");
    let start = src.find("pub fn router(").expect("src/frontend/http.rs has `pub fn router(`");
    let body = &src[start..];
    let body = &body[..body.find("\n}").expect("the end of router()")];
    for unknown in [".nest(", ".merge(", ".route_service(", ".nest_service(", ".fallback("] {
        assert!(!body.contains(unknown), "router() uses `{unknown}`: teach tests/openapi.rs");
    }
    let mut out = BTreeSet::new();
    let mut rest = body;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let (path, methods) = parse_route(call_arguments(rest));
        out.extend(methods.into_iter().map(|m| (m, path.clone())));
    }
    assert!(!out.is_empty(), "no .route(...) in router()");
    out
}

/// The arguments of a call: `text` up to the parenthesis that closes it.
fn call_arguments(text: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return &text[..i],
            ')' => depth -= 1,
            _ => {}
        }
    }
    panic!("an unclosed .route( in router()");
}

/// The path and the methods of one `.route(...)`'s arguments.
fn parse_route(args: &str) -> (String, Vec<String>) {
    let quoted = args.trim_start().strip_prefix('"');
    let after = quoted.unwrap_or_else(|| panic!("a route path that is not a literal: {args}"));
    let end = after.find('"').expect("the end of the route path");
    let path = after[..end].replace("{*", "{");
    let handlers = after[end + 1..].trim_start().strip_prefix(',').expect("`,` after the path");
    let methods = method_calls(handlers);
    assert!(!methods.is_empty(), "no method router in .route({args})");
    (path, methods)
}

/// The methods of a method router such as `get(a).post(b)` or `axum::routing::get(a)`: every
/// name called outside the handlers' parentheses.
fn method_calls(expr: &str) -> Vec<String> {
    let (mut out, mut word, mut depth) = (Vec::new(), String::new(), 0usize);
    for c in expr.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if c == '(' {
            if depth == 0 {
                assert!(
                    HTTP_METHODS.contains(&word.as_str()),
                    "`{word}(` in a route's method router: teach tests/openapi.rs ({expr})"
                );
                out.push(word.clone());
            }
            depth += 1;
        } else if c == ')' {
            depth = depth.saturating_sub(1);
        }
        word.clear();
    }
    out
}

/// Every `$ref` string in a document.
fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                out.push(r.clone());
            }
            o.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Named queries in the document
// ---------------------------------------------------------------------------------------------

/// `[queries] dir = ...` for a config.
fn queries_toml(dir: &Path) -> String {
    format!("\n[queries]\ndir = \"{}\"\n", dir.display())
}

/// The path of one named query: its typed parameters in order, then the shared headers.
fn check_named_path(doc: &Value, path: &str, q: &tidemark::queries::NamedQuery) {
    let op = &doc["paths"][path]["get"];
    assert!(op.is_object(), "{path} is not a GET path of /openapi.json");
    let template = &doc["paths"]["/v1/queries/{name}"]["get"];
    assert_eq!(op["responses"], template["responses"], "{path}: responses");
    let params = op["parameters"].as_array().unwrap_or_else(|| panic!("{path}: no parameters"));
    let generic = |p: &&Value| p["$ref"].as_str().is_some_and(|r| r.contains("NamedQuery"));
    assert!(!params.iter().any(|p| generic(&p)), "{path} keeps a generic parameter: {params:?}");
    let typed: Vec<&Value> = params.iter().filter(|p| p["in"] == "query").collect();
    assert_eq!(typed.len(), q.params.len(), "{path}: {params:?}");
    for (want, got) in q.params.iter().zip(typed) {
        let what = format!("{path} parameter {}: {got}", want.name);
        assert_eq!(got["name"], want.name.as_str(), "{what}");
        assert_eq!(got["x-tidemark-type"], want.ty.as_str(), "{what}");
        assert_eq!(got["required"], want.default.is_none(), "{what}");
        let (ty, format) = expected_schema(&want.ty);
        assert_eq!(got["schema"]["type"], ty, "{what}");
        assert_eq!(got["schema"]["format"].as_str(), format, "{what}");
        let default = want.default.as_deref().map(|d| expected_default(&want.ty, d));
        assert_eq!(got["schema"].get("default"), default.as_ref(), "{what}");
    }
}

/// The JSON Schema type and format a tidemark parameter type is described with.
fn expected_schema(ty: &str) -> (&'static str, Option<&'static str>) {
    match ty {
        "int4" => ("integer", Some("int32")),
        "int8" => ("integer", Some("int64")),
        "float8" => ("number", Some("double")),
        "bool" => ("boolean", None),
        "date" => ("string", Some("date")),
        "timestamptz" => ("string", Some("date-time")),
        "text" | "numeric" | "timestamp" => ("string", None),
        other => panic!("unknown parameter type {other:?}"),
    }
}

/// A default as the JSON value of its schema type.
fn expected_default(ty: &str, text: &str) -> Value {
    match ty {
        "int4" | "int8" => json!(text.trim().parse::<i64>().expect("an integer default")),
        "float8" => json!(text.trim().parse::<f64>().expect("a float8 default")),
        "bool" => json!(matches!(text.trim().to_ascii_lowercase().as_str(), "t" | "true" | "1")),
        _ => json!(text),
    }
}

// ---------------------------------------------------------------------------------------------
// schemathesis
// ---------------------------------------------------------------------------------------------

/// .venv's schemathesis; fails (never skips), naming scripts/test.sh, when it is missing.
async fn require_schemathesis() -> PathBuf {
    let exe = repo().join(".venv/bin/schemathesis");
    assert!(
        exe.exists(),
        "schemathesis is missing from the Python venv .venv ({}): {INSTALL_HINT}",
        exe.display()
    );
    let mut cmd = client_command(&exe);
    cmd.arg("--version");
    let run = run_client("schemathesis --version", cmd).await;
    assert!(run.success(), "schemathesis in .venv does not run: {INSTALL_HINT}\n{}", run.report());
    exe
}
