//! The OpenAPI document of the REST API: `openapi/openapi.yaml` (every route of the router,
//! checked by tests/openapi.rs), served as JSON at `GET /openapi.json` with one more path per
//! named query, `/v1/queries/<name>`, carrying that query's typed parameters.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::engine::{NamedQueries, NamedQuery, QueryParam};

/// The hand-written document (openapi/openapi.yaml), embedded at build time.
pub const YAML: &str = include_str!("../../openapi/openapi.yaml");

/// The path whose GET operation each named query's own path follows (responses, headers).
pub const NAMED_QUERY_PATH: &str = "/v1/queries/{name}";

/// Parameters of [`NAMED_QUERY_PATH`] that a named query's own path replaces by its typed ones.
const GENERIC_PARAMETERS: [&str; 2] =
    ["#/components/parameters/NamedQueryName", "#/components/parameters/NamedQueryArguments"];

/// `timestamp` text as tidemark accepts it: `YYYY-MM-DD[( |T)HH:MM[:SS[.f]]]`.
const TIMESTAMP_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?$";

/// `numeric` text as tidemark accepts it: an optional sign, digits and at most one point.
const NUMERIC_PATTERN: &str = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$";

/// openapi/openapi.yaml as JSON (parsed once).
pub fn base() -> &'static Value {
    static BASE: OnceLock<Value> = OnceLock::new();
    BASE.get_or_init(|| {
        serde_norway::from_str(YAML).expect("openapi/openapi.yaml is valid YAML (tests/openapi.rs)")
    })
}

/// The whole document: openapi/openapi.yaml plus a GET path `/v1/queries/<name>` for every
/// named query, with its parameters typed and the responses of `/v1/queries/{name}`.
pub fn spec(named: &NamedQueries) -> Value {
    let mut doc = base().clone();
    let template = doc["paths"][NAMED_QUERY_PATH]["get"].clone();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for q in named.0.values() {
            paths
                .insert(format!("/v1/queries/{}", q.name), json!({"get": operation(q, &template)}));
        }
    }
    doc
}

/// The GET operation of one named query.
fn operation(q: &NamedQuery, template: &Value) -> Value {
    let mut parameters: Vec<Value> = q.params.iter().map(parameter).collect();
    let shared = template["parameters"].as_array().into_iter().flatten();
    parameters.extend(
        shared.filter(|p| !GENERIC_PARAMETERS.contains(&p["$ref"].as_str().unwrap_or(""))).cloned(),
    );
    let summary = if q.description.is_empty() { q.name.clone() } else { q.description.clone() };
    json!({
        "tags": template["tags"].clone(),
        "operationId": format!("named_query_{}", q.name),
        "summary": summary,
        "description": format!(
            "The named query `{}`, with its parameters bound as `$1..$n`:\n\n```sql\n{}\n```",
            q.name, q.sql
        ),
        "parameters": parameters,
        "responses": template["responses"].clone(),
    })
}

/// One typed query-string parameter; required when it has no default.
fn parameter(p: &QueryParam) -> Value {
    let mut schema = schema_for(&p.ty);
    let mut out = json!({
        "name": p.name,
        "in": "query",
        "required": p.default.is_none(),
        "description": format!("Type `{}`, required.", p.ty),
        "x-tidemark-type": p.ty,
    });
    if let Some(d) = &p.default {
        let value = typed_default(&p.ty, d);
        out["description"] = json!(format!("Type `{}`, default `{d}`.", p.ty));
        out["example"] = value.clone();
        schema["default"] = value;
    }
    out["schema"] = schema;
    out
}

/// The JSON Schema of a tidemark parameter type (text in the query string).
pub fn schema_for(ty: &str) -> Value {
    match ty {
        "int4" => {
            json!({"type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX})
        }
        "int8" => {
            json!({"type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX})
        }
        "float8" => json!({"type": "number", "format": "double"}),
        "numeric" => json!({"type": "string", "pattern": NUMERIC_PATTERN}),
        "bool" => json!({"type": "boolean"}),
        "date" => json!({"type": "string", "format": "date"}),
        "timestamp" => json!({"type": "string", "pattern": TIMESTAMP_PATTERN}),
        "timestamptz" => json!({"type": "string", "format": "date-time"}),
        _ => json!({"type": "string"}),
    }
}

/// A default (text) as a JSON value of the parameter's schema type, or the text itself.
fn typed_default(ty: &str, text: &str) -> Value {
    let t = text.trim();
    let typed = match ty {
        "int4" | "int8" => t.parse::<i64>().ok().map(Value::from),
        "float8" => t.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number),
        "bool" => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => Some(Value::Bool(true)),
            "false" | "f" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    typed.unwrap_or_else(|| Value::String(text.to_string()))
}
