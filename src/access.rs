//! Access control: which logical tables and warehouse schemas each configured user may read,
//! checked on the parsed statement before anything reaches the warehouse (42501), and the
//! REST API keys (stored as SHA-256 hashes) that identify users over HTTP.
//!
//! A relation is allowed when it is a logical table the user may read, lives in `pg_catalog` or
//! `information_schema`, or lives in an allowed schema. Unqualified names resolve as PostgreSQL
//! does: `pg_catalog` first (unless the session's search_path names it), then every schema of
//! the search path (default `public`), all of which must be allowed. Functions that run SQL
//! text or read files (`query_to_xml`, `dblink`, `pg_read_file`, ...) are refused for
//! restricted users, whose statements must also parse.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Statement, TableFactor, Visit, Visitor,
};

use crate::config::{TableConfig, UserConfig};
use crate::error::{Error, Result};

/// Schemas every user may read (catalog metadata for drivers and BI tools).
const SYSTEM_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];

/// Functions refused for restricted users: they run SQL text, read files or reach other
/// databases, so a relation check cannot see what they read.
const DENIED_FUNCTIONS: &[&str] = &[
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "table_to_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "schema_to_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "database_to_xmlschema",
    "ts_stat",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_get",
    "lo_export",
    "lo_import",
    "set_config",
];

/// What one user may read; `None` means everything of that kind.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    tables: Option<HashSet<String>>,
    schemas: Option<HashSet<String>>,
}

impl Grants {
    /// Whether the user is restricted at all.
    pub fn restricted(&self) -> bool {
        self.tables.is_some() || self.schemas.is_some()
    }

    /// Whether the user may read logical table `name`.
    pub fn table(&self, name: &str) -> bool {
        self.tables.as_ref().is_none_or(|t| t.contains(&name.to_lowercase()))
    }

    fn schema(&self, name: &str) -> bool {
        SYSTEM_SCHEMAS.contains(&name)
            || self.schemas.as_ref().is_none_or(|s| s.contains(&name.to_lowercase()))
    }
}

/// Users' grants and API keys from the configuration.
#[derive(Debug, Default)]
pub struct Access {
    grants: HashMap<String, Grants>,
    keys: HashMap<String, String>,
}

/// The stored form of an API key: `sha256:` and the hex SHA-256 of the key.
pub fn hash_api_key(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A new random API key (32 bytes, hex).
pub fn new_api_key() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("no system randomness"))?;
    Ok(format!("tmk_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

impl Access {
    /// Grants and keys of the configured users.
    pub fn new(users: &[UserConfig]) -> Access {
        let lower = |v: &Option<Vec<String>>| {
            v.as_ref().map(|v| v.iter().map(|s| s.to_lowercase()).collect::<HashSet<_>>())
        };
        let grants = users
            .iter()
            .map(|u| {
                let g = Grants { tables: lower(&u.tables), schemas: lower(&u.schemas) };
                (u.name.clone(), g)
            })
            .collect();
        let keys = users
            .iter()
            .flat_map(|u| u.api_keys.iter().map(|k| (k.to_lowercase(), u.name.clone())))
            .collect();
        Access { grants, keys }
    }

    /// Whether users are configured (then every frontend authenticates).
    pub fn required(&self) -> bool {
        !self.grants.is_empty()
    }

    /// The grants of a restricted user; None for unrestricted and anonymous users.
    pub fn restricted(&self, user: &str) -> Option<&Grants> {
        self.grants.get(user).filter(|g| g.restricted())
    }

    /// The user an API key belongs to.
    pub fn user_for_key(&self, key: &str) -> Option<&str> {
        self.keys.get(&hash_api_key(key)).map(String::as_str)
    }
}

/// Where unqualified names resolve, and which of them `pg_catalog` holds.
pub struct Resolution<'a> {
    /// The session's search_path setting, if set.
    pub search_path: Option<&'a str>,
    /// Relation names in `pg_catalog` (they win over the search path unless it names it).
    pub system_names: &'a HashSet<String>,
}

/// Checks every relation and function of `stmts` against `grants` (42501 on the first
/// that is not allowed).
pub fn check(
    grants: &Grants,
    stmts: &[Statement],
    tables: &[TableConfig],
    names: &Resolution<'_>,
) -> Result<()> {
    let mut v = Collector::default();
    for s in stmts {
        let _ = s.visit(&mut v);
    }
    for f in &v.functions {
        if DENIED_FUNCTIONS.contains(&f.as_str()) || f.starts_with("dblink") {
            return Err(denied(&format!("function {f}")));
        }
    }
    for name in v.relations.iter().filter(|r| !v.table_functions.contains(r)) {
        check_relation(grants, name, &v.ctes, tables, names)?;
    }
    Ok(())
}

fn denied(what: &str) -> Error {
    Error::PermissionDenied(format!("permission denied for {what}"))
}

/// Identifier parts of a name, lowercased unless quoted.
fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
            ObjectNamePart::Identifier(i) => i.value.to_lowercase(),
            other => other.to_string(),
        })
        .collect()
}

fn check_relation(
    grants: &Grants,
    name: &ObjectName,
    ctes: &HashSet<String>,
    tables: &[TableConfig],
    names: &Resolution<'_>,
) -> Result<()> {
    if let Some(t) = tables.iter().find(|t| crate::plan::split::names_table(name, t)) {
        return match grants.table(&t.name) {
            true => Ok(()),
            false => Err(denied(&format!("table {}", t.name))),
        };
    }
    let p = parts(name);
    let (schemas, rel): (Vec<String>, &str) = match p.as_slice() {
        [rel] if ctes.contains(rel) => return Ok(()),
        [rel] => (unqualified_schemas(rel, names), rel),
        [.., schema, rel] => (vec![schema.clone()], rel),
        [] => return Ok(()),
    };
    match schemas.iter().find(|s| !grants.schema(s)) {
        Some(s) => Err(denied(&format!("relation {rel} (schema {s})"))),
        None => Ok(()),
    }
}

/// The schemas an unqualified relation may resolve to.
fn unqualified_schemas(rel: &str, names: &Resolution<'_>) -> Vec<String> {
    let path: Vec<String> = names
        .search_path
        .unwrap_or("public")
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_lowercase())
        .filter(|s| !s.is_empty() && s != "$user")
        .collect();
    let catalog_first = !path.iter().any(|s| s == "pg_catalog");
    if catalog_first && names.system_names.contains(rel) {
        return vec!["pg_catalog".into()];
    }
    path
}

/// Relations, functions and CTE names of a statement.
#[derive(Default)]
struct Collector {
    relations: Vec<ObjectName>,
    functions: Vec<String>,
    table_functions: Vec<ObjectName>,
    ctes: HashSet<String>,
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        for cte in q.with.iter().flat_map(|w| &w.cte_tables) {
            self.ctes.insert(cte.alias.name.value.to_lowercase());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args: Some(_), .. } = t {
            self.functions.push(last_part(name));
            self.table_functions.push(name.clone());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        self.relations.push(r.clone());
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            self.functions.push(last_part(&f.name));
        }
        ControlFlow::Continue(())
    }
}

fn last_part(name: &ObjectName) -> String {
    parts(name).pop().unwrap_or_default().to_lowercase()
}
