//! Statements the engine answers itself: SET/RESET/SHOW, `current_setting` / `set_config`,
//! transaction blocks and savepoints, DISCARD, cursors, COPY and EXPLAIN. Session parameters
//! behave as in PostgreSQL (see [`Session`]); what the session has not set is the warehouse's.

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio_postgres::types::Type;

use super::{
    empty, explain_lines, text_result, text_rows, Engine, Notice, QueryResult, Scope, Session,
    TxnChange,
};

use crate::error::{Error, Result};
use crate::model::arrow::value_at;
use crate::model::column::Param;
use crate::model::freshness::Freshness;
use crate::model::tag::Tag;
use crate::model::value::Value;
use crate::plan::copy::{CopyOut, ForceQuote};
use crate::plan::local::{check_setting, show_column};
use crate::plan::{Local, SettingCall};

/// Parameters whose value tidemark decides, whatever the warehouse says.
fn fixed_setting(name: &str, session: &Session) -> Option<String> {
    match name {
        "transaction_isolation" => Some(session.isolation()),
        "transaction_read_only" | "default_transaction_read_only" => Some("on".into()),
        _ => None,
    }
}

/// The session's own value of a parameter, if it has one. `application_name` is the
/// client's (empty when it sent none), never the name tidemark's warehouse connections use.
fn session_value(name: &str, session: &Session) -> Option<String> {
    let own = fixed_setting(name, session).or_else(|| session.setting(name).map(str::to_string));
    own.or_else(|| (name == "application_name").then(String::new))
}

fn with_notice(mut r: QueryResult, notice: Option<Notice>) -> QueryResult {
    r.notices.extend(notice);
    r
}

fn with_txn(mut r: QueryResult, txn: TxnChange) -> QueryResult {
    r.txn = txn;
    r
}

impl Engine {
    /// Runs a local statement against the session.
    pub(super) async fn local(
        &self,
        local: Local,
        params: &[Param],
        session: &mut Session,
    ) -> Result<QueryResult> {
        Ok(match local {
            Local::Declare { .. } | Local::Fetch { .. } | Local::Close(_) | Local::Move { .. } => {
                return self.cursor(local, params, session).await
            }
            Local::CopyOut(copy) => return self.copy_out(copy, params, session).await,
            Local::Show(name) => return self.show(&name, session).await,
            Local::Settings(calls) => return self.settings(calls, session).await,
            Local::Explain { inner, analyze } => {
                let e = self.explain(&inner, &session.warehouse_params()).await?;
                let mut lines = explain_lines(&e);
                if analyze {
                    lines.extend(self.analyze(&inner, params, session).await?);
                }
                return text_result("QUERY PLAN", lines, Tag::Explain);
            }
            Local::Set { name, value, scope } => {
                with_notice(empty(Tag::Set), session.set(&name, &value, scope))
            }
            Local::Reset(name) => {
                match name.as_str() {
                    "all" => session.reset_all(),
                    one => session.reset(one),
                }
                empty(Tag::Reset)
            }
            Local::SetTransaction { isolation, session: true } => {
                if let Some(level) = isolation {
                    session.set("default_transaction_isolation", &level, Scope::Session);
                }
                empty(Tag::Set)
            }
            Local::SetTransaction { isolation, session: false } => {
                with_notice(empty(Tag::Set), session.set_transaction_isolation(isolation))
            }
            Local::Discard(what) => {
                if what == "ALL" {
                    session.discard_all()?;
                }
                empty(Tag::Discard(what))
            }
            Local::Noop(tag) => empty(Tag::Other(tag)),
            other => self.transaction(other, session)?,
        })
    }

    /// BEGIN, COMMIT, ROLLBACK and savepoints.
    fn transaction(&self, local: Local, session: &mut Session) -> Result<QueryResult> {
        Ok(match local {
            Local::Begin { isolation, start } => {
                let tag = if start { "START TRANSACTION" } else { "BEGIN" };
                with_txn(
                    with_notice(empty(Tag::Other(tag.into())), session.begin(isolation)),
                    TxnChange::Began,
                )
            }
            Local::Commit => with_txn(
                with_notice(empty(Tag::Other("COMMIT".into())), session.commit()),
                TxnChange::Ended,
            ),
            Local::Rollback => with_txn(
                with_notice(empty(Tag::Other("ROLLBACK".into())), session.rollback()),
                TxnChange::Ended,
            ),
            Local::Savepoint(name) => {
                session.savepoint(&name)?;
                empty(Tag::Other("SAVEPOINT".into()))
            }
            Local::Release(name) => {
                session.release(&name)?;
                empty(Tag::Other("RELEASE".into()))
            }
            Local::RollbackTo(name) => {
                session.rollback_to(&name)?;
                with_txn(empty(Tag::Other("ROLLBACK".into())), TxnChange::Resumed)
            }
            other => {
                return Err(Error::internal(format!("not a transaction statement: {other:?}")))
            }
        })
    }

    /// DECLARE, FETCH and CLOSE of session cursors.
    async fn cursor(
        &self,
        local: Local,
        params: &[Param],
        session: &mut Session,
    ) -> Result<QueryResult> {
        match local {
            Local::Declare { name, hold, query } => {
                let r = self.inner_query(&query, params, session).await?;
                let hold = hold || !session.in_transaction();
                session.cursors.declare(&name, r.schema, r.stream, hold)?;
                Ok(empty(Tag::Other("DECLARE CURSOR".into())))
            }
            Local::Fetch { name, count } => {
                let (schema, batches) = session.cursors.fetch(&name, count).await?;
                let freshness = session.last_freshness.clone().unwrap_or_else(Freshness::local);
                let stream = stream::iter(batches.into_iter().map(Ok)).boxed();
                Ok(QueryResult::new(schema, stream, freshness, Tag::Fetch))
            }
            Local::Close(name) => {
                session.cursors.close(name.as_deref())?;
                Ok(empty(Tag::Other(
                    if name.is_some() { "CLOSE CURSOR" } else { "CLOSE CURSOR ALL" }.into(),
                )))
            }
            Local::Move { name, count } => {
                let (_, batches) = session.cursors.fetch(&name, count).await?;
                let moved: usize = batches.iter().map(|b| b.num_rows()).sum();
                Ok(empty(Tag::Other(format!("MOVE {moved}"))))
            }
            other => Err(Error::internal(format!("not a cursor statement: {other:?}"))),
        }
    }

    /// `COPY (query) TO STDOUT`: the query's answer, with the options the frontend writes it
    /// with. FORCE_QUOTE columns must be columns of the answer (42P10).
    async fn copy_out(
        &self,
        copy: CopyOut,
        params: &[Param],
        session: &Session,
    ) -> Result<QueryResult> {
        let mut r = self.inner_query(&copy.query(), params, session).await?;
        if let ForceQuote::Columns(cols) = &copy.options.force_quote {
            for c in cols {
                if !r.schema.fields().iter().any(|f| f.name() == c) {
                    return Err(Error::data(
                        "42P10",
                        format!("FORCE_QUOTE column \"{c}\" not referenced by COPY"),
                    ));
                }
            }
        }
        r.tag = Tag::Copy;
        r.copy = Some(copy.options);
        Ok(r)
    }

    /// SHOW: tidemark's own parameters, the session's values, else the warehouse's.
    async fn show(&self, name: &str, session: &Session) -> Result<QueryResult> {
        if name == "tidemark.freshness" {
            let text = match &session.last_freshness {
                Some(f) => serde_json::to_string(f).unwrap_or_default(),
                None => "{}".into(),
            };
            return text_result("tidemark.freshness", vec![text], Tag::Show);
        }
        if name == "all" {
            return self.show_all(session).await;
        }
        if let Some(v) = session_value(name, session) {
            return text_result(&show_column(name), vec![v], Tag::Show);
        }
        let wp = session.warehouse_params();
        let reason = "SHOW of a warehouse setting".to_string();
        self.passthrough(&format!("SHOW {name}"), &[], reason, None, &wp).await
    }

    /// SHOW ALL: the warehouse's list with the session's values in place.
    async fn show_all(&self, session: &Session) -> Result<QueryResult> {
        let wp = session.warehouse_params();
        let r = self.passthrough("SHOW ALL", &[], String::new(), None, &wp).await?;
        let batches: Vec<arrow_array::RecordBatch> = r.stream.try_collect().await?;
        let mut rows = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                let cell = |c: usize| value_at(b.column(c), b.schema().field(c), i).to_pg_text();
                let name = cell(0).unwrap_or_default();
                let setting = session_value(&name.to_lowercase(), session).or_else(|| cell(1));
                rows.push(vec![Some(name), setting, cell(2)]);
            }
        }
        let columns = ["name", "setting", "description"].map(String::from);
        text_rows(&columns, rows, Tag::Show)
    }

    /// `SELECT current_setting(...), set_config(...)` answered from the session, asking the
    /// warehouse only for parameters the session has no value for.
    async fn settings(
        &self,
        calls: Vec<(String, SettingCall)>,
        session: &mut Session,
    ) -> Result<QueryResult> {
        let mut row = Vec::with_capacity(calls.len());
        for (_, call) in &calls {
            row.push(match call {
                SettingCall::Get { name, missing_ok } => match session_value(name, session) {
                    Some(v) => Some(v),
                    None => self.warehouse_setting(name, *missing_ok, session).await?,
                },
                SettingCall::Set { name, value, local } => {
                    check_setting(name, value)?;
                    // is_local outside a block lasts for this statement only: nothing to keep
                    if !*local || session.in_transaction() {
                        let scope = if *local { Scope::Local } else { Scope::Session };
                        session.set(name, value, scope);
                    }
                    Some(value.clone())
                }
            });
        }
        let columns: Vec<String> = calls.into_iter().map(|(c, _)| c).collect();
        text_rows(&columns, vec![row], Tag::Select)
    }

    /// `current_setting(name)` on the warehouse, with the session's parameters; an unknown
    /// name is NULL when `missing_ok` (the one-argument form, which Redshift also has).
    async fn warehouse_setting(
        &self,
        name: &str,
        missing_ok: bool,
        session: &Session,
    ) -> Result<Option<String>> {
        let sql = "SELECT current_setting($1)";
        let params = [Param::Text(name.into())];
        let wp = session.warehouse_params();
        let f = match self.warehouse.fetch(sql, &[Type::TEXT], &params, &wp).await {
            Err(e) if missing_ok && e.sqlstate() == "42704" => return Ok(None),
            other => other?,
        };
        Ok(f.rows.into_iter().next().and_then(|r| r.into_iter().next()).and_then(|v| match v {
            Value::Null => None,
            other => other.to_pg_text(),
        }))
    }
}
