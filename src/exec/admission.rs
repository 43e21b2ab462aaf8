//! Admission to the warehouse: at most `max_concurrent_queries` statements run at once, at
//! most `queue` wait for a slot (53300 past either bound), and a circuit breaker that fails
//! fast while the warehouse cannot be reached instead of letting every request wait out the
//! connect timeout.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// How long the breaker stays open after a failed connection before requests try again.
pub const BREAKER_RETRY: Duration = Duration::from_secs(1);

/// Slots, queue and breaker shared by every warehouse connection pool.
pub struct Admission {
    slots: Arc<Semaphore>,
    max: usize,
    waiting: AtomicUsize,
    queue: usize,
    wait: Duration,
    open_until: Mutex<Option<(Instant, String)>>,
    /// Whether `open_until` is set (read on every statement without taking the lock).
    tripped: AtomicBool,
}

/// Counts a waiter for as long as it waits (also when its future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `slots` statements at once, `queue` waiting at most `wait` each.
    pub fn new(slots: usize, queue: usize, wait: Duration) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            max: slots.max(1),
            waiting: AtomicUsize::new(0),
            queue,
            wait,
            open_until: Mutex::new(None),
            tripped: AtomicBool::new(false),
        }
    }

    /// A slot for one statement: at once when free, after queueing otherwise; 53300 when the
    /// queue is full or the wait too long, 08006 while the breaker is open.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit> {
        self.check_breaker()?;
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::Busy(format!("{} statements already waiting", self.queue)));
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(Error::internal("warehouse admission closed")),
            Err(_) => Err(Error::Busy(format!("no warehouse slot within {:?}", self.wait))),
        }
    }

    /// Slots held by running statements now, and how many there are.
    pub fn in_use(&self) -> (usize, usize) {
        (self.max.saturating_sub(self.slots.available_permits()), self.max)
    }

    /// Statements waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// 08006 at once while the breaker is open.
    pub fn check_breaker(&self) -> Result<()> {
        if !self.tripped.load(Ordering::Acquire) {
            return Ok(());
        }
        let open = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        match &*open {
            Some((until, why)) if Instant::now() < *until => Err(Error::Unavailable(format!(
                "{why} (failing fast; retrying within {BREAKER_RETRY:?})"
            ))),
            _ => Ok(()),
        }
    }

    /// Opens the breaker after a connection to the warehouse failed.
    pub fn trip(&self, why: &str) {
        *self.open_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now() + BREAKER_RETRY, why.to_string()));
        self.tripped.store(true, Ordering::Release);
    }

    /// Closes the breaker after a connection succeeded once its second is over (a pooled
    /// connection handed out meanwhile may be one the outage has not yet shown to be dead).
    pub fn reset(&self) {
        if !self.tripped.load(Ordering::Acquire) {
            return;
        }
        let mut open = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        if open.as_ref().is_some_and(|(until, _)| Instant::now() >= *until) {
            *open = None;
            self.tripped.store(false, Ordering::Release);
        }
    }
}
