//! One lazily opened, multiplexed connection to Redis / ElastiCache (a node or a cluster)
//! shared by everything that talks to it on request paths (the windows reader, the fleet's
//! shared cache and leases). Every round trip is bounded by `[redis] timeout`; a failure marks
//! Redis down for a second, during which callers fail at once (and take their path without
//! Redis), and the next call after it tries again, so Redis comes back by itself.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture};

use super::target::RedisTarget;
use crate::error::{Error, Result};

/// How long after a failure calls skip Redis before one tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A live connection of either kind (both multiplex and are cheap to clone).
#[derive(Clone)]
pub enum Conn {
    /// One node or a replication group's primary.
    Single(MultiplexedConnection),
    /// Cluster mode: commands go to their slot's node.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Connection state: not tried yet, connected, or down until an instant (and why).
enum State {
    Idle,
    Up(Conn),
    Down(Instant, String),
}

/// What went wrong with Redis, without the warehouse wording of [`Error::Unavailable`].
pub fn reason(e: &Error) -> String {
    match e {
        Error::Unavailable(m) => m.clone(),
        other => other.to_string(),
    }
}

/// A Redis failure as an error.
pub fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("redis: {e}"))
}

/// The link to `[redis]`.
pub struct RedisLink {
    target: RedisTarget,
    timeout: Duration,
    state: Mutex<State>,
    connecting: tokio::sync::Mutex<()>,
    /// What callers do while Redis is down, for the WARN that says it is.
    meanwhile: String,
}

impl RedisLink {
    /// A link to `target` whose round trips take at most `timeout`; connects on first use.
    /// `meanwhile` says what its users do while Redis is down (logged with the failure).
    pub fn new(target: RedisTarget, timeout: Duration, meanwhile: &str) -> RedisLink {
        RedisLink {
            target,
            timeout,
            state: Mutex::new(State::Idle),
            connecting: tokio::sync::Mutex::new(()),
            meanwhile: meanwhile.to_string(),
        }
    }

    /// Where it connects.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// Why Redis is unavailable, if it was the last time it was tried.
    pub fn unavailable_because(&self) -> Option<String> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Down(_, why) => Some(why.clone()),
            _ => None,
        }
    }

    /// Connects and pings once: the reason when Redis cannot be used.
    pub async fn probe(&self) -> std::result::Result<(), String> {
        let ping =
            self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await });
        ping.await.map(|_| ()).map_err(|e| reason(&e))
    }

    /// Runs one bounded operation; a failure or timeout marks Redis down.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T>
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

    /// The live connection, None to (re)connect, or the error while Redis is marked down.
    fn current(&self) -> Result<Option<Conn>> {
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

    /// Marks Redis down for [`RETRY_AFTER`] and returns the error; logs a WARN when Redis goes
    /// down or fails for a new reason, not on every retry.
    fn failed(&self, e: Error) -> Error {
        let why = reason(&e);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(&*state, State::Down(_, w) if *w == why) {
            tracing::warn!(error = %why, "Redis unavailable; {}", self.meanwhile);
        }
        *state = State::Down(Instant::now() + RETRY_AFTER, why);
        e
    }
}
