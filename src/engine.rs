//! The one engine every frontend calls: parse → classify → plan → execute → Arrow batches
//! with the freshness of the answer.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::Serialize;
use sqlparser::ast::{visit_relations, Statement};
use tokio::sync::watch;
use tokio_postgres::types::Type;

use crate::cache::{Answer, AnswerKey, LegCache, LegKey, TextKey};
use crate::catalog::{Catalog, ColumnInfo};
use crate::config::{Config, Dialect};
use crate::error::{Error, Result};
use crate::exec::warehouse::Warehouse;
use crate::merge::{merge_aggregate, merge_rows, MergeCtx};
use crate::model::arrow::{batch_from_rows, schema_for};
use crate::model::column::{Column, Described, Param, SessionParams};
use crate::model::freshness::{CacheStatus, Freshness, LegReport, PlanKind, WindowsReport};
use crate::model::value::{supported_type, timestamp_text, Value};
use crate::plan::split::{self, names_table, Shape, SplitInput, SplitPlan};
use crate::plan::timefold::{TimeRules, Zone};
use crate::plan::{self, Class, Explain, ExplainLeg, Local};
use crate::watermark::WatermarkTracker;
use crate::windows::reader::WindowsReader;

mod chunks;
mod forward;
mod local;
mod probe;
mod retire;
mod rewarm;
mod session;
mod tracked;
mod windows_leg;

pub use crate::plan::copy::{CopyFormat, CopyOptions, ForceQuote};
pub use crate::plan::local::{check_setting, parse_move};
pub use forward::Forwarded;
pub use session::{Notice, Scope, Session};
pub use tracked::ResultLimits;

/// Rows per Arrow batch when streaming passthrough results.
pub const BATCH_ROWS: usize = 4096;
/// Entries kept in the describe cache before it is cleared.
const DESCRIBE_CACHE_MAX: usize = 10_000;

/// What a split query runs with besides its SQL.
#[derive(Clone, Copy)]
struct SplitCtx<'a> {
    params: &'a [Param],
    wp: &'a SessionParams,
    pins: &'a Pins,
    bypass: bool,
    text: Option<&'a TextKey>,
}

/// How a session evaluates times: its TimeZone (its own, else the warehouse default).
fn time_rules(wp: &SessionParams, facts: &crate::catalog::Facts, dialect: Dialect) -> TimeRules {
    let zone = match wp.iter().find(|(k, _)| k == "timezone") {
        Some((_, z)) => z.as_str(),
        None => facts.default_zone.as_str(),
    };
    TimeRules { zone: Zone::named(zone), redshift: dialect == Dialect::Redshift }
}

/// True when the session asked to bypass caches (`SET tidemark.cache = off`).
fn bypass_cache(session: &Session) -> bool {
    session.setting("tidemark.cache").is_some_and(|v| v.eq_ignore_ascii_case("off"))
}

/// Pinned watermarks by lower-case logical table name.
pub type Pins = HashMap<String, crate::watermark::Watermark>;

/// The answer to one statement: a stream of Arrow batches plus its freshness.
pub struct QueryResult {
    /// Result schema (fields carry `pg_type` metadata).
    pub schema: SchemaRef,
    /// Record batches as they are produced.
    pub stream: BoxStream<'static, Result<RecordBatch>>,
    /// Freshness of this answer.
    pub freshness: Freshness,
    /// Command tag (`SELECT`, `SET`, `BEGIN`, ...).
    pub tag: String,
    /// For answers from the answer cache: encodings frontends made of it before.
    pub memo: Option<Arc<crate::cache::Memo>>,
    /// Warnings and notices for the client (pgwire sends them as NoticeResponse).
    pub notices: Vec<Notice>,
    /// For `COPY ... TO STDOUT`: how the rows are to be written.
    pub copy: Option<crate::plan::copy::CopyOptions>,
    /// How the statement changed the transaction block.
    pub txn: TxnChange,
}

/// How a statement changes the client's transaction block (pgwire's ReadyForQuery status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxnChange {
    /// No change.
    #[default]
    None,
    /// A block began (BEGIN).
    Began,
    /// The block ended (COMMIT, ROLLBACK).
    Ended,
    /// The block is usable again after an error (ROLLBACK TO SAVEPOINT).
    Resumed,
}

impl QueryResult {
    /// An answer with nothing but its rows, freshness and tag.
    pub fn new(
        schema: SchemaRef,
        stream: BoxStream<'static, Result<RecordBatch>>,
        freshness: Freshness,
        tag: &str,
    ) -> QueryResult {
        QueryResult {
            schema,
            stream,
            freshness,
            tag: tag.into(),
            memo: None,
            notices: vec![],
            copy: None,
            txn: TxnChange::None,
        }
    }
}

/// A logical table as `GET /v1/tables` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// Logical name.
    pub name: String,
    /// Time column.
    pub time_column: String,
    /// Batch table.
    pub batch_table: String,
    /// Speed table.
    pub speed_table: String,
    /// Columns with warehouse types.
    pub columns: Vec<ColumnInfo>,
    /// Current batch watermark.
    pub batch_watermark: Option<String>,
}

/// The engine shared by all frontends.
pub struct Engine {
    config: Arc<Config>,
    warehouse: Arc<Warehouse>,
    metrics: Arc<crate::metrics::Metrics>,
    catalog: Catalog,
    watermarks: Arc<WatermarkTracker>,
    described: Mutex<HashMap<(SessionParams, String), Described>>,
    legs: LegCache,
    windows: Option<WindowsReader>,
    push: Option<Arc<crate::watermark_push::PushStatus>>,
    named: crate::queries::NamedQueries,
    recent: rewarm::Recent,
    columns: Mutex<HashMap<String, Vec<ColumnInfo>>>,
    readiness: Mutex<Option<(Instant, std::result::Result<(), String>)>>,
    shapes: forward::Shapes,
    life: tracked::Lifecycle,
    limits: ResultLimits,
    access: crate::access::Access,
    catalog_names: tokio::sync::Mutex<Option<(Instant, Arc<crate::access::CatalogNames>)>>,
}

impl Engine {
    /// Builds the engine and starts the watermark poller; succeeds while the warehouse is down.
    pub async fn start(
        config: Arc<Config>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Engine>> {
        crate::exec::tls::install_provider();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let warehouse = Arc::new(Warehouse::new(&config, metrics.clone())?);
        let legs = LegCache::new(&config.cache, metrics.clone())?;
        let window_ttl = match config.cache.enabled {
            true => config.cache.speed_ttl.get(),
            false => std::time::Duration::ZERO,
        };
        let windows =
            config.redis.as_ref().map(|r| WindowsReader::new(r, window_ttl)).transpose()?;
        let named = match &config.queries {
            Some(q) => crate::queries::NamedQueries::load(std::path::Path::new(&q.dir))?,
            None => Default::default(),
        };
        let catalog = Catalog::new(&config, warehouse.clone());
        let watermarks =
            Arc::new(WatermarkTracker::new(warehouse.clone(), &config.warehouse.watermark_table));
        if !config.tables.is_empty() {
            if let Err(e) = watermarks.refresh().await {
                tracing::warn!(error = %e, "initial watermark read failed; will keep polling");
            }
            watermarks.clone().spawn_poller(config.warehouse.watermark_poll()?, shutdown.clone());
        }
        let push = match (&windows, config.tables.is_empty()) {
            (Some(w), false) => {
                Some(crate::watermark_push::spawn(watermarks.clone(), w.target(), shutdown.clone()))
            }
            _ => None,
        };
        let access_users = config.users.clone();
        let limits = ResultLimits {
            rows: config.limits.max_result_rows,
            bytes: config.limits.max_result_bytes,
        };
        let engine = Arc::new(Engine {
            config,
            warehouse,
            metrics,
            catalog,
            watermarks,
            described: Mutex::new(HashMap::new()),
            columns: Mutex::new(HashMap::new()),
            legs,
            windows,
            push,
            named,
            recent: Default::default(),
            readiness: Mutex::new(None),
            shapes: Default::default(),
            life: Default::default(),
            limits,
            access: crate::access::Access::new(&access_users),
            catalog_names: Default::default(),
        });
        engine.clone().spawn_redis_check();
        if engine.legs.enabled() {
            engine.spawn_retirer(shutdown.clone());
        }
        if engine.config.cache.rewarm && engine.legs.enabled() {
            engine.spawn_rewarmer(shutdown);
        }
        Ok(engine)
    }

    /// The named queries loaded at start.
    pub fn named_queries(&self) -> &crate::queries::NamedQueries {
        &self.named
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn dialect(&self) -> Dialect {
        self.config.warehouse.dialect
    }

    /// Executes one SQL statement with parameters bound as `$1..$n`.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[Param],
        session: &mut Session,
    ) -> Result<QueryResult> {
        let started = Instant::now();
        let frontend = if session.frontend.is_empty() { "other" } else { session.frontend };
        let mut log = tracked::QueryLog::new(&session.user, frontend);
        let result = match self.life.enter() {
            Ok(in_flight) => {
                let killed = self.life.killed();
                tokio::select! {
                    r = self.execute_inner(sql, params, session) => r.map(|r| (r, in_flight)),
                    _ = killed => Err(Error::ShuttingDown("canceled at the shutdown deadline".into())),
                }
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok((r, _)) => self.metrics.query(frontend, r.freshness.plan.name(), started.elapsed()),
            Err(e) => {
                self.metrics.error(frontend, e.sqlstate());
                log.sqlstate = Some(e.sqlstate().to_string());
            }
        }
        let (mut result, in_flight) = result?;
        if !session.forget_freshness {
            session.last_freshness = Some(result.freshness.clone());
        }
        log.describe(&result.freshness);
        let tracking = tracked::Tracking {
            log,
            limits: self.limits,
            in_flight,
            killed: Box::pin(self.life.killed()),
        };
        result.stream = tracked::track(result.stream, tracking);
        Ok(result)
    }

    /// Graceful shutdown: refuses new statements (57P01), lets those in flight finish within
    /// `deadline`, then stops them and cancels their warehouse queries. Returns how many had
    /// to be stopped.
    pub async fn drain(&self, deadline: std::time::Duration) -> usize {
        self.life.drain(deadline).await
    }

    async fn execute_inner(
        &self,
        sql: &str,
        params: &[Param],
        session: &mut Session,
    ) -> Result<QueryResult> {
        let search_path = session.setting("search_path").map(str::to_string);
        self.authorize(sql, &session.user, search_path.as_deref()).await?;
        let wp = session.warehouse_params();
        let bypass = bypass_cache(session);
        let text = self.text_key(sql, params, &wp, session.pinned.is_empty() && !bypass);
        if let Some(k) = &text {
            if let Some(a) = self.legs.answer_by_text(k).await {
                return Ok(answer_result(&a, true));
            }
        }
        match self.classify(sql)? {
            Class::Local(local) => self.local(local, params, session).await,
            Class::Split { query, table } => {
                self.recent.note(&table, sql, params);
                let ctx = SplitCtx {
                    params,
                    wp: &wp,
                    pins: &session.pinned,
                    bypass,
                    text: text.as_ref(),
                };
                self.split(sql, *query, &table, &ctx).await
            }
            other => self.query(sql, other, params, &wp, &session.pinned, bypass).await,
        }
    }

    /// The fast-path key of a statement now (None when caching is off or skipped).
    fn text_key(
        &self,
        sql: &str,
        params: &[Param],
        wp: &SessionParams,
        on: bool,
    ) -> Option<TextKey> {
        let generation = self.watermarks.generation();
        let epoch = self.legs.epoch(chrono::Utc::now().timestamp_micros()).filter(|_| on)?;
        Some(TextKey {
            sql: sql.into(),
            params: params.to_vec(),
            session: wp.clone(),
            epoch,
            generation,
        })
    }

    /// The metrics in Prometheus text format, with gauges read now.
    pub fn metrics_text(&self) -> String {
        let mut gauges = self.legs.byte_gauges();
        let now = chrono::Utc::now().timestamp_micros();
        for t in self.catalog.tables() {
            let w = self.watermarks.cached(&t.name).map(|w| w.value);
            let at = match w {
                Some(Value::Timestamp(v) | Value::TimestampTz(v)) => v,
                Some(Value::Date(d)) => d as i64 * 86_400_000_000,
                _ => continue,
            };
            let age = (now - at) as f64 / 1e6;
            gauges.push(("tidemark_watermark_age_seconds", vec![("table", t.name.clone())], age));
        }
        gauges.extend(self.warehouse.pool_gauges());
        for (role, why) in self.redis_roles() {
            let up = if why.is_none() { 1.0 } else { 0.0 };
            gauges.push(("tidemark_redis_up", vec![("use", role.to_string())], up));
        }
        self.metrics.render(&gauges)
    }

    /// What tidemark uses Redis for (`windows`, `watermark_push`) and, for each, why it is
    /// unavailable now (None: working, or not tried yet).
    pub fn redis_roles(&self) -> Vec<(&'static str, Option<String>)> {
        let mut roles = Vec::new();
        if let Some(w) = &self.windows {
            roles.push(("windows", w.unavailable_because()));
        }
        if let Some(p) = &self.push {
            roles.push(("watermark_push", p.unavailable_because()));
        }
        roles
    }

    /// Connects to Redis and pings it now (`tidemark check`): None without `[redis]`.
    pub async fn check_redis(&self) -> Option<std::result::Result<(), String>> {
        Some(self.windows.as_ref()?.probe().await)
    }

    /// Checks Redis once at start, so a wrong password or certificate is a WARN in the log
    /// at once rather than a silent loss of the windows layer.
    fn spawn_redis_check(self: Arc<Self>) {
        if self.windows.is_none() {
            return;
        }
        tokio::spawn(async move {
            let Some(w) = &self.windows else { return };
            if let Err(why) = w.probe().await {
                tracing::warn!(error = %why, "windows layer unavailable at start; answers use the speed table until Redis answers");
            }
        });
    }

    /// Whether the warehouse answers (`SELECT 1` within 2 s), checked at most once a second;
    /// the error says why not.
    pub async fn ready(&self) -> std::result::Result<(), String> {
        if self.life.draining() {
            return Err("shutting down".into());
        }
        if let Some((at, r)) = &*self.readiness.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return r.clone();
            }
        }
        let no_settings = SessionParams::new();
        let probe = self.warehouse.fetch("SELECT 1", &[], &[], &no_settings);
        let r = match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("warehouse: {e}")),
            Err(_) => Err("warehouse: no answer within 2 s".into()),
        };
        *self.readiness.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), r.clone()));
        r
    }

    /// Split legs run on the warehouse since start, per layer (`batch`, `speed`).
    pub fn legs_run(&self) -> std::collections::BTreeMap<String, u64> {
        self.metrics.legs_run()
    }

    /// SQL of the batch legs in the cache now (diagnostics and tests).
    pub fn cached_batch_sql(&self) -> Vec<String> {
        self.legs.batch_sql()
    }

    /// Runs a split or passthrough statement.
    async fn query(
        &self,
        sql: &str,
        class: Class,
        params: &[Param],
        wp: &SessionParams,
        pins: &Pins,
        bypass: bool,
    ) -> Result<QueryResult> {
        match class {
            Class::Passthrough { reason } => self.passthrough(sql, params, reason, None, wp).await,
            Class::Split { query, table } => {
                self.recent.note(&table, sql, params);
                let ctx = SplitCtx { params, wp, pins, bypass, text: None };
                self.split(sql, *query, &table, &ctx).await
            }
            Class::Local(_) => Err(Error::Syntax("expected a query".into())),
        }
    }

    /// Runs the query of a cursor or COPY.
    async fn inner_query(
        &self,
        sql: &str,
        params: &[Param],
        session: &Session,
    ) -> Result<QueryResult> {
        let class = self.classify(sql)?;
        self.query(
            sql,
            class,
            params,
            &session.warehouse_params(),
            &session.pinned,
            bypass_cache(session),
        )
        .await
    }

    /// Whether the warehouse reads backslashes in '...' literals as escapes, so clients must
    /// be told `standard_conforming_strings = off` (always so under the Redshift dialect).
    pub async fn backslash_escapes(&self) -> bool {
        let facts = self.catalog.facts().await.map(|f| f.backslash_escapes);
        self.dialect() == Dialect::Redshift || facts.unwrap_or(false)
    }

    /// Classifies one statement (errors: 42601 syntax, 25006 writes).
    pub fn classify(&self, sql: &str) -> Result<Class> {
        if sql.contains('\0') {
            return Err(Error::data(
                "22021",
                "invalid byte sequence for encoding \"UTF8\": 0x00 (SQL text cannot hold NUL)",
            ));
        }
        if plan::copy::is_copy(sql) {
            return Ok(Class::Local(Local::CopyOut(plan::copy::parse(sql)?)));
        }
        if let Some(reset) = plan::local::parse_reset(sql) {
            return Ok(Class::Local(reset));
        }
        if let Some(m) = plan::local::parse_move(sql) {
            let (name, count) = m?;
            return Ok(Class::Local(Local::Move { name, count }));
        }
        let stmts = match plan::parse(self.dialect(), sql) {
            Ok(s) => s,
            // The parser does not know every PostgreSQL form; the warehouse (whose sessions
            // are read-only) gives the authoritative answer or error.
            Err(e) if self.dialect() == Dialect::Postgres && !sql.trim().is_empty() => {
                return Ok(Class::Passthrough { reason: format!("not parsed by tidemark: {e}") })
            }
            Err(e) => return Err(e),
        };
        let stmt = match <[Statement; 1]>::try_from(stmts) {
            Ok([stmt]) => stmt,
            Err(v) if v.is_empty() => return Err(Error::Syntax("empty query".into())),
            Err(v) => {
                return Err(Error::Syntax(format!("expected one statement, got {}", v.len())))
            }
        };
        if let Some(kind) = plan::write_kind(&stmt) {
            return Err(Error::ReadOnly(kind));
        }
        Ok(match stmt {
            // Redshift's catalog listings; read-only, answered by the warehouse.
            Statement::ShowDatabases { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
                if self.dialect() == Dialect::Redshift =>
            {
                Class::Passthrough { reason: "a catalog listing (SHOW)".into() }
            }
            Statement::Query(q) => {
                if let Some(calls) = plan::local::setting_calls(&q) {
                    return Ok(Class::Local(Local::Settings(calls)));
                }
                match self.logical_table(&Statement::Query(q.clone())) {
                    Ok(table) => Class::Split { query: q, table },
                    Err(reason) => Class::Passthrough { reason },
                }
            }
            other => Class::Local(plan::local::local_of(other)?),
        })
    }

    /// The single logical table a statement reads, or why it is not a split candidate.
    fn logical_table(&self, stmt: &Statement) -> std::result::Result<String, String> {
        let mut hits: Vec<String> = Vec::new();
        let _ = visit_relations(stmt, |name| {
            for t in self.catalog.tables() {
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

    async fn describe(&self, sql: &str, wp: &SessionParams) -> Result<Described> {
        let key = (wp.clone(), sql.to_string());
        if let Some(d) = self.described.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(d.clone());
        }
        let d = self.warehouse.describe(sql, wp).await?;
        let mut cache = self.described.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= DESCRIBE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, d.clone());
        Ok(d)
    }

    async fn table_columns(&self, table: &str) -> Result<Vec<ColumnInfo>> {
        if let Some(c) = self.columns.lock().unwrap_or_else(|e| e.into_inner()).get(table) {
            return Ok(c.clone());
        }
        let cols = self.catalog.columns_of(table).await?;
        self.columns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_string(), cols.clone());
        Ok(cols)
    }

    /// Plans a split query against the current watermark at instant `now_micros` with the
    /// bound `params` (Err(Unsplittable) → passthrough).
    async fn plan_split(
        &self,
        sql: &str,
        mut query: sqlparser::ast::Query,
        table: &str,
        (now_micros, params): (i64, &[Param]),
        wp: &SessionParams,
        pins: &Pins,
    ) -> Result<(SplitPlan, Described)> {
        let cfg = self
            .config
            .table(table)
            .ok_or_else(|| Error::internal("unknown logical table"))?
            .clone();
        let facts = self.catalog.facts().await?;
        if sql.contains('\\') && split::backslashes_disagree(self.dialect(), &facts) {
            return Err(Error::unsplittable("backslash read differently by parser and warehouse"));
        }
        let describe_sql = split::describe_form(&query, self.dialect(), &facts);
        let described = self.describe(describe_sql.as_deref().unwrap_or(sql), wp).await?;
        if let Some(c) = described.columns.iter().find(|c| !supported_type(&c.ty)) {
            return Err(Error::unsplittable(format!(
                "result type {} is served as text",
                c.ty.name()
            )));
        }
        if !split::substitute_now(&mut query, now_micros, self.dialect()) {
            return Err(Error::unsplittable("now() with arguments"));
        }
        split::bind_limits(&mut query, params);
        let watermark = match pins.get(&cfg.name.to_lowercase()) {
            Some(w) => w.clone(),
            None => self.watermarks.snapshot(&cfg.name).await?,
        };
        let columns = self.table_columns(&cfg.batch_table).await?;
        let input = SplitInput {
            query: &query,
            table: &cfg,
            columns: &columns,
            facts: &facts,
            described: &described,
            watermark: &watermark,
            time: time_rules(wp, &facts, self.dialect()),
        };
        Ok((split::plan(&input)?, described))
    }

    async fn split(
        &self,
        sql: &str,
        query: sqlparser::ast::Query,
        table: &str,
        ctx: &SplitCtx<'_>,
    ) -> Result<QueryResult> {
        let SplitCtx { params, wp, pins, bypass, text } = *ctx;
        let now = chrono::Utc::now().timestamp_micros();
        let planned = self.plan_split(sql, query, table, (now, params), wp, pins).await;
        let (plan, described) = match planned {
            Ok(p) => p,
            Err(Error::Unsplittable(reason)) => {
                return self.passthrough(sql, params, reason, Some(table), wp).await
            }
            Err(e) => return Err(e),
        };
        let cacheable = match &plan.shape {
            Shape::Aggregate(_) => true,
            Shape::Rows(r) => r.limit.is_some(),
        };
        let epoch = self.legs.epoch(now).filter(|_| cacheable && !bypass);
        let outcome = match epoch {
            Some(epoch) => {
                let key = AnswerKey {
                    sql: sql.to_string(),
                    params: params.to_vec(),
                    session: wp.clone(),
                    watermark: plan.watermark.text(),
                    epoch,
                };
                let run = self.cached_split((key, text), &plan, &described, params, now, wp);
                Box::pin(run).await
            }
            None => Box::pin(self.run_split(&plan, &described, params, now, wp, bypass)).await,
        };
        match outcome {
            Err(Error::Unsplittable(reason)) => {
                tracing::debug!(%reason, "split merge gave up; passing through");
                self.passthrough(sql, params, reason, Some(table), wp).await
            }
            Err(Error::Warehouse { sqlstate, message }) if !sqlstate.starts_with("57") => {
                tracing::warn!(%sqlstate, %message, "a split leg failed; passing the query through");
                self.passthrough(sql, params, format!("leg failed: {message}"), Some(table), wp)
                    .await
            }
            other => other,
        }
    }

    /// A split answer from the whole-answer cache, or computed once for everyone asking.
    async fn cached_split(
        &self,
        (key, text): (AnswerKey, Option<&TextKey>),
        plan: &SplitPlan,
        described: &Described,
        params: &[Param],
        now: i64,
        wp: &SessionParams,
    ) -> Result<QueryResult> {
        let load = || async {
            let r = Box::pin(self.run_split(plan, described, params, now, wp, false)).await?;
            let batches: Vec<RecordBatch> = r.stream.try_collect().await?;
            Ok(Answer {
                schema: r.schema,
                batches,
                freshness: r.freshness,
                memo: Default::default(),
            })
        };
        let (answer, hit) = self.legs.answer_or_load(key, load).await?;
        if let Some(t) = text {
            self.legs.remember_text(t.clone(), answer.clone()).await;
        }
        Ok(answer_result(&answer, hit))
    }

    async fn run_split(
        &self,
        plan: &SplitPlan,
        described: &Described,
        params: &[Param],
        now: i64,
        wp: &SessionParams,
        bypass: bool,
    ) -> Result<QueryResult> {
        if let Shape::Rows(spec) = &plan.shape {
            if spec.limit.is_none() {
                return self.stream_legs(plan, described, params, now, wp);
            }
        }
        let mut win = match &plan.shape {
            Shape::Aggregate(_) => self.window_leg(plan, params, now, bypass).await,
            Shape::Rows(_) => Default::default(),
        };
        let speed_sql = win.speed_sql.take();
        let cut = self.batch_cut(plan, params, bypass);
        let legs = plan.legs.iter().map(|leg| async {
            let started = Instant::now();
            if let (split::Layer::Batch, Some(pieces)) = (leg.layer, &cut) {
                let (rows, status) = self.run_pieces(pieces, described, params, wp).await?;
                return Ok(((rows, now), status, started.elapsed()));
            }
            let sql = match (&speed_sql, leg.layer) {
                (Some(bounded), split::Layer::Speed) => bounded.clone(),
                _ => leg.sql.clone(),
            };
            let key = LegKey { sql: sql.clone(), params: params.to_vec(), session: wp.clone() };
            let load = || async {
                self.metrics.leg(leg.layer.name());
                self.warehouse.fetch(&sql, &described.params, params, wp).await.map(|f| f.rows)
            };
            let (rows, status) = self.legs.get_or_load(leg.layer, key, bypass, load).await?;
            Ok::<_, Error>((rows, status, started.elapsed()))
        });
        let results = futures::future::try_join_all(legs).await?;
        let mut reports = Vec::new();
        let mut rows = Vec::new();
        let mut realtime_at = now;
        for (leg, ((r, read_at), status, elapsed)) in plan.legs.iter().zip(results) {
            if leg.layer == split::Layer::Speed {
                realtime_at = read_at; // a cached speed leg is as fresh as when it was read
            }
            reports.push(LegReport {
                name: leg.layer.name().into(),
                rows: Some(r.len()),
                elapsed_ms: elapsed.as_secs_f64() * 1000.0,
                cache: status,
            });
            rows.push(Arc::unwrap_or_clone(r));
        }
        if let (Some(r), Some(report)) = (win.rows.take(), win.leg.take()) {
            rows.push(r);
            reports.push(report);
        }
        let ctx = MergeCtx {
            dialect: self.dialect(),
            text_bytewise: plan.text.order_bytewise,
            text_keys: plan.text.keys_bytewise,
        };
        let merged = match &plan.shape {
            Shape::Aggregate(spec) => merge_aggregate(spec, rows, ctx)?,
            Shape::Rows(spec) => merge_rows(spec, rows, ctx)?,
        };
        let schema = schema_for(&described.columns);
        let batch = batch_from_rows(&schema, &described.columns, merged)?;
        let mut freshness = self.split_freshness(plan, reports, realtime_at);
        freshness.degraded = win.degraded;
        freshness.realtime_reaches = win.reaches;
        freshness.windows = win.report;
        Ok(QueryResult::new(schema, stream::once(async { Ok(batch) }).boxed(), freshness, "SELECT"))
    }

    /// Streams unbounded, unsorted row legs one after the other; each leg starts when the
    /// previous one is drained, so nothing is held in memory.
    fn stream_legs(
        &self,
        plan: &SplitPlan,
        described: &Described,
        params: &[Param],
        now: i64,
        wp: &SessionParams,
    ) -> Result<QueryResult> {
        let reports = plan
            .legs
            .iter()
            .map(|l| LegReport {
                name: l.layer.name().into(),
                rows: None,
                elapsed_ms: 0.0,
                cache: CacheStatus::None,
            })
            .collect();
        let schema = schema_for(&described.columns);
        let (target, wh) = (schema.clone(), self.warehouse.clone());
        let (types, params, wp) = (described.params.clone(), params.to_vec(), wp.clone());
        let sqls: Vec<String> = plan.legs.iter().map(|l| l.sql.clone()).collect();
        let stream =
            stream::iter(sqls)
                .then(move |sql| {
                    let (wh, types, params, wp) =
                        (wh.clone(), types.clone(), params.clone(), wp.clone());
                    async move {
                        wh.stream(&sql, &types, &params, &wp, BATCH_ROWS).await.map(|(_, s)| s)
                    }
                })
                .try_flatten()
                .map(move |b| {
                    b.and_then(|b| Ok(RecordBatch::try_new(target.clone(), b.columns().to_vec())?))
                })
                .boxed();
        let freshness = self.split_freshness(plan, reports, now);
        Ok(QueryResult::new(schema, stream, freshness, "SELECT"))
    }

    fn split_freshness(&self, plan: &SplitPlan, legs: Vec<LegReport>, now: i64) -> Freshness {
        let speed_ran = plan.legs.iter().any(|l| l.layer == split::Layer::Speed);
        Freshness {
            plan: PlanKind::Split,
            table: Some(plan.table.clone()),
            batch_watermark: Some(plan.watermark.text()),
            realtime_as_of: speed_ran.then(|| format!("{}+00", timestamp_text(now))),
            cache: CacheStatus::of_answer(&legs),
            legs,
            pruned: plan.pruned.iter().map(|l| l.name().to_string()).collect(),
            degraded: false,
            reason: None,
            realtime_reaches: None,
            windows: self.windows_not_used(&plan.table, "not an aggregate"),
        }
    }

    /// A windows report saying why they were not used, for tables that have windows.
    fn windows_not_used(&self, table: &str, why: &str) -> Option<WindowsReport> {
        let has = self.config.table(table).is_some_and(|t| t.windows.is_some());
        has.then(|| WindowsReport {
            used: false,
            high_water_mark: None,
            from: None,
            buckets: 0,
            reason: Some(why.to_string()),
        })
    }

    async fn passthrough(
        &self,
        sql: &str,
        params: &[Param],
        reason: String,
        table: Option<&str>,
        wp: &SessionParams,
    ) -> Result<QueryResult> {
        let started = Instant::now();
        let (schema, stream) = self.warehouse.stream(sql, &[], params, wp, BATCH_ROWS).await?;
        let w = table.and_then(|t| self.watermarks.cached(t)).map(|w| w.text());
        let freshness = Freshness {
            plan: PlanKind::Passthrough,
            table: table.map(str::to_string),
            batch_watermark: w,
            realtime_as_of: table
                .map(|_| format!("{}+00", timestamp_text(chrono::Utc::now().timestamp_micros()))),
            legs: vec![LegReport {
                name: "warehouse".into(),
                rows: None,
                elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
                cache: CacheStatus::None,
            }],
            cache: None,
            pruned: vec![],
            degraded: false,
            windows: table.and_then(|t| {
                self.windows_not_used(t, "the query is passed through to the warehouse")
            }),
            reason: Some(reason),
            realtime_reaches: None,
        };
        let tag = sql.split_whitespace().next().unwrap_or("SELECT").to_uppercase();
        Ok(QueryResult::new(schema, stream, freshness, &tag))
    }

    /// Users, grants and API keys.
    pub fn access(&self) -> &crate::access::Access {
        &self.access
    }

    /// A session of `frontend` for `user` (empty: anonymous), with the user's own statement
    /// timeout.
    pub fn session_for(&self, frontend: &'static str, user: &str) -> Session {
        let mut s = Session::new(frontend);
        s.user = user.to_string();
        s.user_timeout = self
            .config
            .users
            .iter()
            .find(|u| u.name == user)
            .and_then(|u| u.statement_timeout)
            .map(crate::config::Span::get);
        s
    }

    /// Refuses (42501) what a restricted user may not read, before anything runs; statements
    /// of restricted users must parse.
    pub async fn authorize(&self, sql: &str, user: &str, search_path: Option<&str>) -> Result<()> {
        let Some(grants) = self.access.restricted(user) else { return Ok(()) };
        // COPY is parsed by tidemark itself: what it reads is its query
        let copied = match plan::copy::is_copy(sql) {
            true => Some(plan::copy::parse(sql)?.query()),
            false => None,
        };
        let sql = copied.as_deref().unwrap_or(sql);
        let stmts = plan::parse(self.dialect(), sql).map_err(|e| {
            Error::PermissionDenied(format!(
                "permission denied: statements of user {user:?} must parse so their permissions can be checked ({e})"
            ))
        })?;
        let catalog = self.catalog_names().await?;
        let resolution = crate::access::Resolution { search_path, catalog: &catalog };
        crate::access::check(grants, &stmts, &self.config.tables, &resolution)
    }

    /// The warehouse catalog's names the grants check resolves against, read again after a
    /// minute (a function created since is checked against every schema of the search path
    /// until then); the last ones read stay in use while the warehouse does not answer.
    async fn catalog_names(&self) -> Result<Arc<crate::access::CatalogNames>> {
        const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(60);
        let mut held = self.catalog_names.lock().await;
        if let Some((at, names)) = &*held {
            if at.elapsed() < FRESH_FOR {
                return Ok(names.clone());
            }
        }
        let sql = crate::access::CatalogNames::QUERY;
        let read = match self.warehouse.fetch(sql, &[], &[], &SessionParams::new()).await {
            Ok(f) => f,
            Err(e) => return held.as_ref().map(|(_, n)| n.clone()).ok_or(e),
        };
        let text = |v: Option<Value>| match v {
            Some(Value::Text(t)) => t,
            _ => String::new(),
        };
        let rows = read.rows.into_iter().map(|r| {
            let mut r = r.into_iter();
            (text(r.next()), text(r.next()), text(r.next()))
        });
        let names = Arc::new(crate::access::CatalogNames::from_rows(rows));
        *held = Some((Instant::now(), names.clone()));
        Ok(names)
    }

    /// Parameter types and result columns of a statement, without running it (what the
    /// extended protocol's Describe needs). Writes and what `user` may not read are refused.
    pub async fn describe_statement(
        &self,
        sql: &str,
        wp: &SessionParams,
        user: &str,
    ) -> Result<Described> {
        let search_path = wp.iter().find(|(k, _)| k == "search_path").map(|(_, v)| v.as_str());
        self.authorize(sql, user, search_path).await?;
        let text =
            |name: &str| Described { columns: vec![Column::new(name, Type::TEXT)], params: vec![] };
        match self.classify(sql)? {
            Class::Local(Local::Show(name)) if name.starts_with("tidemark.") => Ok(text(&name)),
            Class::Local(Local::Show(name)) => {
                match self.describe(&format!("SHOW {name}"), wp).await {
                    // a custom parameter the session may have set (`SET myapp.x = ...`)
                    Err(e) if e.sqlstate() == "42704" && name.contains('.') => Ok(text(&name)),
                    other => other,
                }
            }
            Class::Local(Local::Settings(calls)) => Ok(Described {
                columns: calls
                    .iter()
                    .map(|(name, _)| Column::new(name.clone(), Type::TEXT))
                    .collect(),
                params: vec![],
            }),
            Class::Local(Local::Explain(_)) => Ok(text("QUERY PLAN")),
            Class::Local(_) => Ok(Described { columns: vec![], params: vec![] }),
            Class::Split { query, .. } => {
                let facts = self.catalog.facts().await?;
                let form = split::describe_form(&query, self.dialect(), &facts);
                self.describe(form.as_deref().unwrap_or(sql), wp).await
            }
            Class::Passthrough { .. } => self.describe(sql, wp).await,
        }
    }

    /// The lambda plan of a statement: class, W, each leg's SQL and what was pruned.
    pub async fn explain(&self, sql: &str, wp: &SessionParams) -> Result<Explain> {
        let passthrough = |reason: String| Explain {
            class: "passthrough".into(),
            table: None,
            batch_watermark: None,
            legs: vec![ExplainLeg { name: "warehouse".into(), sql: sql.to_string() }],
            pruned: vec![],
            reason: Some(reason),
            windows: None,
        };
        match self.classify(sql)? {
            Class::Local(_) => Ok(Explain {
                class: "local".into(),
                table: None,
                batch_watermark: None,
                legs: vec![],
                pruned: vec![],
                reason: Some("answered by tidemark without the warehouse".into()),
                windows: None,
            }),
            Class::Passthrough { reason } => Ok(passthrough(reason)),
            Class::Split { query, table } => {
                let now = chrono::Utc::now().timestamp_micros();
                match self.plan_split(sql, *query, &table, (now, &[]), wp, &Pins::new()).await {
                    Ok((p, _)) => {
                        let mut e = explain_split(&p);
                        if let Some(pieces) = self.batch_cut(&p, &[], false) {
                            let n = pieces.len();
                            e.legs.retain(|l| l.name != "batch");
                            for (i, sql) in pieces.into_iter().enumerate() {
                                let name = format!("batch piece {}/{n}", i + 1);
                                e.legs.insert(i, ExplainLeg { name, sql });
                            }
                        }
                        self.explain_windows(&p, now, &mut e).await;
                        Ok(e)
                    }
                    Err(Error::Unsplittable(reason)) => {
                        let mut e = passthrough(reason);
                        e.table = Some(table.clone());
                        e.batch_watermark = self.watermarks.cached(&table).map(|w| w.text());
                        Ok(e)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The current watermark of the logical table a statement would split on, if any (Flight
    /// pins it into the ticket so the data matches the FlightInfo).
    pub async fn watermark_for(
        &self,
        sql: &str,
    ) -> Result<Option<(String, crate::watermark::Watermark)>> {
        match self.classify(sql)? {
            Class::Split { table, .. } => {
                Ok(Some((table.clone(), self.watermarks.snapshot(&table).await?)))
            }
            _ => Ok(None),
        }
    }

    /// A weak ETag for the answer to `sql` with `params` over watermark `w` in the current
    /// realtime epoch, per representation `variant`; None when answers are not cached.
    pub fn etag(&self, sql: &str, params: &[Param], w: &str, variant: &str) -> Option<String> {
        use std::hash::{Hash, Hasher};
        let epoch = self.legs.epoch(chrono::Utc::now().timestamp_micros())?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (sql, params, w, epoch, variant).hash(&mut h);
        Some(format!("W/\"{:016x}\"", h.finish()))
    }

    /// The current W (as text) of the logical table a split query reads, if any.
    pub async fn current_watermark(&self, sql: &str) -> Option<String> {
        self.watermark_for(sql).await.ok().flatten().map(|(_, w)| w.text())
    }

    /// How long clients may reuse an answer (the speed TTL, whole seconds).
    pub fn max_age_secs(&self) -> u64 {
        self.legs.max_age_secs()
    }

    /// The logical tables with their columns and current watermark.
    pub async fn tables(&self) -> Result<Vec<TableInfo>> {
        let mut out = Vec::new();
        for t in self.catalog.tables() {
            let columns = self.table_columns(&t.batch_table).await?;
            let w = match self.watermarks.cached(&t.name) {
                Some(w) => Some(w),
                None => self.watermarks.snapshot(&t.name).await.ok(),
            };
            out.push(TableInfo {
                name: t.name.clone(),
                time_column: t.time_column.clone(),
                batch_table: t.batch_table.clone(),
                speed_table: t.speed_table.clone(),
                columns,
                batch_watermark: w.map(|w| w.text()),
            });
        }
        Ok(out)
    }
}

fn explain_split(p: &SplitPlan) -> Explain {
    let merge = match &p.shape {
        Shape::Aggregate(a) => format!(
            "merge partial aggregates over {} group key(s), {} partial column(s), {} output(s)",
            a.n_keys,
            a.partials.len(),
            a.outputs.len()
        ),
        Shape::Rows(r) => format!(
            "concatenate rows, sort on {} key(s), limit {:?} offset {}",
            r.order.len(),
            r.limit,
            r.offset
        ),
    };
    Explain {
        class: "split".into(),
        table: Some(p.table.clone()),
        batch_watermark: Some(p.watermark.text()),
        legs: p
            .legs
            .iter()
            .map(|l| ExplainLeg { name: l.layer.name().into(), sql: l.sql.clone() })
            .collect(),
        pruned: p.pruned.iter().map(|l| l.name().to_string()).collect(),
        reason: Some(merge),
        windows: None,
    }
}

fn explain_lines(e: &Explain) -> Vec<String> {
    let mut lines = vec![format!("tidemark plan: {}", e.class)];
    if let Some(t) = &e.table {
        lines.push(format!("  logical table: {t}"));
    }
    if let Some(w) = &e.batch_watermark {
        lines.push(format!("  batch watermark: {w}"));
    }
    for l in &e.legs {
        lines.push(format!("  leg {}: {}", l.name, l.sql));
    }
    for p in &e.pruned {
        lines.push(format!("  pruned: {p} leg"));
    }
    if let Some(r) = &e.reason {
        lines.push(format!("  note: {r}"));
    }
    if let Some(w) = &e.windows {
        lines.push(format!("  windows: {w}"));
    }
    lines
}

/// A query result from a cached answer; a hit marks the answer and its legs `hit`.
fn answer_result(answer: &Answer, hit: bool) -> QueryResult {
    let mut freshness = answer.freshness.clone();
    if hit {
        freshness.cache = Some(CacheStatus::Hit);
        for l in freshness.legs.iter_mut().filter(|l| l.cache != CacheStatus::None) {
            l.cache = CacheStatus::Hit;
        }
    }
    let batches = answer.batches.clone();
    let stream = stream::iter(batches.into_iter().map(Ok)).boxed();
    let mut r = QueryResult::new(answer.schema.clone(), stream, freshness, "SELECT");
    r.memo = Some(answer.memo.clone());
    r
}

fn empty(tag: &str) -> QueryResult {
    let schema = Arc::new(arrow_schema::Schema::empty());
    QueryResult::new(schema, stream::empty().boxed(), Freshness::local(), tag)
}

/// A local answer of text columns (`columns`) and rows of text or NULL.
fn text_rows(columns: &[String], rows: Vec<Vec<Option<String>>>, tag: &str) -> Result<QueryResult> {
    let cols: Vec<Column> = columns.iter().map(|c| Column::new(c.clone(), Type::TEXT)).collect();
    let schema = schema_for(&cols);
    let rows = rows
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.map_or(Value::Null, Value::Text)).collect())
        .collect();
    let batch = batch_from_rows(&schema, &cols, rows)?;
    let stream = stream::once(async { Ok(batch) }).boxed();
    Ok(QueryResult::new(schema, stream, Freshness::local(), tag))
}

fn text_result(column: &str, lines: Vec<String>, tag: &str) -> Result<QueryResult> {
    let rows = lines.into_iter().map(|l| vec![Some(l)]).collect();
    text_rows(&[column.to_string()], rows, tag)
}
