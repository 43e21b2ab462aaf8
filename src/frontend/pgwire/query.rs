//! Simple and extended query handlers: decode the message, call the engine, encode rows.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt, Stream, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult, SEVERITY_ERROR, SEVERITY_NOTICE};
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::{CommandComplete, NoticeResponse, TransactionStatus};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;

use super::encode::{
    decode_params, encode_batch, fields_for_columns, fields_for_schema, row_description_from_wire,
};
use super::statements::{is_blank, split_statements};
use crate::engine::{Engine, QueryResult, Session};
use crate::error::Error;
use crate::exec::raw::Reply;
use crate::exec::warehouse::{Column, Param};

/// A client's engine session, kept in the connection's extensions.
pub struct SessionCell(pub tokio::sync::Mutex<Session>);

impl Default for SessionCell {
    fn default() -> Self {
        SessionCell(tokio::sync::Mutex::new(Session::new("pgwire")))
    }
}

fn session_of<C: ClientInfo>(client: &C, engine: &Engine) -> Arc<SessionCell> {
    client.session_extensions().get_or_insert_with(|| {
        let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
        SessionCell(tokio::sync::Mutex::new(engine.session_for("pgwire", &user)))
    })
}

/// Maps the one error type to an ErrorResponse.
pub fn pg_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        SEVERITY_ERROR.to_owned(),
        e.sqlstate().to_owned(),
        e.to_string(),
    )))
}

/// Parameters PostgreSQL reports with ParameterStatus when they change.
const REPORTED: &[(&str, &str)] = &[
    ("application_name", "application_name"),
    ("datestyle", "DateStyle"),
    ("intervalstyle", "IntervalStyle"),
    ("timezone", "TimeZone"),
    ("client_encoding", "client_encoding"),
];

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
}

impl Gateway {
    /// A gateway over the engine; `idle` learns when each connection runs statements.
    pub fn new(engine: Arc<Engine>, idle: Arc<super::idle::Registry>) -> Gateway {
        Gateway { parser: Arc::new(Parser { engine: engine.clone() }), engine, idle }
    }

    /// Runs one statement; rows are streamed to the client directly unless `max_rows > 0`
    /// (then the portal keeps the stream and pgwire resumes it on each Execute).
    async fn run<C>(
        &self,
        client: &mut C,
        sql: &str,
        params: &[Param],
        fmt: Option<&Format>,
        describe: bool,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let status = client.transaction_status();
        let upper = sql.trim_start().get(..8).unwrap_or(sql).to_ascii_uppercase();
        let ends = ["COMMIT", "ROLLBACK", "END", "ABORT"].iter().any(|k| upper.starts_with(k));
        if status == TransactionStatus::Error && !ends {
            return Err(pg_error(Error::Warehouse {
                sqlstate: "25P02".into(),
                message: "current transaction is aborted, commands ignored until end of transaction block".into(),
            }));
        }
        let cell = session_of(client, &self.engine);
        let result = {
            let mut session = cell.0.lock().await;
            self.engine.execute(sql, params, &mut session).await.map_err(pg_error)?
        };
        if result.freshness.degraded {
            let note = "answer is degraded: a layer was unavailable; see SHOW tidemark.freshness";
            let info =
                ErrorInfo::new(SEVERITY_NOTICE.to_owned(), "01000".to_owned(), note.to_owned());
            client.feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(info))).await?;
        }
        match result.tag.as_str() {
            "BEGIN" => return Ok(Response::TransactionStart(Tag::new("BEGIN"))),
            "COMMIT" if status == TransactionStatus::Error => {
                return Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
            }
            "COMMIT" | "ROLLBACK" => return Ok(Response::TransactionEnd(Tag::new(&result.tag))),
            "SET" | "RESET" | "DISCARD ALL" => {
                self.report_parameters(client, &cell).await?;
                return Ok(Response::Execution(Tag::new(&result.tag)));
            }
            _ => {}
        }
        if result.tag == "COPY" {
            let n = result.schema.fields().len();
            let fields = Arc::new(fields_for_schema(&result.schema, None));
            return Ok(Response::CopyOut(CopyResponse::new(
                0,
                n,
                copy_rows(result.stream, fields),
            )));
        }
        if result.schema.fields().is_empty() && result.tag != "SELECT" {
            return Ok(Response::Execution(Tag::new(&result.tag)));
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
        let tag = match result.tag.as_str() {
            "SHOW" | "EXPLAIN" | "FETCH" => result.tag.clone(),
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

    /// Sends ParameterStatus for reported parameters after SET/RESET.
    async fn report_parameters<C>(&self, client: &mut C, cell: &SessionCell) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let settings = cell.0.lock().await.settings.clone();
        for (key, name) in REPORTED {
            if let Some(v) = settings.get(*key) {
                client
                    .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                        name.to_string(),
                        v.clone(),
                    )))
                    .await?;
            }
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

/// Rows as COPY text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_rows(
    batches: futures::stream::BoxStream<'static, crate::error::Result<arrow_array::RecordBatch>>,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<CopyData>> + Send + 'static {
    batches.map(move |b| {
        let b = b.map_err(pg_error)?;
        let mut out = String::new();
        for row in 0..b.num_rows() {
            for col in 0..b.num_columns() {
                if col > 0 {
                    out.push('\t');
                }
                let v = crate::exec::arrow::value_at(b.column(col), b.schema().field(col), row);
                match super::encode::text_cell(&v, fields[col].datatype()) {
                    None => out.push_str("\\N"),
                    Some(t) => out.push_str(&copy_escape(&t)),
                }
            }
            out.push('\n');
        }
        Ok(CopyData::new(bytes::Bytes::from(out)))
    })
}

fn copy_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r")
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
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.idle.busy(&client.socket_addr());
        let stmts = split_statements(query);
        if stmts.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        if let [sql] = stmts[..] {
            if let Some(resp) = self.forward(client, sql).await? {
                return Ok(vec![resp]);
            }
        }
        let last = stmts.len() - 1;
        for (i, sql) in stmts.iter().enumerate() {
            let resp = self.run(client, sql, &[], None, true, 0).await?;
            if i == last {
                return Ok(vec![resp]);
            }
            if let Some(msg) = completion(resp) {
                client.feed(msg).await?;
            }
        }
        Ok(vec![])
    }
}

#[async_trait]
impl ExtendedQueryHandler for Gateway {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
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
        self.run(client, &stmt.sql, &params, Some(&portal.result_column_format), false, max_rows)
            .await
    }
}
