//! A pass-through query over a logical table reads the union of its layers with W as a literal,
//! instead of the view `tidemark setup` made (whose W is a subquery on the watermark table). A
//! planner can use a literal: PostgreSQL then projects only the needed columns through the
//! union, Redshift can skip blocks by the time column's zone maps; and the answer is at exactly
//! the W tidemark reports. The client's text is kept byte for byte except each reference to
//! the table, so nothing the warehouse would read differently (backslashes, collations,
//! spacing in literals) is printed anew. Any reference it cannot replace safely (qualified,
//! quoted, shadowed by a CTE) leaves the whole query on the view.

use std::ops::ControlFlow;

use sqlparser::ast::{Query, Spanned, TableFactor, Visit, Visitor};
use sqlparser::tokenizer::Location;

use super::sqlcheck::names_table;
use crate::config::TableConfig;

/// `sql` (whose parse is `query`) with every reference to `table` replaced by `(union)`, the
/// reference's name kept as the alias; None when a reference is not a plain unqualified name.
pub fn inline_union(sql: &str, query: &Query, table: &TableConfig, union: &str) -> Option<String> {
    let mut refs = References { table, spans: Vec::new(), unsafe_ref: false };
    let _ = query.visit(&mut refs);
    if refs.unsafe_ref || refs.spans.is_empty() {
        return None;
    }
    let mut ranges = Vec::new();
    for (start, end, aliased) in refs.spans {
        let (a, b) = (byte_at(sql, start)?, byte_at(sql, end)?);
        let written = sql.get(a..b)?;
        if !written.eq_ignore_ascii_case(&table.name) {
            return None;
        }
        let with = if aliased { format!("({union})") } else { format!("({union}) AS {written}") };
        ranges.push((a, b, with));
    }
    ranges.sort_by_key(|r| r.0);
    let mut out = String::with_capacity(sql.len() + ranges.len() * union.len());
    let mut at = 0;
    for (a, b, with) in ranges {
        if a < at {
            return None;
        }
        out.push_str(&sql[at..a]);
        out.push_str(&with);
        at = b;
    }
    out.push_str(&sql[at..]);
    Some(out)
}

/// Finds the references to the logical table (and CTEs, which could shadow it).
struct References<'a> {
    table: &'a TableConfig,
    /// (start, end, has an alias) of each plain reference's name.
    spans: Vec<(Location, Location, bool)>,
    unsafe_ref: bool,
}

impl Visitor for References<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if q.with.is_some() {
            self.unsafe_ref = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias, args, .. } = f else {
            return ControlFlow::Continue(());
        };
        if !names_table(name, self.table) {
            return ControlFlow::Continue(());
        }
        let plain = name.0.len() == 1 && args.is_none();
        let quoted = name.0[0].as_ident().is_none_or(|i| i.quote_style.is_some());
        if !plain || quoted {
            self.unsafe_ref = true;
            return ControlFlow::Continue(());
        }
        let span = name.span();
        self.spans.push((span.start, span.end, alias.is_some()));
        ControlFlow::Continue(())
    }
}

/// The byte offset of a tokenizer location (1-based line and column, columns counting chars).
fn byte_at(sql: &str, loc: Location) -> Option<usize> {
    if loc.line == 0 {
        return None;
    }
    let (mut line, mut col) = (1u64, 1u64);
    for (i, c) in sql.char_indices() {
        if line == loc.line && col == loc.column {
            return Some(i);
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line == loc.line && col == loc.column).then_some(sql.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::Statement;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn table() -> TableConfig {
        toml::from_str(
            "name = \"hits\"\ntime_column = \"t\"\nbatch_table = \"b\"\nspeed_table = \"s\"",
        )
        .expect("table config")
    }

    fn inline(sql: &str) -> Option<String> {
        let Statement::Query(q) = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0)
        else {
            panic!("a query")
        };
        inline_union(sql, &q, &table(), "U")
    }

    #[test]
    fn replaces_each_plain_reference_and_keeps_the_rest_of_the_text() {
        assert_eq!(
            inline("SELECT count(DISTINCT u) FROM hits WHERE x = 'é\\n'").as_deref(),
            Some("SELECT count(DISTINCT u) FROM (U) AS hits WHERE x = 'é\\n'")
        );
        assert_eq!(
            inline("SELECT 'ü'\n, h.a FROM HITS h JOIN d ON d.id = h.id\nWHERE h.id IN (SELECT id FROM hits)")
                .as_deref(),
            Some("SELECT 'ü'\n, h.a FROM (U) h JOIN d ON d.id = h.id\nWHERE h.id IN (SELECT id FROM (U) AS hits)")
        );
    }

    #[test]
    fn leaves_the_view_when_a_reference_is_not_plain() {
        for sql in [
            "SELECT * FROM public.hits",
            "SELECT * FROM \"hits\"",
            "WITH x AS (SELECT 1) SELECT * FROM hits",
            "SELECT * FROM other",
        ] {
            assert_eq!(inline(sql), None, "{sql}");
        }
    }
}
