//! The windows layer: per-bucket aggregates in Redis / ElastiCache written by the stream
//! processor (the contract is docs/windows.md), and the reader tidemark's window leg uses.
//!
//! Keys carry a hash tag so one bucket lives in one cluster slot:
//! `tidemark:w:{<table>:<bucket start, epoch seconds>}`; the speed-table loader's high-water
//! mark H lives at `tidemark:hwm:{<table>}` as epoch microseconds.

pub mod link;
pub mod reader;
pub mod target;

use redis::aio::ConnectionLike;
use redis::{RedisResult, Script};

use crate::config::WindowsConfig;
use crate::error::Result;

/// The writer script every stream processor loads (`SCRIPT LOAD`) and calls per bucket.
pub const SCRIPT: &str = include_str!("../../scripts/windows.lua");

/// Publishes H only when it grows: KEYS[1] the H key, ARGV[1] the new H.
const HWM_SCRIPT: &str = "local cur = tonumber(redis.call('GET', KEYS[1]) or '-1') \
    if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) return 1 end return 0";

/// Separates dimension values inside a field (ASCII unit separator).
pub const DIM_SEP: char = '\u{1f}';
/// Stands for a NULL dimension value.
pub const NULL_DIM: &str = "\u{0}";

/// Redis key of the bucket starting at `start_secs` (epoch seconds; timestamps without time
/// zone are taken as UTC).
pub fn bucket_key(table: &str, start_secs: i64) -> String {
    format!("tidemark:w:{{{}:{start_secs}}}", table.to_lowercase())
}

/// Redis key holding the high-water mark H of a logical table.
pub fn hwm_key(table: &str) -> String {
    format!("tidemark:hwm:{{{}}}", table.to_lowercase())
}

/// The dimension part of a field: values joined by [`DIM_SEP`], NULL as [`NULL_DIM`].
pub fn dims_field(values: &[Option<&str>]) -> String {
    let parts: Vec<&str> = values.iter().map(|v| v.unwrap_or(NULL_DIM)).collect();
    parts.join(&DIM_SEP.to_string())
}

/// One event as a windows writer sees it.
#[derive(Debug, Clone)]
pub struct WindowEvent {
    /// Event time, microseconds since 1970-01-01 (UTC for timestamps without time zone).
    pub time_micros: i64,
    /// One value per configured dimension, in order (None is NULL).
    pub dims: Vec<Option<String>>,
    /// One value per configured measure, in the column's smallest unit (cents for
    /// numeric(12,2)); None is NULL; ignored for `count`.
    pub values: Vec<Option<i64>>,
}

/// Applies micro-batches of events to the windows of one logical table with the
/// repository's Lua script (one EVALSHA per bucket), and publishes H.
pub struct WindowsWriter {
    script: Script,
    hwm: Script,
    table: String,
    bucket_secs: i64,
    ttl_secs: i64,
    measures: Vec<String>,
}

impl WindowsWriter {
    /// A writer for `table` configured as `cfg`.
    pub fn new(table: &str, cfg: &WindowsConfig) -> Result<WindowsWriter> {
        cfg.validate(table)?;
        Ok(WindowsWriter {
            script: Script::new(SCRIPT),
            hwm: Script::new(HWM_SCRIPT),
            table: table.to_string(),
            bucket_secs: cfg.bucket_secs()?,
            ttl_secs: cfg.retention_secs()?,
            measures: cfg.measures.clone(),
        })
    }

    /// Start (epoch seconds) of the bucket holding `time_micros`.
    pub fn bucket_of(&self, time_micros: i64) -> i64 {
        time_micros.div_euclid(1_000_000).div_euclid(self.bucket_secs) * self.bucket_secs
    }

    /// Writes events (any order, any buckets); each bucket's share is applied atomically.
    /// Returns the number of events applied.
    pub async fn write<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        events: &[WindowEvent],
    ) -> RedisResult<usize> {
        let mut by_bucket: std::collections::BTreeMap<i64, Vec<&WindowEvent>> = Default::default();
        for e in events {
            by_bucket.entry(self.bucket_of(e.time_micros)).or_default().push(e);
        }
        let mut applied = 0;
        for (start, evs) in by_bucket {
            let mut inv = self.script.key(bucket_key(&self.table, start));
            inv.arg(self.ttl_secs).arg(self.measures.len());
            for m in &self.measures {
                inv.arg(m);
            }
            for e in evs {
                let dims: Vec<Option<&str>> = e.dims.iter().map(|d| d.as_deref()).collect();
                inv.arg(dims_field(&dims));
                for i in 0..self.measures.len() {
                    let v = e.values.get(i).copied().flatten();
                    inv.arg(v.map(|v| v.to_string()).unwrap_or_default());
                }
            }
            let n: usize = inv.invoke_async(con).await?;
            applied += n;
        }
        Ok(applied)
    }

    /// Publishes H (every event with time < H is in the speed table); never moves it back.
    pub async fn publish_hwm<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        h_micros: i64,
    ) -> RedisResult<()> {
        let _: i64 = self.hwm.key(hwm_key(&self.table)).arg(h_micros).invoke_async(con).await?;
        Ok(())
    }
}
