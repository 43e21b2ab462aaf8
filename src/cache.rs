//! Caches of split legs (moka). Batch legs are immutable for a given watermark W, and W is
//! part of every batch leg's SQL, so they are kept until W moves: new keys then miss, and
//! the old W's legs are dropped (`engine::retire`). Speed legs get a short TTL so many viewers of one dashboard
//! cost the warehouse one speed query per TTL. Concurrent identical loads share one execution
//! (single flight).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use moka::future::Cache;

use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::model::column::{Param, SessionParams};
use crate::model::freshness::{CacheStatus, Freshness};
use crate::model::value::Value;
use crate::plan::split::Layer;

/// Rows of one leg.
pub type LegRows = Arc<Vec<Vec<Value>>>;

/// A cached leg: its rows and when they were read from the warehouse (µs since 1970), so
/// an answer built from it reports how fresh its realtime part really is.
pub type Read = (LegRows, i64);

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

/// What identifies a whole answer: the query, its parameters and session settings, the
/// watermark W it used and the realtime epoch (the speed TTL slot it was computed in).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    /// Statement text.
    pub sql: String,
    /// Bound parameters.
    pub params: Vec<Param>,
    /// Session parameters that change what the warehouse computes.
    pub session: SessionParams,
    /// W as text.
    pub watermark: String,
    /// Realtime epoch (see [`LegCache::epoch`]).
    pub epoch: i64,
}

/// The key of the fast path in front of parsing: the statement text, parameters, session
/// settings, realtime epoch and watermark generation (any W move changes it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TextKey {
    /// Statement text, as sent.
    pub sql: String,
    /// Bound parameters.
    pub params: Vec<Param>,
    /// Session parameters that change what the warehouse computes.
    pub session: SessionParams,
    /// Realtime epoch.
    pub epoch: i64,
    /// Watermark generation.
    pub generation: u64,
}

/// A whole split answer, as cached.
#[derive(Clone)]
pub struct Answer {
    /// Result schema.
    pub schema: SchemaRef,
    /// All its batches.
    pub batches: Vec<RecordBatch>,
    /// Its freshness when computed.
    pub freshness: Freshness,
    /// Encodings of its rows, made once by a frontend and reused by every hit.
    pub memo: Arc<Memo>,
    /// The plan it was computed with.
    pub explain: Option<Arc<crate::plan::Explain>>,
}

/// Encoded forms of one cached answer's rows (JSON, CSV, Arrow IPC), by name. Encoding a
/// few hundred rows costs far more than finding a cached answer, so a frontend encodes each
/// form once per answer.
#[derive(Default)]
pub struct Memo(std::sync::Mutex<std::collections::HashMap<&'static str, bytes::Bytes>>);

impl Memo {
    /// The encoding `kind`, made by `make` the first time it is asked for.
    pub fn get_or_make<E>(
        &self,
        kind: &'static str,
        make: impl FnOnce() -> std::result::Result<bytes::Bytes, E>,
    ) -> std::result::Result<bytes::Bytes, E> {
        if let Some(b) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(kind) {
            return Ok(b.clone());
        }
        let b = make()?;
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(kind, b.clone());
        Ok(b)
    }
}

/// The leg caches and the whole-answer cache.
pub struct LegCache {
    batch: Cache<LegKey, Read>,
    speed: Cache<LegKey, Read>,
    answers: Cache<AnswerKey, Arc<Answer>>,
    texts: Cache<TextKey, Arc<Answer>>,
    ttl: Duration,
    enabled: bool,
    metrics: Arc<crate::metrics::Metrics>,
}

fn weigh_answer(k: &AnswerKey, v: &Arc<Answer>) -> u32 {
    let bytes: usize = v.batches.iter().map(|b| b.get_array_memory_size()).sum();
    (k.sql.len() + bytes + 512).min(u32::MAX as usize) as u32
}

/// Rough bytes held by a cached leg (for the byte budgets).
fn weigh(k: &LegKey, (v, _): &Read) -> u32 {
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

/// Whether `sql` holds `needle` (`< W`) not followed by another digit (an integer W of 17
/// must not match `< 170`).
fn bounded_by(sql: &str, needle: &str) -> bool {
    sql.match_indices(needle)
        .any(|(i, _)| !sql[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

impl LegCache {
    /// Caches sized from config.
    pub fn new(cfg: &CacheConfig, metrics: Arc<crate::metrics::Metrics>) -> Result<LegCache> {
        let ttl = cfg.speed_ttl.get();
        Ok(LegCache {
            batch: Cache::builder()
                .max_capacity(cfg.batch_bytes)
                .weigher(weigh)
                .support_invalidation_closures()
                .build(),
            speed: Cache::builder()
                .max_capacity(cfg.speed_bytes)
                .weigher(weigh)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            answers: Cache::builder()
                .max_capacity(cfg.result_bytes)
                .weigher(weigh_answer)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            texts: Cache::builder()
                .max_capacity(cfg.result_bytes / 4)
                .weigher(|k: &TextKey, v: &Arc<Answer>| {
                    let bytes: usize = v.batches.iter().map(|b| b.get_array_memory_size()).sum();
                    (k.sql.len() + bytes + 512).min(u32::MAX as usize) as u32
                })
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            ttl,
            enabled: cfg.enabled && !ttl.is_zero(),
            metrics,
        })
    }

    /// Bytes held per cache, as metrics gauges.
    pub fn byte_gauges(&self) -> Vec<crate::metrics::Gauge> {
        let g = |name: &str, bytes: u64| {
            ("tidemark_cache_bytes", vec![("cache", name.to_string())], bytes as f64)
        };
        vec![
            g("batch", self.batch.weighted_size()),
            g("speed", self.speed.weighted_size()),
            g("answer", self.answers.weighted_size() + self.texts.weighted_size()),
        ]
    }

    /// The realtime epoch of an instant: which speed-TTL slot it falls in (None when caching
    /// is off). Answers and ETags are stable within one epoch.
    pub fn epoch(&self, now_micros: i64) -> Option<i64> {
        let slot = self.ttl.as_micros() as i64;
        (self.enabled && slot > 0).then(|| now_micros.div_euclid(slot))
    }

    /// An answer cached under its statement text (skips parsing and planning).
    pub async fn answer_by_text(&self, key: &TextKey) -> Option<Arc<Answer>> {
        let a = self.texts.get(key).await;
        if a.is_some() {
            self.metrics.cache("answer", "hit");
        }
        a
    }

    /// Remembers an answer under its statement text.
    pub async fn remember_text(&self, key: TextKey, answer: Arc<Answer>) {
        self.texts.insert(key, answer).await;
    }

    /// Drops the cached batch legs bounded below one of `literals` (watermarks that moved
    /// on: no query can ask for them again) and frees their memory now.
    pub async fn retire_batch(&self, literals: Vec<String>) {
        if literals.is_empty() {
            return;
        }
        let needles: Vec<String> = literals.iter().map(|l| format!("< {l}")).collect();
        let dead = move |k: &LegKey, _: &Read| needles.iter().any(|n| bounded_by(&k.sql, n));
        if let Err(e) = self.batch.invalidate_entries_if(dead) {
            tracing::warn!(error = %e, "could not drop the batch legs of an old watermark");
        }
        self.batch.run_pending_tasks().await;
    }

    /// SQL of the cached batch legs (diagnostics and tests).
    pub fn batch_sql(&self) -> Vec<String> {
        self.batch.iter().map(|(k, _)| k.sql.clone()).collect()
    }

    /// Whether caching is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The speed TTL in whole seconds, at least 1 (REST's `max-age`).
    pub fn max_age_secs(&self) -> u64 {
        self.ttl.as_secs_f64().ceil().max(1.0) as u64
    }

    /// A whole answer from the cache (true) or computed once by `load` (false).
    pub async fn answer_or_load<F, Fut>(
        &self,
        key: AnswerKey,
        load: F,
    ) -> Result<(Arc<Answer>, bool)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Answer>>,
    {
        let mut loaded = false;
        let a = self
            .answers
            .try_get_with(key, async {
                loaded = true;
                load().await.map(Arc::new)
            })
            .await
            .map_err(|e: Arc<Error>| (*e).clone())?;
        self.metrics.cache("answer", if loaded { "miss" } else { "hit" });
        Ok((a, !loaded))
    }

    /// Whether the batch cache holds `key` now (it may still be evicted before it is read).
    pub fn has_batch(&self, key: &LegKey) -> bool {
        self.enabled && self.batch.contains_key(key)
    }

    /// The leg's rows (and when they were read) from the cache, or loaded once by `load`
    /// however many callers ask. `load` also says whether its rows came from another cache
    /// (the fleet's): such a leg counts as a hit, since nothing was computed for it.
    pub async fn get_or_load<F, Fut>(
        &self,
        layer: Layer,
        key: LegKey,
        bypass: bool,
        load: F,
    ) -> Result<(Read, CacheStatus)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Vec<Vec<Value>>, bool)>>,
    {
        let now = || chrono::Utc::now().timestamp_micros();
        if bypass || !self.enabled {
            let at = now();
            return Ok(((Arc::new(load().await?.0), at), CacheStatus::Bypass));
        }
        let cache = match layer {
            Layer::Batch => &self.batch,
            Layer::Speed => &self.speed,
        };
        let (mut loaded, mut elsewhere) = (false, false);
        let rows = cache
            .try_get_with(key, async {
                loaded = true;
                let at = now();
                load().await.map(|(r, shared)| {
                    elsewhere = shared;
                    (Arc::new(r), at)
                })
            })
            .await
            .map_err(|e: Arc<Error>| (*e).clone())?;
        let status = if loaded && !elsewhere { CacheStatus::Miss } else { CacheStatus::Hit };
        self.metrics.cache(layer.name(), status.name());
        Ok((rows, status))
    }
}
