//! The pass-through fast path: a statement already known (by its fingerprint) to pass through is
//! sent to the warehouse over a raw connection and its answer handed on message by message,
//! without parsing, Arrow batches or re-encoding. Only statements whose answer the normal
//! path would give the same way take it: one statement, from a session with default settings,
//! outside a transaction block, with no pinned watermarks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tracked::{InFlight, QueryLog};
use super::{Engine, ResultLimits, Session};
use crate::error::{Error, Result};
use crate::exec::raw::Lease;
use crate::exec::warehouse::mentions_set_config;
use crate::model::freshness::Freshness;
use crate::model::reply::Reply;
use crate::plan::{self, Class};

/// Fingerprints remembered before the map is cleared.
const FINGERPRINTS_MAX: usize = 10_000;
/// How long the fast path stays off after a raw connection could not be opened.
const COOL_DOWN: Duration = Duration::from_secs(5);

/// Known statement fingerprints: Some(reason) for pass-through ones, None for the rest.
#[derive(Default)]
pub(super) struct Fingerprints {
    known: Mutex<HashMap<String, Option<Arc<str>>>>,
    off_until: Mutex<Option<Instant>>,
}

/// A forwarded statement's answer, read message by message.
pub struct Forwarded {
    lease: Lease,
    metrics: Arc<crate::metrics::Metrics>,
    log: QueryLog,
    limits: ResultLimits,
    killed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    _in_flight: InFlight,
}

impl Forwarded {
    /// The next message of the answer; None once the warehouse is ready again. Rows past the
    /// result limits end it with 54000 (the dropped answer's warehouse query is cancelled).
    pub async fn next(&mut self) -> Result<Option<Reply>> {
        let r = tokio::select! {
            r = self.lease.next() => r,
            _ = &mut self.killed => Err(Error::ShuttingDown("canceled at the shutdown deadline".into())),
        };
        let r = match r {
            Ok(Some(Reply::Row(n, data))) => {
                let len = data.len() as u64;
                self.limits.count(&mut self.log, 1, len).map(|_| Some(Reply::Row(n, data)))
            }
            other => other,
        };
        let frontend = self.log.frontend;
        match &r {
            Ok(None) => self.metrics.query(frontend, "passthrough", self.log.started.elapsed()),
            Err(e) => {
                self.metrics.error(frontend, e.sqlstate());
                self.log.failed(e);
            }
            Ok(Some(_)) => {}
        }
        r
    }
}

impl Engine {
    /// Sends `sql` over the fast path when it qualifies (see the module docs); None means
    /// the caller takes the normal path ([`Engine::execute`]).
    pub async fn forward(&self, sql: &str, session: &mut Session) -> Option<Result<Forwarded>> {
        let pool = self.warehouse.raw().filter(|p| p.usable())?;
        if session.has_answer_settings()
            || session.in_transaction()
            || !session.pinned.is_empty()
            || session.user_timeout.is_some()
            || self.access.restricted(&session.user).is_some()
        {
            return None;
        }
        let reason = self.passthrough_reason(sql)?;
        let in_flight = self.life.enter().ok()?;
        if self
            .fingerprints
            .off_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| Instant::now() < t)
        {
            return None;
        }
        let frontend = if session.frontend.is_empty() { "other" } else { session.frontend };
        let started = Instant::now();
        let mut lease = match pool.get().await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "raw warehouse connection failed; normal path");
                *self.fingerprints.off_until.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Instant::now() + COOL_DOWN);
                return None;
            }
        };
        let mut log = QueryLog::new(&session.user, frontend);
        log.started = started;
        log.record_in(&self.activity, self.activity.next_id(), sql, &[]);
        self.metrics.warehouse_statement();
        self.metrics.forwarded();
        crate::model::cost::Cost::count(crate::model::cost::Trip::Statement);
        if let Err(e) = lease.query(sql).await {
            self.metrics.error(frontend, e.sqlstate());
            log.failed(&e);
            return Some(Err(e));
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let freshness = Freshness::forwarded(&reason, elapsed_ms);
        log.forwarded(&freshness, reason, elapsed_ms);
        if !session.forget_freshness {
            session.last_freshness = Some(freshness);
        }
        Some(Ok(Forwarded {
            lease,
            metrics: self.metrics.clone(),
            log,
            limits: self.limits,
            killed: Box::pin(self.life.killed()),
            _in_flight: in_flight,
        }))
    }

    /// Why a statement of this fingerprint passes through, or None when it does not (or has
    /// no fingerprint); classifies and remembers the fingerprint the first time.
    fn passthrough_reason(&self, sql: &str) -> Option<Arc<str>> {
        let key = plan::fingerprint::fingerprint(sql).filter(|s| !mentions_set_config(s))?;
        if let Some(known) =
            self.fingerprints.known.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
        {
            return known.clone();
        }
        let reason = match self.classify(sql) {
            Ok(Class::Passthrough { reason }) => Some(Arc::from(reason)),
            _ => None,
        };
        let mut known = self.fingerprints.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= FINGERPRINTS_MAX {
            known.clear();
        }
        known.insert(key, reason.clone());
        reason
    }
}
