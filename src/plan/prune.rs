//! Time pruning: when the WHERE clause bounds the time column entirely below W the speed
//! leg is dropped, and entirely at or above W the batch leg. Only literal bounds whose
//! meaning does not depend on the session time zone are used; anything else keeps both legs.

use chrono::DateTime;
use sqlparser::ast::{BinaryOperator, DataType, Expr, Ident, Value as SqlValue};

use crate::model::value::{parse_timestamp, Value};

/// Which legs the WHERE clause proves empty.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Pruning {
    /// No batch row (time < W) can match.
    pub batch: bool,
    /// No speed row (time >= W) can match.
    pub speed: bool,
}

/// Analyses the top-level conjuncts of `selection` against watermark `w`.
pub fn analyze(selection: Option<&Expr>, qualifier: &Ident, time_col: &str, w: &Value) -> Pruning {
    let Some(w) = comparable(w) else { return Pruning::default() };
    let mut p = Pruning::default();
    let mut conj = Vec::new();
    if let Some(e) = selection {
        conjuncts(e, &mut conj);
    }
    for c in conj {
        for (op, v) in bounds(c, qualifier, time_col, &w.1) {
            apply(&mut p, op, v, w.0);
        }
    }
    if p.batch && p.speed {
        // contradictory bounds: keep one leg so the query still runs (and returns nothing)
        p.batch = false;
    }
    p
}

fn apply(p: &mut Pruning, op: BinaryOperator, v: i64, w: i64) {
    match op {
        BinaryOperator::Lt if v <= w => p.speed = true,
        BinaryOperator::LtEq | BinaryOperator::Eq if v < w => p.speed = true,
        BinaryOperator::GtEq | BinaryOperator::Gt | BinaryOperator::Eq if v >= w => p.batch = true,
        _ => {}
    }
}

/// What kind of time the watermark is: its comparable integer and kind tag.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Naive,
    Tz,
    Date,
}

fn comparable(w: &Value) -> Option<(i64, Kind)> {
    match w {
        Value::Timestamp(t) => Some((*t, Kind::Naive)),
        Value::TimestampTz(t) => Some((*t, Kind::Tz)),
        Value::Date(d) => Some((*d as i64, Kind::Date)),
        _ => None,
    }
}

fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

fn bounds(e: &Expr, q: &Ident, col: &str, kind: &Kind) -> Vec<(BinaryOperator, i64)> {
    match e {
        Expr::BinaryOp { left, op, right } => {
            let op = op.clone();
            if is_time(left, q, col) {
                time_literal(right, kind).map(|v| vec![(op, v)]).unwrap_or_default()
            } else if is_time(right, q, col) {
                let flipped = match op {
                    BinaryOperator::Lt => BinaryOperator::Gt,
                    BinaryOperator::LtEq => BinaryOperator::GtEq,
                    BinaryOperator::Gt => BinaryOperator::Lt,
                    BinaryOperator::GtEq => BinaryOperator::LtEq,
                    other => other,
                };
                time_literal(left, kind).map(|v| vec![(flipped, v)]).unwrap_or_default()
            } else {
                vec![]
            }
        }
        Expr::Between { expr, negated: false, low, high } if is_time(expr, q, col) => {
            match (time_literal(low, kind), time_literal(high, kind)) {
                (Some(l), Some(h)) => vec![(BinaryOperator::GtEq, l), (BinaryOperator::LtEq, h)],
                _ => vec![],
            }
        }
        _ => vec![],
    }
}

fn same_ident(a: &Ident, b: &str) -> bool {
    if a.quote_style.is_some() {
        a.value == b
    } else {
        a.value.eq_ignore_ascii_case(b)
    }
}

/// True for `time_col` or `qualifier.time_col`.
pub fn is_time(e: &Expr, q: &Ident, col: &str) -> bool {
    match e {
        Expr::Identifier(i) => same_ident(i, col),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
            same_ident(&parts[1], col) && parts[0].value.eq_ignore_ascii_case(&q.value)
        }
        Expr::Nested(inner) => is_time(inner, q, col),
        _ => false,
    }
}

fn string_of(e: &Expr) -> Option<(&str, Option<&DataType>)> {
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) => Some((s, None)),
            _ => None,
        },
        Expr::TypedString(ts) => match &ts.value.value {
            SqlValue::SingleQuotedString(s) => Some((s, Some(&ts.data_type))),
            _ => None,
        },
        Expr::Cast { expr, data_type, format: None, .. } => {
            let (s, _) = string_of(expr)?;
            Some((s, Some(data_type)))
        }
        Expr::Nested(inner) => string_of(inner),
        _ => None,
    }
}

/// A time literal as microseconds since 1970, read as a timestamp without time zone
/// (`naive`) or with one; None when its meaning would depend on the session time zone.
pub fn time_literal_micros(e: &Expr, naive: bool) -> Option<i64> {
    time_literal(e, if naive { &Kind::Naive } else { &Kind::Tz })
}

fn time_literal(e: &Expr, kind: &Kind) -> Option<i64> {
    let (s, ty) = string_of(e)?;
    let ty = ty.map(|t| t.to_string().to_lowercase());
    match kind {
        Kind::Naive => {
            if !matches!(ty.as_deref(), None | Some("timestamp") | Some("date")) {
                return None;
            }
            parse_timestamp(s)
        }
        Kind::Date => {
            if !matches!(ty.as_deref(), None | Some("date")) || s.trim().len() != 10 {
                return None;
            }
            parse_timestamp(s).map(|us| us.div_euclid(86_400_000_000))
        }
        Kind::Tz => {
            if !matches!(
                ty.as_deref(),
                None | Some("timestamptz") | Some("timestamp with time zone")
            ) {
                return None;
            }
            let t = s.trim();
            DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z")
                .or_else(|_| DateTime::parse_from_rfc3339(t))
                .ok()
                .map(|d| d.timestamp_micros())
        }
    }
}
