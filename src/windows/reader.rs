//! Reads the windows: the high-water mark H and bucket hashes, from one Redis node or a
//! Redis Cluster. Every round trip is bounded by `[redis] timeout`; a failure opens a short
//! circuit (queries go straight to the degraded path) and the next query after it retries,
//! so windows come back by themselves when Redis does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::AsyncCommands;

use super::{bucket_key, hwm_key};
use crate::config::Redis as RedisConfig;
use crate::error::{Error, Result};

/// How long after a failure queries skip Redis before one tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One bucket as read: field → integer text.
pub type Bucket = HashMap<String, String>;

/// A cached bucket read: the table and the bucket starts read.
type BucketsKey = (String, Vec<i64>);

/// A live connection of either kind (both multiplex and are cheap to clone).
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Connection state: connected, or down until an instant (and why).
enum State {
    Idle,
    Up(Conn),
    Down(Instant, String),
}

/// The windows reader shared by all queries. Reads are cached for the speed TTL (like speed
/// legs), so many viewers of one dashboard cost Redis one read per TTL.
pub struct WindowsReader {
    target: super::target::RedisTarget,
    timeout: Duration,
    state: Mutex<State>,
    connecting: tokio::sync::Mutex<()>,
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

/// What went wrong with Redis, without the warehouse wording of [`Error::Unavailable`].
fn reason(e: &Error) -> String {
    match e {
        Error::Unavailable(m) => m.clone(),
        other => other.to_string(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("redis: {e}"))
}

impl WindowsReader {
    /// A reader for `[redis]`; connects lazily; caches reads for `ttl` (zero: never).
    pub fn new(config: &RedisConfig, ttl: Duration) -> Result<WindowsReader> {
        Ok(WindowsReader {
            timeout: config.timeout()?,
            target: super::target::RedisTarget::new(config)?,
            state: Mutex::new(State::Idle),
            connecting: tokio::sync::Mutex::new(()),
            hwm: ttl_cache(ttl),
            reads: ttl_cache(ttl),
        })
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

    fn current(&self) -> std::result::Result<Option<Conn>, Error> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Up(c) => Ok(Some(c.clone())),
            State::Down(until, _) if Instant::now() < *until => {
                Err(unavailable("down; retrying shortly"))
            }
            _ => Ok(None),
        }
    }

    fn set(&self, s: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Marks Redis down after a failed round trip (the connection is rebuilt later); logs a
    /// WARN when the windows go down or fail for a new reason, not on every retry.
    fn failed(&self, e: Error) -> Error {
        let why = reason(&e);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(&*state, State::Down(_, w) if *w == why) {
            tracing::warn!(error = %why, "windows unavailable; answering from the speed table");
        }
        *state = State::Down(Instant::now() + RETRY_AFTER, why);
        e
    }

    /// The Redis target of `[redis]` (for the watermark push).
    pub fn target(&self) -> &super::target::RedisTarget {
        &self.target
    }

    /// Why the windows are unavailable, if they were the last time Redis was tried.
    pub fn unavailable_because(&self) -> Option<String> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Down(_, why) => Some(why.clone()),
            _ => None,
        }
    }

    /// Connects and pings once (the start-up check): the reason when Redis cannot be used.
    pub async fn probe(&self) -> std::result::Result<(), String> {
        let ping = self
            .run(|c| async move {
                match c {
                    Conn::Single(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await,
                    Conn::Cluster(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await,
                }
            })
            .await;
        ping.map(|_| ()).map_err(|e| reason(&e))
    }

    async fn connect(&self) -> Result<Conn> {
        let conn = if self.target.is_cluster() {
            let client = self.target.cluster()?;
            Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?)
        } else {
            let client = self.target.client()?;
            Conn::Single(client.get_multiplexed_async_connection().await.map_err(unavailable)?)
        };
        Ok(conn)
    }

    async fn conn(&self) -> Result<Conn> {
        if let Some(c) = self.current()? {
            return Ok(c);
        }
        let _guard = self.connecting.lock().await;
        if let Some(c) = self.current()? {
            return Ok(c);
        }
        match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(Ok(c)) => {
                self.set(State::Up(c.clone()));
                Ok(c)
            }
            Ok(Err(e)) => Err(self.failed(e)),
            Err(_) => Err(self.failed(unavailable("connect timed out"))),
        }
    }

    /// Runs one bounded operation; a failure or timeout marks Redis down.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        match tokio::time::timeout(self.timeout, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed(unavailable(e))),
            Err(_) => Err(self.failed(unavailable("timed out"))),
        }
    }

    /// The high-water mark H of a table in epoch microseconds, if published.
    pub async fn high_water_mark(&self, table: &str) -> Result<Option<i64>> {
        let key = hwm_key(table);
        let raw: Option<String> = self
            .run(|c| async move {
                match c {
                    Conn::Single(mut c) => c.get(&key).await,
                    Conn::Cluster(mut c) => c.get(&key).await,
                }
            })
            .await?;
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
        self.run(|c| async move {
            try_join_all(keys.iter().map(|k| {
                let c = c.clone();
                async move {
                    match c {
                        Conn::Single(mut c) => c.hgetall::<_, Bucket>(k).await,
                        Conn::Cluster(mut c) => c.hgetall::<_, Bucket>(k).await,
                    }
                }
            }))
            .await
        })
        .await
    }
}
