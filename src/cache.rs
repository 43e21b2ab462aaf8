//! Caches of split legs (moka). Batch legs are immutable for a given watermark W, and W is
//! part of every batch leg's SQL, so they are kept until evicted by the byte budget; when W
//! moves, new keys simply miss. Speed legs get a short TTL so many viewers of one dashboard
//! cost the warehouse one speed query per TTL. Concurrent identical loads share one execution
//! (single flight).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::exec::value::Value;
use crate::exec::warehouse::{Param, SessionParams};
use crate::plan::split::Layer;

/// Rows of one leg.
pub type LegRows = Arc<Vec<Vec<Value>>>;

/// What identifies a leg result: its SQL (which embeds W), parameters and session settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LegKey {
    /// Leg SQL text.
    pub sql: String,
    /// Bound parameters.
    pub params: Vec<Param>,
    /// Session parameters that change what the warehouse computes.
    pub session: SessionParams,
}

/// How a leg was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Computed (and cached).
    Miss,
    /// The client asked to bypass caches.
    Bypass,
}

impl CacheStatus {
    /// `hit`, `miss` or `bypass`.
    pub fn name(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// The leg caches.
pub struct LegCache {
    batch: Cache<LegKey, LegRows>,
    speed: Cache<LegKey, LegRows>,
    enabled: bool,
}

/// Rough bytes held by a cached leg (for the byte budgets).
fn weigh(k: &LegKey, v: &LegRows) -> u32 {
    let cells: usize = v.iter().map(|r| r.len()).sum();
    let text: usize = v
        .iter()
        .flatten()
        .map(|c| match c {
            Value::Text(s) | Value::Other(s) => s.len(),
            _ => 0,
        })
        .sum();
    (k.sql.len() + 48 * cells + text + 64).min(u32::MAX as usize) as u32
}

impl LegCache {
    /// Caches sized from config.
    pub fn new(cfg: &CacheConfig) -> Result<LegCache> {
        let ttl = crate::config::parse_duration("cache.speed_ttl", &cfg.speed_ttl)?;
        Ok(LegCache {
            batch: Cache::builder().max_capacity(cfg.batch_bytes).weigher(weigh).build(),
            speed: Cache::builder()
                .max_capacity(cfg.speed_bytes)
                .weigher(weigh)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            enabled: cfg.enabled && !ttl.is_zero(),
        })
    }

    /// The leg's rows from the cache, or loaded once by `load` however many callers ask.
    pub async fn get_or_load<F, Fut>(
        &self,
        layer: Layer,
        key: LegKey,
        bypass: bool,
        load: F,
    ) -> Result<(LegRows, CacheStatus)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Vec<Value>>>>,
    {
        if bypass || !self.enabled {
            return Ok((Arc::new(load().await?), CacheStatus::Bypass));
        }
        let cache = match layer {
            Layer::Batch => &self.batch,
            Layer::Speed => &self.speed,
        };
        let mut loaded = false;
        let rows = cache
            .try_get_with(key, async {
                loaded = true;
                load().await.map(Arc::new)
            })
            .await
            .map_err(|e: Arc<Error>| (*e).clone())?;
        Ok((rows, if loaded { CacheStatus::Miss } else { CacheStatus::Hit }))
    }
}
