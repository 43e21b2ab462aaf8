//! The check of parsed statements against a restricted user's grants, before anything reaches
//! the warehouse (42501 on the first name that is not allowed).
//!
//! Every schema-qualified name is checked against the schemas granted: relations, functions
//! and aggregates (also in FROM), types of casts and typed literals (`x::secret.t`), operators
//! (`OPERATOR(secret.===)`), and the relation names sequence and size functions take as text
//! (`nextval('secret.seq')`). Unqualified names resolve as PostgreSQL does, through
//! `pg_catalog` and the session's search_path (default `public`):
//! - relations and types: a `pg_catalog` name wins (unless the search_path names `pg_catalog`
//!   itself); otherwise every schema of the path must be allowed;
//! - functions and operators, which overload across schemas: every schema of the path that
//!   holds one of that name must be allowed; a name the warehouse's catalog does not know
//!   (created since it was read) needs every schema of the path allowed.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    ArrayElemTypeDef, BinaryOperator, DataType, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, Statement, TableFactor, Value,
    Visit, Visitor,
};

use super::Grants;
use crate::config::TableConfig;
use crate::error::{Error, Result};

/// Functions refused for restricted users: they run SQL text, read files, reach other
/// databases, or reveal the host (its settings, files and addresses), so a check of names
/// cannot see what they read.
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
    "pg_show_all_settings",
    "pg_show_all_file_settings",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_config",
    "pg_current_logfile",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_ls_replslotdir",
    "pg_tablespace_location",
    "pg_relation_filepath",
    "inet_server_addr",
    "inet_server_port",
];

/// Catalog views that list the server's settings and configuration files.
const HOST_RELATIONS: &[&str] = &[
    "pg_settings",
    "pg_file_settings",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_config",
];

/// Settings that reveal the host: its paths, addresses, files and commands (`all` lists them).
const HOST_SETTINGS: &[&str] = &[
    "all",
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
    "external_pid_file",
    "unix_socket_directories",
    "unix_socket_group",
    "listen_addresses",
    "port",
    "log_directory",
    "log_filename",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_crl_file",
    "ssl_crl_dir",
    "ssl_dh_params_file",
    "ssl_passphrase_command",
    "krb_server_keyfile",
    "archive_command",
    "archive_library",
    "archive_cleanup_command",
    "restore_command",
    "recovery_end_command",
    "primary_conninfo",
    "dynamic_library_path",
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
    "cluster_name",
    "stats_temp_directory",
];

/// Functions whose first argument names a relation as text (or regclass).
const RELATION_ARG_FUNCTIONS: &[&str] = &[
    "nextval",
    "currval",
    "setval",
    "pg_sequence_last_value",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
];

/// Names in the warehouse's catalog the check needs: `pg_catalog`'s relations and types, and
/// the schemas holding each function or operator name.
#[derive(Debug, Default, Clone)]
pub struct CatalogNames {
    relations: HashSet<String>,
    types: HashSet<String>,
    functions: HashMap<String, HashSet<String>>,
    operators: HashMap<String, HashSet<String>>,
}

impl CatalogNames {
    /// What [`CatalogNames::from_rows`] reads: (kind, schema, name) with kind `r` relation,
    /// `t` type, `f` function or aggregate, `o` operator (PostgreSQL and Redshift catalogs).
    pub const QUERY: &'static str = "\
        SELECT 'r'::text, n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pg_catalog' \
        UNION ALL SELECT 't'::text, n.nspname::text, t.typname::text FROM pg_catalog.pg_type t \
          JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'pg_catalog' \
        UNION ALL SELECT DISTINCT 'f'::text, n.nspname::text, p.proname::text FROM pg_catalog.pg_proc p \
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
        UNION ALL SELECT DISTINCT 'o'::text, n.nspname::text, o.oprname::text FROM pg_catalog.pg_operator o \
          JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace";

    /// The names from rows of [`CatalogNames::QUERY`].
    pub fn from_rows(rows: impl IntoIterator<Item = (String, String, String)>) -> CatalogNames {
        let mut c = CatalogNames::default();
        for (kind, schema, name) in rows {
            match kind.as_str() {
                "r" => drop(c.relations.insert(name)),
                "t" => drop(c.types.insert(name)),
                "f" => drop(c.functions.entry(name).or_default().insert(schema)),
                "o" => drop(c.operators.entry(name).or_default().insert(schema)),
                _ => {}
            }
        }
        c
    }
}

/// Where unqualified names resolve, and what the warehouse's catalog holds.
pub struct Resolution<'a> {
    /// The session's search_path setting, if set.
    pub search_path: Option<&'a str>,
    /// Names in the warehouse's catalog.
    pub catalog: &'a CatalogNames,
}

impl Resolution<'_> {
    /// The schemas of the search path in order (`$user` left out).
    fn path(&self) -> Vec<String> {
        self.search_path
            .unwrap_or("public")
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_lowercase())
            .filter(|s| !s.is_empty() && s != "$user")
            .collect()
    }

    /// Whether `pg_catalog` is searched before the path (it is unless the path names it).
    fn catalog_first(&self, path: &[String]) -> bool {
        !path.iter().any(|s| s == "pg_catalog")
    }
}

/// Checks every name of `stmts` against `grants` (42501 on the first that is not allowed).
pub fn check(
    grants: &Grants,
    stmts: &[Statement],
    tables: &[TableConfig],
    names: &Resolution<'_>,
) -> Result<()> {
    let mut v = Collector::default();
    for s in stmts {
        if matches!(
            s,
            Statement::ShowDatabases { .. }
                | Statement::ShowSchemas { .. }
                | Statement::ShowTables { .. }
                | Statement::ShowColumns { .. }
        ) {
            // a listing shows names beyond the user's grants
            return Err(denied("catalog listings (SHOW TABLES, ...)"));
        }
        let _ = s.visit(&mut v);
    }
    let scope = Scope { grants, names, path: names.path() };
    for s in &v.settings {
        scope.setting(s.as_deref())?;
    }
    for f in &v.functions {
        scope.function(f)?;
    }
    for t in &v.types {
        scope.single("type", &parts(t), &names.catalog.types)?;
    }
    for o in &v.operators {
        scope.overloaded("operator", o, &names.catalog.operators)?;
    }
    for r in &v.relation_args {
        let name = r.as_ref().ok_or_else(|| denied("a relation named by a computed value"))?;
        scope.relation(name, &v.ctes, tables)?;
    }
    for name in v.relations.iter().filter(|r| !v.table_functions.contains(r)) {
        scope.relation(name, &v.ctes, tables)?;
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

/// One check's grants and resolution.
struct Scope<'a> {
    grants: &'a Grants,
    names: &'a Resolution<'a>,
    path: Vec<String>,
}

impl Scope<'_> {
    /// The first schema of `schemas` the user may not read, refused as `what`.
    fn schemas<'s>(&self, what: &str, mut schemas: impl Iterator<Item = &'s String>) -> Result<()> {
        match schemas.find(|s| !self.grants.schema(s)) {
            Some(s) => Err(denied(&format!("{what} (schema {s})"))),
            None => Ok(()),
        }
    }

    fn relation(
        &self,
        name: &ObjectName,
        ctes: &HashSet<String>,
        tables: &[TableConfig],
    ) -> Result<()> {
        if let Some(t) = tables.iter().find(|t| crate::plan::sqlcheck::names_table(name, t)) {
            return match self.grants.table(&t.name) {
                true => Ok(()),
                false => Err(denied(&format!("table {}", t.name))),
            };
        }
        let p = parts(name);
        let relations = &self.names.catalog.relations;
        let system = match p.as_slice() {
            [rel] if ctes.contains(rel) => return Ok(()),
            [rel] => self.resolves_to_catalog(rel, relations),
            [.., schema, _] => schema == "pg_catalog",
            [] => false,
        };
        match p.last() {
            Some(rel) if system && HOST_RELATIONS.contains(&rel.as_str()) => {
                Err(denied(&format!("relation {rel} (it shows the server's configuration)")))
            }
            _ => self.single("relation", &p, relations),
        }
    }

    /// Whether an unqualified relation or type name is `pg_catalog`'s.
    fn resolves_to_catalog(&self, name: &str, catalog: &HashSet<String>) -> bool {
        self.names.catalog_first(&self.path) && catalog.contains(name)
    }

    /// A relation or type: qualified, its schema; unqualified, `pg_catalog`'s or every schema
    /// of the path.
    fn single(&self, what: &str, p: &[String], catalog: &HashSet<String>) -> Result<()> {
        match p {
            [name] if self.resolves_to_catalog(name, catalog) => Ok(()),
            [name] => self.schemas(&format!("{what} {name}"), self.path.iter()),
            [.., schema, name] => self.schemas(&format!("{what} {name}"), std::iter::once(schema)),
            [] => Ok(()),
        }
    }

    /// A function or operator: qualified, its schema; unqualified, every schema of the path
    /// holding one of that name (every schema of the path when the catalog knows none).
    fn overloaded(
        &self,
        what: &str,
        p: &[String],
        catalog: &HashMap<String, HashSet<String>>,
    ) -> Result<()> {
        match p {
            [name] => {
                let label = format!("{what} {name}");
                match catalog.get(name) {
                    Some(holders) => {
                        self.schemas(&label, self.path.iter().filter(|s| holders.contains(*s)))
                    }
                    None => self.schemas(&label, self.path.iter()),
                }
            }
            [.., schema, name] => self.schemas(&format!("{what} {name}"), std::iter::once(schema)),
            [] => Ok(()),
        }
    }

    fn function(&self, f: &FunctionName) -> Result<()> {
        let p = parts(&f.name);
        let last = p.last().map(|s| s.to_lowercase()).unwrap_or_default();
        if DENIED_FUNCTIONS.contains(&last.as_str()) || last.starts_with("dblink") {
            return Err(denied(&format!("function {last}")));
        }
        if p.len() == 1 && !f.quoted && crate::catalog::KEYWORD_FUNCTIONS.contains(&last.as_str()) {
            return Ok(());
        }
        self.overloaded("function", &p, &self.names.catalog.functions)
    }

    fn setting(&self, name: Option<&str>) -> Result<()> {
        match name {
            None => Err(denied("current_setting of a computed name")),
            Some(n) if HOST_SETTINGS.contains(&n) => {
                Err(denied(&format!("setting {n} (it reveals the server's host)")))
            }
            Some(_) => Ok(()),
        }
    }
}

/// A called function's name, and whether its last part was quoted.
struct FunctionName {
    name: ObjectName,
    quoted: bool,
}

/// The names of a statement the check looks at.
#[derive(Default)]
struct Collector {
    relations: Vec<ObjectName>,
    functions: Vec<FunctionName>,
    table_functions: Vec<ObjectName>,
    types: Vec<ObjectName>,
    operators: Vec<Vec<String>>,
    /// Relations named as text (`nextval('s.seq')`); None when the name is computed.
    relation_args: Vec<Option<ObjectName>>,
    /// Settings read (`SHOW x`, `current_setting('x')`); None when the name is computed.
    settings: Vec<Option<String>>,
    ctes: HashSet<String>,
}

impl Collector {
    fn function(&mut self, name: &ObjectName) {
        let quoted =
            matches!(name.0.last(), Some(ObjectNamePart::Identifier(i)) if i.quote_style.is_some());
        self.functions.push(FunctionName { name: name.clone(), quoted });
    }

    fn call(&mut self, f: &sqlparser::ast::Function) {
        self.function(&f.name);
        let last = parts(&f.name).pop().unwrap_or_default().to_lowercase();
        let first = first_arg(&f.args);
        if last == "current_setting" {
            self.settings.push(first.and_then(string_literal).map(|s| s.to_lowercase()));
        }
        if RELATION_ARG_FUNCTIONS.contains(&last.as_str()) {
            let name = first.and_then(relation_literal).and_then(|t| qualified_name(&t));
            self.relation_args.push(name);
        }
    }

    fn data_type(&mut self, t: &DataType) {
        match t {
            DataType::Custom(name, _) => self.types.push(name.clone()),
            DataType::Array(
                ArrayElemTypeDef::AngleBracket(t)
                | ArrayElemTypeDef::SquareBracket(t, _)
                | ArrayElemTypeDef::Parenthesis(t)
                | ArrayElemTypeDef::ParenthesisNotNull(t)
                | ArrayElemTypeDef::Qualified(t, _),
            ) => self.data_type(t),
            _ => {}
        }
    }

    fn operator(&mut self, op: &BinaryOperator) {
        match op {
            BinaryOperator::PGCustomBinaryOperator(p) => {
                let mut p = p.clone();
                let n = p.len();
                // schema parts are identifiers (lowercased unless quoted); the operator is not
                for s in p.iter_mut().take(n.saturating_sub(1)) {
                    *s = unquote(s);
                }
                self.operators.push(p)
            }
            BinaryOperator::Custom(s) => self.operators.push(vec![s.clone()]),
            _ => {}
        }
    }
}

fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(q) => q.replace("\"\"", "\""),
        None => s.to_lowercase(),
    }
}

fn first_arg(args: &FunctionArguments) -> Option<&Expr> {
    let FunctionArguments::List(l) = args else { return None };
    match l.args.first()? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
        FunctionArg::Named { arg: FunctionArgExpr::Expr(e), .. } => Some(e),
        _ => None,
    }
}

fn string_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s.clone()),
            _ => None,
        },
        Expr::Nested(e) => string_literal(e),
        _ => None,
    }
}

/// A relation name given as a string, or a string cast to regclass.
fn relation_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Cast { expr, data_type: DataType::Custom(t, _), .. }
            if parts(t).last().is_some_and(|n| n == "regclass") =>
        {
            string_literal(expr)
        }
        other => string_literal(other),
    }
}

/// A possibly qualified, possibly quoted name written as text (`"My Schema".seq`), as the
/// identifiers PostgreSQL reads from it.
fn qualified_name(text: &str) -> Option<ObjectName> {
    let mut idents = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let ident = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        v.push('"');
                    }
                    '"' => break,
                    c => v.push(c),
                }
            }
            Ident::with_quote('"', v)
        } else {
            let v: String =
                std::iter::from_fn(|| chars.next_if(|c| *c != '.' && !c.is_whitespace())).collect();
            if v.is_empty() {
                return None;
            }
            Ident::new(v)
        };
        idents.push(ident);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(ObjectName::from(idents)),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        for cte in q.with.iter().flat_map(|w| &w.cte_tables) {
            self.ctes.insert(cte.alias.name.value.to_lowercase());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if let Statement::ShowVariable { variable } = s {
            let name: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
            self.settings.push(Some(name.join(" ")));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        match t {
            TableFactor::Table { name, args: Some(_), .. } => {
                self.function(name);
                self.table_functions.push(name.clone());
            }
            TableFactor::Function { name, .. } => self.function(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        self.relations.push(r.clone());
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => self.call(f),
            Expr::Cast { data_type, .. } => self.data_type(data_type),
            Expr::Convert { data_type: Some(t), .. } => self.data_type(t),
            Expr::TypedString(t) => self.data_type(&t.data_type),
            Expr::BinaryOp { op, .. } => self.operator(op),
            Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => {
                self.operator(compare_op)
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserConfig;

    fn catalog() -> CatalogNames {
        let row = |k: &str, s: &str, n: &str| (k.to_string(), s.to_string(), n.to_string());
        CatalogNames::from_rows([
            row("r", "pg_catalog", "pg_class"),
            row("r", "pg_catalog", "pg_settings"),
            row("t", "pg_catalog", "regclass"),
            row("t", "pg_catalog", "int4"),
            row("f", "pg_catalog", "count"),
            row("f", "pg_catalog", "generate_series"),
            row("f", "pg_catalog", "nextval"),
            row("f", "pg_catalog", "current_setting"),
            row("f", "pg_catalog", "lower"),
            row("f", "secret", "lower"),
            row("f", "secret", "peek"),
            row("o", "pg_catalog", "="),
            row("o", "secret", "##"),
        ])
    }

    fn check_sql(sql: &str, path: Option<&str>) -> Result<()> {
        let user = UserConfig {
            name: "u".into(),
            password_hash: String::new(),
            api_keys: vec![],
            tables: Some(vec!["events".into()]),
            schemas: Some(vec!["public".into()]),
            statement_timeout: None,
            read_all_stats: false,
        };
        let access = super::super::Access::new(&[user]);
        let stmts = crate::plan::parse(crate::config::Dialect::Postgres, sql).expect("parses");
        let c = catalog();
        check(
            access.restricted("u").unwrap(),
            &stmts,
            &[],
            &Resolution { search_path: path, catalog: &c },
        )
    }

    #[test]
    fn schema_qualified_names_of_every_kind() {
        for sql in [
            "SELECT secret.peek()",
            "SELECT * FROM secret.peek()",
            "SELECT sum(secret.peek())",
            "SELECT 1::secret.t",
            "SELECT CAST(1 AS secret.t)",
            "SELECT ARRAY[1]::secret.t[]",
            "SELECT secret.t '1'",
            "SELECT 1 OPERATOR(secret.##) 1",
            "SELECT 1 = ANY (SELECT 1) OR 1 OPERATOR(\"secret\".~~~) 2",
            "SELECT nextval('secret.seq')",
            "SELECT currval('\"secret\".\"seq\"'::regclass)",
            "SELECT nextval(current_user)",
            "SELECT \"Secret\".f()",
        ] {
            let e = check_sql(sql, None).expect_err(sql);
            assert_eq!(e.sqlstate(), "42501", "{sql}");
        }
        for sql in [
            "SELECT count(*), lower('A'), generate_series(1, 2)",
            "SELECT public.f(), 1::int4, 1::regclass, '1'::public.t, pg_catalog.lower('x')",
            "SELECT coalesce(1, 2), current_timestamp, 1 OPERATOR(pg_catalog.=) 1",
            "SELECT nextval('public.seq'), nextval('seq')",
            "SELECT count(*) FROM pg_class",
        ] {
            assert!(check_sql(sql, None).is_ok(), "{sql}: {:?}", check_sql(sql, None));
        }
    }

    #[test]
    fn unqualified_names_follow_the_search_path() {
        let path = Some("secret, public");
        for sql in [
            "SELECT peek()",
            "SELECT lower('a')",
            "SELECT unknown_fn()",
            "SELECT 1::t",
            "SELECT nextval('seq')",
        ] {
            assert!(check_sql(sql, path).is_err(), "{sql}");
        }
        assert!(
            check_sql("SELECT \"coalesce\"(1)", path).is_err(),
            "a quoted keyword is a function"
        );
        for sql in ["SELECT count(*), generate_series(1, 2), coalesce(1, 2)", "SELECT 1::regclass"]
        {
            assert!(check_sql(sql, path).is_ok(), "{sql}");
        }
    }

    #[test]
    fn host_settings_are_refused() {
        for sql in [
            "SHOW data_directory",
            "SHOW ALL",
            "SELECT current_setting('config_file')",
            "SELECT current_setting('HBA_FILE')",
            "SELECT current_setting(name) FROM (SELECT 'x' AS name) s",
            "SELECT * FROM pg_settings",
            "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'data_directory'",
            "SELECT * FROM pg_show_all_settings()",
            "SELECT inet_server_addr()",
        ] {
            assert!(check_sql(sql, None).is_err(), "{sql}");
        }
        for sql in ["SHOW timezone", "SELECT current_setting('search_path')"] {
            assert!(check_sql(sql, None).is_ok(), "{sql}");
        }
    }

    #[test]
    fn names_written_as_text() {
        let q = |t: &str| qualified_name(t).map(|n| parts(&n));
        assert_eq!(q("secret.seq"), Some(vec!["secret".into(), "seq".into()]));
        assert_eq!(q(" \"My \"\"S\".Seq "), Some(vec!["My \"S".into(), "seq".into()]));
        assert_eq!(q("a..b"), None);
        assert_eq!(q("\"open"), None);
    }
}
