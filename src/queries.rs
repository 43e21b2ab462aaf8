//! Named queries: `queries/*.sql`, one query per file with a header declaring its name,
//! description and typed parameters (with optional defaults). Loaded and validated at start;
//! served at `GET /v1/queries` and `GET /v1/queries/{name}?param=...` with parameters bound,
//! never spliced.
//!
//! ```sql
//! -- name: revenue_by_country
//! -- description: Revenue per country since an instant
//! -- param: since timestamp = 2026-11-01 00:00:00
//! SELECT country, sum(amount) FROM events WHERE event_time >= $1 GROUP BY 1
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::column::Param;
use crate::model::decimal::Decimal;
use crate::model::value::parse_timestamp;

/// Types a named-query parameter may have.
const TYPES: &[&str] =
    &["text", "int4", "int8", "float8", "numeric", "bool", "date", "timestamp", "timestamptz"];

/// One declared parameter.
#[derive(Debug, Clone, Serialize)]
pub struct QueryParam {
    /// Name used in the URL query string.
    pub name: String,
    /// PostgreSQL type name.
    #[serde(rename = "type")]
    pub ty: String,
    /// Default value (text) when the request omits it.
    pub default: Option<String>,
}

/// One named query.
#[derive(Debug, Clone, Serialize)]
pub struct NamedQuery {
    /// Name (the file's `-- name:`).
    pub name: String,
    /// What it answers.
    pub description: String,
    /// Parameters bound as `$1..$n` in declaration order.
    pub params: Vec<QueryParam>,
    /// The SQL text.
    pub sql: String,
}

/// All named queries by name.
#[derive(Debug, Clone, Default)]
pub struct NamedQueries(pub BTreeMap<String, NamedQuery>);

impl NamedQueries {
    /// Loads every `*.sql` file of `dir`; a bad file is an error naming the file and line.
    pub fn load(dir: &Path) -> Result<NamedQueries> {
        let mut out = BTreeMap::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::Config(format!("queries dir {}: {e}", dir.display())))?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            let q = parse_file(&text).map_err(|(line, msg)| {
                Error::Config(format!("{}:{line}: {msg}", path.display()))
            })?;
            if out.contains_key(&q.name) {
                return Err(Error::Config(format!(
                    "{}: query name {:?} is used twice",
                    path.display(),
                    q.name
                )));
            }
            out.insert(q.name.clone(), q);
        }
        Ok(NamedQueries(out))
    }

    /// The parameters of `name` from a URL query string, typed and in order (400s name the
    /// parameter).
    pub fn bind(
        &self,
        name: &str,
        given: &HashMap<String, String>,
    ) -> Result<(&NamedQuery, Vec<Param>)> {
        let q = self.0.get(name).ok_or_else(|| {
            Error::NotFound(format!("no named query {name:?}; GET /v1/queries lists them"))
        })?;
        for k in given.keys() {
            if !q.params.iter().any(|p| &p.name == k) {
                return Err(Error::InvalidInput(format!("query {name:?} has no parameter {k:?}")));
            }
        }
        let params = q
            .params
            .iter()
            .map(|p| {
                let v = given.get(&p.name).or(p.default.as_ref()).ok_or_else(|| {
                    Error::InvalidInput(format!("missing parameter {:?} ({})", p.name, p.ty))
                })?;
                check_value(&p.ty, v)
                    .map_err(|m| Error::InvalidInput(format!("parameter {:?}: {m}", p.name)))?;
                Ok(Param::Text(v.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((q, params))
    }
}

/// Validates a text value against a declared type.
fn check_value(ty: &str, v: &str) -> std::result::Result<(), String> {
    let ok = match ty {
        "int4" => v.trim().parse::<i32>().is_ok(),
        "int8" => v.trim().parse::<i64>().is_ok(),
        "float8" => v.trim().parse::<f64>().is_ok(),
        "numeric" => Decimal::parse(v).is_some(),
        "bool" => {
            matches!(v.to_ascii_lowercase().as_str(), "true" | "false" | "t" | "f" | "1" | "0")
        }
        "date" => v.trim().len() == 10 && parse_timestamp(v).is_some(),
        "timestamp" => parse_timestamp(v).is_some(),
        "timestamptz" => {
            parse_timestamp(v.trim_end_matches('Z')).is_some()
                || chrono::DateTime::parse_from_rfc3339(v).is_ok()
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{v:?} is not a valid {ty}"))
    }
}

/// Parses one file: header comments, then SQL. Errors carry the 1-based line.
fn parse_file(text: &str) -> std::result::Result<NamedQuery, (usize, String)> {
    let (mut name, mut description, mut params, mut sql) =
        (None, String::new(), Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        match line.trim().strip_prefix("--").map(str::trim) {
            Some(h) if sql.is_empty() => {
                if let Some(v) = h.strip_prefix("name:") {
                    let v = v.trim();
                    if v.is_empty()
                        || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err((n, format!("invalid query name {v:?}")));
                    }
                    name = Some(v.to_string());
                } else if let Some(v) = h.strip_prefix("description:") {
                    description = v.trim().to_string();
                } else if let Some(v) = h.strip_prefix("param:") {
                    params.push(parse_param(v).map_err(|m| (n, m))?);
                }
            }
            _ if line.trim().is_empty() && sql.is_empty() => {}
            _ => sql.push(line),
        }
    }
    let name = name.ok_or((1, "missing `-- name: ...` header".to_string()))?;
    let sql = sql.join("\n").trim().trim_end_matches(';').to_string();
    if sql.is_empty() {
        return Err((text.lines().count().max(1), "no SQL after the header".into()));
    }
    let highest = (1..=99).rev().find(|k| sql.contains(&format!("${k}"))).unwrap_or(0);
    if highest != params.len() {
        return Err((
            1,
            format!("the SQL uses ${highest} but {} parameter(s) are declared", params.len()),
        ));
    }
    Ok(NamedQuery { name, description, params, sql })
}

/// `since timestamp = 2026-11-01 00:00:00`
fn parse_param(v: &str) -> std::result::Result<QueryParam, String> {
    let (decl, default) = match v.split_once('=') {
        Some((d, def)) => (d.trim(), Some(def.trim().to_string())),
        None => (v.trim(), None),
    };
    let mut parts = decl.split_whitespace();
    let (Some(name), Some(ty), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("expected `-- param: <name> <type> [= default]`, got {v:?}"));
    };
    if !TYPES.contains(&ty) {
        return Err(format!(
            "parameter {name:?}: unknown type {ty:?} (one of {})",
            TYPES.join(", ")
        ));
    }
    if let Some(d) = &default {
        check_value(ty, d).map_err(|m| format!("parameter {name:?} default: {m}"))?;
    }
    Ok(QueryParam { name: name.to_string(), ty: ty.to_string(), default })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_binds() {
        let q = parse_file("-- name: top\n-- description: d\n-- param: since timestamp = 2026-01-01 00:00:00\n-- param: n int8\nSELECT $1, $2;\n").unwrap();
        assert_eq!(q.params.len(), 2);
        let all = NamedQueries(BTreeMap::from([(q.name.clone(), q)]));
        let given = HashMap::from([("n".to_string(), "5".to_string())]);
        let (_, p) = all.bind("top", &given).unwrap();
        assert_eq!(p, vec![Param::Text("2026-01-01 00:00:00".into()), Param::Text("5".into())]);
        assert!(all.bind("top", &HashMap::new()).unwrap_err().to_string().contains("\"n\""));
        let bad = HashMap::from([("n".to_string(), "five".to_string())]);
        assert!(all.bind("top", &bad).unwrap_err().to_string().contains("\"n\""));
    }

    #[test]
    fn bad_files_name_the_line() {
        assert_eq!(parse_file("-- name: x\n-- param: a nosuchtype\nSELECT $1").unwrap_err().0, 2);
        assert!(parse_file("SELECT 1").unwrap_err().1.contains("name"));
        assert!(parse_file("-- name: x\nSELECT $2").unwrap_err().1.contains("$2"));
    }
}
