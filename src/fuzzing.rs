//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz), also run by a randomized unit
//! test here: whatever the bytes, nothing panics; and every split the planner makes of a
//! query (arbitrary or generated) has leg SQL that parses again, in both dialects.

use bytes::{Bytes, BytesMut};
use pgwire::api::portal::Format;
use pgwire::api::Type;
use sqlparser::ast::Statement;

use crate::access::{Access, CatalogNames, Resolution};
use crate::catalog::{ColumnInfo, Facts};
use crate::config::{Dialect, TableConfig, UserConfig};
use crate::model::column::{Column, Described};
use crate::model::value::{parse_timestamp, Value};
use crate::plan::split::{plan, SplitInput};
use crate::watermark::Watermark;

const DIALECTS: [Dialect; 2] = [Dialect::Postgres, Dialect::Redshift];

fn table() -> TableConfig {
    TableConfig {
        name: "events".into(),
        time_column: "event_time".into(),
        batch_table: "events_batch".into(),
        speed_table: "events_speed".into(),
        windows: None,
    }
}

/// The scalar functions the fuzzed planner (and the planner's unit tests) know.
pub const SCALARS: &[&str] = &[
    "date_trunc",
    "lower",
    "upper",
    "abs",
    "round",
    "length",
    "coalesce",
    "nullif",
    "date_part",
    "substr",
    "concat",
    "greatest",
    "least",
];

fn facts() -> Facts {
    let aggs = ["count", "sum", "min", "max", "avg", "bool_and", "bool_or", "string_agg"];
    Facts::with_names(&aggs, &["random"], SCALARS)
}

fn columns() -> Vec<ColumnInfo> {
    ["id", "event_time", "country", "amount"]
        .iter()
        .map(|n| ColumnInfo { name: n.to_string(), ty: "text".into(), scale: None })
        .collect()
}

/// Any text through the statement splitter, the fingerprint lexer, the parser, the permission
/// check and the planner.
pub fn sql(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::plan::fingerprint::fingerprint(&text);
    let _ = crate::frontend::pgwire::statements::split_statements(&text);
    for d in DIALECTS {
        if let Ok(stmts) = crate::plan::parse(d, &text) {
            check_permissions(&stmts);
            for s in &stmts {
                split_and_reparse(s, d);
            }
        }
    }
}

/// A SELECT over the logical table generated from the bytes, planned and its legs re-parsed.
pub fn select(data: &[u8]) {
    let sql = generated_select(data);
    for d in DIALECTS {
        let stmts = match crate::plan::parse(d, &sql) {
            Ok(s) => s,
            // Some generated forms (FILTER, ...) are PostgreSQL only.
            Err(_) if d == Dialect::Redshift => continue,
            Err(e) => panic!("generated SELECT does not parse: {e}\n{sql}"),
        };
        for s in &stmts {
            split_and_reparse(s, d);
        }
    }
}

/// Bytes as a warehouse RowDescription (the fast path's), as a simple-query string, and as
/// bound parameters of every type the engine maps, in text and binary.
pub fn pgwire(data: &[u8]) {
    // pgwire's own frontend-message decoding is not fuzzed here: it panics on truncated
    // messages (a CopyData declaring a length below 4, a Describe with an empty body; found by
    // this target, reported in README) and a panic there ends only that connection's task.
    let _ = crate::frontend::pgwire::statements::split_statements(&String::from_utf8_lossy(data));
    let _ = crate::frontend::pgwire::encode::row_description_from_wire(BytesMut::from(data));
    let types = [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::TEXT,
        Type::DATE,
        Type::TIME,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::UUID,
        Type::BYTEA,
        Type::JSONB,
        Type::INTERVAL,
    ];
    let raw = vec![Some(Bytes::copy_from_slice(data))];
    for t in types {
        for f in [Format::UnifiedBinary, Format::UnifiedText] {
            let _ =
                crate::frontend::pgwire::encode::decode_params(&raw, &f, std::slice::from_ref(&t));
        }
    }
}

fn check_permissions(stmts: &[Statement]) {
    let user = UserConfig {
        name: "fuzz".into(),
        password_hash: String::new(),
        api_keys: vec![],
        tables: Some(vec!["events".into()]),
        schemas: Some(vec!["public".into()]),
        statement_timeout: None,
        read_all_stats: false,
    };
    let access = Access::new(&[user]);
    let row = |k: &str, n: &str| (k.to_string(), "pg_catalog".to_string(), n.to_string());
    let names =
        CatalogNames::from_rows([row("r", "pg_class"), row("f", "count"), row("t", "int4")]);
    if let Some(g) = access.restricted("fuzz") {
        let r = Resolution { search_path: Some("secret, public"), catalog: &names };
        let _ = crate::access::check(g, stmts, &[table()], &r);
    }
}

/// Plans a query over `events` (when it is one) and requires every leg to parse again in the
/// dialect the query was parsed in (the one its legs are sent to).
fn split_and_reparse(stmt: &Statement, d: Dialect) {
    let Statement::Query(q) = stmt else { return };
    let n = match q.body.as_ref() {
        sqlparser::ast::SetExpr::Select(s) => s.projection.len(),
        _ => 1,
    };
    let described = Described {
        columns: (0..n).map(|i| Column::new(format!("c{i}"), Type::INT8)).collect(),
        params: vec![],
    };
    let Some(at) = parse_timestamp("2026-01-02 00:00:00") else { return };
    let w = Watermark { value: Value::Timestamp(at) };
    let (t, c, f) = (table(), columns(), facts());
    let input = SplitInput {
        query: q,
        table: &t,
        columns: &c,
        facts: &f,
        described: &described,
        watermark: &w,
        time: Default::default(),
        union: false,
    };
    let Ok(p) = plan(&input) else { return };
    for leg in &p.legs {
        if let Err(e) = crate::plan::parse(d, &leg.sql) {
            panic!("leg SQL does not parse in {d:?}: {e}\nquery: {q}\nleg: {}", leg.sql);
        }
    }
}

/// Reads choices from the fuzz bytes (zeros once they run out).
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn pick<'b>(&mut self, options: &[&'b str]) -> &'b str {
        let (b, rest) = self.0.split_first().map(|(b, r)| (*b, r)).unwrap_or((0, &[]));
        self.0 = rest;
        options[b as usize % options.len()]
    }
}

/// A SELECT over `events` built from the bytes: keys, aggregates, filters, grouping, order.
fn generated_select(data: &[u8]) -> String {
    let mut c = Choices(data);
    let key = c.pick(&["country", "date_trunc('hour', event_time)", "id % 7", "amount > 10"]);
    let agg = |c: &mut Choices| {
        c.pick(&[
            "count(*)",
            "sum(amount)",
            "min(event_time)",
            "max(amount)",
            "avg(amount)",
            "count(DISTINCT country)",
            "sum(amount) FILTER (WHERE country = 'DE')",
            "string_agg(country, ',')",
            "bool_or(amount > 5)",
        ])
    };
    let (a1, a2) = (agg(&mut c), agg(&mut c));
    let filter = c.pick(&[
        "",
        " WHERE event_time >= TIMESTAMP '2026-01-01 00:00:00'",
        " WHERE event_time < TIMESTAMP '2026-01-03 00:00:00' AND country IN ('DE', 'FR')",
        " WHERE amount BETWEEN 1 AND 9 OR country IS NULL",
        " WHERE event_time >= now() - interval '1 day'",
        " WHERE country <> $1",
    ]);
    let grouped = c.pick(&["g", "g", "n", "d"]);
    let tail = c.pick(&[
        "",
        " ORDER BY 1",
        " ORDER BY 2 DESC LIMIT 5",
        " LIMIT 3",
        " HAVING count(*) > 1",
    ]);
    match grouped {
        "g" => format!("SELECT {key}, {a1}, {a2} FROM events{filter} GROUP BY 1{tail}"),
        "d" => format!("SELECT DISTINCT country FROM events{filter}"),
        _ => format!(
            "SELECT id, country, amount FROM events{filter}{}",
            if tail.contains("HAVING") { "" } else { tail }
        ),
    }
}

#[cfg(test)]
mod tests {
    /// Random bytes through every entry point (the cargo-fuzz targets run the same code).
    #[test]
    fn entry_points_survive_random_input() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let words: &[&[u8]] = &[
            b"SELECT ",
            b"FROM events ",
            b"WHERE ",
            b"'x'",
            b"1",
            b"(",
            b")",
            b";",
            b"$1",
            b"--",
            b"\"q\"",
            b"GROUP BY 1 ",
            b"count(*) ",
        ];
        for _ in 0..3000 {
            let len = (next() % 24) as usize;
            let mut data = Vec::new();
            for _ in 0..len {
                match next() % 3 {
                    0 => data.push(next() as u8),
                    _ => data.extend_from_slice(words[(next() % words.len() as u64) as usize]),
                }
            }
            super::sql(&data);
            super::select(&data);
            super::pgwire(&data);
        }
    }
}
