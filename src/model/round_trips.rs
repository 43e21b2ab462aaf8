//! Warehouse round trips of one statement, counted where they happen: each describe, each
//! session-settings exchange and each statement sent, for the query log and EXPLAIN ANALYZE.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A kind of round trip to the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    /// A statement described (prepared) without running.
    Describe,
    /// A pooled connection's settings reset or set for the session.
    Settings,
    /// A statement run (a leg, a chunk, a pass-through, a catalog read).
    Statement,
}

/// What one statement cost the warehouse in round trips, by kind.
#[derive(Debug, Default)]
pub struct RoundTrips {
    counts: [AtomicU64; 3],
}

tokio::task_local! {
    static CURRENT: Arc<RoundTrips>;
}

impl RoundTrips {
    /// Runs `f`, counting the round trips it makes in this task; returns them with its output.
    pub async fn counting<F: Future>(f: F) -> (F::Output, Arc<RoundTrips>) {
        let trips = Arc::new(RoundTrips::default());
        let out = CURRENT.scope(trips.clone(), f).await;
        (out, trips)
    }

    /// Counts one round trip of `kind` for the statement this task is running, if any.
    pub fn count(kind: Trip) {
        let _ = CURRENT.try_with(|t| t.counts[kind as usize].fetch_add(1, Ordering::Relaxed));
    }

    /// Round trips of `kind` so far.
    pub fn of(&self, kind: Trip) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// All round trips so far.
    pub fn total(&self) -> u64 {
        [Trip::Describe, Trip::Settings, Trip::Statement].iter().map(|k| self.of(*k)).sum()
    }
}

impl fmt::Display for RoundTrips {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} statement(s), {} describe(s), {} settings)",
            self.total(),
            self.of(Trip::Statement),
            self.of(Trip::Describe),
            self.of(Trip::Settings)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{RoundTrips, Trip};

    #[tokio::test]
    async fn counts_only_inside_the_scope() {
        RoundTrips::count(Trip::Statement);
        let ((), trips) = RoundTrips::counting(async {
            RoundTrips::count(Trip::Statement);
            RoundTrips::count(Trip::Describe);
        })
        .await;
        assert_eq!((trips.total(), trips.of(Trip::Statement)), (2, 1));
        assert_eq!(trips.to_string(), "2 (1 statement(s), 1 describe(s), 0 settings)");
    }
}
