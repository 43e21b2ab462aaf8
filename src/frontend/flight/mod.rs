//! Arrow Flight SQL frontend (arrow-flight + tonic): statements and prepared statements
//! stream the engine's record batches as they are produced; catalog commands describe the
//! warehouse. Tickets carry the query, its parameters and the watermark snapshot taken when
//! the FlightInfo was made, so the data matches the schema and freshness reported.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use arrow_schema::Schema;
use base64::Engine as _;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use super::arrow_out::{convert_stream, ArrowOut};
use crate::config::{Config, NumericMode};
use crate::engine::{CancelOutcome, Engine, Session};
use crate::error::{Error, Result};
use crate::model::arrow::{field_for, field_of, schema_for};
use crate::model::column::{Column, Param};
use crate::model::value::Value;
use crate::model::watermark::Watermark;

/// Messages from `proto/tidemark.proto`.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/tidemark.v1.rs"));
}

mod convert;
mod token;
use convert::*;

/// Base64 for basic auth; clients differ on padding (ADBC's Go client sends none).
const BASIC_B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

type BoxedStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

/// A random id for a FlightInfo's DoGet, so that it can be cancelled from any replica.
fn request_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return String::new(); // not cancellable by id; closing the stream still cancels
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Maps the one error type to a gRPC status; the SQLSTATE leads the message.
pub fn status(e: Error) -> Status {
    let code = e.sqlstate().to_string();
    let msg = format!("{code}: {e}");
    match code.as_str() {
        "25006" | "42501" => Status::permission_denied(msg),
        "57014" if msg.contains("user request") => Status::cancelled(msg),
        "57014" => Status::deadline_exceeded(msg),
        "53300" | "54000" => Status::resource_exhausted(msg),
        c if c.starts_with("28") => Status::unauthenticated(msg),
        c if c.starts_with("08") || c.starts_with("57P") => Status::unavailable(msg),
        c if ["42", "22", "0A", "21", "2F", "34", "26", "3D", "3F"]
            .iter()
            .any(|p| c.starts_with(p)) =>
        {
            Status::invalid_argument(msg)
        }
        _ => Status::internal(msg),
    }
}

/// The Flight SQL service over the engine.
pub struct FlightFrontend {
    engine: Arc<Engine>,
    users: HashMap<String, String>,
    tokens: token::Tokens,
    bound: Mutex<HashMap<Vec<u8>, Vec<Param>>>,
    catalog: String,
    max_rows: usize,
    max_bytes: usize,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
    numeric: NumericMode,
}

impl FlightFrontend {
    /// A frontend for the engine, with the configured users (none: no authentication).
    pub fn new(engine: Arc<Engine>, config: &Config) -> Result<FlightFrontend> {
        let catalog = config
            .warehouse
            .url
            .parse::<tokio_postgres::Config>()
            .ok()
            .and_then(|c| c.get_dbname().map(str::to_string))
            .unwrap_or_else(|| "tidemark".into());
        Ok(FlightFrontend {
            engine,
            users: config.users.iter().map(|u| (u.name.clone(), u.password_hash.clone())).collect(),
            tokens: token::Tokens::new(&config.flight)?,
            bound: Mutex::new(HashMap::new()),
            catalog,
            max_rows: config.flight.max_batch_rows,
            max_bytes: config.flight.max_message_bytes,
            sql_info: sql_info()?,
            xdbc: xdbc_info()?,
            numeric: config.arrow.numeric,
        })
    }

    /// The user of a request's bearer token (empty when no users are configured).
    fn check<T>(&self, req: &Request<T>) -> std::result::Result<String, Status> {
        if self.users.is_empty() {
            return Ok(String::new());
        }
        let header =
            req.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = header.strip_prefix("Bearer ").unwrap_or("");
        match self.tokens.verify(token, std::time::SystemTime::now()) {
            Ok(user) if self.users.contains_key(&user) => Ok(user),
            Err(token::Refused::Expired) => Err(Status::unauthenticated(
                "28000: the bearer token has expired; authenticate with Handshake again",
            )),
            _ => Err(Status::unauthenticated(
                "28000: missing or invalid bearer token; authenticate with Handshake",
            )),
        }
    }

    fn verify(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|stored| crate::frontend::auth::password_matches(user, password, stored))
    }

    /// How numerics are sent for a request: `x-tidemark-numeric: decimal | text`, else
    /// `[arrow] numeric`.
    fn numeric_of<T>(&self, req: &Request<T>) -> NumericMode {
        req.metadata()
            .get("x-tidemark-numeric")
            .and_then(|v| v.to_str().ok())
            .and_then(NumericMode::parse)
            .unwrap_or(self.numeric)
    }

    /// FlightInfo for a query: schema from the warehouse's description (none when an
    /// unconstrained numeric's scale depends on the answer: clients then read the schema
    /// of the stream), a ticket with the watermark pinned now, and the freshness so far in
    /// app_metadata.
    async fn flight_info(
        &self,
        user: &str,
        sql: &str,
        params: Vec<Param>,
        (descriptor, mode): (FlightDescriptor, NumericMode),
    ) -> std::result::Result<FlightInfo, Status> {
        let described =
            self.engine.describe_statement(sql, &Vec::new(), user).await.map_err(status)?;
        let pinned = self.engine.watermark_for(sql).await.map_err(status)?;
        let mut fresh = proto::Freshness { plan: "pending".into(), ..Default::default() };
        let watermarks = pinned
            .into_iter()
            .filter_map(|(table, w)| {
                fresh.table = table.clone();
                fresh.batch_watermark = w.text();
                pin_of(&table, &w)
            })
            .collect();
        let ticket = proto::QueryTicket {
            sql: sql.to_string(),
            params: params.iter().map(param_proto).collect(),
            watermarks,
            request_id: request_id(),
        };
        let handle = TicketStatementQuery { statement_handle: ticket.encode_to_vec().into() };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(handle.as_any().encode_to_vec()));
        let mut info = FlightInfo::new();
        if let Some(schema) = ArrowOut::static_schema(&schema_for(&described.columns), mode) {
            info = info.try_with_schema(&schema).map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(info
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_app_metadata(fresh.encode_to_vec()))
    }

    /// Runs a ticket and streams its batches; the first message carries the freshness.
    async fn run(
        &self,
        user: &str,
        ticket: proto::QueryTicket,
        (bypass, mode): (bool, NumericMode),
    ) -> std::result::Result<Response<BoxedStream<arrow_flight::FlightData>>, Status> {
        let mut session = self.engine.session_for("flight", user);
        if bypass {
            session.bypass_cache();
        }
        for w in &ticket.watermarks {
            if let Some(v) = pinned_value(w) {
                session.pinned.insert(w.table.to_lowercase(), Watermark { value: v });
            }
        }
        let params: Vec<Param> = ticket
            .params
            .iter()
            .map(|p| if p.is_null { Param::Null } else { Param::Text(p.text.clone()) })
            .collect();
        // a ticket fetched twice at once is cancelled through its first fetch only
        let cancellable = (!ticket.request_id.is_empty())
            .then(|| self.engine.cancellable(user, &ticket.request_id).ok())
            .flatten();
        session.cancel = cancellable.as_ref().map(|c| c.signal());
        let result =
            self.engine.execute(&ticket.sql, &params, &mut session).await.map_err(status)?;
        let meta = freshness_proto(&result.freshness).encode_to_vec();
        let max_rows = self.max_rows;
        // without a static schema, the first batch carries it (there is always one)
        let (schema, batches) = convert_stream(result.schema, result.stream, mode);
        let batches = batches
            .map_ok(move |b| futures::stream::iter(split_rows(b, max_rows).into_iter().map(Ok)))
            .try_flatten()
            .map_err(|e| FlightError::Tonic(Box::new(status(e))));
        let mut encoder = FlightDataEncoderBuilder::new();
        if let Some(schema) = schema {
            encoder = encoder.with_schema(schema);
        }
        let stream = encoder
            .with_max_flight_data_size(self.max_bytes)
            .with_metadata(meta.into())
            .build(batches)
            .map_err(Status::from)
            .inspect_ok(move |_| {
                let _registered = &cancellable; // cancellable while the stream lives
            });
        Ok(Response::new(Box::pin(stream)))
    }

    /// Cancels the DoGet of a FlightInfo (CancelFlightInfo, CancelQuery) here or, relayed,
    /// on the replica running it.
    async fn cancel_info(&self, user: &str, info: &FlightInfo) -> CancelStatus {
        let mut outcome = CancelStatus::NotCancellable;
        for t in info.endpoint.iter().filter_map(|e| e.ticket.as_ref()) {
            let handle = TicketStatementQuery::decode(
                arrow_flight::sql::Any::decode(t.ticket.as_ref())
                    .map(|a| a.value)
                    .unwrap_or_default(),
            );
            let Ok(ticket) = handle.map(|h| proto::QueryTicket::decode(h.statement_handle)) else {
                continue;
            };
            let Ok(ticket) = ticket else { continue };
            match self.engine.cancel_anywhere(user, &ticket.request_id).await {
                Ok(CancelOutcome::Cancelled) => return CancelStatus::Cancelled,
                Ok(CancelOutcome::Relayed) => outcome = CancelStatus::Cancelling,
                _ => {}
            }
        }
        outcome
    }

    fn ticket_of_handle(&self, handle: &[u8]) -> std::result::Result<proto::QueryTicket, Status> {
        let mut t = proto::QueryTicket::decode(handle)
            .map_err(|_| Status::invalid_argument("22023: bad prepared statement handle"))?;
        if t.params.is_empty() {
            if let Some(p) = self.bound.lock().unwrap_or_else(|e| e.into_inner()).get(handle) {
                t.params = p.iter().map(param_proto).collect();
            }
        }
        Ok(t)
    }

    async fn catalog_rows(&self, sql: &str) -> std::result::Result<Vec<Vec<Value>>, Status> {
        let mut session = Session::new("flight");
        let r = self.engine.execute(sql, &[], &mut session).await.map_err(status)?;
        let batches: Vec<RecordBatch> = r.stream.try_collect().await.map_err(status)?;
        let mut rows = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                rows.push(
                    (0..b.num_columns())
                        .map(|c| crate::model::arrow::value_at(b.column(c), b.schema().field(c), i))
                        .collect(),
                );
            }
        }
        Ok(rows)
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightFrontend {
    type FlightService = FlightFrontend;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<BoxedStream<HandshakeResponse>>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let token = if self.users.is_empty() {
            String::new()
        } else {
            let decoded = header
                .strip_prefix("Basic ")
                .and_then(|b| BASIC_B64.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Status::unauthenticated("28000: Handshake needs basic authentication")
                })?;
            let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
            if !self.verify(user, password) {
                return Err(Status::unauthenticated(format!(
                    "28P01: password authentication failed for user \"{user}\""
                )));
            }
            self.tokens.issue(user, std::time::SystemTime::now())
        };
        let out = HandshakeResponse { protocol_version: 0, payload: token.clone().into() };
        let mut resp: Response<BoxedStream<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::iter(vec![Ok(out)])));
        if !token.is_empty() {
            if let Ok(v) = format!("Bearer {token}").parse() {
                resp.metadata_mut().insert("authorization", v);
            }
        }
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let user = self.check(&request)?;
        let mode = self.numeric_of(&request);
        let descriptor = request.into_inner();
        Ok(Response::new(self.flight_info(&user, &query.query, vec![], (descriptor, mode)).await?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<BoxedStream<arrow_flight::FlightData>>, Status> {
        let user = self.check(&request)?;
        let t = proto::QueryTicket::decode(ticket.statement_handle.as_ref())
            .map_err(|_| Status::invalid_argument("22023: bad ticket"))?;
        self.run(&user, t, (no_cache(&request), self.numeric_of(&request))).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<ActionCreatePreparedStatementResult, Status> {
        let user = self.check(&request)?;
        let described = self
            .engine
            .describe_statement(&query.query, &Vec::new(), &user)
            .await
            .map_err(status)?;
        let params: Vec<Column> = described
            .params
            .iter()
            .enumerate()
            .map(|(i, t)| Column::new(format!("${}", i + 1), t.clone()))
            .collect();
        let param_schema =
            Schema::new(params.iter().map(|c| field_for(&c.name, &c.ty)).collect::<Vec<_>>());
        let handle = proto::QueryTicket { sql: query.query.clone(), ..Default::default() };
        // empty when the result schema depends on the answer (see flight_info)
        let dataset_schema = match ArrowOut::static_schema(
            &schema_for(&described.columns),
            self.numeric_of(&request),
        ) {
            Some(schema) => ipc_schema(&schema)?,
            None => Default::default(),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode_to_vec().into(),
            dataset_schema,
            parameter_schema: ipc_schema(&param_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<DoPutPreparedStatementResult, Status> {
        self.check(&request)?;
        let params = params_of(request.into_inner()).await?;
        let mut ticket = self.ticket_of_handle(&query.prepared_statement_handle)?;
        ticket.params = params.iter().map(param_proto).collect();
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        if bound.len() > 100_000 {
            bound.clear();
        }
        bound.insert(query.prepared_statement_handle.to_vec(), params);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(ticket.encode_to_vec().into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let user = self.check(&request)?;
        let t = self.ticket_of_handle(&cmd.prepared_statement_handle)?;
        let params = t
            .params
            .iter()
            .map(|p| if p.is_null { Param::Null } else { Param::Text(p.text.clone()) })
            .collect();
        let mode = self.numeric_of(&request);
        let info = self.flight_info(&user, &t.sql, params, (request.into_inner(), mode)).await?;
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<BoxedStream<arrow_flight::FlightData>>, Status> {
        let user = self.check(&request)?;
        let t = self.ticket_of_handle(&query.prepared_statement_handle)?;
        self.run(&user, t, (no_cache(&request), self.numeric_of(&request))).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<(), Status> {
        self.check(&request)?;
        self.bound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(query.prepared_statement_handle.as_ref());
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: arrow_flight::sql::ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> std::result::Result<arrow_flight::sql::ActionCancelQueryResult, Status> {
        let user = self.check(&request)?;
        let info = FlightInfo::decode(query.info)
            .map_err(|_| Status::invalid_argument("22023: bad FlightInfo"))?;
        // CancelQuery's CancelResult numbers its outcomes as CancelFlightInfo's CancelStatus
        let result = self.cancel_info(&user, &info).await as i32;
        Ok(arrow_flight::sql::ActionCancelQueryResult { result })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != "CancelFlightInfo" {
            let what = request.get_ref().r#type.clone();
            return Err(Status::invalid_argument(format!("0A000: no action {what:?}")));
        }
        let user = self.check(&request)?;
        let req = CancelFlightInfoRequest::decode(request.get_ref().body.clone())
            .map_err(|_| Status::invalid_argument("22023: bad CancelFlightInfoRequest"))?;
        let info = req.info.unwrap_or_default();
        let result = CancelFlightInfoResult { status: self.cancel_info(&user, &info).await as i32 };
        let body = arrow_flight::Result { body: result.encode_to_vec().into() };
        Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(body)]))))
    }

    async fn list_custom_actions(&self) -> Option<Vec<std::result::Result<ActionType, Status>>> {
        Some(vec![Ok(ActionType {
            r#type: "CancelFlightInfo".into(),
            description: "Cancel a FlightInfo's DoGet on whichever replica runs it".into(),
        })])
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        info_for(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<BoxedStream<arrow_flight::FlightData>>, Status> {
        self.check(&request)?;
        let mut b = query.into_builder();
        b.append(&self.catalog);
        let schema = b.schema();
        Ok(one_batch(schema, b.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        info_for(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<BoxedStream<arrow_flight::FlightData>>, Status> {
        self.check(&request)?;
        let rows = self
            .catalog_rows("SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1")
            .await?;
        let mut b = query.into_builder();
        for r in rows {
            b.append(&self.catalog, text(&r[0]));
        }
        let schema = b.schema();
        Ok(one_batch(schema, b.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        info_for(query.as_any(), &query.clone().into_builder().schema(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<BoxedStream<arrow_flight::FlightData>>, Status> {
        self.check(&request)?;
        let include = query.include_schema;
        let tables = self
            .catalog_rows(
                "SELECT c.oid::int8, n.nspname::text, c.relname::text, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' ORDER BY 2, 3",
            )
            .await?;
        let columns = if include {
            self.catalog_rows(
                "SELECT a.attrelid::int8, a.attname::text, a.atttypid::int8, a.atttypmod::int8 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE a.attnum > 0 AND NOT a.attisdropped \
                 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' ORDER BY 1, a.attnum",
            )
            .await?
        } else {
            vec![]
        };
        let mode = self.numeric_of(&request);
        let mut by_table: HashMap<i64, Vec<arrow_schema::Field>> = HashMap::new();
        for c in &columns {
            if let [Value::Int(rel), Value::Text(name), Value::Int(oid), Value::Int(typmod)] =
                &c[..]
            {
                let ty = tokio_postgres::types::Type::from_oid(*oid as u32)
                    .unwrap_or(tokio_postgres::types::Type::TEXT);
                let col = Column { typmod: *typmod as i32, ..Column::new(name.clone(), ty) };
                by_table
                    .entry(*rel)
                    .or_default()
                    .push(super::arrow_out::table_field(&field_of(&col), mode));
            }
        }
        let mut b = query.into_builder();
        for t in tables {
            let rel = if let Value::Int(r) = t[0] { r } else { 0 };
            let schema = Schema::new(by_table.remove(&rel).unwrap_or_default());
            b.append(&self.catalog, text(&t[1]), text(&t[2]), text(&t[3]), &schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let schema = b.schema();
        Ok(one_batch(schema, b.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        info_for(query.as_any(), &query.into_builder().schema(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<BoxedStream<arrow_flight::FlightData>>, Status> {
        self.check(&request)?;
        let mut b = query.into_builder();
        for t in ["TABLE", "VIEW", "MATERIALIZED VIEW"] {
            b.append(t);
        }
        let schema = b.schema();
        Ok(one_batch(schema, b.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        info_for(
            query.as_any(),
            query.into_builder(&self.sql_info).schema().as_ref(),
            request.into_inner(),
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<BoxedStream<arrow_flight::FlightData>>, Status> {
        self.check(&request)?;
        let b = query.into_builder(&self.sql_info);
        let schema = b.schema();
        Ok(one_batch(schema, b.build()))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.check(&request)?;
        info_for(
            query.as_any(),
            query.into_builder(&self.xdbc).schema().as_ref(),
            request.into_inner(),
        )
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<BoxedStream<arrow_flight::FlightData>>, Status> {
        self.check(&request)?;
        let b = query.into_builder(&self.xdbc);
        let schema = b.schema();
        Ok(one_batch(schema, b.build()))
    }

    async fn do_put_statement_update(
        &self,
        _q: CommandStatementUpdate,
        _r: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_statement_ingest(
        &self,
        _q: CommandStatementIngest,
        _r: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_prepared_statement_update(
        &self,
        _q: CommandPreparedStatementUpdate,
        _r: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        Err(read_only())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Binds the Flight SQL listener and serves until `shutdown` flips.
pub async fn serve(
    config: &Config,
    addr: &str,
    engine: Arc<Engine>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
    let service = FlightServiceServer::new(FlightFrontend::new(engine.clone(), config)?)
        .max_decoding_message_size(64 << 20);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let read = |p: &str| {
            std::fs::read(p).map_err(|e| Error::Config(format!("TLS: cannot read {p}: {e}")))
        };
        let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    }
    let router = builder.add_service(service);
    // Without TCP_NODELAY small responses wait for delayed ACKs (~40 ms per call).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let incoming = futures::StreamExt::map(incoming, move |conn| {
        conn.map(|c| crate::frontend::counted::Counted::new(c, &engine, "flight"))
    });
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|v| *v).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, "Flight SQL listener failed");
        }
    });
    Ok((bound, task))
}

/// Keeps the generic FlightService import used (the trait's associated type).
#[allow(dead_code)]
fn _assert_service<T: FlightService>() {}
