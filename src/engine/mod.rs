//! The one engine every frontend calls: parse → classify → plan → execute → Arrow batches
//! with the freshness of the answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::Serialize;
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
use crate::model::cost::{Cost, Phase};
use crate::model::freshness::{CacheStatus, Freshness, LegReport, PlanKind, WindowsReport};
pub use crate::model::tag::Tag;
use crate::model::value::{supported_type, timestamp_text, Value};
use crate::plan::classify::{ParseCache, Parsed, Reads};
use crate::plan::split::{self, Shape, SplitInput, SplitPlan};
use crate::plan::timefold::{TimeRules, Zone};
use crate::plan::{Class, Explain, ExplainLeg, Local};
use crate::watermark::WatermarkTracker;
use crate::windows::reader::WindowsReader;

pub mod activity;
mod authorize;
mod cancel;
mod chunks;
mod classify;
mod explain;
mod fleet;
mod forward;
mod health;
pub mod history;
mod local;
mod probe;
mod result;
mod retire;
mod rewarm;
mod run;
mod session;
mod tracked;
mod union;
mod windows_leg;

pub use crate::metrics::Connection;
pub use crate::plan::copy::{CopyFormat, CopyOptions, ForceQuote};
pub use crate::plan::local::{check_setting, parse_move};
pub use crate::queries::{NamedQueries, NamedQuery, QueryParam};
pub use cancel::{Cancellable, Outcome as CancelOutcome};
use explain::explain_lines;
pub use forward::Forwarded;
use result::{empty, text_result, text_rows};
pub use result::{QueryResult, TableInfo, TxnChange};
use run::{answer_result, SplitCtx};
pub use session::{Notice, Scope, Session};
pub use tracked::ResultLimits;

/// Rows per Arrow batch when streaming passthrough results.
pub const BATCH_ROWS: usize = 4096;
/// Entries kept in the describe cache before it is cleared.
const DESCRIBE_CACHE_MAX: usize = 10_000;

/// Pinned watermarks by lower-case logical table name.
pub type Pins = HashMap<String, crate::watermark::Watermark>;

/// The engine shared by all frontends.
pub struct Engine {
    config: Arc<Config>,
    warehouse: Arc<Warehouse>,
    metrics: Arc<crate::metrics::Metrics>,
    catalog: Catalog,
    watermarks: Arc<WatermarkTracker>,
    described: Mutex<HashMap<(SessionParams, String), Described>>,
    merge_sizes: union::MergeSizes,
    legs: LegCache,
    windows: Option<WindowsReader>,
    push: Option<Arc<crate::watermark_push::PushStatus>>,
    named: crate::queries::NamedQueries,
    recent: rewarm::Recent,
    columns: Mutex<HashMap<String, Vec<ColumnInfo>>>,
    readiness: Mutex<Option<(Instant, std::result::Result<(), String>)>>,
    fingerprints: forward::Fingerprints,
    life: tracked::Lifecycle,
    limits: ResultLimits,
    access: crate::access::Access,
    catalog_names: tokio::sync::Mutex<Option<(Instant, Arc<crate::access::CatalogNames>)>>,
    parses: ParseCache,
    activity: Arc<activity::Activity>,
    history: history::History,
    cancels: cancel::Cancels,
    /// The fleet's shared leg cache (with `[redis]` and `[cache] shared`).
    shared: Option<Arc<crate::fleet::shared::SharedLegs>>,
    /// This replica's tag in pgwire process ids (relayed cancels).
    tag: u16,
    /// The cancel relay between replicas (with `[redis]`).
    relay: Option<Arc<crate::fleet::relay::Relay>>,
}

/// The one link to `[redis]` that request paths share.
fn redis_link(cfg: &crate::config::Redis) -> Result<Arc<crate::windows::link::RedisLink>> {
    let target = crate::windows::target::RedisTarget::new(cfg)?;
    let meanwhile = "answers read the speed table instead of the windows, and this replica \
        computes its batch legs alone, until Redis answers";
    Ok(Arc::new(crate::windows::link::RedisLink::new(target, cfg.timeout()?, meanwhile)))
}

/// The fleet's shared leg cache over `link`, as `[cache]` sets it up; a lease lasts as long as
/// a statement may (`statement_timeout`, at most 10 min), so a holder that dies frees the leg.
fn fleet_cache(
    link: Arc<crate::windows::link::RedisLink>,
    config: &Config,
    metrics: &Arc<crate::metrics::Metrics>,
    replica: &str,
) -> crate::fleet::shared::SharedLegs {
    let c = &config.cache;
    let statement = config.warehouse.statement_timeout.get();
    let lease = match statement.is_zero() {
        true => std::time::Duration::from_secs(600),
        false => statement.min(std::time::Duration::from_secs(600)),
    };
    let cfg = crate::fleet::shared::SharedConfig {
        ttl: c.shared_ttl.get(),
        max_entry: c.shared_entry_bytes as usize,
        wait: c.shared_wait.get(),
        lease,
    };
    crate::fleet::shared::SharedLegs::new(link, cfg, metrics.clone(), replica)
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
        let link = config.redis.as_ref().map(redis_link).transpose()?;
        let windows = link.clone().map(|l| WindowsReader::new(l, window_ttl));
        let replica = crate::access::new_api_key()?.split_off(4)[..16].to_string();
        let tag = u16::from_str_radix(&replica[..4], 16).unwrap_or(0) & 0x3ff;
        let relay = link.clone().map(|l| crate::fleet::relay::Relay::new(l, tag));
        let shared = match (&link, config.cache.enabled && config.cache.shared) {
            (Some(l), true) => Some(Arc::new(fleet_cache(l.clone(), &config, &metrics, &replica))),
            _ => None,
        };
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
        let console_recent = config.console.recent;
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
            merge_sizes: Default::default(),
            columns: Mutex::new(HashMap::new()),
            legs,
            windows,
            push,
            named,
            recent: Default::default(),
            readiness: Mutex::new(None),
            fingerprints: Default::default(),
            life: Default::default(),
            limits,
            access: crate::access::Access::new(&access_users),
            catalog_names: Default::default(),
            parses: Default::default(),
            activity: Arc::new(activity::Activity::new(console_recent)),
            history: Default::default(),
            cancels: Default::default(),
            shared,
            tag,
            relay,
        });
        if let Some(r) = &engine.relay {
            r.spawn(shutdown.clone());
            engine.handle_relayed_requests();
        }
        engine.clone().spawn_history(shutdown.clone());
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
        let id = self.activity.next_id();
        log.record_in(&self.activity, id, sql, params);
        let result = match self.life.enter() {
            Ok(in_flight) => {
                let killed = self.life.killed();
                let cancelled = cancel::cancelled(session.cancel.clone());
                // boxed: the statement's future is large, and debug builds copy it by value
                let counted = Cost::counting(Box::pin(self.execute_inner(sql, params, session)));
                tokio::select! {
                    (r, trips) = counted => {
                        log.cost = Some(trips);
                        r.map(|r| (r, in_flight))
                    }
                    _ = killed => Err(Error::ShuttingDown("canceled at the shutdown deadline".into())),
                    _ = cancelled => Err(Error::Canceled),
                }
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok((r, _)) => self.metrics.query(frontend, r.freshness.plan.name(), started.elapsed()),
            Err(e) => {
                self.metrics.error(frontend, e.sqlstate());
                log.failed(e);
            }
        }
        let (mut result, in_flight) = result?;
        if !session.forget_freshness {
            session.last_freshness = Some(result.freshness.clone());
        }
        if result.explain.is_none() && result.freshness.plan == PlanKind::Local {
            result.explain = Some(Arc::new(Explain::local()));
        }
        log.answered(&result.freshness, result.explain.clone());
        result.id = id;
        let tracking = tracked::Tracking {
            log,
            limits: self.limits,
            in_flight,
            killed: Box::pin(self.life.killed()),
            cancelled: session
                .cancel
                .clone()
                .map(|c| Box::pin(cancel::cancelled(Some(c))) as std::pin::Pin<Box<_>>),
            metrics: self.metrics.clone(),
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
        // one parse serves the grants check and the classification
        let mut parsed = None;
        if let Some(grants) = self.access.restricted(&session.user) {
            let p = self.parsed(sql);
            let search_path = session.setting("search_path");
            self.check_grants(&p, grants, &session.user, search_path).await?;
            parsed = Some(p);
        }
        let wp = session.warehouse_params();
        let bypass = session.bypasses_cache();
        let text = self.text_key(sql, params, &wp, session.pinned.is_empty() && !bypass);
        if let Some(k) = &text {
            if let Some(a) = self.legs.answer_by_text(k).await {
                return Ok(answer_result(&a, true));
            }
        }
        let parsed = parsed.unwrap_or_else(|| self.parsed(sql));
        match parsed.class.clone()? {
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
            session.bypasses_cache(),
        )
        .await
    }

    /// Whether the warehouse reads backslashes in '...' literals as escapes, so clients must
    /// be told `standard_conforming_strings = off` (always so under the Redshift dialect).
    pub async fn backslash_escapes(&self) -> bool {
        let facts = self.catalog.facts().await.map(|f| f.backslash_escapes);
        self.dialect() == Dialect::Redshift || facts.unwrap_or(false)
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
