//! The warehouse client: a deadpool-postgres pool of read-only sessions, statement
//! description, row fetching into [`Value`]s and streaming into Arrow batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::admission::Admission;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Timeouts};
use futures::stream::{BoxStream, StreamExt};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Statement;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::arrow::schema_for;
use crate::model::column::{Column, Described, Param, SessionParams};
use crate::model::cost::{Cost, Trip};
use crate::model::value::{decode_numeric, supported_type, Cell, NumericWire, Value};

/// Rows fetched whole, as values.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Row values.
    pub rows: Vec<Vec<Value>>,
}

/// A pooled warehouse connection and the admission slot it runs under.
pub struct Conn {
    obj: Object,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.obj
    }
}

/// Pool of warehouse connections.
#[derive(Clone)]
pub struct Warehouse {
    pool: Pool,
    metrics: Arc<crate::metrics::Metrics>,
    wait: Duration,
    applied: Arc<Mutex<HashMap<ConnKey, SessionParams>>>,
    raw: Option<Arc<super::raw::RawPool>>,
    admission: Arc<Admission>,
    tls: super::tls::WarehouseTls,
    forwarding: Forwarding,
    numeric: Arc<tokio::sync::OnceCell<NumericWire>>,
}

/// How session parameters are sent to this warehouse.
#[derive(Debug, Clone, Default)]
struct Forwarding {
    /// Redshift: no `IntervalStyle`; `query_group` and `wlm_query_slot_count` are its own.
    redshift: bool,
    /// `[warehouse] query_group` for sessions that set none.
    query_group: Option<String>,
}

impl Forwarding {
    /// The parameters as this warehouse takes them.
    fn apply(&self, params: &SessionParams) -> SessionParams {
        let redshift_only = ["query_group", "wlm_query_slot_count"];
        let mut out: SessionParams = params
            .iter()
            .filter(|(k, _)| match self.redshift {
                true => k != "intervalstyle",
                false => !redshift_only.contains(&k.as_str()),
            })
            .cloned()
            .collect();
        if let (true, Some(g)) = (self.redshift, &self.query_group) {
            if !out.iter().any(|(k, _)| k == "query_group") {
                out.push(("query_group".into(), g.clone()));
                out.sort();
            }
        }
        out
    }
}

/// The one statement that applies `n` session parameters, bound as (name, value) text pairs:
/// `SELECT set_config($1, $2, false), ...`, one round trip for all of them (a leader-node
/// function on Redshift, so it runs without touching compute nodes).
fn set_config_sql(n: usize) -> Option<String> {
    let calls: Vec<String> =
        (0..n).map(|i| format!("set_config(${}, ${}, false)", 2 * i + 1, 2 * i + 2)).collect();
    (n > 0).then(|| format!("SELECT {}", calls.join(", ")))
}

/// Identity of a pooled connection: its creation instant.
type ConnKey = std::time::Instant;

/// Whether `sql` may change session settings through `set_config` (any letter case).
pub fn mentions_set_config(sql: &str) -> bool {
    sql.as_bytes().windows(10).any(|w| w.eq_ignore_ascii_case(b"set_config"))
}

/// Names of session parameters that are forwarded to the warehouse per query.
pub const FORWARDED_PARAMS: &[&str] = &[
    "timezone",
    "datestyle",
    "intervalstyle",
    "search_path",
    "statement_timeout",
    "application_name",
    "query_group",
    "wlm_query_slot_count",
];

impl Warehouse {
    /// Builds the pool; connections are opened lazily, so this succeeds while the
    /// warehouse is down.
    pub fn new(config: &Config, metrics: Arc<crate::metrics::Metrics>) -> Result<Warehouse> {
        let (mut pg, tls) = super::tls::warehouse_connection(&config.warehouse)?;
        let connect = config.warehouse.connect_timeout()?;
        let mut options = String::new();
        if config.warehouse.dialect == crate::config::Dialect::Postgres {
            // Defence in depth: even a statement the parser let through cannot write.
            options.push_str("-c default_transaction_read_only=on");
        }
        let timeout = config.warehouse.statement_timeout()?;
        if !timeout.is_zero() {
            options.push_str(&format!(" -c statement_timeout={}", timeout.as_millis()));
        }
        pg.options(options.trim());
        pg.application_name("tidemark");
        let limits = &config.limits;
        let slots = match limits.max_concurrent_queries {
            0 => config.warehouse.pool_size,
            n => n.min(config.warehouse.pool_size),
        };
        let queue_wait = limits.queue_timeout.get();
        let admission = Arc::new(Admission::new(slots, limits.queue, queue_wait));
        let credentials = super::credentials::Credentials::new(
            config.warehouse.credentials.as_ref(),
            pg.get_password().map(|p| String::from_utf8_lossy(p).into_owned()),
            pg.get_dbname().map(str::to_string),
        )?;
        let max_age = config.warehouse.max_connection_age()?;
        let raw =
            super::raw::RawConfig::from_pg(&pg, connect, tls.clone(), credentials.clone(), max_age)
                .map(|c| Arc::new(super::raw::RawPool::new(c, admission.clone())));
        let mgr = Manager::from_connect(
            pg,
            LogIn { tls: tls.connector(), credentials: credentials.clone(), patience: connect },
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(mgr)
            .max_size(config.warehouse.pool_size)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(connect),
                create: Some(connect),
                recycle: Some(connect),
            })
            .pre_recycle(deadpool_postgres::Hook::sync_fn(move |_, m| match max_age {
                Some(age) if m.age() > age => {
                    Err(deadpool_postgres::HookError::message("older than max_connection_age"))
                }
                _ => Ok(()),
            }))
            .build()
            .map_err(|e| Error::Config(format!("warehouse pool: {e}")))?;
        let forwarding = Forwarding {
            redshift: config.warehouse.dialect == crate::config::Dialect::Redshift,
            query_group: config.warehouse.query_group.clone(),
        };
        let applied = Arc::default();
        let numeric = Arc::default();
        Ok(Warehouse {
            pool,
            metrics,
            wait: connect,
            applied,
            raw,
            admission,
            tls,
            forwarding,
            numeric,
        })
    }

    /// How this warehouse writes binary NUMERIC: Redshift's own form when the server says it
    /// is Redshift (`version()`), asked once under the Redshift dialect; PostgreSQL's otherwise.
    pub async fn numeric_wire(&self) -> Result<NumericWire> {
        if !self.forwarding.redshift {
            return Ok(NumericWire::Postgres);
        }
        let probe = || async {
            let conn = self.conn().await?;
            let messages = conn.simple_query("SELECT version()").await?;
            let redshift = messages.iter().any(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get(0).is_some_and(|v| v.to_lowercase().contains("redshift"))
                }
                _ => false,
            });
            Ok::<_, Error>(if redshift { NumericWire::Redshift } else { NumericWire::Postgres })
        };
        self.numeric.get_or_try_init(probe).await.copied()
    }

    /// The pool of raw connections for the pass-through fast path (None for warehouse URLs
    /// that do not name one TCP host).
    pub fn raw(&self) -> Option<&Arc<super::raw::RawPool>> {
        self.raw.as_ref()
    }

    /// Warehouse statement slots now: in use, statements queued for one, and the most.
    pub fn slots(&self) -> (usize, usize, usize) {
        let (in_use, max) = self.admission.in_use();
        (in_use, self.admission.waiting(), max)
    }

    /// Pool connections and statement slots by state, as metrics gauges.
    pub fn pool_gauges(&self) -> Vec<crate::metrics::Gauge> {
        let s = self.pool.status();
        let g = |state: &str, n: usize| {
            ("tidemark_warehouse_pool_connections", vec![("state", state.to_string())], n as f64)
        };
        let (in_use, max) = self.admission.in_use();
        let slot = |state: &str, n: usize| {
            ("tidemark_warehouse_slots", vec![("state", state.to_string())], n as f64)
        };
        vec![
            g("open", s.size),
            g("idle", s.available),
            g("max", s.max_size),
            g("waiting", s.waiting),
            g("queued", self.admission.waiting()),
            slot("in_use", in_use),
            slot("queued", self.admission.waiting()),
            slot("max", max),
        ]
    }

    /// A pooled connection holding an admission slot ([`Admission`]): 53300 when too many
    /// statements wait, 08006 when the warehouse cannot be reached within the connect timeout
    /// (which opens the breaker, so the next requests fail fast for a second).
    pub async fn conn(&self) -> Result<Conn> {
        let slot = self.admission.enter().await?;
        let got = tokio::time::timeout(self.wait + Duration::from_millis(500), self.pool.get());
        let err = match got.await {
            Ok(Ok(obj)) => {
                self.admission.reset();
                return Ok(Conn { obj, _slot: slot });
            }
            Ok(Err(e)) => Error::from(e),
            Err(_) => Error::Unavailable("timed out waiting for a warehouse connection".into()),
        };
        if let Error::Unavailable(why) = &err {
            self.admission.trip(why);
        }
        Err(err)
    }

    /// A pooled connection carrying exactly the session parameters `params`: a connection
    /// another client left with other settings is reset first, so settings never leak
    /// between clients through the pool. Clean connections cost no extra round trip.
    pub async fn conn_with(&self, params: &SessionParams) -> Result<Conn> {
        let params = &self.forwarding.apply(params);
        let conn = self.conn().await?;
        // Pooled objects move in memory between uses; their creation instant identifies them.
        let key = Object::metrics(&conn.obj).created;
        let current = self
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
            .unwrap_or_default();
        if current != *params {
            self.applied.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            if !current.is_empty() {
                Cost::count(Trip::Settings);
                conn.batch_execute("RESET ALL").await?;
            }
            if let Some(sql) = set_config_sql(params.len()) {
                let args: Vec<(&(dyn ToSql + Sync), Type)> = params
                    .iter()
                    .flat_map(|(k, v)| [k, v])
                    .map(|x| (x as &(dyn ToSql + Sync), Type::TEXT))
                    .collect();
                Cost::count(Trip::Settings);
                conn.query_typed(&sql, &args).await?;
            }
            let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
            if applied.len() > 10_000 {
                applied.clear();
            }
            applied.insert(key, params.clone());
        }
        Ok(conn)
    }

    /// [`Warehouse::conn_with`] for running `sql`: a statement that calls `set_config` changes
    /// the connection's settings behind the pool's back, so the connection is marked and
    /// reset by its next user.
    async fn conn_for(&self, sql: &str, params: &SessionParams) -> Result<Conn> {
        let conn = self.conn_with(params).await?;
        if mentions_set_config(sql) {
            let key = Object::metrics(&conn.obj).created;
            let dirty = vec![("set_config".to_string(), String::new())];
            self.applied.lock().unwrap_or_else(|e| e.into_inner()).insert(key, dirty);
        }
        Ok(conn)
    }

    /// Describes a statement (columns and parameter types) without running it.
    pub async fn describe(&self, sql: &str, session: &SessionParams) -> Result<Described> {
        let conn = self.conn_with(session).await?;
        Cost::count(Trip::Describe);
        let stmt = conn.prepare(sql).await?;
        Ok(described(&stmt))
    }

    /// Runs a statement with explicitly typed parameters in one round trip (unnamed
    /// statement, nothing left prepared on the connection) and fetches every row.
    pub async fn fetch(
        &self,
        sql: &str,
        types: &[Type],
        params: &[Param],
        session: &SessionParams,
    ) -> Result<Fetched> {
        if types.len() != params.len() {
            return Err(param_count(types.len(), params.len()));
        }
        let typed: Vec<(&(dyn ToSql + Sync), Type)> =
            params.iter().zip(types).map(|(p, t)| (p as &(dyn ToSql + Sync), t.clone())).collect();
        // If this future is dropped (client gone, query cancelled), cancel the warehouse query.
        let wire = self.numeric_wire().await?;
        let mut guard = CancelOnDrop::new(self.conn_for(sql, session).await?, &self.tls);
        self.metrics.warehouse_statement();
        Cost::count(Trip::Statement);
        let rows = guard.conn()?.query_typed(sql, &typed).await;
        guard.disarm();
        let rows = rows?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if out.is_empty() {
                let cols: Vec<Column> = row.columns().iter().map(Column::of).collect();
                check_types(&cols)?;
            }
            out.push(decode_row(row, row.len(), wire)?);
        }
        Ok(Fetched { rows: out })
    }

    /// Runs a statement (parameter types given, or inferred by the warehouse when `types` is
    /// empty) and streams its rows as Arrow batches of up to `batch_rows` rows. One round
    /// trip: the unnamed statement is parsed, bound and executed together, and the schema is
    /// read from the first row (or described when there is none). The pooled connection is
    /// held until the stream ends; dropping the stream early cancels the warehouse query.
    pub async fn stream(
        &self,
        sql: &str,
        types: &[Type],
        params: &[Param],
        session: &SessionParams,
        batch_rows: usize,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)> {
        if !types.is_empty() && types.len() != params.len() {
            return Err(param_count(types.len(), params.len()));
        }
        let unspecified = Type::new(
            "unspecified".into(),
            0,
            tokio_postgres::types::Kind::Simple,
            "pg_catalog".into(),
        );
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    p as &(dyn ToSql + Sync),
                    types.get(i).cloned().unwrap_or_else(|| unspecified.clone()),
                )
            })
            .collect();
        // PostgreSQL flushes its first replies only when the statement produces output, so the
        // guard must exist before waiting: a dropped future then still cancels the query.
        let wire = self.numeric_wire().await?;
        let mut guard = CancelOnDrop::new(self.conn_for(sql, session).await?, &self.tls);
        self.metrics.warehouse_statement();
        Cost::count(Trip::Statement);
        let started = guard.conn()?.query_typed_raw(sql, typed).await;
        let mut rows = Box::pin(started.inspect_err(|_| guard.disarm())?);
        let first = match rows.as_mut().next().await {
            Some(Ok(row)) => Some(row),
            Some(Err(e)) => {
                guard.disarm();
                return Err(e.into());
            }
            None => None,
        };
        let columns = match &first {
            Some(row) => row.columns().iter().map(Column::of).collect(),
            None => {
                guard.disarm();
                Cost::count(Trip::Describe);
                let stmt = guard.conn()?.prepare_typed(sql, types).await?;
                text_for_unsupported(described(&stmt).columns)
            }
        };
        if check_types(&columns).is_err() {
            drop(rows);
            drop(guard);
            return self.stream_described(sql, types, params, session, batch_rows).await;
        }
        let schema = schema_for(&columns);
        // With no first row the query has already ended; polling its stream again would fail.
        let done = first.is_none();
        let state = StreamState { rows, first, columns, guard, done, wire };
        Ok((schema.clone(), unfold_batches(state, schema, batch_rows)))
    }

    /// The slower path for results with types the engine does not hold: describe first, then
    /// run the query wrapped so those columns arrive as text.
    async fn stream_described(
        &self,
        sql: &str,
        types: &[Type],
        params: &[Param],
        session: &SessionParams,
        batch_rows: usize,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)> {
        let conn = self.conn_for(sql, session).await?;
        Cost::count(Trip::Describe);
        let mut stmt = conn.prepare_typed(sql, types).await?;
        let original = described(&stmt).columns;
        if check_types(&original).is_err() {
            // Types the engine does not hold (arrays, ranges, ...) are served as their text.
            if let Some(wrapped) = as_text_query(sql, &original) {
                Cost::count(Trip::Describe);
                if let Ok(s) = conn.prepare_typed(&wrapped, types).await {
                    stmt = s;
                }
            }
        }
        if stmt.params().len() != params.len() {
            return Err(param_count(stmt.params().len(), params.len()));
        }
        let columns: Vec<Column> = described(&stmt)
            .columns
            .into_iter()
            .zip(&original)
            .map(|(c, o)| {
                if supported_type(&o.ty) {
                    c
                } else {
                    held_as_text(Column { name: c.name, ..o.clone() })
                }
            })
            .collect();
        check_types(&columns)?;
        let schema = schema_for(&columns);
        let wire = self.numeric_wire().await?;
        let mut guard = CancelOnDrop::new(conn, &self.tls);
        Cost::count(Trip::Statement);
        let rows = guard.conn()?.query_raw(&stmt, params.iter().cloned()).await;
        let rows = rows.inspect_err(|_| guard.disarm())?;
        let rows = Box::pin(rows);
        let state = StreamState { rows, first: None, columns, guard, done: false, wire };
        Ok((schema.clone(), unfold_batches(state, schema, batch_rows)))
    }
}

/// Turns a running query into a stream of record batches.
fn unfold_batches(
    state: StreamState,
    schema: SchemaRef,
    batch_rows: usize,
) -> BoxStream<'static, Result<RecordBatch>> {
    let schema2 = schema;
    let s = futures::stream::unfold(state, move |mut st| {
        let schema = schema2.clone();
        async move {
            if st.done {
                return None;
            }
            let mut buf: Vec<tokio_postgres::Row> = Vec::with_capacity(batch_rows);
            buf.extend(st.first.take());
            while buf.len() < batch_rows {
                match st.rows.next().await {
                    Some(Ok(row)) => buf.push(row),
                    Some(Err(e)) => return Some((Err(e.into()), finish(st))),
                    None => {
                        st.done = true;
                        st.guard.disarm();
                        break;
                    }
                }
            }
            if buf.is_empty() {
                return None;
            }
            Some((super::columnar::batch_from_pg_rows(&schema, &st.columns, &buf, st.wire), st))
        }
    });
    s.boxed()
}

fn finish(mut st: StreamState) -> StreamState {
    st.done = true;
    st.guard.disarm();
    st
}

struct StreamState {
    first: Option<tokio_postgres::Row>,
    rows: std::pin::Pin<Box<tokio_postgres::RowStream>>,
    columns: Vec<Column>,
    guard: CancelOnDrop,
    done: bool,
    wire: NumericWire,
}

/// Owns the connection of a running query. Dropped while armed (the client went away or
/// cancelled), it cancels the warehouse query and discards the connection instead of
/// returning it to the pool, so a late cancel can never hit another client's query.
struct CancelOnDrop {
    conn: Option<Conn>,
    armed: bool,
    /// Cancel requests use the warehouse's TLS settings too.
    tls: super::tls::MakeRustls,
}

impl CancelOnDrop {
    fn new(conn: Conn, tls: &super::tls::WarehouseTls) -> Self {
        CancelOnDrop { conn: Some(conn), armed: true, tls: tls.connector() }
    }

    fn conn(&self) -> Result<&Conn> {
        self.conn.as_ref().ok_or_else(|| Error::internal("query connection already released"))
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.armed {
            return;
        }
        let token = conn.cancel_token();
        drop(Object::take(conn.obj));
        let tls = self.tls.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                match token.cancel_query(tls).await {
                    Ok(()) => tracing::debug!("cancelled an abandoned warehouse query"),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not cancel an abandoned warehouse query")
                    }
                }
            });
        }
    }
}

fn decode_row(row: &tokio_postgres::Row, n: usize, wire: NumericWire) -> Result<Vec<Value>> {
    let failed = |e: String| Error::internal(format!("decode: {e}"));
    (0..n)
        .map(|i| {
            let column = &row.columns()[i];
            if wire == NumericWire::Redshift && *column.type_() == Type::NUMERIC {
                return match row
                    .try_get::<_, super::columnar::Raw>(i)
                    .map_err(|e| failed(e.to_string()))?
                    .0
                {
                    None => Ok(Value::Null),
                    Some(raw) => decode_numeric(raw, column.type_modifier(), wire).map_err(failed),
                };
            }
            row.try_get::<_, Cell>(i).map(|c| c.0).map_err(|e| failed(e.to_string()))
        })
        .collect()
}

fn described(stmt: &Statement) -> Described {
    Described {
        columns: stmt.columns().iter().map(Column::of).collect(),
        params: stmt.params().to_vec(),
    }
}

/// Opens pool connections with the current credential; a login refused for its credentials
/// (28P01, 28000) is tried again with freshly fetched ones for up to `patience` (a rotation
/// changes the warehouse and the source a moment apart).
struct LogIn {
    tls: super::tls::MakeRustls,
    credentials: Arc<super::credentials::Credentials>,
    patience: Duration,
}

/// Whether a connection attempt failed on its credentials.
fn refused_login(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| matches!(c.code(), "28P01" | "28000"))
}

impl deadpool_postgres::Connect for LogIn {
    fn connect(
        &self,
        pg: &tokio_postgres::Config,
    ) -> futures::future::BoxFuture<
        '_,
        std::result::Result<
            (tokio_postgres::Client, tokio::task::JoinHandle<()>),
            tokio_postgres::Error,
        >,
    > {
        let pg = pg.clone();
        Box::pin(async move {
            let deadline = std::time::Instant::now() + self.patience;
            let mut fresh = false;
            loop {
                let mut cfg = pg.clone();
                let credential = match fresh {
                    false => self.credentials.current().await,
                    true => self.credentials.refresh().await,
                };
                match credential {
                    Ok(c) => super::credentials::Credentials::apply(&c, &mut cfg),
                    Err(e) => tracing::warn!(error = %e, "warehouse credentials unavailable"),
                }
                match cfg.connect(self.tls.clone()).await {
                    Ok((client, conn)) => {
                        let task = tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "warehouse connection ended");
                            }
                        });
                        return Ok((client, task));
                    }
                    Err(e)
                        if refused_login(&e)
                            && self.credentials.rotating()
                            && std::time::Instant::now() < deadline =>
                    {
                        tracing::warn!(
                            "the warehouse refused the credentials; fetching them again"
                        );
                        fresh = true;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }
}

/// The error for a wrong number of bound parameters.
fn param_count(expected: usize, given: usize) -> Error {
    Error::InvalidInput(format!(
        "the statement takes {expected} parameter(s) but {given} were given"
    ))
}

/// A column the engine holds as its text: still shown with its own type when pgwire can
/// send that type's binary form from the text (arrays of simple types), else as text.
fn held_as_text(c: Column) -> Column {
    let shown = crate::model::value::shown_from_text(&c.ty).then(|| c.ty.clone());
    Column { ty: Type::TEXT, typmod: -1, shown, ..c }
}

/// Columns of types the engine does not hold, reported as text (used for empty results).
fn text_for_unsupported(columns: Vec<Column>) -> Vec<Column> {
    columns.into_iter().map(|c| if supported_type(&c.ty) { c } else { held_as_text(c) }).collect()
}

/// Wraps a query so every column the engine cannot decode is cast to text, keeping names.
fn as_text_query(sql: &str, columns: &[Column]) -> Option<String> {
    let head = sql.trim_start().get(..6)?.to_ascii_lowercase();
    if !(head.starts_with("select")
        || head.starts_with("with")
        || head.starts_with("values")
        || head.starts_with("table"))
    {
        return None;
    }
    let inner = sql.trim().trim_end_matches(';');
    let aliases: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    let items: Vec<String> = columns
        .iter()
        .zip(&aliases)
        .map(|(c, a)| {
            let name = crate::model::sql::quote_ident(&c.name);
            if supported_type(&c.ty) {
                format!("t.{a} AS {name}")
            } else {
                format!("t.{a}::text AS {name}")
            }
        })
        .collect();
    Some(format!("SELECT {} FROM ({inner}) AS t({})", items.join(", "), aliases.join(", ")))
}

/// Refuses result types the engine cannot decode, naming the column.
fn check_types(columns: &[Column]) -> Result<()> {
    for c in columns {
        if !supported_type(&c.ty) {
            return Err(Error::NotSupported(format!(
                "column {:?} has type {} which tidemark does not serve yet; cast it to text",
                c.name,
                c.ty.name()
            )));
        }
    }
    Ok(())
}

/// Shared handle type.
pub type WarehouseRef = Arc<Warehouse>;

#[cfg(test)]
mod tests {
    use super::Forwarding;

    fn p(pairs: &[(&str, &str)]) -> super::SessionParams {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The session-setting statement tidemark sends (both dialects), golden.
    #[test]
    fn session_settings_are_one_golden_statement() {
        assert_eq!(super::set_config_sql(0), None);
        assert_eq!(super::set_config_sql(1).unwrap(), "SELECT set_config($1, $2, false)");
        assert_eq!(
            super::set_config_sql(2).unwrap(),
            "SELECT set_config($1, $2, false), set_config($3, $4, false)"
        );
    }

    #[test]
    fn session_parameters_take_each_warehouse_form() {
        let session =
            p(&[("intervalstyle", "iso_8601"), ("query_group", "bi"), ("timezone", "UTC")]);
        let pg = Forwarding { redshift: false, query_group: Some("dash".into()) };
        assert_eq!(pg.apply(&session), p(&[("intervalstyle", "iso_8601"), ("timezone", "UTC")]));
        let rs = Forwarding { redshift: true, query_group: Some("dash".into()) };
        assert_eq!(rs.apply(&session), p(&[("query_group", "bi"), ("timezone", "UTC")]));
        assert_eq!(
            rs.apply(&p(&[("timezone", "UTC")])),
            p(&[("query_group", "dash"), ("timezone", "UTC")])
        );
    }
}
