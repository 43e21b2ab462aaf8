//! Golden tests of the split planner: leg SQL for both dialects, pruning and fallbacks.

use tokio_postgres::types::Type;

use super::split::{plan, Shape, SplitInput, SplitPlan};
use crate::catalog::{ColumnInfo, Facts};
use crate::config::{Dialect, TableConfig};
use crate::error::Error;
use crate::model::column::{Column, Described};
use crate::model::value::{parse_timestamp, Value};
use crate::watermark::Watermark;

fn table() -> TableConfig {
    TableConfig {
        name: "events".into(),
        time_column: "event_time".into(),
        batch_table: "events_batch".into(),
        speed_table: "events_speed".into(),
        windows: None,
    }
}

use crate::fuzzing::SCALARS;

fn facts() -> Facts {
    let aggs = [
        "count",
        "sum",
        "min",
        "max",
        "avg",
        "bool_and",
        "bool_or",
        "every",
        "string_agg",
        "stddev",
    ];
    Facts::with_names(&aggs, &["random"], SCALARS)
}

fn cols() -> Vec<ColumnInfo> {
    ["id", "event_time", "country", "amount"]
        .iter()
        .map(|n| ColumnInfo { name: n.to_string(), ty: "text".into(), scale: None })
        .collect()
}

fn try_plan(dialect: Dialect, sql: &str, out: &[&str]) -> Result<SplitPlan, Error> {
    let stmt = super::parse(dialect, sql).unwrap().remove(0);
    let sqlparser::ast::Statement::Query(q) = stmt else { panic!("not a query") };
    let described = Described {
        columns: out.iter().map(|n| Column::new(n.to_string(), Type::INT8)).collect(),
        params: vec![],
    };
    let w = Watermark { value: Value::Timestamp(parse_timestamp("2026-01-02 00:00:00").unwrap()) };
    let (t, c, f) = (table(), cols(), facts());
    let input = SplitInput {
        query: &q,
        table: &t,
        columns: &c,
        facts: &f,
        described: &described,
        watermark: &w,
        time: Default::default(),
        union: false,
    };
    plan(&input)
}

fn legs(dialect: Dialect, sql: &str, out: &[&str]) -> Vec<String> {
    try_plan(dialect, sql, out).unwrap().legs.into_iter().map(|l| l.sql).collect()
}

#[test]
fn grouped_aggregate_legs() {
    for d in [Dialect::Postgres, Dialect::Redshift] {
        let l = legs(
            d,
            "SELECT country, count(*), avg(amount) FROM events GROUP BY country",
            &["country", "count", "avg"],
        );
        assert_eq!(
            l,
            vec![
                "SELECT country AS \"__tm_k0\", count(*) AS \"__tm_a0\", sum(amount) AS \"__tm_a1\", count(amount) AS \"__tm_a2\" FROM \"events_batch\" AS events WHERE events.\"event_time\" < TIMESTAMP '2026-01-02 00:00:00' GROUP BY country",
                "SELECT country AS \"__tm_k0\", count(*) AS \"__tm_a0\", sum(amount) AS \"__tm_a1\", count(amount) AS \"__tm_a2\" FROM \"events_speed\" AS events WHERE events.\"event_time\" >= TIMESTAMP '2026-01-02 00:00:00' GROUP BY country",
            ]
        );
    }
}

#[test]
fn alias_join_and_where() {
    let l = legs(
        Dialect::Postgres,
        "SELECT c.region AS r, sum(e.amount) FROM events e JOIN countries c ON c.code = e.country WHERE e.amount > 0 GROUP BY c.region",
        &["r", "sum"],
    );
    assert_eq!(
        l[0],
        "SELECT c.region AS \"__tm_k0\", sum(e.amount) AS \"__tm_a0\" FROM \"events_batch\" AS e JOIN countries c ON c.code = e.country WHERE (e.amount > 0) AND e.\"event_time\" < TIMESTAMP '2026-01-02 00:00:00' GROUP BY c.region"
    );
}

#[test]
fn rows_with_order_and_limit() {
    let l = legs(
        Dialect::Redshift,
        "SELECT id, amount FROM events ORDER BY amount DESC, id LIMIT 10 OFFSET 5",
        &["id", "amount"],
    );
    assert_eq!(
        l[1],
        "SELECT id, amount FROM \"events_speed\" AS events WHERE events.\"event_time\" >= TIMESTAMP '2026-01-02 00:00:00' ORDER BY amount DESC, id LIMIT 15"
    );
    let p = try_plan(Dialect::Postgres, "SELECT id FROM events ORDER BY amount LIMIT 3", &["id"])
        .unwrap();
    assert!(p.legs[0].sql.starts_with("SELECT id, amount AS \"__tm_o0\" FROM"));
    let Shape::Rows(r) = p.shape else { panic!() };
    assert_eq!((r.n_visible, r.limit, r.offset), (1, Some(3), 0));
}

#[test]
fn pruning_by_time() {
    let p = try_plan(
        Dialect::Postgres,
        "SELECT count(*) FROM events WHERE event_time < '2026-01-01'",
        &["count"],
    )
    .unwrap();
    assert_eq!(p.legs.len(), 1);
    assert_eq!(p.legs[0].layer.name(), "batch");
    let p = try_plan(
        Dialect::Postgres,
        "SELECT count(*) FROM events WHERE event_time >= TIMESTAMP '2026-01-02 00:00:00'",
        &["count"],
    )
    .unwrap();
    assert_eq!(p.legs.len(), 1);
    assert_eq!(p.legs[0].layer.name(), "speed");
    let p = try_plan(
        Dialect::Postgres,
        "SELECT count(*) FROM events WHERE event_time <= '2026-01-02'",
        &["count"],
    )
    .unwrap();
    assert_eq!(p.legs.len(), 2, "a bound exactly at W keeps the speed leg");
}

#[test]
fn unsplittable_forms_fall_back() {
    for sql in [
        "SELECT count(DISTINCT country) FROM events",
        "SELECT string_agg(country, ',') FROM events",
        "SELECT country, row_number() OVER () FROM events",
        "SELECT random(), count(*) FROM events",
        "SELECT count(*) FROM countries c LEFT JOIN events e ON e.country = c.code",
        "SELECT count(*) FROM events e RIGHT JOIN countries c ON e.country = c.code",
        "SELECT country, count(*) FROM events GROUP BY ROLLUP (country)",
        "SELECT DISTINCT ON (country) country FROM events",
        "SELECT count(*) FROM events LIMIT $1",
        "SELECT country, (SELECT 1) + count(*) FROM events GROUP BY country",
    ] {
        match try_plan(Dialect::Postgres, sql, &["a", "b"]) {
            Err(Error::Unsplittable(_)) => {}
            other => panic!("{sql}: expected passthrough, got {other:?}"),
        }
    }
}

#[test]
fn expressions_over_aggregates_push_the_rest_down() {
    let p = try_plan(
        Dialect::Postgres,
        "SELECT lower(country), round(avg(amount), 2) * 2 FROM events GROUP BY country HAVING count(*) > 1 ORDER BY 2 DESC",
        &["lower", "x"],
    )
    .unwrap();
    assert!(p.legs[0].sql.starts_with(
        "SELECT country AS \"__tm_k0\", lower(country) AS \"__tm_k1\", sum(amount) AS \"__tm_a0\", count(amount) AS \"__tm_a1\", count(*) AS \"__tm_a2\""
    ));
    let Shape::Aggregate(a) = p.shape else { panic!() };
    assert_eq!((a.n_keys, a.n_cols, a.aggs.len(), a.order.len()), (1, 2, 2, 1));
}

#[test]
fn now_is_one_instant_for_every_leg() {
    let stmt = super::parse(Dialect::Postgres, "SELECT count(*) FROM events WHERE event_time > now() - interval '1 day' AND d = current_date").unwrap().remove(0);
    let sqlparser::ast::Statement::Query(mut q) = stmt else { panic!() };
    assert!(super::split::substitute_now(&mut q, 0, Dialect::Postgres));
    let text = q.to_string();
    assert!(
        text.contains("CAST('1970-01-01 00:00:00+00' AS TIMESTAMPTZ) - INTERVAL '1 day'"),
        "{text}"
    );
    assert!(text.contains("CAST(CAST('1970-01-01 00:00:00+00' AS TIMESTAMPTZ) AS DATE)"), "{text}");
}

#[test]
fn redshift_getdate_and_sysdate_are_the_same_instant() {
    let sql = "SELECT count(*) FROM events WHERE event_time > SYSDATE - interval '1 hour' OR event_time > getdate()";
    let stmt = super::parse(Dialect::Redshift, sql).unwrap().remove(0);
    let sqlparser::ast::Statement::Query(mut q) = stmt else { panic!() };
    assert!(super::split::substitute_now(&mut q, 0, Dialect::Redshift));
    let text = q.to_string();
    let instant = "CAST(CAST('1970-01-01 00:00:00+00' AS TIMESTAMPTZ) AS TIMESTAMP)";
    assert_eq!(text.matches(instant).count(), 2, "{text}");
    assert!(!text.to_lowercase().contains("sysdate"), "{text}");
}

#[test]
fn queries_reading_now_are_described_at_a_fixed_instant_keeping_their_names() {
    let form = |d, sql: &str| {
        let stmt = super::parse(d, sql).unwrap().remove(0);
        let sqlparser::ast::Statement::Query(q) = stmt else { panic!() };
        super::split::describe_form(&q, d, &facts())
    };
    assert_eq!(form(Dialect::Postgres, "SELECT count(*) FROM events WHERE flag"), None);
    let text = form(
        Dialect::Redshift,
        "SELECT SYSDATE, getdate()::date, now() - interval '1 day', count(*) AS n FROM events \
         WHERE event_time > dateadd(hour, -1, getdate())",
    )
    .unwrap();
    assert!(text.contains("AS TIMESTAMP) AS \"sysdate\""), "{text}");
    assert!(text.contains("AS TIMESTAMP)::DATE AS \"getdate\""), "{text}");
    assert!(text.contains("INTERVAL '1 day',"), "{text}");
    assert!(!text.to_lowercase().contains("getdate()") && !text.contains("SYSDATE,"), "{text}");
    // the instant is fixed, so one text per query shape
    assert!(text.contains("'1970-01-01 00:00:00+00'"), "{text}");
}

#[test]
fn functions_the_planner_cannot_prove_scalar_pass_through() {
    for (sql, out) in [
        ("SELECT hll(id) FROM events", &["hll"][..]),
        ("SELECT country, my_udagg(amount) FROM events GROUP BY country", &["country", "x"][..]),
        ("SELECT myschema.sum(amount) FROM events", &["sum"][..]),
        ("SELECT id FROM events WHERE mystery(id) LIMIT 3", &["id"][..]),
    ] {
        for d in [Dialect::Postgres, Dialect::Redshift] {
            match try_plan(d, sql, out) {
                Err(Error::Unsplittable(_)) => {}
                other => panic!("{sql} on {d:?}: {other:?}"),
            }
        }
    }
    assert!(
        try_plan(Dialect::Postgres, "SELECT lower(country) FROM events LIMIT 3", &["l"]).is_ok()
    );
}

#[test]
fn printed_literals_double_their_backslashes_only() {
    use super::split::escape_backslashes as esc;
    assert_eq!(esc(r"SELECT 'C:\tmp', 'it''s', 'é\'"), r"SELECT 'C:\\tmp', 'it''s', 'é\\'");
    assert_eq!(
        esc(r#"SELECT "a\b", E'x\'y\\', $t$a\b$t$, $1"#),
        r#"SELECT "a\b", E'x\'y\\', $t$a\b$t$, $1"#
    );
    assert_eq!(esc(r"SELECT name'\' FROM t"), r"SELECT name'\\' FROM t");
    assert_eq!(esc("SELECT 'unterminated \\"), "SELECT 'unterminated \\\\");
}

/// Every statement the split sends under `redshift`, golden: the pinned instant instead of
/// any leader-node function, backslashes written for a warehouse that reads escapes, no
/// PostgreSQL-only syntax (`::regclass`, `E'...'`, `IS DISTINCT FROM` on the split columns).
#[test]
fn redshift_leg_and_describe_statements_are_golden() {
    let d = Dialect::Redshift;
    let sql = r"SELECT country, count(*) FROM events WHERE event_time >= SYSDATE - interval '1 hour' AND country <> 'C:\\x' GROUP BY country";
    let stmt = super::parse(d, sql).unwrap().remove(0);
    let sqlparser::ast::Statement::Query(mut q) = stmt else { panic!() };
    let mut f = facts();
    (f.redshift, f.backslash_escapes) = (true, true);
    let describe = super::split::describe_form(&q, d, &f).unwrap();
    let instant = "CAST(CAST('1970-01-01 00:00:00+00' AS TIMESTAMPTZ) AS TIMESTAMP)";
    assert_eq!(
        describe,
        format!(
            r"SELECT country, count(*) FROM events WHERE event_time >= {instant} - INTERVAL '1 hour' AND country <> 'C:\\x' GROUP BY country"
        )
    );
    assert!(super::split::substitute_now(&mut q, 0, d));
    let described = Described {
        columns: ["country", "count"]
            .iter()
            .map(|n| Column::new(n.to_string(), Type::INT8))
            .collect(),
        params: vec![],
    };
    let w = Watermark { value: Value::Timestamp(parse_timestamp("2026-01-02 00:00:00").unwrap()) };
    let (t, c) = (table(), cols());
    let time = super::timefold::TimeRules { redshift: true, ..Default::default() };
    let input = SplitInput {
        query: &q,
        table: &t,
        columns: &c,
        facts: &f,
        described: &described,
        watermark: &w,
        time,
        union: false,
    };
    let p = plan(&input).unwrap();
    let legs: Vec<&str> = p.legs.iter().map(|l| l.sql.as_str()).collect();
    let leg = |table: &str, w: &str| {
        format!(
            r#"SELECT country AS "__tm_k0", count(*) AS "__tm_a0" FROM "{table}" AS events WHERE (event_time >= {instant} - INTERVAL '1 hour' AND country <> 'C:\\x') AND events."event_time" {w} TIMESTAMP '2026-01-02 00:00:00' GROUP BY country"#
        )
    };
    assert_eq!(legs, [leg("events_batch", "<"), leg("events_speed", ">=")]);
    for text in legs.iter().chain([&describe.as_str()]) {
        let lower = text.to_lowercase();
        for banned in ["now()", "getdate", "sysdate", "::regclass", " e'", "current_timestamp"] {
            assert!(!lower.contains(banned), "{banned} in {text}");
        }
    }
}
