//! BackendKeyData for a fleet, and CancelRequests from anywhere: each connection's process id
//! carries this replica's tag (`Engine::pgwire_pid`) and a random secret key; a CancelRequest
//! for a connection of this replica cancels it here, and one for another replica's is relayed
//! to it (over Redis, when configured), where the secret is checked as here.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, ConnectionManager, PidSecretKeyGenerator};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use ring::rand::SecureRandom;

use crate::engine::Engine;

/// Process ids naming this replica, random secret keys.
pub struct FleetKeys {
    engine: Arc<Engine>,
    next: AtomicU32,
    random: ring::rand::SystemRandom,
}

impl FleetKeys {
    /// Keys for `engine`'s connections.
    pub fn new(engine: Arc<Engine>) -> Arc<FleetKeys> {
        let random = ring::rand::SystemRandom::new();
        Arc::new(FleetKeys { engine, next: AtomicU32::new(1), random })
    }
}

impl PidSecretKeyGenerator for FleetKeys {
    fn generate(&self, _client: &dyn ClientInfo) -> (i32, SecretKey) {
        let pid = self.engine.pgwire_pid(self.next.fetch_add(1, Ordering::Relaxed));
        let mut secret = [0u8; 4];
        // a failed read of the system's randomness leaves a key a client cannot guess either
        // way wrong: it is refused unless the bytes match, and zeros are no secret to rely on
        if self.random.fill(&mut secret).is_err() {
            tracing::error!("no system randomness for a cancel key");
        }
        (pid, SecretKey::I32(i32::from_be_bytes(secret)))
    }
}

/// Cancels here, or relays to the replica the process id names.
pub struct FleetCancel {
    manager: Arc<ConnectionManager>,
    engine: Arc<Engine>,
}

impl FleetCancel {
    /// The handler over `manager`'s connections; relayed cancels for them come here too.
    pub fn new(manager: Arc<ConnectionManager>, engine: Arc<Engine>) -> Arc<FleetCancel> {
        let m = manager.clone();
        engine.on_relayed_pg_cancel(move |pid, secret| {
            let m = m.clone();
            Box::pin(async move { m.cancel(pid, &SecretKey::Bytes(secret.into())).await })
        });
        Arc::new(FleetCancel { manager, engine })
    }
}

#[async_trait]
impl CancelHandler for FleetCancel {
    async fn on_cancel_request(&self, req: CancelRequest) {
        if !self.manager.cancel(req.pid, &req.secret_key).await {
            self.engine.relay_pg_cancel(req.pid, req.secret_key.to_bytes().to_vec()).await;
        }
    }
}
