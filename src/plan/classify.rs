//! A statement's text parsed and classified once: local, pass-through (and why) or split over
//! one logical table, together with the statements the grants check reads. The engine keeps
//! these per text, so a request (and a prepared statement, a Flight ticket, a re-warm) parses
//! its SQL once and authorization, classification, the answer cache and the split share it.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use sqlparser::ast::{visit_relations, Statement};

use super::{copy, local, parse, sqlcheck::names_table, write_kind, Class, Local};
use crate::config::{Dialect, TableConfig};
use crate::error::{Error, Result};

/// What the grants check reads from a statement.
#[derive(Debug)]
pub enum Reads {
    /// The parsed statements (of a COPY, those of its query).
    Statements(Vec<Statement>),
    /// The text does not parse (a restricted user's statement is then refused).
    Unparsed(Error),
    /// A malformed COPY, refused with its own error.
    BadCopy(Error),
}

/// One statement's text after its single parse.
#[derive(Debug)]
pub struct Parsed {
    /// How it runs (errors: 22021 NUL, 42601 syntax, 25006 writes).
    pub class: Result<Class>,
    /// What the grants check reads.
    pub reads: Reads,
}

impl Parsed {
    /// Parses `sql` once (sqlparser runs one time, on the COPY's query for a COPY) and
    /// classifies it against the logical `tables`.
    pub fn new(d: Dialect, tables: &[TableConfig], sql: &str) -> Parsed {
        let mut parsed = Parsed::of(d, tables, sql);
        if sql.contains('\0') {
            parsed.class = Err(Error::data(
                "22021",
                "invalid byte sequence for encoding \"UTF8\": 0x00 (SQL text cannot hold NUL)",
            ));
        }
        parsed
    }

    fn of(d: Dialect, tables: &[TableConfig], sql: &str) -> Parsed {
        if copy::is_copy(sql) {
            return match copy::parse(sql) {
                Ok(c) => Parsed {
                    reads: match parse(d, &c.query()) {
                        Ok(stmts) => Reads::Statements(stmts),
                        Err(e) => Reads::Unparsed(e),
                    },
                    class: Ok(Class::Local(Local::CopyOut(c))),
                },
                Err(e) => Parsed { class: Err(e.clone()), reads: Reads::BadCopy(e) },
            };
        }
        let parsed = parse(d, sql);
        Parsed { class: classify(d, tables, sql, &parsed), reads: reads(parsed) }
    }
}

fn reads(parsed: Result<Vec<Statement>>) -> Reads {
    match parsed {
        Ok(stmts) => Reads::Statements(stmts),
        Err(e) => Reads::Unparsed(e),
    }
}

/// Classifies a non-COPY statement from its parse.
fn classify(
    d: Dialect,
    tables: &[TableConfig],
    sql: &str,
    parsed: &Result<Vec<Statement>>,
) -> Result<Class> {
    if let Some(reset) = local::parse_reset(sql) {
        return Ok(Class::Local(reset));
    }
    if let Some(m) = local::parse_move(sql) {
        let (name, count) = m?;
        return Ok(Class::Local(Local::Move { name, count }));
    }
    let stmts = match parsed {
        Ok(s) => s,
        // The parser does not know every PostgreSQL form; the warehouse (whose sessions
        // are read-only) gives the authoritative answer or error.
        Err(e) if d == Dialect::Postgres && !sql.trim().is_empty() => {
            return Ok(Class::Passthrough { reason: format!("not parsed by tidemark: {e}") })
        }
        Err(e) => return Err(e.clone()),
    };
    let stmt = match stmts.as_slice() {
        [stmt] => stmt,
        [] => return Err(Error::Syntax("empty query".into())),
        v => return Err(Error::Syntax(format!("expected one statement, got {}", v.len()))),
    };
    if let Some(kind) = write_kind(stmt) {
        return Err(Error::ReadOnly(kind));
    }
    Ok(match stmt {
        // Redshift's catalog listings; read-only, answered by the warehouse.
        Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
            if d == Dialect::Redshift =>
        {
            Class::Passthrough { reason: "a catalog listing (SHOW)".into() }
        }
        Statement::Query(q) => {
            if let Some(calls) = local::setting_calls(q) {
                return Ok(Class::Local(Local::Settings(calls)));
            }
            match logical_table(tables, stmt) {
                Ok(table) => Class::Split { query: q.clone(), table },
                Err(reason) => Class::Passthrough { reason },
            }
        }
        other => Class::Local(local::local_of(other.clone())?),
    })
}

/// The single logical table a statement reads, or why it is not a split candidate.
fn logical_table(tables: &[TableConfig], stmt: &Statement) -> std::result::Result<String, String> {
    let mut hits: Vec<String> = Vec::new();
    let _ = visit_relations(stmt, |name| {
        for t in tables {
            if names_table(name, t) {
                hits.push(t.name.clone());
            }
        }
        ControlFlow::<()>::Continue(())
    });
    match hits.len() {
        0 => Err("no logical table".into()),
        1 => Ok(hits.remove(0)),
        _ => Err("logical tables referenced more than once".into()),
    }
}

/// Texts longer than this are parsed again each time rather than kept.
const KEEP_TEXT_MAX: usize = 16 * 1024;
/// Total text kept before the cache is cleared (the parsed trees are some tens of times that).
const KEPT_BYTES_MAX: usize = 1024 * 1024;

/// The parsed form of recent statement texts. The key is the text alone: the dialect and the
/// logical tables a parse depends on are fixed for the engine's life.
#[derive(Default)]
pub struct ParseCache {
    kept: Mutex<Kept>,
}

/// The kept texts and their total length.
#[derive(Default)]
struct Kept {
    parsed: HashMap<Arc<str>, Arc<Parsed>>,
    bytes: usize,
}

impl ParseCache {
    /// The parsed form of `sql`, and whether this call had to parse it.
    pub fn get(&self, d: Dialect, tables: &[TableConfig], sql: &str) -> (Arc<Parsed>, bool) {
        if let Some(p) = self.lock().parsed.get(sql) {
            return (p.clone(), false);
        }
        let parsed = Arc::new(Parsed::new(d, tables, sql));
        if sql.len() <= KEEP_TEXT_MAX {
            let mut kept = self.lock();
            if kept.bytes + sql.len() > KEPT_BYTES_MAX {
                *kept = Kept::default();
            }
            kept.bytes += sql.len();
            kept.parsed.insert(sql.into(), parsed.clone());
        }
        (parsed, true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}
