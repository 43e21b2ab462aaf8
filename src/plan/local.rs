//! Statements tidemark answers itself (session settings, transaction control, cursors, COPY,
//! EXPLAIN), recognized from the parsed statement as PostgreSQL would read them.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr, Statement,
    TransactionIsolationLevel, TransactionMode, Value,
};

use super::copy::CopyOut;
use crate::error::{Error, Result};

/// Whether a SET lasts for the session or to the end of the transaction (`SET LOCAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `SET` / `SET SESSION`.
    Session,
    /// `SET LOCAL`.
    Local,
}

/// One call in a `SELECT current_setting(...), set_config(...)` answered from the session.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingCall {
    /// `current_setting(name [, missing_ok])`.
    Get {
        /// Parameter name, lower case.
        name: String,
        /// NULL instead of 42704 for an unknown parameter.
        missing_ok: bool,
    },
    /// `set_config(name, value, is_local)`: a SET that returns the value.
    Set {
        /// Parameter name, lower case.
        name: String,
        /// New value.
        value: String,
        /// `is_local`: like SET LOCAL.
        local: bool,
    },
}

/// A statement that never reaches the warehouse.
#[derive(Debug, Clone, PartialEq)]
pub enum Local {
    /// `SET [LOCAL] name = value` (or `SET name TO value`).
    Set {
        /// Parameter name, lower case.
        name: String,
        /// Value text.
        value: String,
        /// SET or SET LOCAL.
        scope: Scope,
    },
    /// `RESET name` / `RESET ALL` (name `all`).
    Reset(String),
    /// `SHOW name`, with multi-word names folded (`TRANSACTION ISOLATION LEVEL` is
    /// `transaction_isolation`, `TIME ZONE` is `timezone`; `all` for SHOW ALL).
    Show(String),
    /// `SELECT current_setting(...), set_config(...)`: output column names and calls.
    Settings(Vec<(String, SettingCall)>),
    /// BEGIN / START TRANSACTION [ISOLATION LEVEL x] [READ ONLY].
    Begin {
        /// Isolation level asked for, lower case.
        isolation: Option<String>,
        /// Spelled START TRANSACTION (its command tag).
        start: bool,
    },
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT.
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `SET TRANSACTION ...` (this block) or `SET SESSION CHARACTERISTICS AS TRANSACTION ...`.
    SetTransaction {
        /// Isolation level asked for, lower case.
        isolation: Option<String>,
        /// SESSION CHARACTERISTICS: the default for later blocks.
        session: bool,
    },
    /// `DISCARD ALL | PLANS | SEQUENCES | TEMP`: the object, upper case (only ALL changes
    /// anything here: tidemark keeps no plans, sequences or temporary tables).
    Discard(String),
    /// EXPLAIN of the lambda plan of the inner statement text; with ANALYZE the statement
    /// also runs and each leg's rows and milliseconds are shown.
    Explain {
        /// The explained statement's text.
        inner: String,
        /// `EXPLAIN ANALYZE` / `EXPLAIN (ANALYZE [true])`.
        analyze: bool,
    },
    /// Accepted and ignored (e.g. `DEALLOCATE`); the command tag.
    Noop(String),
    /// `DECLARE name CURSOR [WITH HOLD] FOR query`.
    Declare {
        /// Cursor name.
        name: String,
        /// WITH HOLD: survives the end of the transaction.
        hold: bool,
        /// The query text.
        query: String,
    },
    /// `FETCH [n] FROM name` (None: ALL).
    Fetch {
        /// Cursor name.
        name: String,
        /// Rows to read.
        count: Option<u64>,
    },
    /// `CLOSE name` / `CLOSE ALL`.
    Close(Option<String>),
    /// `MOVE [FORWARD] [n | ALL] [FROM | IN] name`: skip rows (None: ALL).
    Move {
        /// Cursor name.
        name: String,
        /// Rows to skip.
        count: Option<u64>,
    },
    /// `COPY (query) TO STDOUT` in any of PostgreSQL's formats.
    CopyOut(CopyOut),
}

/// The local statement a parsed statement is, or 0A000 for statements tidemark does not run.
pub fn local_of(stmt: Statement) -> Result<Local> {
    use sqlparser::ast::Set;
    Ok(match stmt {
        Statement::Set(Set::SingleAssignment { scope, variable, values, .. }) => {
            let value = values
                .iter()
                .map(|v| v.to_string().trim_matches('\'').to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let scope = match scope {
                Some(sqlparser::ast::ContextModifier::Local) => Scope::Local,
                _ => Scope::Session,
            };
            set_local(variable.to_string().to_lowercase(), value, scope)?
        }
        Statement::Set(Set::SetTimeZone { local, value }) => {
            let scope = if local { Scope::Local } else { Scope::Session };
            let value = value.to_string().trim_matches('\'').to_string();
            if value.eq_ignore_ascii_case("local") {
                Local::Reset("timezone".into())
            } else {
                set_local("timezone".into(), value, scope)?
            }
        }
        Statement::Set(Set::SetNames { charset_name, .. }) => {
            set_local("client_encoding".into(), charset_name.value, Scope::Session)?
        }
        Statement::Set(Set::SetTransaction { modes, session, .. }) => {
            Local::SetTransaction { isolation: transaction_modes(&modes)?, session }
        }
        Statement::Set(other) => return Err(Error::NotSupported(format!("{other}"))),
        Statement::Reset(r) => {
            let name = r.to_string().trim_start_matches("RESET").trim().to_lowercase();
            Local::Reset(folded_name(&name).unwrap_or(name))
        }
        Statement::ShowVariable { variable } => Local::Show(show_name(&variable)),
        Statement::StartTransaction { modes, begin, .. } => {
            Local::Begin { isolation: transaction_modes(&modes)?, start: !begin }
        }
        Statement::Commit { chain: true, .. } | Statement::Rollback { chain: true, .. } => {
            return Err(Error::NotSupported("COMMIT AND CHAIN / ROLLBACK AND CHAIN".into()))
        }
        Statement::Commit { .. } => Local::Commit,
        Statement::Rollback { savepoint: Some(name), .. } => Local::RollbackTo(name.value),
        Statement::Rollback { .. } => Local::Rollback,
        Statement::Savepoint { name } => Local::Savepoint(name.value),
        Statement::ReleaseSavepoint { name } => Local::Release(name.value),
        Statement::Discard { object_type } => Local::Discard(object_type.to_string()),
        // Protocol-level prepared statements live in the frontend and close with the
        // connection; SQL DEALLOCATE (psycopg sends it after a failed transaction) is accepted.
        Statement::Deallocate { name, .. } if name.value.eq_ignore_ascii_case("all") => {
            Local::Noop("DEALLOCATE ALL".into())
        }
        Statement::Deallocate { .. } => Local::Noop("DEALLOCATE".into()),
        // nothing is ever listened to (LISTEN is refused), so UNLISTEN (asyncpg's pool reset
        // sends `UNLISTEN *`) has nothing to do
        Statement::UNLISTEN { .. } => Local::Noop("UNLISTEN".into()),
        Statement::Explain { statement, analyze, options, .. } => Local::Explain {
            inner: statement.to_string(),
            analyze: analyze || options.iter().flatten().any(is_analyze_on),
        },
        Statement::Declare { stmts, .. } => declare_of(stmts)?,
        Statement::Fetch { name, direction, .. } => {
            Local::Fetch { name: name.value, count: fetch_count(&direction)? }
        }
        Statement::Close { cursor } => Local::Close(match cursor {
            sqlparser::ast::CloseCursor::All => None,
            sqlparser::ast::CloseCursor::Specific { name } => Some(name.value),
        }),
        other => {
            return Err(Error::NotSupported(format!(
                "statement {}",
                other.to_string().split_whitespace().next().unwrap_or("")
            )))
        }
    })
}

/// The parameter a multi-word spelling names (`TIME ZONE` is `timezone`).
fn folded_name(words: &str) -> Option<String> {
    Some(
        match words {
            "transaction isolation level" => "transaction_isolation",
            "time zone" => "timezone",
            "session authorization" => "session_authorization",
            _ => return None,
        }
        .into(),
    )
}

/// The parameter a SHOW names, with PostgreSQL's multi-word spellings folded.
fn show_name(variable: &[sqlparser::ast::Ident]) -> String {
    let words: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
    folded_name(&words.join(" ")).unwrap_or_else(|| words.join("."))
}

/// The column name PostgreSQL gives SHOW's answer for a parameter (its canonical spelling).
pub fn show_column(name: &str) -> String {
    match name {
        "timezone" => "TimeZone".into(),
        "datestyle" => "DateStyle".into(),
        "intervalstyle" => "IntervalStyle".into(),
        other => other.into(),
    }
}

/// The isolation level among transaction modes; READ WRITE is refused (25006), as a hot
/// standby refuses it.
fn transaction_modes(modes: &[TransactionMode]) -> Result<Option<String>> {
    let mut isolation = None;
    for m in modes {
        match m {
            TransactionMode::AccessMode(sqlparser::ast::TransactionAccessMode::ReadWrite) => {
                return Err(Error::ReadOnly("a READ WRITE transaction".into()))
            }
            TransactionMode::AccessMode(_) => {}
            TransactionMode::IsolationLevel(level) => {
                isolation = Some(
                    match level {
                        TransactionIsolationLevel::ReadUncommitted => "read uncommitted",
                        TransactionIsolationLevel::ReadCommitted => "read committed",
                        TransactionIsolationLevel::RepeatableRead => "repeatable read",
                        TransactionIsolationLevel::Serializable => "serializable",
                        TransactionIsolationLevel::Snapshot => "repeatable read",
                    }
                    .to_string(),
                )
            }
        }
    }
    Ok(isolation)
}

/// SET of one parameter: `DEFAULT` resets it; client_encoding must stay UTF8; the read-only
/// parameters may not be turned off (25006).
fn set_local(name: String, value: String, scope: Scope) -> Result<Local> {
    if value.eq_ignore_ascii_case("default") {
        return Ok(Local::Reset(name));
    }
    check_setting(&name, &value)?;
    Ok(Local::Set { name, value, scope })
}

/// Refuses values tidemark cannot honour: a client encoding other than UTF8 (0A000) and
/// read-write transactions (25006).
pub fn check_setting(name: &str, value: &str) -> Result<()> {
    let v = value.trim().trim_matches('\'').to_ascii_lowercase();
    if name == "client_encoding" && !matches!(v.as_str(), "utf8" | "utf-8" | "unicode") {
        return Err(Error::NotSupported(format!(
            "client_encoding {value}: tidemark speaks UTF8 only"
        )));
    }
    if matches!(name, "transaction_read_only" | "default_transaction_read_only")
        && matches!(v.as_str(), "off" | "false" | "0" | "no")
    {
        return Err(Error::ReadOnly(format!("SET {name} = {value}")));
    }
    Ok(())
}

/// `SELECT current_setting(...) [, set_config(...)]` with literal arguments and nothing
/// else: the calls with their output column names.
pub fn setting_calls(query: &sqlparser::ast::Query) -> Option<Vec<(String, SettingCall)>> {
    if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() {
        return None;
    }
    let SetExpr::Select(s) = query.body.as_ref() else { return None };
    if !s.from.is_empty() || s.selection.is_some() || s.having.is_some() || s.distinct.is_some() {
        return None;
    }
    s.projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => {
                let call = setting_call(e)?;
                let column = match &call {
                    SettingCall::Get { .. } => "current_setting",
                    SettingCall::Set { .. } => "set_config",
                };
                Some((column.to_string(), call))
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                Some((alias.value.clone(), setting_call(expr)?))
            }
            _ => None,
        })
        .collect()
}

fn setting_call(e: &Expr) -> Option<SettingCall> {
    let Expr::Function(f) = e else { return None };
    let parts: Vec<String> = f.name.0.iter().map(|p| p.to_string().to_lowercase()).collect();
    let name = match parts.as_slice() {
        [n] => n.as_str(),
        [schema, n] if schema == "pg_catalog" => n.as_str(),
        _ => return None,
    };
    if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else { return None };
    let args: Vec<&Value> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => Some(&v.value),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let text = |v: &Value| match v {
        Value::SingleQuotedString(s) => Some(s.clone()),
        _ => None,
    };
    let flag = |v: &Value| match v {
        Value::Boolean(b) => Some(*b),
        _ => None,
    };
    match (name, args.as_slice()) {
        ("current_setting", [n]) => {
            Some(SettingCall::Get { name: text(n)?.to_lowercase(), missing_ok: false })
        }
        ("current_setting", [n, ok]) => {
            Some(SettingCall::Get { name: text(n)?.to_lowercase(), missing_ok: flag(ok)? })
        }
        ("set_config", [n, v, l]) => Some(SettingCall::Set {
            name: text(n)?.to_lowercase(),
            value: text(v)?,
            local: flag(l)?,
        }),
        _ => None,
    }
}

/// `RESET TIME ZONE`, `RESET SESSION AUTHORIZATION`, `RESET TRANSACTION ISOLATION LEVEL`
/// (spellings the SQL parser does not know) as the RESET of the parameter they name.
pub fn parse_reset(sql: &str) -> Option<Local> {
    if !super::copy::first_word(sql).eq_ignore_ascii_case("reset") {
        return None;
    }
    let text = sql.trim().trim_end_matches(';').to_lowercase();
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.split_first() {
        Some((&"reset", rest)) if rest.len() > 1 => folded_name(&rest.join(" ")).map(Local::Reset),
        _ => None,
    }
}

/// `MOVE [NEXT | FORWARD [n | ALL] | n | ALL] [FROM | IN] name` (forward only, as FETCH):
/// the cursor name and the rows to skip (None: ALL). None when the text is not a MOVE.
pub fn parse_move(sql: &str) -> Option<Result<(String, Option<u64>)>> {
    if !super::copy::first_word(sql).eq_ignore_ascii_case("move") {
        return None;
    }
    let text = sql.trim().trim_end_matches(';');
    let mut words: Vec<&str> = text.split_whitespace().collect();
    if !words.first()?.eq_ignore_ascii_case("move") {
        return None;
    }
    if words.len() < 2 {
        return Some(Err(Error::Syntax("MOVE needs a cursor name".into())));
    }
    let name = words.pop().map(|n| n.trim_matches('"').to_string()).unwrap_or_default();
    let upper: Vec<String> = words[1..].iter().map(|w| w.to_ascii_uppercase()).collect();
    let mut rest: Vec<&str> = upper.iter().map(String::as_str).collect();
    if matches!(rest.last(), Some(&"FROM" | &"IN")) {
        rest.pop();
    }
    let count = match rest.as_slice() {
        [] | ["NEXT"] | ["FORWARD"] => Some(1),
        ["ALL"] | ["FORWARD", "ALL"] => None,
        [n] | ["FORWARD", n] => match n.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Some(Err(Error::NotSupported(
                    "only forward MOVE on NO SCROLL cursors".into(),
                )))
            }
        },
        _ => {
            return Some(Err(Error::NotSupported("only forward MOVE on NO SCROLL cursors".into())))
        }
    };
    Some(Ok((name, count)))
}

fn declare_of(stmts: Vec<sqlparser::ast::Declare>) -> Result<Local> {
    let [d]: [sqlparser::ast::Declare; 1] =
        stmts.try_into().map_err(|_| Error::NotSupported("DECLARE of several cursors".into()))?;
    let query =
        d.for_query.ok_or_else(|| Error::NotSupported("DECLARE without a cursor query".into()))?;
    let name = d
        .names
        .first()
        .map(|n| n.value.clone())
        .ok_or_else(|| Error::Syntax("cursor name".into()))?;
    Ok(Local::Declare { name, hold: d.hold == Some(true), query: query.to_string() })
}

fn fetch_count(direction: &sqlparser::ast::FetchDirection) -> Result<Option<u64>> {
    use sqlparser::ast::FetchDirection as D;
    let num = |v: &sqlparser::ast::ValueWithSpan| {
        v.to_string()
            .parse::<u64>()
            .map_err(|_| Error::NotSupported("FETCH count must be a positive number".into()))
    };
    Ok(match direction {
        D::Next => Some(1),
        D::Count { limit } => Some(num(limit)?),
        D::Forward { limit: Some(l) } => Some(num(l)?),
        D::Forward { limit: None } => Some(1),
        D::All | D::ForwardAll => None,
        _ => return Err(Error::NotSupported("only forward FETCH on NO SCROLL cursors".into())),
    })
}

/// Whether an EXPLAIN option is `ANALYZE` switched on (`ANALYZE`, `ANALYZE true`, `ANALYZE on`).
fn is_analyze_on(o: &sqlparser::ast::UtilityOption) -> bool {
    if !o.name.value.eq_ignore_ascii_case("analyze") {
        return false;
    }
    match &o.arg {
        None => true,
        Some(arg) => {
            let v = arg.to_string().to_ascii_lowercase();
            matches!(v.trim_matches('\''), "true" | "on" | "1" | "yes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(sql: &str) -> Result<Local> {
        let stmt = super::super::parse(crate::config::Dialect::Postgres, sql)?.remove(0);
        if let Statement::Query(q) = &stmt {
            return setting_calls(q).map(Local::Settings).ok_or_else(|| Error::internal("query"));
        }
        local_of(stmt)
    }

    #[test]
    fn session_statements() {
        assert_eq!(
            local("SHOW TRANSACTION ISOLATION LEVEL").unwrap(),
            Local::Show("transaction_isolation".into())
        );
        assert_eq!(local("SHOW TIME ZONE").unwrap(), Local::Show("timezone".into()));
        assert_eq!(local("SHOW ALL").unwrap(), Local::Show("all".into()));
        assert_eq!(
            local("SHOW tidemark.freshness").unwrap(),
            Local::Show("tidemark.freshness".into())
        );
        assert_eq!(
            local("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY").unwrap(),
            Local::Begin { isolation: Some("serializable".into()), start: false }
        );
        assert_eq!(local("START TRANSACTION READ WRITE").unwrap_err().sqlstate(), "25006");
        assert_eq!(local("ROLLBACK TO p").unwrap(), Local::RollbackTo("p".into()));
        assert_eq!(local("RELEASE SAVEPOINT p").unwrap(), Local::Release("p".into()));
        assert_eq!(
            local("SET LOCAL search_path = a").unwrap(),
            Local::Set { name: "search_path".into(), value: "a".into(), scope: Scope::Local }
        );
        assert_eq!(
            local("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY")
                .unwrap(),
            Local::SetTransaction { isolation: Some("read committed".into()), session: true }
        );
        assert_eq!(local("DISCARD ALL").unwrap(), Local::Discard("ALL".into()));
        assert_eq!(
            local("SELECT current_setting('TimeZone') AS tz, pg_catalog.set_config('a.b', 'c', false)")
                .unwrap(),
            Local::Settings(vec![
                ("tz".into(), SettingCall::Get { name: "timezone".into(), missing_ok: false }),
                (
                    "set_config".into(),
                    SettingCall::Set { name: "a.b".into(), value: "c".into(), local: false }
                ),
            ])
        );
        assert!(local("SELECT current_setting(x) FROM t").is_err());
        assert_eq!(
            parse_move("MOVE FORWARD 100 __asyncpg_portal_4__").unwrap().unwrap(),
            ("__asyncpg_portal_4__".into(), Some(100))
        );
        assert_eq!(parse_move("move all in \"c\";").unwrap().unwrap(), ("c".into(), None));
        assert_eq!(parse_move("MOVE c").unwrap().unwrap(), ("c".into(), Some(1)));
        assert_eq!(parse_move("MOVE BACKWARD 2 FROM c").unwrap().unwrap_err().sqlstate(), "0A000");
        assert!(parse_move("SELECT 1").is_none());
        assert_eq!(parse_reset("RESET TIME ZONE;"), Some(Local::Reset("timezone".into())));
        assert_eq!(parse_reset("RESET timezone"), None);
    }
}
