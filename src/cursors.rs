//! Session cursors (`DECLARE name CURSOR [WITH HOLD] FOR query`, `FETCH n FROM name`,
//! `CLOSE name`): the query's batch stream is kept open and read `n` rows at a time.

use std::collections::HashMap;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::{Error, Result};

/// One open cursor.
pub struct Cursor {
    /// Result schema.
    pub schema: SchemaRef,
    // Mutex only to make the session Sync; always reached through `get_mut`.
    stream: std::sync::Mutex<BoxStream<'static, Result<RecordBatch>>>,
    pending: Option<RecordBatch>,
    hold: bool,
}

/// The cursors of one session.
#[derive(Default)]
pub struct Cursors(HashMap<String, Cursor>);

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

fn no_cursor(name: &str) -> Error {
    Error::Warehouse {
        sqlstate: "34000".into(),
        message: format!("cursor \"{name}\" does not exist"),
    }
}

impl Cursors {
    /// Opens a cursor over a result stream (42P03 when the name is taken).
    pub fn declare(
        &mut self,
        name: &str,
        schema: SchemaRef,
        stream: BoxStream<'static, Result<RecordBatch>>,
        hold: bool,
    ) -> Result<()> {
        if self.0.contains_key(name) {
            return Err(Error::Warehouse {
                sqlstate: "42P03".into(),
                message: format!("cursor \"{name}\" already exists"),
            });
        }
        // fused: FETCH after the end reads nothing (warehouse streams must not be polled again)
        let stream = std::sync::Mutex::new(stream.fuse().boxed());
        self.0.insert(name.to_string(), Cursor { schema, stream, pending: None, hold });
        Ok(())
    }

    /// Reads up to `n` rows (all remaining when `None`).
    pub async fn fetch(
        &mut self,
        name: &str,
        n: Option<u64>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let c = self.0.get_mut(name).ok_or_else(|| no_cursor(name))?;
        let mut out = Vec::new();
        let mut got = 0u64;
        while n.is_none_or(|n| got < n) {
            let batch = match c.pending.take() {
                Some(b) => b,
                None => match c.stream.get_mut().unwrap_or_else(|e| e.into_inner()).next().await {
                    Some(b) => b?,
                    None => break,
                },
            };
            let want = n.map(|n| (n - got) as usize).unwrap_or(usize::MAX);
            if batch.num_rows() > want {
                c.pending = Some(batch.slice(want, batch.num_rows() - want));
                out.push(batch.slice(0, want));
                got += want as u64;
            } else {
                got += batch.num_rows() as u64;
                out.push(batch);
            }
        }
        Ok((c.schema.clone(), out))
    }

    /// The schema of an open cursor.
    pub fn schema(&self, name: &str) -> Result<SchemaRef> {
        self.0.get(name).map(|c| c.schema.clone()).ok_or_else(|| no_cursor(name))
    }

    /// Closes one cursor, or all with `None`.
    pub fn close(&mut self, name: Option<&str>) -> Result<()> {
        match name {
            None => self.0.clear(),
            Some(n) => {
                self.0.remove(n).ok_or_else(|| no_cursor(n))?;
            }
        }
        Ok(())
    }

    /// At the end of a transaction, cursors without HOLD close.
    pub fn end_transaction(&mut self) {
        self.0.retain(|_, c| c.hold);
    }
}
