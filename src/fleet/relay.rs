//! Cancel anywhere: a cancel that reaches a replica not running the statement is relayed to
//! the one that is, over Redis pub/sub. A pgwire CancelRequest names its replica in the
//! BackendKeyData's process id (see [`pid`]) and goes to that replica's channel; a REST or
//! Flight request id names no replica and goes to every replica's channel, each trying it on
//! its own statements. The secret key (or the user of a request id) is checked where the
//! statement runs, exactly as for a local cancel. Without Redis a cancel works on the replica
//! that runs the statement only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

use crate::windows::link::RedisLink;

/// Bits of a pgwire process id that count connections; the bits above them name the replica.
const COUNTER_BITS: u32 = 21;
/// The channel of every replica (REST and Flight request ids).
const ALL: &str = "tidemark:cancel:all";

/// A cancel as it travels between replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// A pgwire CancelRequest: process id and secret key bytes.
    Pg(i32, Vec<u8>),
    /// A REST or Flight request: the user and the request id.
    Request(String, String),
}

impl Cancel {
    fn encode(&self) -> String {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        match self {
            Cancel::Pg(pid, secret) => format!("pg {pid} {}", hex(secret)),
            Cancel::Request(user, id) => format!("req {} {id}", hex(user.as_bytes())),
        }
    }

    fn decode(text: &str) -> Option<Cancel> {
        let unhex = |h: &str| -> Option<Vec<u8>> {
            (0..h.len()).step_by(2).map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok()).collect()
        };
        let mut parts = text.splitn(3, ' ');
        match (parts.next()?, parts.next()?, parts.next()?) {
            ("pg", pid, secret) => Some(Cancel::Pg(pid.parse().ok()?, unhex(secret)?)),
            ("req", user, id) => {
                Some(Cancel::Request(String::from_utf8(unhex(user)?).ok()?, id.into()))
            }
            _ => None,
        }
    }
}

/// The replica tag a pgwire process id carries (its high bits).
pub fn tag_of(pid: i32) -> u16 {
    ((pid as u32) >> COUNTER_BITS) as u16 & 0x3ff
}

/// A process id for a replica's `n`th connection: the tag in the high bits (so a
/// CancelRequest names its replica), a positive i32 as PostgreSQL's are.
pub fn pid(tag: u16, n: u32) -> i32 {
    (((tag as u32 & 0x3ff) << COUNTER_BITS) | (n & ((1 << COUNTER_BITS) - 1))) as i32
}

fn channel(tag: u16) -> String {
    format!("tidemark:cancel:{tag}")
}

/// Carries out a cancel relayed from another replica: true when it found the statement.
pub type Handler = Arc<dyn Fn(Cancel) -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// One replica's end of the relay.
pub struct Relay {
    link: Arc<RedisLink>,
    tag: u16,
    handlers: Mutex<Vec<Handler>>,
}

impl Relay {
    /// The relay of the replica tagged `tag`.
    pub fn new(link: Arc<RedisLink>, tag: u16) -> Arc<Relay> {
        Arc::new(Relay { link, tag, handlers: Mutex::new(Vec::new()) })
    }

    /// This replica's tag.
    pub fn tag(&self) -> u16 {
        self.tag
    }

    /// Adds what carries out relayed cancels here (each frontend registers its own).
    pub fn handle(&self, h: Handler) {
        self.handlers.lock().unwrap_or_else(|e| e.into_inner()).push(h);
    }

    /// Sends a cancel to the replica that runs the statement (all replicas for request ids);
    /// false when Redis could not take it.
    pub async fn send(&self, cancel: &Cancel) -> bool {
        let to = match cancel {
            Cancel::Pg(pid, _) => channel(tag_of(*pid)),
            Cancel::Request(..) => ALL.to_string(),
        };
        let msg = cancel.encode();
        let sent = self.link.run(|mut c| async move {
            redis::cmd("PUBLISH").arg(&to).arg(&msg).query_async::<i64>(&mut c).await
        });
        sent.await.is_ok()
    }

    async fn carry_out(&self, cancel: Cancel) {
        let handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for h in handlers {
            if h(cancel.clone()).await {
                tracing::info!("cancelled a statement at another replica's request");
                return;
            }
        }
    }

    /// Listens on this replica's channel and the fleet's until `shutdown`, re-subscribing
    /// after failures.
    pub fn spawn(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let relay = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = relay.listen() => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "cancel relay: subscription failed; retrying");
                        }
                    }
                    _ = shutdown.changed() => return,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn listen(&self) -> redis::RedisResult<()> {
        let client = self.link.target().client().map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Io, "cancel relay", e.to_string()))
        })?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel(self.tag)).await?;
        pubsub.subscribe(ALL).await?;
        let mut messages = pubsub.on_message();
        while let Some(m) = messages.next().await {
            let text: String = m.get_payload().unwrap_or_default();
            if let Some(cancel) = Cancel::decode(&text) {
                self.carry_out(cancel).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_name_their_replica() {
        for tag in [0, 1, 517, 1023] {
            for n in [0, 1, (1 << COUNTER_BITS) - 1, 1 << COUNTER_BITS] {
                let p = pid(tag, n);
                assert!(p >= 0, "a positive process id");
                assert_eq!(tag_of(p), tag);
            }
        }
    }

    #[test]
    fn cancels_travel_as_text() {
        for c in [
            Cancel::Pg(pid(9, 77), vec![0, 1, 255, 16]),
            Cancel::Request("ünï cöde".into(), "a-b_c.d".into()),
        ] {
            assert_eq!(Cancel::decode(&c.encode()), Some(c));
        }
        assert_eq!(Cancel::decode("pg x y"), None);
    }
}
