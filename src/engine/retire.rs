//! Retiring batch legs when a watermark moves: every batch leg and chunk embeds W in its SQL,
//! so once a table's W has moved its cached legs for the old W can never be asked for again.
//! They are dropped at once instead of being left to the byte budget, which keeps a long-
//! running gateway's memory flat (the soak test in README measures it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

use tokio::sync::{broadcast, watch};

use super::Engine;
use crate::watermark::Moved;

/// Old watermarks remembered per table: a query that took its snapshot just before a move
/// may still cache a leg for the old W afterwards; the next moves drop those too.
const RETIRED_KEPT: usize = 4;

impl Engine {
    /// Spawns the task that drops batch legs of retired watermarks; it holds the engine
    /// weakly and stops with `shutdown`.
    pub(super) fn spawn_retirer(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut moved = self.watermarks.subscribe();
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut retired: HashMap<String, VecDeque<String>> = HashMap::new();
            loop {
                let m = tokio::select! {
                    m = moved.recv() => m,
                    _ = shutdown.changed() => break,
                };
                match m {
                    Ok(m) => retire(&engine, &mut retired, m).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }
}

/// Remembers `m.old` for its table and drops the batch legs of every remembered old W that
/// no table uses as its current W.
async fn retire(engine: &Weak<Engine>, retired: &mut HashMap<String, VecDeque<String>>, m: Moved) {
    let Some(e) = engine.upgrade() else { return };
    let Ok(old) = m.old.literal() else { return };
    let kept = retired.entry(m.table).or_default();
    kept.push_back(old);
    if kept.len() > RETIRED_KEPT {
        kept.pop_front();
    }
    let current = e.watermarks.current_literals();
    let dead: Vec<String> =
        retired.values().flatten().filter(|l| !current.contains(*l)).cloned().collect();
    if let Some(shared) = &e.shared {
        for literal in &dead {
            shared.forget(literal).await;
        }
    }
    e.legs.retire_batch(dead).await;
}
