//! Planning: parse with the warehouse dialect, classify each statement as Local,
//! Passthrough or Split, and for Split render one SQL per leg plus the merge spec.

pub mod aggregate;
pub mod chunks;
pub mod classify;
pub mod copy;
pub mod expr;
pub mod fingerprint;
pub mod inline;
pub mod literals;
pub mod local;
pub mod prune;
pub mod spec;
pub mod split;
pub mod sqlcheck;
pub mod text;
pub mod timefold;
pub mod windows_leg;

use serde::Serialize;
use sqlparser::ast::{Expr, Statement};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, RedshiftSqlDialect};
use sqlparser::parser::Parser;

use crate::config::Dialect;
use crate::error::{Error, Result};

pub use local::{Local, Scope, SettingCall};
pub use split::{Layer, Leg, SplitPlan};

/// The sqlparser dialect for a warehouse dialect.
pub fn sql_dialect(d: Dialect) -> Box<dyn SqlDialect + Send + Sync> {
    match d {
        Dialect::Postgres => Box::new(PostgreSqlDialect {}),
        Dialect::Redshift => Box::new(RedshiftSqlDialect {}),
    }
}

/// Parses SQL text into statements (42601 on failure).
pub fn parse(d: Dialect, sql: &str) -> Result<Vec<Statement>> {
    Parser::parse_sql(sql_dialect(d).as_ref(), sql).map_err(|e| Error::Syntax(e.to_string()))
}

/// Parses one expression snippet (used to build literals and predicates).
pub fn parse_expr(d: Dialect, sql: &str) -> Result<Expr> {
    Parser::new(sql_dialect(d).as_ref())
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::internal(format!("cannot parse generated expression {sql:?}: {e}")))
}

/// How tidemark will run one statement.
#[derive(Debug, Clone)]
pub enum Class {
    /// Answered by tidemark alone.
    Local(Local),
    /// Sent whole to the warehouse; `reason` says why it is not split.
    Passthrough {
        /// Why the statement is not split.
        reason: String,
    },
    /// Candidate for the split fast path (the query and the logical table it reads).
    Split {
        /// The parsed query.
        query: Box<sqlparser::ast::Query>,
        /// Name of the logical table (as configured).
        table: String,
    },
}

/// The lambda plan as EXPLAIN shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Explain {
    /// Split, pass-through or local.
    pub class: crate::model::freshness::PlanKind,
    /// Logical table, for split plans.
    pub table: Option<String>,
    /// Batch watermark used.
    pub batch_watermark: Option<String>,
    /// SQL per leg.
    pub legs: Vec<ExplainLeg>,
    /// Legs removed by time pruning.
    pub pruned: Vec<String>,
    /// Why the query is not split (passthrough), or what the merge does (split).
    pub reason: Option<String>,
    /// What the Redis windows do for this query (None when the table has none).
    pub windows: Option<String>,
}

impl Explain {
    /// The plan of a statement tidemark answers itself.
    pub fn local() -> Explain {
        Explain {
            class: crate::model::freshness::PlanKind::Local,
            table: None,
            batch_watermark: None,
            legs: vec![],
            pruned: vec![],
            reason: Some("answered by tidemark without the warehouse".into()),
            windows: None,
        }
    }

    /// The plan of a statement the warehouse runs whole: `sql` as sent, and why.
    pub fn passthrough(sql: &str, reason: String) -> Explain {
        Explain {
            class: crate::model::freshness::PlanKind::Passthrough,
            table: None,
            batch_watermark: None,
            legs: vec![ExplainLeg::new("warehouse", sql.to_string())],
            pruned: vec![],
            reason: Some(reason),
            windows: None,
        }
    }
}

/// One leg in an EXPLAIN.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainLeg {
    /// `batch`, `batch piece i/n`, `speed`, `union` or `warehouse`.
    pub name: String,
    /// SQL sent to the warehouse.
    pub sql: String,
    /// Where the time range the leg reads starts (inclusive), as text of the time column's
    /// type; absent when open (or not a split leg).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Where the time range the leg reads ends (exclusive); absent when open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl ExplainLeg {
    /// A leg with its SQL and no time range.
    pub fn new(name: &str, sql: String) -> ExplainLeg {
        ExplainLeg { name: name.into(), sql, from: None, to: None }
    }
}

/// Names of statements that write or change the database; refused with 25006.
pub fn write_kind(stmt: &Statement) -> Option<String> {
    match stmt {
        Statement::Copy { to: true, target: sqlparser::ast::CopyTarget::Stdout, .. } => None,
        Statement::Query(q) => {
            if let sqlparser::ast::SetExpr::Select(s) = q.body.as_ref() {
                if s.into.is_some() {
                    return Some("SELECT INTO".into());
                }
            }
            if !q.locks.is_empty() {
                return Some("SELECT FOR UPDATE/SHARE".into());
            }
            None
        }
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Discard { .. }
        | Statement::Explain { .. }
        | Statement::Reset(_)
        | Statement::Deallocate { .. }
        | Statement::UNLISTEN { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. } => None,
        other => Some(statement_keyword(other)),
    }
}

/// The first words of a statement, for error messages.
fn statement_keyword(stmt: &Statement) -> String {
    let text = stmt.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    let first = words.first().copied().unwrap_or("statement").to_uppercase();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" | "GRANT" | "REVOKE" => {
            format!("{first} {}", words.get(1).copied().unwrap_or("").to_uppercase())
        }
        _ => first,
    }
}

#[cfg(test)]
mod tests;
