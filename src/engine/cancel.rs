//! Cancelling a running REST statement. A request names itself with a key of its choosing
//! (the `tidemark-request-id` header); `POST /v1/cancel` with that key, by the same user,
//! stops it with 57014 and cancels its warehouse queries — what a pgwire CancelRequest does
//! with the key of BackendKeyData. Keys live only while their statement runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::{Error, Result};

/// Longest request key accepted.
const KEY_MAX: usize = 128;

type Running = Arc<Mutex<HashMap<(String, String), watch::Sender<bool>>>>;

/// The running statements that can be cancelled, by (user, key).
#[derive(Default)]
pub(super) struct Cancels(Running);

/// A registered statement; dropping it forgets the key.
pub struct Cancellable {
    running: Running,
    id: (String, String),
    signal: watch::Receiver<bool>,
}

impl Cancellable {
    /// The signal the statement's session watches (true: cancelled).
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.signal.clone()
    }
}

/// Resolves once `signal` says cancelled (never without a signal).
pub(super) async fn cancelled(signal: Option<watch::Receiver<bool>>) {
    match signal {
        Some(mut s) => {
            if s.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

fn check_key(key: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if key.is_empty() || key.len() > KEY_MAX || !key.chars().all(ok) {
        return Err(Error::InvalidInput(format!(
            "a request id is 1 to {KEY_MAX} letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

impl Cancels {
    /// Registers `user`'s statement under `key` (22023 for a malformed key or one in use).
    pub(super) fn register(&self, user: &str, key: &str) -> Result<Cancellable> {
        check_key(key)?;
        let id = (user.to_string(), key.to_string());
        let (tx, signal) = watch::channel(false);
        let mut running = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains_key(&id) {
            return Err(Error::InvalidInput(format!("request id {key:?} is already running")));
        }
        running.insert(id.clone(), tx);
        Ok(Cancellable { running: self.0.clone(), id, signal })
    }

    /// Cancels `user`'s statement running under `key`; false when there is none (22023 for
    /// a malformed key).
    pub(super) fn cancel(&self, user: &str, key: &str) -> Result<bool> {
        check_key(key)?;
        let running = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match running.get(&(user.to_string(), key.to_string())) {
            Some(signal) => {
                signal.send_replace(true);
                true
            }
            None => false,
        })
    }
}

/// What became of a cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The statement ran here and is cancelled.
    Cancelled,
    /// It does not run here; the cancel went to the other replicas over Redis.
    Relayed,
    /// It runs nowhere this replica can reach.
    NotFound,
}

impl super::Engine {
    /// Cancels `user`'s statement running under request key `key`, here or, through the
    /// fleet's relay, on the replica that runs it (22023 for a malformed key).
    pub async fn cancel_anywhere(&self, user: &str, key: &str) -> Result<Outcome> {
        if self.cancels.cancel(user, key)? {
            return Ok(Outcome::Cancelled);
        }
        let relay = crate::fleet::relay::Cancel::Request(user.to_string(), key.to_string());
        match &self.relay {
            Some(r) if r.send(&relay).await => Ok(Outcome::Relayed),
            _ => Ok(Outcome::NotFound),
        }
    }

    /// The BackendKeyData process id of this replica's `n`th pgwire connection: it names the
    /// replica, so that a CancelRequest reaching another one can be relayed here.
    pub fn pgwire_pid(&self, n: u32) -> i32 {
        crate::fleet::relay::pid(self.tag, n)
    }

    /// Relays a pgwire CancelRequest this replica does not know to the replica its process
    /// id names (nothing without Redis, or when the id names this replica).
    pub async fn relay_pg_cancel(&self, pid: i32, secret: Vec<u8>) {
        let Some(r) = &self.relay else { return };
        if crate::fleet::relay::tag_of(pid) != self.tag {
            r.send(&crate::fleet::relay::Cancel::Pg(pid, secret)).await;
        }
    }

    /// Registers what cancels a pgwire connection's statement here when another replica
    /// relays a CancelRequest for it (the pgwire frontend's connection manager).
    pub fn on_relayed_pg_cancel(
        &self,
        f: impl Fn(i32, Vec<u8>) -> futures::future::BoxFuture<'static, bool> + Send + Sync + 'static,
    ) {
        use crate::fleet::relay::Cancel;
        if let Some(r) = &self.relay {
            r.handle(Arc::new(move |c| match c {
                Cancel::Pg(pid, secret) => f(pid, secret),
                Cancel::Request(..) => Box::pin(async { false }),
            }));
        }
    }

    /// Carries out relayed request-id cancels here (REST and Flight statements).
    pub(super) fn handle_relayed_requests(self: &Arc<Self>) {
        use crate::fleet::relay::Cancel;
        let Some(r) = &self.relay else { return };
        let engine = Arc::downgrade(self);
        r.handle(Arc::new(move |c| {
            let done = match (&c, engine.upgrade()) {
                (Cancel::Request(user, key), Some(e)) => {
                    e.cancels.cancel(user, key).unwrap_or(false)
                }
                _ => false,
            };
            Box::pin(async move { done })
        }));
    }

    /// Registers a REST statement of `user` under the request key `key`: while the guard
    /// lives, `cancel_request` with the same user and key stops the statement of the session
    /// given the guard's [`Cancellable::signal`] (57014).
    pub fn cancellable(&self, user: &str, key: &str) -> Result<Cancellable> {
        self.cancels.register(user, key)
    }

    /// Cancels `user`'s statement running under request key `key`; false when none is
    /// (22023 for a malformed key).
    pub fn cancel_request(&self, user: &str, key: &str) -> Result<bool> {
        self.cancels.cancel(user, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_cancels_only_its_users_statement() {
        let c = Cancels::default();
        let run = c.register("ann", "q-1").unwrap();
        assert!(c.register("ann", "q-1").is_err(), "a key runs once at a time");
        assert!(!c.cancel("bob", "q-1").unwrap(), "another user's key");
        assert!(c.cancel("ann", "q-1").unwrap());
        cancelled(Some(run.signal())).await;
        drop(run);
        assert!(!c.cancel("ann", "q-1").unwrap(), "forgotten when done");
        assert!(c.cancel("ann", "bad key!").is_err());
        assert!(c.register("ann", "bad key!").is_err());
    }
}
