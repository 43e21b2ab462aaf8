//! The pgwire idle timeout: a connection with no statement running for `[pg] idle_timeout`
//! is closed (an idle client otherwise holds one of `max_connections` for ever). Connections
//! are known by their peer address, which both the accept loop and the query handlers see.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One connection's activity.
pub struct Activity {
    busy: AtomicBool,
    last: Mutex<Instant>,
}

/// Activity of the open connections (nothing is tracked while the idle timeout is off).
#[derive(Default)]
pub struct Registry {
    on: bool,
    conns: Mutex<HashMap<SocketAddr, Arc<Activity>>>,
}

/// Marks a connection busy until dropped.
pub struct Busy(Option<Arc<Activity>>);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(a) = &self.0 {
            *a.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            a.busy.store(false, Ordering::Relaxed);
        }
    }
}

impl Registry {
    /// A registry that tracks connections when `on` (the idle timeout is set).
    pub fn new(on: bool) -> Registry {
        Registry { on, conns: Mutex::default() }
    }

    /// Registers a new connection.
    pub fn open(&self, peer: SocketAddr) -> Arc<Activity> {
        let a =
            Arc::new(Activity { busy: AtomicBool::new(false), last: Mutex::new(Instant::now()) });
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(peer, a.clone());
        a
    }

    /// Forgets a closed connection.
    pub fn close(&self, peer: &SocketAddr) {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(peer);
    }

    /// Marks the connection of `peer` busy while a statement runs (a no-op when the idle
    /// timeout is off and nothing is registered).
    pub fn busy(&self, peer: &SocketAddr) -> Busy {
        if !self.on {
            return Busy(None);
        }
        let a = self.conns.lock().unwrap_or_else(|e| e.into_inner()).get(peer).cloned();
        if let Some(a) = &a {
            a.busy.store(true, Ordering::Relaxed);
        }
        Busy(a)
    }
}

/// Resolves once the connection has been idle for `limit`.
pub async fn idle_for(activity: &Activity, limit: Duration) {
    loop {
        let last = *activity.last.lock().unwrap_or_else(|e| e.into_inner());
        let idle = last.elapsed();
        if !activity.busy.load(Ordering::Relaxed) && idle >= limit {
            return;
        }
        let wait = if activity.busy.load(Ordering::Relaxed) { limit } else { limit - idle };
        tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
    }
}
