//! Simple and extended query handlers: decode the message, call the engine, encode rows.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::{select, Either};
use futures::{stream, Sink, SinkExt, Stream, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribePortalResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::store::{Entry, MemPortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult, SEVERITY_ERROR, SEVERITY_NOTICE};
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::extendedquery::{Describe, Execute, TARGET_TYPE_BYTE_PORTAL};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, NoticeResponse, TransactionStatus,
};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;

use super::copy::CopyWriter;
use super::encode::{
    decode_params, encode_batch, fields_for_columns, fields_for_schema, row_description_from_wire,
};
use super::startup::REPORTED;
use super::statements::{is_blank, split_statements};
use crate::engine::{Engine, QueryResult, Session, TxnChange};
use crate::error::Error;
use crate::model::column::{Column, Param};
use crate::model::freshness::PlanKind;
use crate::model::reply::Reply;
use crate::model::tag::Tag as Answered;

/// A client's engine session, kept in the connection's extensions, with the values of the
/// reported parameters the client was last told (ParameterStatus).
pub struct SessionCell(pub tokio::sync::Mutex<Session>, std::sync::Mutex<Vec<Option<String>>>);

impl Default for SessionCell {
    fn default() -> Self {
        SessionCell(tokio::sync::Mutex::new(Session::new("pgwire")), Default::default())
    }
}

fn session_of<C: ClientInfo>(client: &C, engine: &Engine) -> Arc<SessionCell> {
    client.session_extensions().get_or_insert_with(|| {
        let meta = client.metadata();
        let user = meta.get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
        let mut session = engine.session_for("pgwire", &user);
        session.defaults = super::startup::startup_defaults(meta);
        let told = REPORTED.iter().map(|(k, _)| session.setting(k).map(str::to_string)).collect();
        SessionCell(tokio::sync::Mutex::new(session), std::sync::Mutex::new(told))
    })
}

/// True for `ROLLBACK [WORK | TRANSACTION] TO ...` (the only statement that makes a failed
/// transaction block usable again).
fn is_rollback_to(sql: &str) -> bool {
    let words: Vec<String> =
        sql.split_whitespace().take(3).map(|w| w.to_ascii_uppercase()).collect();
    match words.as_slice() {
        [r, to, ..] if r == "ROLLBACK" && to == "TO" => true,
        [r, w, to] if r == "ROLLBACK" && (w == "WORK" || w == "TRANSACTION") && to == "TO" => true,
        _ => false,
    }
}

/// The transaction status after a statement's response (ROLLBACK TO resumes a failed block).
fn status_after(before: TransactionStatus, resp: &Response) -> TransactionStatus {
    match resp {
        Response::TransactionStart(_) => TransactionStatus::Transaction,
        Response::TransactionEnd(_) => TransactionStatus::Idle,
        _ => before,
    }
}

/// Maps the one error type to an ErrorResponse.
pub fn pg_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        SEVERITY_ERROR.to_owned(),
        e.sqlstate().to_owned(),
        e.to_string(),
    )))
}

/// A parsed (described) statement of the extended protocol.
#[derive(Clone, Debug)]
pub struct Prepared {
    sql: String,
    params: Vec<Type>,
    columns: Vec<Column>,
}

/// Describes statements through the engine when the client sends Parse.
pub struct Parser {
    engine: Arc<Engine>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if is_blank(sql) {
            return Ok(None);
        }
        let (wp, user) = {
            let s = session_of(client, &self.engine);
            let s = s.0.lock().await;
            (s.warehouse_params(), s.user.clone())
        };
        let d = self.engine.describe_statement(sql, &wp, &user).await.map_err(pg_error)?;
        let params = d
            .params
            .iter()
            .enumerate()
            .map(|(i, t)| types.get(i).cloned().flatten().unwrap_or_else(|| t.clone()))
            .collect();
        Ok(Some(Prepared { sql: sql.to_string(), params, columns: d.columns }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(fields_for_columns(&stmt.columns, format))
    }
}

/// The query handler shared by both protocols.
pub struct Gateway {
    engine: Arc<Engine>,
    parser: Arc<Parser>,
    idle: Arc<super::idle::Registry>,
    /// The server's values of the reported parameters (what a RESET shows when the session
    /// has no value of its own), by lower-case name.
    announced: std::collections::HashMap<&'static str, String>,
}

/// One statement to run and how its answer is to be sent.
struct Stmt<'a> {
    sql: &'a str,
    params: &'a [Param],
    /// Result formats (extended protocol); None: text.
    fmt: Option<&'a Format>,
    /// Send RowDescription first (simple protocol).
    describe: bool,
    /// Rows per Execute (0: all).
    max_rows: usize,
    /// The transaction status before the statement.
    status: TransactionStatus,
}

impl Gateway {
    /// A gateway over the engine; `idle` learns when each connection runs statements;
    /// `announced` holds the server's values of the reported parameters.
    pub fn new(
        engine: Arc<Engine>,
        idle: Arc<super::idle::Registry>,
        announced: std::collections::HashMap<&'static str, String>,
    ) -> Gateway {
        Gateway { parser: Arc::new(Parser { engine: engine.clone() }), engine, idle, announced }
    }

    /// Runs one statement; rows are streamed to the client directly unless `max_rows > 0`
    /// (then the portal keeps the stream and pgwire resumes it on each Execute).
    async fn run<C>(&self, client: &mut C, stmt: Stmt<'_>) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Stmt { sql, params, fmt, describe, max_rows, status } = stmt;
        let upper = sql.trim_start().get(..8).unwrap_or(sql).to_ascii_uppercase();
        let ends = ["COMMIT", "ROLLBACK", "END", "ABORT"].iter().any(|k| upper.starts_with(k));
        let failed = status == TransactionStatus::Error;
        if failed && !ends {
            return Err(pg_error(Error::Warehouse {
                sqlstate: "25P02".into(),
                message: "current transaction is aborted, commands ignored until end of transaction block".into(),
            }));
        }
        // COMMIT of a failed block rolls it back (and says ROLLBACK), as in PostgreSQL
        let sql = match failed && (upper.starts_with("COMMIT") || upper.starts_with("END")) {
            true => "ROLLBACK",
            false => sql,
        };
        let cell = session_of(client, &self.engine);
        let mut result = {
            let mut session = cell.0.lock().await;
            self.engine.execute(sql, params, &mut session).await.map_err(pg_error)?
        };
        self.send_notices(client, &result.notices, result.freshness.degraded).await?;
        let tag = Tag::new(&result.tag.to_string());
        match result.txn {
            TxnChange::Began => return Ok(Response::TransactionStart(tag)),
            TxnChange::Resumed => {
                self.report_parameters(client, &cell).await?;
                return Ok(Response::TransactionStart(tag));
            }
            TxnChange::Ended => {
                self.report_parameters(client, &cell).await?;
                return Ok(Response::TransactionEnd(tag));
            }
            TxnChange::None => {}
        }
        let settings_call =
            result.tag == Answered::Select && result.freshness.plan == PlanKind::Local;
        if settings_call || result.tag.changes_settings() {
            self.report_parameters(client, &cell).await?;
        }
        if let Some(opts) = result.copy.take() {
            return self.copy_out(client, result, opts).await;
        }
        if result.schema.fields().is_empty() && result.tag != Answered::Select {
            return Ok(Response::Execution(Tag::new(&result.tag.to_string())));
        }
        self.send_rows(client, result, fmt, describe, max_rows).await
    }

    async fn send_rows<C>(
        &self,
        client: &mut C,
        result: QueryResult,
        fmt: Option<&Format>,
        describe: bool,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = Arc::new(fields_for_schema(&result.schema, fmt));
        let tag = match &result.tag {
            t @ (Answered::Show | Answered::Explain | Answered::Fetch) => t.to_string(),
            _ => "SELECT".to_string(),
        };
        let rows = data_rows(result.stream, fields.clone());
        if max_rows > 0 {
            let mut qr = QueryResponse::new(fields, rows);
            qr.set_command_tag(&tag);
            return Ok(Response::Query(qr));
        }
        if describe {
            let desc = RowDescription::new(fields.iter().map(FieldDescription::from).collect());
            client.feed(PgWireBackendMessage::RowDescription(desc)).await?;
        }
        let mut rows = std::pin::pin!(rows);
        let mut n = 0usize;
        while let Some(row) = rows.next().await {
            client.feed(PgWireBackendMessage::DataRow(row?)).await?;
            n += 1;
        }
        Ok(Response::Execution(if tag == "SELECT" {
            Tag::new("SELECT").with_rows(n)
        } else {
            Tag::new(&tag)
        }))
    }

    /// The engine's notices and, for a degraded answer, a NOTICE saying so.
    async fn send_notices<C>(
        &self,
        client: &mut C,
        notices: &[crate::engine::Notice],
        degraded: bool,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let degraded_note =
            "answer is degraded: a layer was unavailable; see SHOW tidemark.freshness";
        let degraded = degraded.then_some((SEVERITY_NOTICE, "01000", degraded_note));
        let notices = notices.iter().map(|n| (n.severity, n.sqlstate, n.message.as_str()));
        for (severity, code, message) in notices.chain(degraded) {
            let info = ErrorInfo::new(severity.to_owned(), code.to_owned(), message.to_owned());
            client.feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(info))).await?;
        }
        Ok(())
    }

    /// Streams a COPY TO STDOUT: CopyOutResponse, CopyData messages as rows arrive, CopyDone;
    /// the CommandComplete says `COPY n`. An error mid-way ends the copy with ErrorResponse.
    async fn copy_out<C>(
        &self,
        client: &mut C,
        result: QueryResult,
        opts: crate::engine::CopyOptions,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut writer = CopyWriter::new(&result.schema, opts);
        let n = result.schema.fields().len();
        let code = writer.format_code();
        let formats = vec![i16::from(code); n];
        let start = CopyOutResponse::new(code, n as i16, formats);
        client.feed(PgWireBackendMessage::CopyOutResponse(start)).await?;
        let data = |b: bytes::Bytes| PgWireBackendMessage::CopyData(CopyData::new(b));
        if let Some(h) = writer.header() {
            client.feed(data(h)).await?;
        }
        let mut rows = 0usize;
        let mut batches = result.stream;
        while let Some(batch) = batches.next().await {
            for row in writer.rows(&batch.map_err(pg_error)?).map_err(pg_error)? {
                client.feed(data(row)).await?;
                rows += 1;
            }
        }
        if let Some(t) = writer.trailer() {
            client.feed(data(t)).await?;
        }
        client.feed(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
        Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
    }

    /// The pass-through fast path ([`Engine::forward`]): the warehouse's messages are handed
    /// on as they arrive. None when the statement does not take it.
    async fn forward<C>(&self, client: &mut C, sql: &str) -> PgWireResult<Option<Response>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() != TransactionStatus::Idle {
            return Ok(None);
        }
        let cell = session_of(client, &self.engine);
        let forwarded = self.engine.forward(sql, &mut *cell.0.lock().await).await;
        let Some(forwarded) = forwarded else { return Ok(None) };
        let mut answer = forwarded.map_err(pg_error)?;
        let mut tag = None;
        while let Some(reply) = answer.next().await.map_err(pg_error)? {
            let msg = match reply {
                Reply::Fields(body) => PgWireBackendMessage::RowDescription(
                    row_description_from_wire(body).map_err(pg_error)?,
                ),
                Reply::Row(n, data) => PgWireBackendMessage::DataRow(DataRow::new(data, n)),
                Reply::Done(t) => {
                    tag = Some(t);
                    continue;
                }
                Reply::Empty => continue,
            };
            client.feed(msg).await?;
        }
        Ok(Some(match tag {
            Some(t) => Response::Execution(Tag::new(&t)),
            None => Response::EmptyQuery,
        }))
    }

    /// Sends ParameterStatus for each reported parameter whose value changed since the
    /// client was last told (after SET, RESET, DISCARD ALL, ROLLBACK, set_config).
    async fn report_parameters<C>(&self, client: &mut C, cell: &SessionCell) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let now: Vec<Option<String>> = {
            let session = cell.0.lock().await;
            REPORTED.iter().map(|(k, _)| session.setting(k).map(str::to_string)).collect()
        };
        let changed: Vec<(String, String)> = {
            let mut told = cell.1.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::new();
            for (i, (key, name)) in REPORTED.iter().enumerate() {
                let value = now[i].clone();
                if told.get(i) != Some(&value) {
                    let shown = value.clone().or_else(|| self.announced.get(*key).cloned());
                    out.extend(shown.map(|v| (name.to_string(), v)));
                    if let Some(t) = told.get_mut(i) {
                        *t = value;
                    }
                }
            }
            out
        };
        for (name, value) in changed {
            let status = ParameterStatus::new(name, value);
            client.feed(PgWireBackendMessage::ParameterStatus(status)).await?;
        }
        Ok(())
    }
}

fn data_rows(
    batches: futures::stream::BoxStream<'static, crate::error::Result<arrow_array::RecordBatch>>,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    batches
        .map(move |b| match b.and_then(|b| encode_batch(&b, &fields)) {
            Ok(rows) => stream::iter(rows.into_iter().map(Ok)).left_stream(),
            Err(e) => stream::once(async move { Err(pg_error(e)) }).right_stream(),
        })
        .flatten()
}

/// The CommandComplete message for a finished statement's response.
fn completion(resp: Response) -> Option<PgWireBackendMessage> {
    match resp {
        Response::Execution(tag)
        | Response::TransactionStart(tag)
        | Response::TransactionEnd(tag) => {
            Some(PgWireBackendMessage::CommandComplete(CommandComplete::from(tag)))
        }
        _ => None,
    }
}

#[async_trait]
impl SimpleQueryHandler for Gateway {
    /// A simple query, with the transaction status of ReadyForQuery computed statement by
    /// statement (pgwire's default would only look at the last statement of the string).
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let cancel = match client.session_extensions().get::<Arc<ConnectionHandle>>() {
            Some(handle) => Some(handle.start_query().await),
            None => None,
        };
        let status = {
            let run = Box::pin(self.simple(client, &query.query));
            match cancel {
                Some(cancel) => match select(run, cancel).await {
                    Either::Left((r, _)) => r,
                    Either::Right(_) => Err(PgWireError::QueryCanceled),
                },
                None => run.await,
            }
        }?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        pgwire::api::query::send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // on_query above runs simple queries; this path is only kept for the trait
        self.simple(client, query).await.map(|_| vec![])
    }
}

impl Gateway {
    /// Runs every statement of a simple query, sending each one's messages, and returns the
    /// transaction status after the last. On an error the client's status is the one after
    /// the statements that ran, so pgwire's error path reports the right ReadyForQuery.
    async fn simple<C>(&self, client: &mut C, query: &str) -> PgWireResult<TransactionStatus>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.idle.busy(&client.socket_addr());
        let mut status = client.transaction_status();
        let stmts = split_statements(query);
        if stmts.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new()))
                .await?;
            return Ok(status);
        }
        if let [sql] = stmts[..] {
            if let Some(resp) = self.forward(client, sql).await? {
                self.complete(client, resp).await?;
                return Ok(status);
            }
        }
        for sql in stmts {
            if let Some(moved) = self.move_portal(client, sql).await? {
                client.feed(PgWireBackendMessage::CommandComplete(Tag::new(&moved).into())).await?;
                continue;
            }
            let stmt = Stmt { sql, params: &[], fmt: None, describe: true, max_rows: 0, status };
            match self.run(client, stmt).await {
                Ok(resp) => {
                    status = status_after(status, &resp);
                    self.complete(client, resp).await?;
                }
                Err(e) => {
                    client.set_transaction_status(status);
                    return Err(e);
                }
            }
        }
        Ok(status)
    }

    /// `MOVE n name` where `name` is a protocol portal (as PostgreSQL, tidemark lets SQL reach
    /// portals by name: asyncpg's `Cursor.forward` sends it): skips its rows and returns the
    /// tag. None when the statement is not a MOVE of a portal (SQL cursors are the engine's).
    async fn move_portal<C>(&self, client: &mut C, sql: &str) -> PgWireResult<Option<String>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let Some(Ok((name, count))) = crate::engine::parse_move(sql) else { return Ok(None) };
        // the simple-query handler sees the store without its statement type: the extended
        // handler's store holds [`Prepared`] statements
        let store = client.portal_store().as_any().downcast_ref::<MemPortalStore<Prepared>>();
        let Some(Entry::Value(portal)) = store.and_then(|s| s.get_portal(&name)) else {
            return Ok(None);
        };
        let mut moved = 0usize;
        loop {
            // fetch(0) reads every remaining row
            let chunk = match count {
                None => 0,
                Some(c) if c as usize <= moved => break,
                Some(c) => (c as usize - moved).min(4096),
            };
            let mut fetched = portal.fetch(chunk).await?;
            while let Some(row) = fetched.response.data_rows().next().await {
                row?;
                moved += 1;
            }
            if !fetched.suspended {
                break;
            }
        }
        Ok(Some(format!("MOVE {moved}")))
    }

    /// The closing message of one statement of a simple query.
    async fn complete<C>(&self, client: &mut C, resp: Response) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match resp {
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new()))
                    .await?
            }
            Response::Query(results) => {
                pgwire::api::query::send_query_response(client, results, true).await?
            }
            other => {
                if let Some(msg) = completion(other) {
                    client.feed(msg).await?;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Gateway {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// Describe; a portal name that is a SQL cursor (`DECLARE c CURSOR FOR ...`, which
    /// psycopg's server-side cursors describe) answers with the cursor's columns.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_PORTAL {
            let name = message.name.as_deref().unwrap_or("");
            if client.portal_store().get_portal(name).is_none() {
                let cell = session_of(client, &self.engine);
                let schema = cell.0.lock().await.cursors.schema(name).ok();
                if let Some(schema) = schema {
                    let resp = DescribePortalResponse::new(fields_for_schema(&schema, None));
                    return pgwire::api::query::send_describe_response(client, &resp).await;
                }
            }
        }
        self._on_describe(client, message).await
    }

    /// Execute; a ROLLBACK TO in a failed block starts from "in transaction", so that pgwire
    /// reports the block usable again when it succeeds (and failed again when it does not).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error {
            let name = message.name.as_deref().unwrap_or("");
            if let Some(Entry::Value(portal)) = client.portal_store().get_portal(name) {
                if is_rollback_to(&portal.statement.statement.sql) {
                    client.set_transaction_status(TransactionStatus::Transaction);
                }
            }
        }
        self._on_execute(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.idle.busy(&client.socket_addr());
        let stmt = &portal.statement.statement;
        let params = decode_params(&portal.parameters, &portal.parameter_format, &stmt.params)
            .map_err(pg_error)?;
        let status = client.transaction_status();
        let fmt = Some(&portal.result_column_format);
        let run = Stmt { sql: &stmt.sql, params: &params, fmt, describe: false, max_rows, status };
        self.run(client, run).await
    }
}
