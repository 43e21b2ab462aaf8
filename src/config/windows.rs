//! The `[tables.windows]` section: the speed layer's per-second windows in Redis.

use serde::Deserialize;

use super::{check_ident, Span};
use crate::error::{Error, Result};

/// Speed-layer windows of one logical table kept in Redis (see docs/windows.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// Tumbling bucket width, whole seconds (e.g. "10s").
    pub bucket: Span,
    /// Dimension columns kept per bucket, in field order.
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// Measures: `count`, `sum:<col>`, `min:<col>`, `max:<col>`.
    pub measures: Vec<String>,
    /// How long a bucket lives (its TTL), e.g. "30m".
    pub retention: Span,
}

/// One configured measure of the windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    /// Number of events.
    Count,
    /// Sum of a column (also keeps the column's non-null count).
    Sum(String),
    /// Minimum of a column.
    Min(String),
    /// Maximum of a column.
    Max(String),
}

impl Measure {
    /// Parses `count`, `sum:<col>`, `min:<col>` or `max:<col>`.
    pub fn parse(text: &str) -> Result<Measure> {
        let bad = || {
            Error::Config(format!(
                "windows measure {text:?}: expected count, sum:<col>, min:<col> or max:<col>"
            ))
        };
        if text == "count" {
            return Ok(Measure::Count);
        }
        let (kind, col) = text.split_once(':').ok_or_else(bad)?;
        check_ident("windows measure column", col)?;
        if col.contains('.') {
            return Err(bad());
        }
        match kind {
            "sum" => Ok(Measure::Sum(col.into())),
            "min" => Ok(Measure::Min(col.into())),
            "max" => Ok(Measure::Max(col.into())),
            _ => Err(bad()),
        }
    }

    /// The column a measure reads, if any.
    pub fn column(&self) -> Option<&str> {
        match self {
            Measure::Count => None,
            Measure::Sum(c) | Measure::Min(c) | Measure::Max(c) => Some(c),
        }
    }
}

impl WindowsConfig {
    /// Bucket width in whole seconds (at least 1).
    pub fn bucket_secs(&self) -> Result<i64> {
        let d = self.bucket.get();
        if d.as_secs() == 0 || d.subsec_nanos() != 0 {
            return Err(Error::Config(format!(
                "windows.bucket = {:?} must be a whole number of seconds, at least 1s",
                self.bucket
            )));
        }
        Ok(d.as_secs() as i64)
    }

    /// Retention (bucket TTL) in whole seconds.
    pub fn retention_secs(&self) -> Result<i64> {
        let d = self.retention.get();
        Ok(d.as_secs() as i64)
    }

    /// The parsed measures, in order.
    pub fn parsed_measures(&self) -> Result<Vec<Measure>> {
        self.measures.iter().map(|m| Measure::parse(m)).collect()
    }

    /// Checks everything that can be checked without the warehouse.
    pub fn validate(&self, table: &str) -> Result<()> {
        let bucket = self.bucket_secs()?;
        if self.retention_secs()? < 2 * bucket {
            return Err(Error::Config(format!(
                "table {table:?}: windows.retention must be at least two buckets"
            )));
        }
        if self.measures.is_empty() {
            return Err(Error::Config(format!("table {table:?}: windows.measures is empty")));
        }
        self.parsed_measures()?;
        for d in &self.dimensions {
            check_ident("windows dimension", d)?;
        }
        Ok(())
    }
}
