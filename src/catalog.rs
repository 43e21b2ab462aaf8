//! Logical tables, their layer tables, and the facts about the warehouse the planner needs
//! (which functions are aggregates, scalar or volatile, how text is compared).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;

use crate::config::{Config, Dialect, TableConfig};
use crate::error::Result;
use crate::exec::warehouse::Warehouse;
use crate::model::column::Param;
use crate::model::sql::{quote_name, split_name};
use crate::model::value::Value;

/// Joins `pg_attribute a` to the relation named by `$1` (schema; NULL: the search path) and
/// `$2` (name), without `regclass` (which Redshift's compute nodes lack).
pub const RELATION_BY_NAME: &str = "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $2::text \
     AND (n.nspname = $1::text OR ($1::text IS NULL AND pg_catalog.pg_table_is_visible(c.oid)))";

/// Facts read from the warehouse lazily (the server starts while it is down) and again every
/// [`FACTS_FRESH_FOR`].
#[derive(Debug, Clone)]
pub struct Facts {
    /// Names of every aggregate function (built-in and user-defined).
    pub aggregates: HashSet<String>,
    /// Names of volatile functions (random(), nextval(), clock_timestamp(), ...).
    pub volatile: HashSet<String>,
    /// Names known to be scalar functions. A call to a name that is neither an aggregate nor
    /// here makes the query pass through: the planner never guesses that a function is scalar.
    pub scalars: HashSet<String>,
    /// True when the database's default collation orders text by bytes (C collation,
    /// Redshift's case_sensitive), so the engine may order text itself.
    pub text_bytewise: bool,
    /// False when the database's default collation makes different bytes equal (Redshift's
    /// case_insensitive): text group keys then pass through.
    pub text_keys_bytewise: bool,
    /// Columns (lower-cased names, any table) whose collation is not the database's default
    /// and not bytewise. A query naming one merges no text itself.
    pub collated: HashMap<String, Collation>,
    /// The warehouse is Amazon Redshift (its `version()` says so), whatever the dialect.
    pub redshift: bool,
    /// The warehouse reads `\` in '...' literals as an escape (Redshift; PostgreSQL with
    /// `standard_conforming_strings = off`).
    pub backslash_escapes: bool,
    /// The warehouse's default TimeZone (what sessions that set none get).
    pub default_zone: String,
}

impl Facts {
    /// The facts of a bytewise, UTC PostgreSQL that knows only these function names (the
    /// starting point of the warehouse's facts; tests and fuzzing use it as it is).
    pub fn with_names(aggregates: &[&str], volatile: &[&str], scalars: &[&str]) -> Facts {
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        Facts {
            aggregates: set(aggregates),
            volatile: set(volatile),
            scalars: set(scalars),
            text_bytewise: true,
            text_keys_bytewise: true,
            collated: HashMap::new(),
            redshift: false,
            backslash_escapes: false,
            default_zone: "UTC".into(),
        }
    }
}

/// How a column's collation compares text, as far as merging is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Collation {
    /// Equal means the same bytes; ordered by a locale, not by bytes.
    Ordered,
    /// Different bytes may be equal (nondeterministic ICU, Redshift case_insensitive).
    Folding,
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

/// The key of [`Facts::collated`] standing for "every column" when a table's collations are
/// unknown.
pub const WILDCARD_COLUMN: &str = "*";

fn note_collation(map: &mut HashMap<String, Collation>, name: &str, c: Collation) {
    let e = map.entry(name.to_lowercase()).or_insert(c);
    *e = (*e).max(c);
}

/// Names of the columns a Redshift `SHOW TABLE` DDL declares `COLLATE case_insensitive`.
pub fn case_insensitive_columns(ddl: &str) -> Vec<String> {
    let Some(body) = ddl.find('(').map(|i| &ddl[i + 1..]) else { return vec![] };
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    let mut pieces = Vec::new();
    for (i, ch) in body.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' if depth == 0 => {
                pieces.push(&body[start..i]);
                break;
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                pieces.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    for p in pieces {
        let lower = p.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .collect();
        let ci = words
            .windows(2)
            .any(|w| w[0] == "collate" && matches!(w[1], "case_insensitive" | "ci"));
        if !ci {
            continue;
        }
        let p = p.trim();
        let name = match p.strip_prefix('"') {
            Some(rest) => rest.split('"').next().unwrap_or_default().to_string(),
            None => p.split_whitespace().next().unwrap_or_default().to_string(),
        };
        out.push(name);
    }
    out
}

/// How long warehouse facts are used before they are read again (a minute, like the grants'
/// catalog names: a collation or aggregate created since is seen within it).
pub const FACTS_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Logical tables plus lazily loaded warehouse facts.
pub struct Catalog {
    dialect: Dialect,
    tables: Vec<TableConfig>,
    warehouse: Arc<Warehouse>,
    facts: Mutex<Option<(std::time::Instant, Arc<Facts>)>>,
    refreshing: std::sync::atomic::AtomicBool,
}

/// Grammar, not catalog functions: written without quotes they cannot name a user's function.
pub const KEYWORD_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "system_user",
    "user",
    "current_catalog",
    "current_schema",
    "grouping",
    "row",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
];

/// Redshift's aggregate functions (Database Developer Guide, "Aggregate functions", the bit-wise,
/// HyperLogLog and spatial aggregates), added to whatever its catalog lists: several are not
/// in `pg_proc`. A scalar named here by mistake only costs a pass-through.
const REDSHIFT_AGGREGATES: &[&str] = &[
    "any_value",
    "approximate",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "count",
    "every",
    "hll",
    "hll_combine",
    "hll_combine_sketches",
    "hll_create_sketch",
    "listagg",
    "max",
    "median",
    "min",
    "percentile_cont",
    "percentile_disc",
    "st_collect",
    "st_extent",
    "st_union",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
    "array_agg",
    "string_agg",
    "mode",
];
/// Redshift functions whose value changes within a statement or between legs.
const REDSHIFT_VOLATILE: &[&str] =
    &["random", "getdate", "sysdate", "timeofday", "clock_timestamp"];
/// Redshift's documented scalar functions that its `pg_proc` may not list (leader-node and
/// Redshift-only functions): known scalar, so they do not force a pass-through.
const REDSHIFT_SCALARS: &[&str] = &[
    "add_months",
    "charindex",
    "convert_timezone",
    "date_add",
    "dateadd",
    "datediff",
    "date_part",
    "date_trunc",
    "decode",
    "getdate",
    "hll_cardinality",
    "json_extract_array_element_text",
    "json_extract_path_text",
    "json_array_length",
    "len",
    "months_between",
    "nvl",
    "nvl2",
    "sysdate",
    "textlen",
    "to_char",
    "to_date",
    "to_number",
    "to_timestamp",
    "trunc",
];

/// Every function name with its kind, on PostgreSQL.
/// The server's kind, from `version()`.
const VERSION_SQL: &str = "SELECT version()::text";
/// The warehouse's default TimeZone.
const ZONE_SQL: &str = "SELECT current_setting('TimeZone')";
/// Redshift's database collation.
const DB_COLLATION_SQL: &str = "SELECT db_collation()::varchar(32)";

/// Redshift's listing of a table's columns with their collations.
fn show_table_sql(table: &str) -> String {
    format!("SHOW TABLE {}", quote_name(table))
}

/// A table's columns with their types and numeric scales (`$1` schema, `$2` name).
fn columns_sql() -> String {
    format!(
        "SELECT a.attname::text, t.typname::text, \
         CASE WHEN t.typname = 'numeric' AND a.atttypmod >= 4 THEN (a.atttypmod - 4) % 65536 END \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         {RELATION_BY_NAME} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    )
}

const PG_PROCS: &str = "SELECT DISTINCT proname::text, (prokind = 'a')::bool, (provolatile = 'v')::bool FROM pg_catalog.pg_proc";
/// The same on Redshift, whose `pg_proc` is PostgreSQL 8's (`proisagg`, no `prokind`).
const REDSHIFT_PROCS: &str =
    "SELECT DISTINCT proname::varchar(128), proisagg, (provolatile = 'v') FROM pg_catalog.pg_proc";
/// Columns of user tables whose collation is neither the database default nor bytewise
/// (PostgreSQL 12+), with whether it is nondeterministic.
const PG_COLLATED_COLUMNS: &str = "SELECT DISTINCT a.attname::text, NOT co.collisdeterministic \
     FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND co.collname NOT IN ('default', 'C', 'POSIX', 'ucs_basic') \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'";

impl Catalog {
    /// A catalog for the configured tables.
    pub fn new(config: &Config, warehouse: Arc<Warehouse>) -> Catalog {
        Catalog {
            dialect: config.warehouse.dialect,
            tables: config.tables.clone(),
            warehouse,
            facts: Mutex::new(None),
            refreshing: Default::default(),
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
    /// Read again after [`FACTS_FRESH_FOR`], so a function or a column collation created
    /// since is seen; the last facts read stay in use while the warehouse does not answer.
    pub async fn facts(&self) -> Result<Arc<Facts>> {
        use std::sync::atomic::Ordering;
        let stale = {
            let held = self.facts.lock().await;
            match &*held {
                Some((at, f)) if at.elapsed() < FACTS_FRESH_FOR => return Ok(f.clone()),
                // one caller refreshes; the others keep answering with the facts they have
                Some((_, f)) if self.refreshing.swap(true, Ordering::AcqRel) => {
                    return Ok(f.clone())
                }
                other => other.as_ref().map(|(_, f)| f.clone()),
            }
        };
        let loaded = self.load_facts().await.map(Arc::new);
        self.refreshing.store(false, Ordering::Release);
        match loaded {
            Ok(f) => {
                *self.facts.lock().await = Some((std::time::Instant::now(), f.clone()));
                Ok(f)
            }
            Err(e) => stale.ok_or(e),
        }
    }

    async fn load_facts(&self) -> Result<Facts> {
        let version = self.text_rows(VERSION_SQL).await?;
        let redshift = version.iter().any(|v| v[0].to_lowercase().contains("redshift"));
        let mut facts = self.procs(redshift).await?;
        facts.scalars.extend(KEYWORD_FUNCTIONS.iter().map(|s| s.to_string()));
        if let Ok(z) = self.text_rows(ZONE_SQL).await {
            facts.default_zone = z.first().map(|r| r[0].clone()).unwrap_or_default();
        }
        if self.dialect == Dialect::Redshift {
            facts.aggregates.extend(REDSHIFT_AGGREGATES.iter().map(|s| s.to_string()));
            facts.volatile.extend(REDSHIFT_VOLATILE.iter().map(|s| s.to_string()));
            facts.scalars.extend(REDSHIFT_SCALARS.iter().map(|s| s.to_string()));
        }
        if redshift {
            let ci = self.text_rows(DB_COLLATION_SQL).await?;
            let folding = ci.iter().any(|r| r[0].eq_ignore_ascii_case("case_insensitive"));
            facts.text_bytewise = !folding;
            facts.text_keys_bytewise = !folding;
            for t in &self.tables {
                for table in [&t.batch_table, &t.speed_table] {
                    self.redshift_collations(table, &mut facts.collated).await;
                }
            }
        } else {
            let collate = self
                .text_rows("SELECT datcollate::text FROM pg_catalog.pg_database WHERE datname = current_database()")
                .await?;
            let collate = collate.first().map(|r| r[0].as_str()).unwrap_or_default();
            facts.text_bytewise =
                matches!(collate, "C" | "POSIX" | "C.UTF-8" | "C.utf8" | "ucs_basic");
            let scs =
                self.text_rows("SELECT current_setting('standard_conforming_strings')").await?;
            facts.backslash_escapes = scs.iter().any(|r| r[0] == "off");
            for r in self.rows(PG_COLLATED_COLUMNS).await? {
                let (Value::Text(name), Value::Bool(folding)) = (&r[0], &r[1]) else { continue };
                let c = if *folding { Collation::Folding } else { Collation::Ordered };
                note_collation(&mut facts.collated, name, c);
            }
        }
        Ok(facts)
    }

    /// Function names by kind, read from the warehouse's `pg_proc`.
    async fn procs(&self, redshift: bool) -> Result<Facts> {
        let mut facts = Facts::with_names(&[], &[], &[]);
        (facts.redshift, facts.backslash_escapes) = (redshift, redshift);
        for row in self.rows(if redshift { REDSHIFT_PROCS } else { PG_PROCS }).await? {
            let Value::Text(name) = &row[0] else { continue };
            if matches!(row[1], Value::Bool(true)) {
                facts.aggregates.insert(name.clone());
            } else {
                facts.scalars.insert(name.clone());
            }
            if matches!(row[2], Value::Bool(true)) {
                facts.volatile.insert(name.clone());
            }
        }
        Ok(facts)
    }

    /// Column collations of one Redshift table from `SHOW TABLE` (no system view lists them).
    /// When that fails every text column is taken as case-insensitive: slower, never wrong.
    async fn redshift_collations(&self, table: &str, out: &mut HashMap<String, Collation>) {
        match self.text_rows(&show_table_sql(table)).await {
            Ok(rows) => {
                let ddl = rows.first().map(|r| r[0].as_str()).unwrap_or_default();
                for name in case_insensitive_columns(ddl) {
                    note_collation(out, &name, Collation::Folding);
                }
            }
            Err(e) => {
                tracing::warn!(%table, error = %e, "SHOW TABLE failed; text of this table passes through");
                out.insert(WILDCARD_COLUMN.to_string(), Collation::Folding);
            }
        }
    }

    async fn rows(&self, sql: &str) -> Result<Vec<Vec<Value>>> {
        Ok(self.warehouse.fetch(sql, &[], &[], &Vec::new()).await?.rows)
    }

    /// Rows of a query whose columns are all text (NULLs as empty strings).
    async fn text_rows(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let rows = self.rows(sql).await?;
        Ok(rows
            .into_iter()
            .map(|r| r.iter().map(|v| v.to_pg_text().unwrap_or_default()).collect())
            .collect())
    }

    /// Columns of a warehouse table in order, with their types.
    pub async fn columns_of(&self, table: &str) -> Result<Vec<ColumnInfo>> {
        let (schema, name) = split_name(table);
        let schema = schema.map_or(Param::Null, |s| Param::Text(s.to_string()));
        let sql = columns_sql();
        let rows = self
            .warehouse
            .fetch(
                &sql,
                &[tokio_postgres::types::Type::TEXT, tokio_postgres::types::Type::TEXT],
                &[schema, Param::Text(name.to_string())],
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

#[cfg(test)]
mod tests {
    /// Every statement the catalog and the watermark poll send to a Redshift warehouse,
    /// golden, and checked against Redshift's rules: no `regclass` (not on compute nodes),
    /// no `prokind` or `collisdeterministic` (Redshift's catalog lacks them), no
    /// leader-node-only time functions, names quoted.
    #[test]
    fn redshift_catalog_statements_are_golden() {
        let all = [
            super::VERSION_SQL.to_string(),
            super::ZONE_SQL.to_string(),
            super::REDSHIFT_PROCS.to_string(),
            super::DB_COLLATION_SQL.to_string(),
            super::show_table_sql("analytics.events_batch"),
            super::columns_sql(),
            crate::watermark::poll_sql("tidemark_watermarks"),
        ];
        assert_eq!(all[4], "SHOW TABLE \"analytics\".\"events_batch\"");
        assert_eq!(
            all[2],
            "SELECT DISTINCT proname::varchar(128), proisagg, (provolatile = 'v') FROM pg_catalog.pg_proc"
        );
        assert_eq!(
            all[6],
            "SELECT table_name, batch_watermark FROM \"tidemark_watermarks\" WHERE batch_watermark IS NOT NULL"
        );
        for sql in &all {
            let lower = sql.to_lowercase();
            for banned in
                ["regclass", "prokind", "now()", "current_timestamp", "collisdeterministic"]
            {
                assert!(!lower.contains(banned), "{banned} in {sql}");
            }
        }
    }
}
