//! Spelling names for the warehouse: quoted identifiers and schema-qualified names.

/// Quotes one identifier for PostgreSQL and Redshift.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `schema.table` into its parts (no schema: None, the first match on the search path).
pub fn split_name(table: &str) -> (Option<&str>, &str) {
    match table.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, table),
    }
}

/// Quotes a possibly schema-qualified name (`schema.table`).
pub fn quote_name(s: &str) -> String {
    s.split('.').map(quote_ident).collect::<Vec<_>>().join(".")
}
