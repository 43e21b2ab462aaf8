//! Arrow answers as Arrow clients want them (Flight SQL, REST Arrow IPC). The engine holds
//! `numeric` as its exact decimal text; here it becomes a number pandas and Polars read as
//! one, without losing a digit:
//!
//! - `numeric(p,s)` with p ≤ 38 is `Decimal128(p,s)` (PostgreSQL enforces the type, so every
//!   value fits; Redshift declares every numeric this way);
//! - unconstrained `numeric` (AVG of integers, SUM of bigint, arithmetic) is `Decimal128(38,s)`
//!   with s the most fractional digits any value of the answer has (read from the whole
//!   answer when it has at most [`LOOK_AHEAD`] rows; for longer answers from those first
//!   rows, with s raised to at least 16 where the integer digits leave room);
//! - a column whose values do not fit `Decimal128` (more than 38 digits, NaN, ±Infinity, or
//!   `numeric(p,s)` with p > 38) stays the exact text, with field metadata
//!   `tidemark.numeric = text` and `tidemark.numeric_reason`.
//!
//! A later row of a long answer that needs more digits than the scale chosen from the first
//! rows ends the answer with 22003 (never a rounded value). `[arrow] numeric = "text"` (or
//! the per-request header) keeps every numeric as text, as tidemark did before.

use std::sync::Arc;

use arrow_array::builder::Decimal128Builder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::stream::{self, BoxStream, StreamExt};

use crate::config::NumericMode;
use crate::error::{Error, Result};
use crate::model::arrow::{pg_type_name, PG_TYPMOD};
use crate::model::column::numeric_typmod;

/// Rows an answer is read ahead to choose the scale of unconstrained numeric columns.
pub const LOOK_AHEAD: usize = 65_536;
/// Field metadata saying how a numeric column is represented (`decimal` or `text`).
pub const NUMERIC_KEY: &str = "tidemark.numeric";
/// Field metadata saying why a numeric column is text.
pub const NUMERIC_REASON: &str = "tidemark.numeric_reason";
/// The fractional digits a long answer's unconstrained numeric keeps room for at least.
const MIN_STREAM_SCALE: usize = 16;

/// What one column becomes.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    /// Not a numeric (or numerics as text): unchanged.
    Keep,
    /// `Decimal128(precision, scale)`.
    Decimal(u8, i8),
    /// The exact text, with the reason in metadata.
    Text(String),
    /// Unconstrained numeric: decided from the values.
    Open,
}

/// The digits of a decimal text: (integer digits, fractional digits shown, fractional
/// digits without trailing zeros); None for NaN and infinities.
fn digits(text: &str) -> Option<(usize, usize, usize)> {
    let body = text.strip_prefix('-').unwrap_or(text);
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    Some((int.trim_start_matches('0').len(), frac.len(), frac.trim_end_matches('0').len()))
}

/// The Decimal128 mantissa of a decimal text at `scale`, when it fits `precision` digits
/// exactly (no digit may be dropped).
fn mantissa(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let scale = usize::try_from(scale).ok()?;
    let kept = frac.trim_end_matches('0');
    if kept.len() > scale || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    if int.len() + scale > precision as usize {
        return None;
    }
    let mut m: i128 = 0;
    for b in int.bytes().chain(kept.bytes()) {
        m = m * 10 + i128::from(b - b'0');
    }
    m *= 10i128.pow((scale - kept.len()) as u32);
    Some(if neg { -m } else { m })
}

/// The plan of a field for `mode`.
fn plan_of(field: &Field, mode: NumericMode) -> Plan {
    if mode == NumericMode::Text || pg_type_name(field) != "numeric" {
        return Plan::Keep;
    }
    let typmod: i32 = field.metadata().get(PG_TYPMOD).and_then(|t| t.parse().ok()).unwrap_or(-1);
    let Some((p, s)) = numeric_typmod(typmod) else { return Plan::Open };
    // numeric(p,-k) holds integers of up to p + k digits
    let (p, s) = if s < 0 { (p - s, 0) } else { (p, s) };
    if p > 38 {
        return Plan::Text(format!("numeric({p},{s}) has more digits than decimal128 holds"));
    }
    Plan::Decimal(p as u8, s as i8)
}

/// The plan of an unconstrained numeric column from its values in `batches`; `complete`
/// when they are the whole answer. The scale is the one the warehouse shows (`12.50` has
/// 2) or as many of those as the integer digits leave room for, never fewer than keep every
/// value exact.
fn decide(batches: &[RecordBatch], col: usize, complete: bool) -> Plan {
    let (mut int, mut shown, mut exact) = (0usize, 0usize, 0usize);
    for b in batches {
        let a = b.column(col).as_string::<i32>();
        for v in a.iter().flatten() {
            match digits(v) {
                Some((i, s, e)) => (int, shown, exact) = (int.max(i), shown.max(s), exact.max(e)),
                None => return Plan::Text("values include NaN or Infinity".into()),
            }
        }
    }
    if int + exact > 38 {
        return Plan::Text(format!("values need {} digits, decimal128 holds 38", int + exact));
    }
    let scale = shown.min(38 - int).max(exact);
    let scale = match complete {
        true => scale,
        false => scale.max(MIN_STREAM_SCALE.min(38 - int)),
    };
    Plan::Decimal(38, scale as i8)
}

/// One converted field: Decimal128 or Utf8, with the choice in its metadata.
fn client_field(field: &Field, plan: &Plan) -> Field {
    let mut meta = field.metadata().clone();
    let f = match plan {
        Plan::Keep | Plan::Open => return field.clone(),
        Plan::Decimal(p, s) => {
            meta.insert(NUMERIC_KEY, "decimal");
            Field::new(field.name(), DataType::Decimal128(*p, *s), true)
        }
        Plan::Text(reason) => {
            meta.insert(NUMERIC_KEY, "text");
            meta.insert(NUMERIC_REASON, reason.as_str());
            Field::new(field.name(), DataType::Utf8, true)
        }
    };
    f.with_metadata(meta)
}

/// Converts an engine schema and its batches for Arrow clients.
#[derive(Debug, Clone)]
pub struct ArrowOut {
    plans: Vec<Plan>,
    schema: SchemaRef,
}

impl ArrowOut {
    /// The client schema when it is known without reading any row (no unconstrained
    /// numeric column, or numerics as text); None when it depends on the values.
    pub fn static_schema(schema: &Schema, mode: NumericMode) -> Option<SchemaRef> {
        let plans: Vec<Plan> = schema.fields().iter().map(|f| plan_of(f, mode)).collect();
        if plans.contains(&Plan::Open) {
            return None;
        }
        Some(Arc::new(converted(schema, &plans)))
    }

    /// The conversion of `schema` with the unconstrained numeric columns decided from
    /// `batches` (`complete`: the whole answer).
    fn new(schema: &Schema, mode: NumericMode, batches: &[RecordBatch], complete: bool) -> Self {
        let plans: Vec<Plan> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match plan_of(f, mode) {
                Plan::Open => decide(batches, i, complete),
                other => other,
            })
            .collect();
        ArrowOut { schema: Arc::new(converted(schema, &plans)), plans }
    }

    /// The client schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// One batch in the client schema (22003 for a value that does not fit its column).
    pub fn convert(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.plans.iter().all(|p| matches!(p, Plan::Keep | Plan::Text(_))) {
            return Ok(RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?);
        }
        let columns = batch
            .columns()
            .iter()
            .zip(&self.plans)
            .enumerate()
            .map(|(i, (a, plan))| match plan {
                Plan::Decimal(p, s) => decimal_array(a, *p, *s, self.schema.field(i).name()),
                _ => Ok(a.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        let opts = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), columns, &opts)?)
    }
}

fn converted(schema: &Schema, plans: &[Plan]) -> Schema {
    let fields: Vec<Field> =
        schema.fields().iter().zip(plans).map(|(f, p)| client_field(f, p)).collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// A numeric text column as Decimal128(p,s).
fn decimal_array(a: &ArrayRef, p: u8, s: i8, name: &str) -> Result<ArrayRef> {
    let text = a.as_string::<i32>();
    let mut b = Decimal128Builder::with_capacity(text.len());
    for v in text.iter() {
        match v {
            None => b.append_null(),
            Some(v) => b.append_value(mantissa(v, p, s).ok_or_else(|| {
                Error::data(
                    "22003",
                    format!(
                        "numeric value {v} of column \"{name}\" does not fit decimal128({p},{s}), the \
                         Arrow type chosen from the answer's first rows; cast the column \
                         (::numeric(p,s) or ::float8) or ask for numerics as text ([arrow] \
                         numeric = \"text\")"
                    ),
                )
            })?),
        }
    }
    Ok(Arc::new(b.finish().with_precision_and_scale(p, s)?))
}

/// A column of a table as catalog answers show it: `numeric(p,s)` as Decimal128(p,s); an
/// unconstrained numeric, whose scale each answer chooses, as text with metadata saying so.
pub fn table_field(field: &Field, mode: NumericMode) -> Field {
    match plan_of(field, mode) {
        Plan::Open => {
            client_field(field, &Plan::Text("decimal128(38, s), s chosen per answer".into()))
        }
        plan => client_field(field, &plan),
    }
}

/// Every batch of a whole answer in the client schema (REST collects answers whole).
pub fn convert_all(
    schema: &Schema,
    batches: &[RecordBatch],
    mode: NumericMode,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let out = ArrowOut::new(schema, mode, batches, true);
    let converted = batches.iter().map(|b| out.convert(b)).collect::<Result<Vec<_>>>()?;
    Ok((out.schema(), converted))
}

/// An engine stream in the client schema, and that schema when it does not depend on the
/// values. When it does, the stream is read ahead up to [`LOOK_AHEAD`] rows to choose
/// unconstrained numeric scales, and yields at least one batch (an empty one for an empty
/// answer), so that a writer learns the schema from it.
pub fn convert_stream(
    schema: SchemaRef,
    mut batches: BoxStream<'static, Result<RecordBatch>>,
    mode: NumericMode,
) -> (Option<SchemaRef>, BoxStream<'static, Result<RecordBatch>>) {
    if let Some(fixed) = ArrowOut::static_schema(&schema, mode) {
        let out = ArrowOut::new(&schema, mode, &[], false);
        return (Some(fixed), batches.map(move |b| b.and_then(|b| out.convert(&b))).boxed());
    }
    let head = async move {
        let (mut ahead, mut rows, mut ended) = (Vec::new(), 0, false);
        while rows < LOOK_AHEAD {
            match batches.next().await {
                Some(Ok(b)) => {
                    rows += b.num_rows();
                    ahead.push(b);
                }
                Some(Err(e)) => return stream::once(async { Err(e) }).boxed(),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let out = ArrowOut::new(&schema, mode, &ahead, ended);
        if ahead.is_empty() {
            ahead.push(RecordBatch::new_empty(schema.clone()));
        }
        let first: Vec<Result<RecordBatch>> = ahead.iter().map(|b| out.convert(b)).collect();
        if ended {
            return stream::iter(first).boxed();
        }
        let rest = batches.map(move |b| b.and_then(|b| out.convert(&b)));
        stream::iter(first).chain(rest).boxed()
    };
    (None, stream::once(head).flatten().boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arrow::{batch_from_rows, schema_for};
    use crate::model::column::Column;
    use crate::model::value::Value;
    use tokio_postgres::types::Type;

    fn numeric(name: &str, typmod: i32) -> Column {
        Column { typmod, ..Column::new(name, Type::NUMERIC) }
    }

    fn batch(cols: &[Column], values: &[&[&str]]) -> RecordBatch {
        let rows = values
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| if *v == "NULL" { Value::Null } else { Value::Other(v.to_string()) })
                    .collect()
            })
            .collect();
        batch_from_rows(&schema_for(cols), cols, rows).unwrap()
    }

    #[test]
    fn mantissas_are_exact_or_refused() {
        assert_eq!(mantissa("-12.50", 12, 2), Some(-1250));
        assert_eq!(mantissa("0.00012", 38, 5), Some(12));
        assert_eq!(mantissa("12.345", 12, 2), None);
        assert_eq!(mantissa("12.3400", 12, 2), Some(1234));
        assert_eq!(mantissa("123", 2, 0), None);
        assert_eq!(mantissa("NaN", 38, 2), None);
        assert_eq!(digits("-00120.5000"), Some((3, 4, 1)));
        assert_eq!(digits("Infinity"), None);
    }

    #[test]
    fn declared_and_open_numerics() {
        let cols =
            [numeric("a", (12 << 16 | 2) + 4), numeric("avg", -1), numeric("big", (40 << 16) + 4)];
        let b = batch(
            &cols,
            &[&["1.50", "0.33333333333333333333", "1"], &["NULL", "2528953029789716029", "2"]],
        );
        let (schema, out) = convert_all(&b.schema(), &[b], NumericMode::Decimal).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Decimal128(12, 2));
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8, "19 + 20 digits do not fit");
        assert_eq!(schema.field(2).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(2).metadata().get(NUMERIC_KEY).map(String::as_str), Some("text"));
        assert_eq!(
            out[0].column(0).as_primitive::<arrow_array::types::Decimal128Type>().value(0),
            150
        );
        let b = batch(&cols[1..2], &[&["0.33333333333333333333"], &["-7"]]);
        let (schema, _) = convert_all(&b.schema(), &[b], NumericMode::Decimal).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Decimal128(38, 20));
        let b =
            batch(&cols[1..2], &[&["749925.00"], &["12345678901234567890.1000000000000000000"]]);
        let (schema, _) = convert_all(&b.schema(), &[b], NumericMode::Decimal).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Decimal128(38, 18), "20 + 18 digits");
        assert!(ArrowOut::static_schema(&schema_for(&cols[..1]), NumericMode::Decimal).is_some());
        assert!(ArrowOut::static_schema(&schema_for(&cols), NumericMode::Decimal).is_none());
        let text = ArrowOut::static_schema(&schema_for(&cols), NumericMode::Text).unwrap();
        assert_eq!(text.field(0).data_type(), &DataType::Utf8);
    }
}
