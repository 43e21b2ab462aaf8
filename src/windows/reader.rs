//! Reads the windows: the high-water mark H and bucket hashes, from one Redis node or a
//! Redis Cluster. Every round trip is bounded by `[redis] timeout`; a failure opens a short
//! circuit (queries go straight to the degraded path) and the next query after it retries,
//! so windows come back by themselves when Redis does.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::try_join_all;
use redis::AsyncCommands;

use super::link::RedisLink;
use super::{bucket_key, hwm_key};
use crate::error::{Error, Result};

/// One bucket as read: field → integer text.
pub type Bucket = HashMap<String, String>;

/// A cached bucket read: the table and the bucket starts read.
type BucketsKey = (String, Vec<i64>);

/// The windows reader shared by all queries. Reads are cached for the speed TTL (like speed
/// legs), so many viewers of one dashboard cost Redis one read per TTL.
pub struct WindowsReader {
    link: std::sync::Arc<RedisLink>,
    hwm: Option<moka::future::Cache<String, Option<i64>>>,
    reads: Option<moka::future::Cache<BucketsKey, std::sync::Arc<Vec<Bucket>>>>,
}

/// A small cache with a TTL, or none for a zero TTL.
fn ttl_cache<K, V>(ttl: Duration) -> Option<moka::future::Cache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    (!ttl.is_zero())
        .then(|| moka::future::Cache::builder().max_capacity(1024).time_to_live(ttl).build())
}

impl WindowsReader {
    /// A reader over `link`; caches reads for `ttl` (zero: never).
    pub fn new(link: std::sync::Arc<RedisLink>, ttl: Duration) -> WindowsReader {
        WindowsReader { link, hwm: ttl_cache(ttl), reads: ttl_cache(ttl) }
    }

    /// H of a table, from the cache unless `fresh` (the client bypassed caches).
    pub async fn cached_high_water_mark(&self, table: &str, fresh: bool) -> Result<Option<i64>> {
        match (&self.hwm, fresh) {
            (Some(c), false) => c
                .try_get_with(table.to_lowercase(), self.high_water_mark(table))
                .await
                .map_err(|e: std::sync::Arc<Error>| (*e).clone()),
            _ => self.high_water_mark(table).await,
        }
    }

    /// Buckets of a table, from the cache unless `fresh`.
    pub async fn cached_buckets(
        &self,
        table: &str,
        starts: &[i64],
        fresh: bool,
    ) -> Result<std::sync::Arc<Vec<Bucket>>> {
        let read = async { self.buckets(table, starts).await.map(std::sync::Arc::new) };
        match (&self.reads, fresh) {
            (Some(c), false) => c
                .try_get_with((table.to_lowercase(), starts.to_vec()), read)
                .await
                .map_err(|e: std::sync::Arc<Error>| (*e).clone()),
            _ => read.await,
        }
    }

    /// The link to Redis (shared with the fleet's shared cache).
    pub fn link(&self) -> &std::sync::Arc<RedisLink> {
        &self.link
    }

    /// The Redis target of `[redis]` (for the watermark push).
    pub fn target(&self) -> &super::target::RedisTarget {
        self.link.target()
    }

    /// Why the windows are unavailable, if they were the last time Redis was tried.
    pub fn unavailable_because(&self) -> Option<String> {
        self.link.unavailable_because()
    }

    /// Connects and pings once (the start-up check): the reason when Redis cannot be used.
    pub async fn probe(&self) -> std::result::Result<(), String> {
        self.link.probe().await
    }

    /// The high-water mark H of a table in epoch microseconds, if published.
    pub async fn high_water_mark(&self, table: &str) -> Result<Option<i64>> {
        let key = hwm_key(table);
        let raw: Option<String> = self.link.run(|mut c| async move { c.get(&key).await }).await?;
        match raw {
            None => Ok(None),
            Some(t) => t.trim().parse::<i64>().map(Some).map_err(|_| {
                Error::Unavailable(format!("redis: high-water mark of {table} is not an integer"))
            }),
        }
    }

    /// The buckets starting at `starts` (epoch seconds), read concurrently (pipelined on
    /// the multiplexed connections); a missing bucket is empty.
    pub async fn buckets(&self, table: &str, starts: &[i64]) -> Result<Vec<Bucket>> {
        let keys: Vec<String> = starts.iter().map(|s| bucket_key(table, *s)).collect();
        self.link
            .run(|c| async move {
                try_join_all(keys.iter().map(|k| {
                    let mut c = c.clone();
                    async move { c.hgetall::<_, Bucket>(k).await }
                }))
                .await
            })
            .await
    }
}
