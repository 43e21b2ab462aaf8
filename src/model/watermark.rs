//! The batch watermark W as a value: its SQL literal and its text for freshness reports.

use crate::error::{Error, Result};
use crate::model::value::{date_text, timestamp_text, Value};

/// The batch watermark of one logical table at one instant.
#[derive(Debug, Clone)]
pub struct Watermark {
    /// W as a value of the time column's type.
    pub value: Value,
}

impl Watermark {
    /// A SQL literal of the time column's own type, never a bare string that the session
    /// time zone could shift. Valid on PostgreSQL and Redshift.
    pub fn literal(&self) -> Result<String> {
        literal_for(&self.value)
    }

    /// Human-readable W for freshness reports (PostgreSQL text form).
    pub fn text(&self) -> String {
        self.value.to_pg_text().unwrap_or_else(|| "NULL".into())
    }
}

/// A SQL literal for a time value.
pub fn literal_for(v: &Value) -> Result<String> {
    Ok(match v {
        Value::Timestamp(t) => format!("TIMESTAMP '{}'", timestamp_text(*t)),
        Value::TimestampTz(t) => format!("CAST('{}+00' AS TIMESTAMPTZ)", timestamp_text(*t)),
        Value::Date(d) => format!("DATE '{}'", date_text(*d)),
        Value::Int(i) => i.to_string(),
        other => {
            return Err(Error::Config(format!(
                "batch watermark {other:?} has a type tidemark cannot use for a time column"
            )))
        }
    })
}
