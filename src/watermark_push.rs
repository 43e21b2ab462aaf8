//! Watermark push over Redis pub/sub: a gateway that sees W move announces it on
//! [`CHANNEL`], and every gateway subscribed re-reads the watermark table at once, so
//! several replicas move together instead of one poll interval apart. Batch pipelines may
//! publish on the channel too. Polling stays the source of truth; the push only hurries it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use tokio::sync::watch;

use crate::watermark::{WatermarkTracker, CHANNEL};

/// Bound on a publish round trip.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Subscribes to the channel (reconnecting after failures) and publishes local moves,
/// until `shutdown` flips.
pub fn spawn(tracker: Arc<WatermarkTracker>, url: String, shutdown: watch::Receiver<bool>) {
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, "watermark push disabled: bad redis url"),
    };
    tokio::spawn(listen(tracker.clone(), client.clone(), shutdown.clone()));
    tokio::spawn(announce(tracker, client, shutdown));
}

async fn listen(
    tracker: Arc<WatermarkTracker>,
    client: redis::Client,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = subscribe_once(&tracker, &client) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "watermark channel lost; resubscribing in 1 s");
                }
            }
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn subscribe_once(
    tracker: &WatermarkTracker,
    client: &redis::Client,
) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    let mut messages = pubsub.on_message();
    while messages.next().await.is_some() {
        if let Err(e) = tracker.refresh().await {
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
        let Ok(crate::watermark::Moved { table, .. }) = m else { continue };
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
