//! Logical tables, their layer tables, and the facts about the warehouse the planner needs
//! (which functions are aggregates or volatile, how text is ordered).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::OnceCell;

use crate::config::{Config, Dialect, TableConfig};
use crate::error::Result;
use crate::exec::value::Value;
use crate::exec::warehouse::{Param, Warehouse};

/// Quotes one identifier for PostgreSQL and Redshift.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a possibly schema-qualified name (`schema.table`).
pub fn quote_name(s: &str) -> String {
    s.split('.').map(quote_ident).collect::<Vec<_>>().join(".")
}

/// Facts read from the warehouse once, lazily (the server starts while it is down).
#[derive(Debug, Clone)]
pub struct Facts {
    /// Names of every aggregate function (built-in and user-defined).
    pub aggregates: HashSet<String>,
    /// Names of volatile functions (random(), nextval(), clock_timestamp(), ...).
    pub volatile: HashSet<String>,
    /// True when the warehouse orders text by bytes (C collation, Redshift), so the
    /// engine may compare text itself.
    pub text_bytewise: bool,
}

/// One column of a logical table.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// PostgreSQL type name (`int8`, `numeric`, `timestamp`, ...), as `/v1/query` reports types.
    #[serde(rename = "type")]
    pub ty: String,
    /// Declared scale of a `numeric(p,s)` column (None for other types or no typmod).
    #[serde(skip)]
    pub scale: Option<u32>,
}

/// Logical tables plus lazily loaded warehouse facts.
pub struct Catalog {
    dialect: Dialect,
    tables: Vec<TableConfig>,
    warehouse: Arc<Warehouse>,
    facts: OnceCell<Arc<Facts>>,
}

const REDSHIFT_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bool_and",
    "bool_or",
    "every",
    "listagg",
    "median",
    "percentile_cont",
    "percentile_disc",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    "var_samp",
    "var_pop",
    "approximate",
    "bit_and",
    "bit_or",
    "any_value",
    "string_agg",
    "array_agg",
    "mode",
];
const REDSHIFT_VOLATILE: &[&str] =
    &["random", "getdate", "sysdate", "timeofday", "clock_timestamp"];

impl Catalog {
    /// A catalog for the configured tables.
    pub fn new(config: &Config, warehouse: Arc<Warehouse>) -> Catalog {
        Catalog {
            dialect: config.warehouse.dialect,
            tables: config.tables.clone(),
            warehouse,
            facts: OnceCell::new(),
        }
    }

    /// The logical tables in configuration order.
    pub fn tables(&self) -> &[TableConfig] {
        &self.tables
    }

    /// The logical table named `name` (unquoted identifiers compare case-insensitively).
    pub fn table(&self, name: &str, quoted: bool) -> Option<&TableConfig> {
        self.tables.iter().find(|t| {
            if quoted {
                t.name == name
            } else {
                t.name.eq_ignore_ascii_case(name)
            }
        })
    }

    /// Warehouse facts, read on first use.
    pub async fn facts(&self) -> Result<Arc<Facts>> {
        self.facts
            .get_or_try_init(|| async { self.load_facts().await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn load_facts(&self) -> Result<Facts> {
        if self.dialect == Dialect::Redshift {
            return Ok(Facts {
                aggregates: REDSHIFT_AGGREGATES.iter().map(|s| s.to_string()).collect(),
                volatile: REDSHIFT_VOLATILE.iter().map(|s| s.to_string()).collect(),
                text_bytewise: true,
            });
        }
        let procs = self
            .warehouse
            .fetch(
                "SELECT DISTINCT proname::text, (prokind = 'a')::bool, (provolatile = 'v')::bool FROM pg_catalog.pg_proc WHERE prokind = 'a' OR provolatile = 'v'",
                &[],
                &[],
                &Vec::new(),
            )
            .await?;
        let mut aggregates = HashSet::new();
        let mut volatile = HashSet::new();
        for row in procs.rows {
            if let Value::Text(name) = &row[0] {
                if matches!(row[1], Value::Bool(true)) {
                    aggregates.insert(name.clone());
                }
                if matches!(row[2], Value::Bool(true)) {
                    volatile.insert(name.clone());
                }
            }
        }
        let coll = self
            .warehouse
            .fetch(
                "SELECT datcollate::text FROM pg_catalog.pg_database WHERE datname = current_database()",
                &[],
                &[],
                &Vec::new(),
            )
            .await?;
        let collate = match coll.rows.first().map(|r| &r[0]) {
            Some(Value::Text(s)) => s.clone(),
            _ => String::new(),
        };
        let text_bytewise =
            matches!(collate.as_str(), "C" | "POSIX" | "C.UTF-8" | "C.utf8" | "ucs_basic");
        Ok(Facts { aggregates, volatile, text_bytewise })
    }

    /// Columns of a warehouse table in order, with their types.
    pub async fn columns_of(&self, table: &str) -> Result<Vec<ColumnInfo>> {
        let rows = self
            .warehouse
            .fetch(
                "SELECT a.attname::text, t.typname::text, \
                 CASE WHEN t.typname = 'numeric' AND a.atttypmod >= 4 THEN (a.atttypmod - 4) % 65536 END \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 \
                 AND NOT a.attisdropped ORDER BY a.attnum",
                &[tokio_postgres::types::Type::TEXT],
                &[Param::Text(quote_name(table))],
                &Vec::new(),
            )
            .await?;
        Ok(rows
            .rows
            .into_iter()
            .map(|r| ColumnInfo {
                name: r[0].to_pg_text().unwrap_or_default(),
                ty: r[1].to_pg_text().unwrap_or_default(),
                scale: match r[2] {
                    Value::Int(s) => u32::try_from(s).ok(),
                    _ => None,
                },
            })
            .collect())
    }
}
