//! The demo's speed layer in Redis: each simulated event also lands in the per-second
//! windows, as a stream processor would write them.

use super::*;

/// The stream processor's Redis side: writes the windows and publishes H.
///
/// Redis failures never stop the simulator: it warns (at most every `REDIS_WARN_EVERY`),
/// keeps feeding the stream, the speed table and the batch, and reconnects on a later tick.
/// Window writes made while Redis is down are lost (a real stream processor would replay
/// them): tidemark marks its answers degraded while Redis is down and reads the speed table
/// instead; once Redis is back, the lost events are missing from answers only until the
/// next speed load's H (at most `SPEED_LOAD_EVERY` later) passes them.
pub(super) struct WindowsSink {
    /// Applies events with the Lua script and publishes H.
    writer: WindowsWriter,
    /// Where Redis is.
    client: redis::Client,
    /// The live connection, if any.
    con: Option<MultiplexedConnection>,
    /// No connection attempt before this instant.
    retry_at: Instant,
    /// When the last warning was logged.
    warned_at: Option<Instant>,
    /// H (epoch µs) the loader committed but Redis has not taken yet.
    pending_h: Option<i64>,
}

impl WindowsSink {
    /// A sink for the demo table's windows in the Redis at `url` (connects lazily).
    pub(super) fn new(url: &str, cfg: &WindowsConfig) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("demo redis url {url:?}: {e}")))?;
        Ok(WindowsSink {
            writer: WindowsWriter::new(TABLE, cfg)?,
            client,
            con: None,
            retry_at: Instant::now(),
            warned_at: None,
            pending_h: None,
        })
    }

    /// Applies `events` to the windows; returns how many were applied (0 when Redis is down).
    pub(super) async fn write(&mut self, events: &[WindowEvent]) -> usize {
        if events.is_empty() || !self.connect().await {
            return 0;
        }
        let Some(con) = self.con.as_mut() else {
            return 0;
        };
        match self.writer.write(con, events).await {
            Ok(applied) => applied,
            Err(e) => {
                self.failed(&e, "window writes are lost");
                0
            }
        }
    }

    /// Publishes H (epoch µs) now, or on reconnecting when Redis is down.
    pub(super) async fn publish_hwm(&mut self, h_micros: i64) {
        self.pending_h = Some(h_micros);
        if self.connect().await {
            self.flush_hwm().await;
        }
    }

    /// Publishes the pending H, if any, on the live connection, if any.
    async fn flush_hwm(&mut self) {
        let (Some(h), Some(con)) = (self.pending_h, self.con.as_mut()) else {
            return;
        };
        match self.writer.publish_hwm(con, h).await {
            Ok(()) => self.pending_h = None,
            Err(e) => self.failed(&e, "H is published once Redis is back"),
        }
    }

    /// True when connected; otherwise connects, at most once every `REDIS_RETRY`.
    async fn connect(&mut self) -> bool {
        if self.con.is_some() {
            return true;
        }
        if Instant::now() < self.retry_at {
            return false;
        }
        match self.client.get_multiplexed_async_connection().await {
            Ok(con) => {
                info!("simulator: writing the windows of {TABLE} to Redis");
                self.con = Some(con);
                self.flush_hwm().await;
                self.con.is_some()
            }
            Err(e) => {
                self.failed(&e, "window writes are lost");
                false
            }
        }
    }

    /// Drops the connection, retries later and warns at most once every `REDIS_WARN_EVERY`.
    fn failed(&mut self, e: &redis::RedisError, consequence: &str) {
        self.con = None;
        self.retry_at = Instant::now() + REDIS_RETRY;
        if self.warned_at.is_none_or(|at| at.elapsed() >= REDIS_WARN_EVERY) {
            warn!(
                error = %e,
                "simulator: Redis is unavailable, {consequence} (answers are marked degraded); \
                 the warehouse keeps loading and Redis is retried every {} s",
                REDIS_RETRY.as_secs()
            );
            self.warned_at = Some(Instant::now());
        }
    }
}

/// The windows configured for the demo table.
pub(super) fn demo_windows(config: &Config) -> Result<&WindowsConfig> {
    let table = config.tables.iter().find(|t| t.name == TABLE);
    let missing = || Error::internal(format!("the demo table {TABLE} has no windows"));
    table.and_then(|t| t.windows.as_ref()).ok_or_else(missing)
}

/// Inserts $1 live events into the stream and returns what the windows keep of each:
/// event_time, country, device and amount in cents.
pub(super) fn stream_insert_sql() -> String {
    let insert = insert_events_sql(STREAM, LIVE_SRC);
    format!("{insert}\n        RETURNING event_time, country, device, (amount * 100)::bigint")
}

/// Moves the stream rows with event_time < $1 into the speed table, in one statement.
pub(super) fn move_stream_sql() -> String {
    format!(
        "WITH moved AS (DELETE FROM {STREAM} WHERE event_time < $1 RETURNING {COLUMNS})
         INSERT INTO {SPEED} ({COLUMNS}) SELECT {COLUMNS} FROM moved"
    )
}

/// The values of one event for [`WINDOW_MEASURES`]: its amount in cents (count ignores it).
pub(super) fn window_values(cents: Option<i64>) -> Vec<Option<i64>> {
    WINDOW_MEASURES.iter().map(|m| if *m == "count" { None } else { cents }).collect()
}

/// One row returned by [`stream_insert_sql`] as a window event (timestamps taken as UTC).
pub(super) fn window_event(row: &Row) -> Result<WindowEvent> {
    let time: NaiveDateTime = row.try_get(0)?;
    let country: Option<String> = row.try_get(1)?;
    let device: Option<String> = row.try_get(2)?;
    let cents: Option<i64> = row.try_get(3)?;
    Ok(WindowEvent {
        time_micros: time.and_utc().timestamp_micros(),
        dims: vec![country, device],
        values: window_values(cents),
    })
}
