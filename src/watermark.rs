//! The batch watermark tracker: polls the watermark table and hands every query one
//! snapshot of W that all its legs use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::error::{Error, Result};
use crate::exec::warehouse::Warehouse;
use crate::model::value::Value;
pub use crate::model::watermark::{literal_for, Watermark};

/// A logical table's watermark moved: its name (lower case) and the W it left.
#[derive(Debug, Clone)]
pub struct Moved {
    /// Logical table name, lower case.
    pub table: String,
    /// The watermark before the move.
    pub old: Watermark,
    /// Seen by a re-read another replica's announcement asked for: not announced again,
    /// so a fleet of N replicas sends about one message per move, not N (each of which
    /// would make N replicas re-read the watermark table).
    pub pushed: bool,
}

/// Polls the watermark table and keeps the latest W per logical table.
pub struct WatermarkTracker {
    warehouse: Arc<Warehouse>,
    sql: String,
    marks: RwLock<HashMap<String, Watermark>>,
    changes: broadcast::Sender<Moved>,
    generation: std::sync::atomic::AtomicU64,
}

/// Redis channel on which gateways (and batch pipelines) announce a new watermark, so
/// every replica re-reads the watermark table at once instead of at its next poll.
pub const CHANNEL: &str = "tidemark:watermarks";

/// The statement that reads every logical table's W.
pub fn poll_sql(watermark_table: &str) -> String {
    format!(
        "SELECT table_name, batch_watermark FROM {} WHERE batch_watermark IS NOT NULL",
        crate::model::sql::quote_name(watermark_table)
    )
}

impl WatermarkTracker {
    /// A tracker reading `watermark_table`.
    pub fn new(warehouse: Arc<Warehouse>, watermark_table: &str) -> WatermarkTracker {
        let sql = poll_sql(watermark_table);
        let (changes, _) = broadcast::channel(64);
        WatermarkTracker {
            warehouse,
            sql,
            marks: RwLock::new(HashMap::new()),
            changes,
            generation: Default::default(),
        }
    }

    /// A counter that grows whenever any table's W moves (read it before taking snapshots:
    /// an answer keyed by it can then never be older than its key says).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Logical tables whose W moved (with the W they left), as refreshes find them.
    pub fn subscribe(&self) -> broadcast::Receiver<Moved> {
        self.changes.subscribe()
    }

    /// Reads the watermark table once.
    pub async fn refresh(&self) -> Result<()> {
        self.refresh_as(false).await
    }

    /// Re-reads the watermark table because another replica announced a move.
    pub async fn refresh_pushed(&self) -> Result<()> {
        self.refresh_as(true).await
    }

    async fn refresh_as(&self, pushed: bool) -> Result<()> {
        let fetched = self.warehouse.fetch(&self.sql, &[], &[], &Vec::new()).await?;
        let mut fresh = HashMap::new();
        for row in fetched.rows {
            if let (Value::Text(name), value) = (&row[0], row[1].clone()) {
                fresh.insert(name.to_lowercase(), Watermark { value });
            }
        }
        let moved: Vec<Moved> = {
            let mut marks = self.marks.write().unwrap_or_else(|e| e.into_inner());
            let moved: Vec<Moved> = fresh
                .iter()
                .filter_map(|(t, w)| {
                    let old = marks.get(t).filter(|old| old.text() != w.text())?;
                    Some(Moved { table: t.clone(), old: old.clone(), pushed })
                })
                .collect();
            *marks = fresh;
            if !moved.is_empty() {
                self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            moved
        };
        for m in moved {
            tracing::info!(table = %m.table, "batch watermark moved");
            let _ = self.changes.send(m);
        }
        Ok(())
    }

    /// The current W of a logical table; reads the table when it has not been seen yet.
    pub async fn snapshot(&self, table: &str) -> Result<Watermark> {
        if let Some(w) = self.cached(table) {
            return Ok(w);
        }
        self.refresh().await?;
        self.cached(table).ok_or_else(|| Error::Warehouse {
            sqlstate: "55000".into(),
            message: format!(
                "no batch watermark published for logical table {table:?}; run `tidemark setup` or let the batch pipeline publish one"
            ),
        })
    }

    /// The last polled W of a table, if any.
    pub fn cached(&self, table: &str) -> Option<Watermark> {
        self.marks.read().unwrap_or_else(|e| e.into_inner()).get(&table.to_lowercase()).cloned()
    }

    /// The SQL literals of every table's current W.
    pub fn current_literals(&self) -> Vec<String> {
        let marks = self.marks.read().unwrap_or_else(|e| e.into_inner());
        marks.values().filter_map(|w| w.literal().ok()).collect()
    }

    /// Polls every `interval` until `shutdown` flips; errors keep the last known W (a
    /// stale W is still exactly-once while the speed table honours its retention rule).
    pub fn spawn_poller(self: Arc<Self>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = self.refresh().await {
                            tracing::warn!(error = %e, "watermark poll failed; keeping the last known watermark");
                        }
                    }
                    _ = shutdown.changed() => break,
                }
            }
        });
    }
}
