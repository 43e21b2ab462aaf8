//! What happens around every statement: the in-flight count that graceful shutdown waits
//! for, the result limits (rows and bytes, 54000), and the one structured log line per query
//! (target `tidemark::query`), written when the answer has been streamed or has failed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;

use super::activity::{kept_text, param_texts, Activity, Kept, StatementRecord};
use crate::error::{Error, Result};
use crate::model::column::Param;
use crate::model::cost::{Cost, Phase};
use crate::model::freshness::Freshness;
use crate::plan::Explain;

/// Draining state shared by the engine and its in-flight statements.
pub struct Lifecycle {
    draining: AtomicBool,
    in_flight: Arc<AtomicUsize>,
    kill: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            draining: AtomicBool::new(false),
            in_flight: Arc::default(),
            kill: watch::channel(false).0,
        }
    }
}

/// Counts one statement in flight until dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lifecycle {
    /// Registers a new statement; 57P01 once draining has begun.
    pub fn enter(&self) -> Result<InFlight> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(Error::ShuttingDown("the server is shutting down".into()));
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(InFlight(self.in_flight.clone()))
    }

    /// Whether draining has begun.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Resolves when statements must stop (the shutdown deadline passed).
    pub fn killed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.kill.subscribe();
        async move {
            let _ = rx.wait_for(|k| *k).await;
        }
    }

    /// Refuses new statements, waits up to `deadline` for those in flight, then stops them
    /// (their warehouse queries are cancelled) and waits briefly for the cancels to go out.
    /// Returns how many were stopped.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.draining.store(true, Ordering::Relaxed);
        if self.wait_idle(deadline).await {
            return 0;
        }
        let stopped = self.in_flight.load(Ordering::Relaxed);
        let _ = self.kill.send(true);
        self.wait_idle(Duration::from_secs(2)).await;
        // CancelRequests are sent by tasks spawned when the statements were dropped.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stopped
    }

    async fn wait_idle(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while self.in_flight.load(Ordering::Relaxed) > 0 {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// The query-log record of one statement, written once when dropped.
pub struct QueryLog {
    /// Who ran it (the pgwire or Flight user; empty when anonymous).
    pub user: String,
    /// `pgwire`, `rest`, `flight`, ...
    pub frontend: &'static str,
    /// `split`, `passthrough`, `local` (empty until known).
    pub plan: &'static str,
    /// Legs as `name:ms:cache`, comma-separated.
    pub legs: String,
    /// Rows sent.
    pub rows: u64,
    /// Bytes of row data sent (Arrow memory for engine answers, DataRow bytes when forwarded).
    pub bytes: u64,
    /// Warehouse round trips until the answer started (describes, settings, statements) and
    /// the time of each phase, encoding included.
    pub cost: Option<Arc<Cost>>,
    /// SQLSTATE of the error, if it failed.
    pub sqlstate: Option<String>,
    /// When the statement started.
    pub started: Instant,
    /// What goes into the recent statements when the statement is done.
    record: Option<Pending>,
}

/// A statement's record in the making.
struct Pending {
    activity: Arc<Activity>,
    id: u64,
    started_at: i64,
    sql: (Arc<str>, bool),
    params: Vec<Option<String>>,
    freshness: Option<Kept>,
    explain: Option<Arc<Explain>>,
    error: Option<String>,
}

impl QueryLog {
    /// A record for a statement starting now.
    pub fn new(user: &str, frontend: &'static str) -> QueryLog {
        QueryLog {
            user: user.to_string(),
            frontend,
            plan: "",
            legs: String::new(),
            rows: 0,
            bytes: 0,
            cost: None,
            sqlstate: None,
            started: Instant::now(),
            record: None,
        }
    }

    /// Keeps the statement in `activity`'s recent statements under `id` when it is done.
    pub fn record_in(&mut self, activity: &Arc<Activity>, id: u64, sql: &str, params: &[Param]) {
        if !activity.keeps() {
            return;
        }
        self.record = Some(Pending {
            activity: activity.clone(),
            id,
            started_at: chrono::Utc::now().timestamp_micros(),
            sql: kept_text(sql),
            params: param_texts(params),
            freshness: None,
            explain: None,
            error: None,
        });
    }

    /// Takes the answer's freshness and plan for the record.
    pub fn answered(&mut self, f: &Freshness, explain: Option<Arc<Explain>>) {
        self.describe(f);
        if let Some(p) = &mut self.record {
            p.freshness = Some(Kept::Whole(f.clone()));
            p.explain = explain;
        }
    }

    /// Notes a statement the fast path forwarded (its freshness is made of `reason`).
    pub fn forwarded(&mut self, f: &Freshness, reason: Arc<str>, elapsed_ms: f64) {
        self.describe(f);
        if let Some(p) = &mut self.record {
            p.freshness = Some(Kept::Forwarded { reason, elapsed_ms });
        }
    }

    /// Notes the error the statement failed with.
    pub fn failed(&mut self, e: &Error) {
        self.sqlstate = Some(e.sqlstate().to_string());
        if let Some(p) = &mut self.record {
            p.error = Some(e.to_string());
        }
    }

    fn record_of(&mut self, p: Pending) -> StatementRecord {
        let f = p.freshness;
        StatementRecord {
            id: p.id,
            started_at: p.started_at,
            user: std::mem::take(&mut self.user),
            frontend: self.frontend,
            sql: Some(p.sql.0),
            sql_truncated: p.sql.1,
            params: p.params,
            plan: f.as_ref().map(Kept::plan),
            ms: self.started.elapsed().as_secs_f64() * 1000.0,
            rows: self.rows,
            bytes: self.bytes,
            cache: f.as_ref().and_then(Kept::cache),
            sqlstate: self.sqlstate.clone(),
            error: p.error,
            explain: p.explain,
            freshness: f,
        }
    }

    /// Takes plan and legs from the answer's freshness.
    pub fn describe(&mut self, f: &Freshness) {
        if !tracing::enabled!(target: "tidemark::query", tracing::Level::INFO) {
            return;
        }
        self.plan = f.plan.name();
        self.legs = f
            .legs
            .iter()
            .map(|l| format!("{}:{:.2}ms:{}", l.name, l.elapsed_ms, l.cache))
            .collect::<Vec<_>>()
            .join(",");
    }
}

impl Drop for QueryLog {
    fn drop(&mut self) {
        tracing::info!(
            target: "tidemark::query",
            user = %self.user,
            frontend = self.frontend,
            plan = %self.plan,
            legs = %self.legs,
            rows = self.rows,
            bytes = self.bytes,
            round_trips = self.cost.as_ref().map_or(0, |c| c.total()),
            phases = %self.cost.as_ref().map(|c| c.phases()).unwrap_or_default(),
            ms = format!("{:.3}", self.started.elapsed().as_secs_f64() * 1000.0),
            sqlstate = self.sqlstate.as_deref().unwrap_or(""),
            "query"
        );
        if let Some(mut p) = self.record.take() {
            if p.freshness.is_none() && self.sqlstate.is_none() {
                // dropped before an answer: the client cancelled or went away
                self.sqlstate = Some("57014".into());
                p.error = Some("the client cancelled the statement or went away".into());
            }
            let activity = p.activity.clone();
            activity.push(self.record_of(p));
        }
    }
}

/// Row and byte limits of one answer (0: none).
#[derive(Clone, Copy, Debug, Default)]
pub struct ResultLimits {
    /// Most rows.
    pub rows: u64,
    /// Most bytes.
    pub bytes: u64,
}

impl ResultLimits {
    /// Adds a chunk to `log`'s counts; 54000 once past a limit.
    pub fn count(&self, log: &mut QueryLog, rows: u64, bytes: u64) -> Result<()> {
        log.rows += rows;
        log.bytes += bytes;
        if self.rows > 0 && log.rows > self.rows {
            return Err(Error::TooLarge(format!(
                "more than {} rows (limits.max_result_rows); add a LIMIT or aggregate",
                self.rows
            )));
        }
        if self.bytes > 0 && log.bytes > self.bytes {
            return Err(Error::TooLarge(format!(
                "more than {} bytes (limits.max_result_bytes); select fewer rows or columns",
                self.bytes
            )));
        }
        Ok(())
    }
}

/// Everything a tracked answer carries along.
pub struct Tracking {
    /// The log record, written when the stream ends or is dropped.
    pub log: QueryLog,
    /// The limits enforced.
    pub limits: ResultLimits,
    /// The in-flight registration (held for its drop).
    #[allow(dead_code)]
    pub in_flight: InFlight,
    /// Resolves when shutdown stops statements.
    pub killed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// Resolves when the client cancels the statement (None: it cannot be cancelled this
    /// way, and no future is allocated for it).
    pub cancelled: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    /// Where an error while streaming is counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Wraps an answer's batches: counts and limits them, stops at shutdown, logs at the end.
/// After an error the stream ends, so no partial answer follows it.
pub fn track(
    inner: BoxStream<'static, Result<RecordBatch>>,
    t: Tracking,
) -> BoxStream<'static, Result<RecordBatch>> {
    // the instant the last batch was handed on: until the next poll, the frontend encodes it
    stream::unfold(Some((inner, t, None)), |state| async move {
        let (mut inner, mut t, handed) = state?;
        if let (Some(cost), Some(at)) = (&t.log.cost, handed) {
            cost.add_elapsed(Phase::Encode, at);
        }
        let next = tokio::select! {
            n = inner.next() => n,
            _ = &mut t.killed => Some(Err(Error::ShuttingDown(
                "canceled at the shutdown deadline".into(),
            ))),
            _ = async {
                match &mut t.cancelled {
                    Some(c) => c.await,
                    None => std::future::pending().await,
                }
            } => Some(Err(Error::Canceled)),
        };
        let item = match next? {
            Ok(b) => {
                let bytes = b.get_array_memory_size() as u64;
                t.limits.count(&mut t.log, b.num_rows() as u64, bytes).map(|_| b)
            }
            Err(e) => Err(e),
        };
        match item {
            Ok(b) => Some((Ok(b), Some((inner, t, Some(Instant::now()))))),
            Err(e) => {
                t.metrics.error(t.log.frontend, e.sqlstate());
                t.log.failed(&e);
                Some((Err(e), None))
            }
        }
    })
    .boxed()
}
