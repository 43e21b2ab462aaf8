//! The fleet's shared cache of batch legs and sliding-range chunks, in Redis. A batch leg is
//! immutable for its W (W is in its SQL), so every replica may use what another computed:
//! before the warehouse, a replica reads the leg from Redis; after computing one, it writes
//! it there (LZ4-compressed Arrow IPC, at most `shared_entry_bytes`, for `shared_ttl`).
//!
//! Single flight across the fleet: a replica about to compute a leg takes a short lease on it
//! (`SET NX PX`); the others wait for the value (polling, at most `shared_wait`) and compute it
//! themselves only if it does not come. A lease holder reads once more after winning (the
//! previous holder may have just written and let go) and lets the lease go when done, also
//! after a failure, so waiters do not wait in vain.
//!
//! An entry is used only for the exact leg it was computed for: its key is a hash of the
//! leg's SQL (with W), parameters and session settings, and that text is stored in the value
//! and compared on every read. Redis errors never fail a query: the leg is computed here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use super::codec;
use crate::metrics::Metrics;
use crate::model::value::Value;
use crate::windows::link::RedisLink;

/// How soon a waiting replica first looks for the value another computes; it then waits
/// twice as long each time, up to [`POLL_MAX`] (a long leg costs Redis a few reads, not one
/// every few milliseconds per waiting replica).
const POLL: Duration = Duration::from_millis(20);
/// The longest pause between two looks.
const POLL_MAX: Duration = Duration::from_millis(250);
/// Keys written remembered for dropping at W moves (older ones are left to their TTL).
const WRITTEN_MAX: usize = 100_000;
/// Releases a lease only if this replica still holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) else return 0 end";

/// How the shared cache is set up.
#[derive(Clone, Debug)]
pub struct SharedConfig {
    /// How long an entry lives.
    pub ttl: Duration,
    /// Largest value (compressed) written; larger legs stay local.
    pub max_entry: usize,
    /// Longest a replica waits for a leg another replica computes.
    pub wait: Duration,
    /// How long a lease holds at most (a holder that dies frees the leg after this).
    pub lease: Duration,
}

/// Whether this replica computes a leg, or another one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This replica holds the lease: it computes the leg and writes it.
    Won,
    /// Another replica holds it: wait for the value.
    Held,
    /// Redis cannot be asked: compute here, share nothing.
    Alone,
}

/// The shared cache of one replica.
pub struct SharedLegs {
    link: Arc<RedisLink>,
    cfg: SharedConfig,
    metrics: Arc<Metrics>,
    owner: String,
    written: Mutex<Vec<(String, String)>>,
}

/// A leg's identity: what it was computed for, as stored beside its rows.
pub fn identity(
    sql: &str,
    params: &[impl std::fmt::Debug],
    session: &impl std::fmt::Debug,
) -> String {
    format!("tidemark leg v1\n{sql}\n{params:?}\n{session:?}")
}

fn hash(identity: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, identity.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of a leg's value; its lease shares the hash tag, so both sit in one cluster slot.
fn leg_key(identity: &str) -> String {
    format!("tidemark:leg:{{{}}}", hash(identity))
}

fn lease_key(identity: &str) -> String {
    format!("tidemark:lease:{{{}}}", hash(identity))
}

impl SharedLegs {
    /// The shared cache over `link`; `owner` names this replica in leases.
    pub fn new(
        link: Arc<RedisLink>,
        cfg: SharedConfig,
        metrics: Arc<Metrics>,
        owner: &str,
    ) -> Self {
        SharedLegs { link, cfg, metrics, owner: owner.to_string(), written: Mutex::new(Vec::new()) }
    }

    /// Why the shared cache is unavailable now, if it is.
    pub fn unavailable_because(&self) -> Option<String> {
        self.link.unavailable_because()
    }

    /// The leg computed for `identity`, if Redis holds it.
    pub async fn get(&self, identity: &str) -> Option<Vec<Vec<Value>>> {
        let key = leg_key(identity);
        let got = self.link.run(|mut c| async move { c.get::<_, Option<Vec<u8>>>(&key).await });
        match got.await {
            Ok(Some(bytes)) => match codec::decode(identity, &bytes) {
                Some(rows) => {
                    self.metrics.shared("hit");
                    Some(rows)
                }
                None => {
                    tracing::warn!("a shared leg under this leg's key is another leg's; ignored");
                    self.metrics.shared("foreign");
                    None
                }
            },
            Ok(None) => {
                self.metrics.shared("miss");
                None
            }
            Err(_) => {
                self.metrics.shared("error");
                None
            }
        }
    }

    /// Writes a computed leg for the fleet (unless it cannot be encoded or is too large).
    pub async fn put(&self, identity: &str, rows: &[Vec<Value>]) {
        let Some(bytes) = codec::encode(identity, rows) else {
            self.metrics.shared("unsharable");
            return;
        };
        if bytes.len() > self.cfg.max_entry {
            self.metrics.shared("too_large");
            return;
        }
        let key = leg_key(identity);
        let ttl = self.cfg.ttl.as_millis().max(1) as u64;
        let k = key.clone();
        let set = self.link.run(|mut c| async move { c.pset_ex::<_, _, ()>(&k, bytes, ttl).await });
        match set.await {
            Ok(()) => {
                self.metrics.shared("stored");
                self.remember(key, identity);
            }
            Err(_) => self.metrics.shared("error"),
        }
    }

    fn remember(&self, key: String, identity: &str) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= WRITTEN_MAX {
            w.drain(..WRITTEN_MAX / 2);
        }
        w.push((key, identity.to_string()));
    }

    /// Tries to become the replica that computes `identity`.
    pub async fn lease(&self, identity: &str) -> Lease {
        let key = lease_key(identity);
        let token = self.token(identity);
        let ms = self.cfg.lease.as_millis().max(1) as u64;
        let set = self.link.run(|mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async::<Option<String>>(&mut c)
                .await
        });
        match set.await {
            Ok(Some(_)) => {
                self.metrics.lease("won");
                Lease::Won
            }
            Ok(None) => {
                self.metrics.lease("held");
                Lease::Held
            }
            Err(_) => Lease::Alone,
        }
    }

    /// This replica's lease token for a leg (the same for every lease it takes on it).
    fn token(&self, identity: &str) -> String {
        format!("{}:{}", self.owner, &hash(identity)[..16])
    }

    /// Lets a lease go (only when this replica still holds it).
    pub async fn release(&self, identity: &str) {
        let (key, token) = (lease_key(identity), self.token(identity));
        let script = redis::Script::new(RELEASE);
        let del = self.link.run(|mut c| async move {
            script.key(&key).arg(&token).invoke_async::<i64>(&mut c).await
        });
        let _ = del.await;
    }

    /// Waits (at most `shared_wait`) for the leg another replica computes: its rows, or None
    /// when it did not come (the holder failed, let go, or is too slow) or Redis failed.
    pub async fn wait_for(&self, identity: &str) -> Option<Vec<Vec<Value>>> {
        let until = Instant::now() + self.cfg.wait;
        let (key, lkey) = (leg_key(identity), lease_key(identity));
        let mut pause = POLL;
        while Instant::now() < until {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
            let (k, l) = (key.clone(), lkey.clone());
            let read = self.link.run(|mut c| async move {
                redis::pipe()
                    .get(&k)
                    .exists(&l)
                    .query_async::<(Option<Vec<u8>>, bool)>(&mut c)
                    .await
            });
            match read.await {
                Ok((Some(bytes), _)) => {
                    let rows = codec::decode(identity, &bytes);
                    self.metrics.lease(if rows.is_some() { "waited" } else { "waited_in_vain" });
                    return rows;
                }
                Ok((None, true)) => continue,
                Ok((None, false)) | Err(_) => break,
            }
        }
        self.metrics.lease("waited_in_vain");
        None
    }

    /// Drops the entries this replica wrote whose leg read at the old W (`literal`), after W
    /// moved; others' expire with their TTL.
    pub async fn forget(&self, literal: &str) {
        let keys: Vec<String> = {
            let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
            let (old, keep): (Vec<_>, Vec<_>) =
                w.drain(..).partition(|(_, id)| id.contains(literal));
            *w = keep;
            old.into_iter().map(|(k, _)| k).collect()
        };
        // one DEL each, not a pipeline: in cluster mode the keys live in different slots
        for chunk in keys.chunks(100) {
            let chunk = chunk.to_vec();
            let del = self.link.run(|c| async move {
                let dels = chunk.iter().map(|k| {
                    let mut c = c.clone();
                    async move { c.del::<_, i64>(k).await }
                });
                futures::future::try_join_all(dels).await
            });
            if del.await.is_err() {
                return;
            }
        }
    }

    /// Claims the re-warm of one query at one W for this replica: false when another replica
    /// re-warms it (or did), so each named and frequent query is re-warmed once per fleet.
    pub async fn claim_rewarm(&self, identity: &str) -> bool {
        let key = format!("tidemark:rewarm:{{{}}}", hash(identity));
        let (owner, ms) = (self.owner.clone(), self.cfg.ttl.as_millis().max(1) as u64);
        let set = self.link.run(|mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&owner)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async::<Option<String>>(&mut c)
                .await
        });
        // without Redis every replica re-warms its own caches, as before
        !matches!(set.await, Ok(None))
    }
}
