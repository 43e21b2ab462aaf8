//! What one statement costs, counted where it happens: warehouse round trips (each describe,
//! session-settings exchange and statement sent) and the time of each phase of the engine's
//! work, for the query log and EXPLAIN (ANALYZE).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

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

/// A phase of the engine's work on a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Parsing and classifying the text (0 when the parse cache had it).
    Parse,
    /// Describing the result and parameter types (0 when the describe cache had it).
    Describe,
    /// Planning the legs.
    Plan,
    /// Running the legs (concurrently: the slowest leg's time, cache lookups included).
    Legs,
    /// Merging the legs' partial rows into the answer.
    Merge,
    /// The frontend encoding and writing the answer (the time between handing it a batch and
    /// its asking for the next one); EXPLAIN (ANALYZE) sends no rows, so it shows 0 there.
    Encode,
}

const PHASES: [(Phase, &str); 6] = [
    (Phase::Parse, "parse"),
    (Phase::Describe, "describe"),
    (Phase::Plan, "plan"),
    (Phase::Legs, "legs"),
    (Phase::Merge, "merge"),
    (Phase::Encode, "encode"),
];

/// What one statement cost so far: round trips by kind and microseconds by phase.
#[derive(Debug, Default)]
pub struct Cost {
    trips: [AtomicU64; 3],
    micros: [AtomicU64; 6],
}

tokio::task_local! {
    static CURRENT: Arc<Cost>;
}

impl Cost {
    /// Runs `f`, counting what it costs in this task; returns the cost with its output.
    pub async fn counting<F: Future>(f: F) -> (F::Output, Arc<Cost>) {
        let cost = Arc::new(Cost::default());
        let out = CURRENT.scope(cost.clone(), f).await;
        (out, cost)
    }

    /// Counts one round trip of `kind` for the statement this task is running, if any.
    pub fn count(kind: Trip) {
        let _ = CURRENT.try_with(|c| c.trips[kind as usize].fetch_add(1, Ordering::Relaxed));
    }

    /// Runs `f` and adds its time to `phase` of the statement this task is running.
    pub fn time<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        Cost::add(phase, started);
        out
    }

    /// Awaits `f` and adds its time to `phase` of the statement this task is running.
    pub async fn timed<F: Future>(phase: Phase, f: F) -> F::Output {
        let started = Instant::now();
        let out = f.await;
        Cost::add(phase, started);
        out
    }

    fn add(phase: Phase, started: Instant) {
        let _ = CURRENT.try_with(|c| c.add_elapsed(phase, started));
    }

    /// Adds the time since `started` to `phase` of this cost (outside the statement's task:
    /// the answer is streamed after the engine has returned).
    pub fn add_elapsed(&self, phase: Phase, started: Instant) {
        let us = started.elapsed().as_micros() as u64;
        self.micros[phase as usize].fetch_add(us, Ordering::Relaxed);
    }

    /// Round trips of `kind` so far.
    pub fn of(&self, kind: Trip) -> u64 {
        self.trips[kind as usize].load(Ordering::Relaxed)
    }

    /// All round trips so far.
    pub fn total(&self) -> u64 {
        [Trip::Describe, Trip::Settings, Trip::Statement].iter().map(|k| self.of(*k)).sum()
    }

    /// Milliseconds spent in `phase` so far.
    pub fn ms(&self, phase: Phase) -> f64 {
        self.micros[phase as usize].load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// The phases as `parse 0.012 ms, describe 0.000 ms, ...`.
    pub fn phases(&self) -> String {
        let each = PHASES.iter().map(|(p, name)| format!("{name} {:.3} ms", self.ms(*p)));
        each.collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Cost {
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
    use super::{Cost, Phase, Trip};

    #[tokio::test]
    async fn counts_only_inside_the_scope() {
        Cost::count(Trip::Statement);
        let ((), cost) = Cost::counting(async {
            Cost::count(Trip::Statement);
            Cost::count(Trip::Describe);
            Cost::time(Phase::Plan, || std::thread::sleep(std::time::Duration::from_millis(2)));
        })
        .await;
        assert_eq!((cost.total(), cost.of(Trip::Statement)), (2, 1));
        assert_eq!(cost.to_string(), "2 (1 statement(s), 1 describe(s), 0 settings)");
        assert!(cost.ms(Phase::Plan) >= 2.0 && cost.ms(Phase::Legs) == 0.0);
        assert!(cost.phases().starts_with("parse 0.000 ms, describe 0.000 ms, plan "));
    }
}
