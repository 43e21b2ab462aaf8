//! `tidemark check --probe`: a first-hour self-test against a real warehouse. Each probe
//! asks the warehouse one question tidemark's exactness depends on and prints what it found
//! and what tidemark does about it.

use super::Engine;
use crate::catalog::Collation;
use crate::model::column::SessionParams;
use crate::model::value::{NumericWire, Value};

impl Engine {
    /// One line per probe: what the warehouse answered and what tidemark will do.
    pub async fn probe(&self) -> Vec<String> {
        let mut out = vec![self.probe_numeric().await];
        match self.catalog.facts().await {
            Ok(f) => {
                out.push(format!(
                    "server: {}; {} aggregate and {} scalar function names known (other functions make a query pass through)",
                    if f.redshift { "Amazon Redshift" } else { "PostgreSQL" },
                    f.aggregates.len(),
                    f.scalars.len()
                ));
                out.push(text_line(&f));
                out.push(match f.backslash_escapes {
                    true => "string literals: backslash is an escape; under dialect = \"redshift\" split legs write it as \\\\, under \"postgres\" queries holding one pass through; clients are told standard_conforming_strings = off".into(),
                    false => "string literals: standard (backslash is a plain character)".into(),
                });
            }
            Err(e) => out.push(format!("catalog facts: FAILED ({e}); every query passes through")),
        }
        out.push(self.probe_settings().await);
        for t in self.config.tables.clone() {
            out.push(self.probe_sliding(&t.name, &t.time_column).await);
        }
        out
    }

    async fn probe_numeric(&self) -> String {
        let wire = match self.warehouse.numeric_wire().await {
            Ok(w) => w,
            Err(e) => return format!("numeric: FAILED to ask the server ({e})"),
        };
        let sql = "SELECT CAST(12.34 AS NUMERIC(8,2)), CAST(-1.5 AS NUMERIC(38,4))";
        let got = self.warehouse.fetch(sql, &[], &[], &SessionParams::new()).await;
        let text = |v: &Value| v.to_pg_text().unwrap_or_default();
        let form = match wire {
            NumericWire::Redshift => "Redshift's unscaled integer",
            NumericWire::Postgres => "PostgreSQL's numeric_send",
        };
        match got.as_ref().map(|f| f.rows.first().map(|r| (text(&r[0]), text(&r[1])))) {
            Ok(Some((a, b))) if a == "12.34" && b == "-1.5000" => {
                format!("numeric: binary results decode exactly ({form}: 12.34 and -1.5000)")
            }
            Ok(row) => format!("numeric: MISMATCH, decoded {row:?} for 12.34 and -1.5000 ({form}); do not serve numeric columns, report this"),
            Err(e) => format!("numeric: FAILED ({e})"),
        }
    }

    async fn probe_settings(&self) -> String {
        let params: SessionParams = vec![("timezone".into(), "UTC".into())];
        match self.warehouse.fetch("SELECT 1", &[], &[], &params).await {
            Ok(_) => "session settings: forwarded with set_config (TimeZone, DateStyle, search_path, ...)".into(),
            Err(e) => format!("session settings: FAILED to forward ({e}); clients' SET and startup settings will fail"),
        }
    }

    async fn probe_sliding(&self, table: &str, time_column: &str) -> String {
        let q = crate::model::sql::quote_ident(time_column);
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {q} >= now() - interval '1 hour'",
            crate::model::sql::quote_ident(table)
        );
        match self.explain(&sql, &SessionParams::new()).await {
            Ok(e) => format!(
                "logical table {table}: \"last hour\" is {}{}",
                e.class,
                e.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            Err(e) => format!("logical table {table}: FAILED to plan a sliding range ({e})"),
        }
    }
}

fn text_line(f: &crate::catalog::Facts) -> String {
    let mut cols: Vec<String> = f
        .collated
        .iter()
        .map(|(name, c)| {
            let kind = match c {
                Collation::Folding => "case-insensitive",
                Collation::Ordered => "locale-ordered",
            };
            format!("{name} ({kind})")
        })
        .collect();
    cols.sort();
    format!(
        "text: database default {}{}; {}",
        if f.text_keys_bytewise { "case-sensitive" } else { "case-insensitive" },
        if f.text_bytewise {
            ", byte order"
        } else {
            ", locale order (text ordering passes through)"
        },
        if cols.is_empty() {
            "no column has another collation".to_string()
        } else {
            format!(
                "columns under other collations (their keys and ordering pass through): {}",
                cols.join(", ")
            )
        }
    )
}
