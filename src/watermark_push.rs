//! Watermark push over Redis pub/sub: a gateway that sees W move announces it on
//! [`CHANNEL`], and every gateway subscribed re-reads the watermark table at once, so
//! several replicas move together instead of one poll interval apart. Batch pipelines may
//! publish on the channel too. Polling stays the source of truth; the push only hurries it.
//!
//! The subscription goes to the first seed of `[redis]` (with its TLS and credentials): a
//! Redis Cluster delivers every PUBLISH to subscribers on any node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use tokio::sync::watch;

use crate::watermark::{WatermarkTracker, CHANNEL};
use crate::windows::target::RedisTarget;

/// Bound on a publish round trip.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the push works: `None` while subscribed (or not yet tried), else why not.
#[derive(Default)]
pub struct PushStatus(Mutex<Option<String>>);

impl PushStatus {
    /// Why the push is unavailable, if it is.
    pub fn unavailable_because(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a failure; logs a WARN when the push goes from working to failing (or fails
    /// for a new reason), not once a second.
    fn failed(&self, why: String) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.as_deref() != Some(why.as_str()) {
            tracing::warn!(error = %why, "watermark push unavailable; polling only until Redis answers");
        }
        *s = Some(why);
    }

    fn ok(&self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.take().is_some() {
            tracing::info!("watermark push subscribed again");
        }
    }
}

/// Subscribes to the channel (reconnecting after failures) and publishes local moves,
/// until `shutdown` flips. The status says whether the subscription holds.
pub fn spawn(
    tracker: Arc<WatermarkTracker>,
    target: &RedisTarget,
    shutdown: watch::Receiver<bool>,
) -> Arc<PushStatus> {
    let status = Arc::new(PushStatus::default());
    let client = match target.client() {
        Ok(c) => c,
        Err(e) => {
            status.failed(e.to_string());
            return status;
        }
    };
    tokio::spawn(listen(tracker.clone(), client.clone(), status.clone(), shutdown.clone()));
    tokio::spawn(announce(tracker, client, shutdown));
    status
}

async fn listen(
    tracker: Arc<WatermarkTracker>,
    client: redis::Client,
    status: Arc<PushStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = subscribe_once(&tracker, &client, &status) => {
                let why = match r {
                    Err(e) => format!("redis: {e}"),
                    Ok(()) => "redis: subscription closed".to_string(),
                };
                status.failed(why);
            }
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn subscribe_once(
    tracker: &WatermarkTracker,
    client: &redis::Client,
    status: &PushStatus,
) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    status.ok();
    let mut messages = pubsub.on_message();
    while messages.next().await.is_some() {
        if let Err(e) = tracker.refresh_pushed().await {
            tracing::warn!(error = %e, "watermark refresh after a push failed");
        }
    }
    Ok(())
}

async fn announce(
    tracker: Arc<WatermarkTracker>,
    client: redis::Client,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut moved = tracker.subscribe();
    loop {
        let m = tokio::select! {
            m = moved.recv() => m,
            _ = shutdown.changed() => return,
        };
        let Ok(crate::watermark::Moved { table, pushed: false, .. }) = m else { continue };
        let publish = async {
            let mut con = client.get_multiplexed_async_connection().await?;
            con.publish::<_, _, i64>(CHANNEL, &table).await
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "could not announce the new watermark"),
            Err(_) => tracing::debug!("announcing the new watermark timed out"),
        }
    }
}
