//! A leg's rows as the fleet's shared cache stores them: an LZ4-compressed Arrow IPC stream,
//! one column per leg column, with what the leg was computed for (its SQL, parameters and
//! session settings) in front, checked again on every read. Each column keeps the kind of
//! [`Value`] it holds in its field metadata, so decoding gives back the very values that
//! were encoded (floats bit for bit, numerics with their scale). A column holding values of
//! several kinds is not encoded: such a leg is simply not shared.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int32Array, Int64Array, NullArray,
    RecordBatch, StringArray,
};
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{DataType, Field, Schema};

use crate::model::decimal::Decimal;
use crate::model::value::Value;

/// What starts every stored leg (a format version).
const MAGIC: &[u8; 4] = b"TML1";
/// The field metadata key holding a column's kind.
const KIND: &str = "tidemark.kind";

/// The kinds of values a column may hold.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Numeric,
    Text,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Bytes,
    Other,
}

impl Kind {
    fn of(v: &Value) -> Kind {
        match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Int(_) => Kind::Int,
            Value::Float(_) => Kind::Float,
            Value::Numeric(_) => Kind::Numeric,
            Value::Text(_) => Kind::Text,
            Value::Date(_) => Kind::Date,
            Value::Timestamp(_) => Kind::Timestamp,
            Value::TimestampTz(_) => Kind::TimestampTz,
            Value::Time(_) => Kind::Time,
            Value::Bytes(_) => Kind::Bytes,
            Value::Other(_) => Kind::Other,
        }
    }

    const ALL: [(Kind, &'static str); 12] = [
        (Kind::Null, "null"),
        (Kind::Bool, "bool"),
        (Kind::Int, "int"),
        (Kind::Float, "float"),
        (Kind::Numeric, "numeric"),
        (Kind::Text, "text"),
        (Kind::Date, "date"),
        (Kind::Timestamp, "timestamp"),
        (Kind::TimestampTz, "timestamptz"),
        (Kind::Time, "time"),
        (Kind::Bytes, "bytes"),
        (Kind::Other, "other"),
    ];

    fn name(self) -> &'static str {
        Kind::ALL.iter().find(|(k, _)| *k == self).map_or("null", |(_, n)| n)
    }

    fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Null => DataType::Null,
            Kind::Bool => DataType::Boolean,
            Kind::Int | Kind::Timestamp | Kind::TimestampTz | Kind::Time => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Date => DataType::Int32,
            Kind::Bytes => DataType::Binary,
            Kind::Numeric | Kind::Text | Kind::Other => DataType::Utf8,
        }
    }
}

/// The one kind of a column's non-null values (Null when all are null); None when mixed.
fn column_kind(rows: &[Vec<Value>], c: usize) -> Option<Kind> {
    let mut kind = Kind::Null;
    for v in rows.iter().map(|r| &r[c]) {
        match (kind, Kind::of(v)) {
            (_, Kind::Null) => {}
            (Kind::Null, k) => kind = k,
            (a, b) if a == b => {}
            _ => return None,
        }
    }
    Some(kind)
}

fn build(rows: &[Vec<Value>], c: usize, kind: Kind) -> ArrayRef {
    let cells = rows.iter().map(|r| &r[c]);
    macro_rules! column {
        ($builder:ty, $pat:pat => $val:expr) => {{
            let mut b = <$builder>::new();
            for v in cells {
                match v {
                    $pat => b.append_value($val),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match kind {
        Kind::Null => Arc::new(NullArray::new(rows.len())),
        Kind::Bool => column!(BooleanBuilder, Value::Bool(b) => *b),
        Kind::Int => column!(Int64Builder, Value::Int(i) => *i),
        Kind::Float => column!(Float64Builder, Value::Float(f) => *f),
        Kind::Numeric => column!(StringBuilder, Value::Numeric(d) => d.to_string()),
        Kind::Text => column!(StringBuilder, Value::Text(t) => t),
        Kind::Other => column!(StringBuilder, Value::Other(t) => t),
        Kind::Date => column!(Int32Builder, Value::Date(d) => *d),
        Kind::Timestamp => column!(Int64Builder, Value::Timestamp(t) => *t),
        Kind::TimestampTz => column!(Int64Builder, Value::TimestampTz(t) => *t),
        Kind::Time => column!(Int64Builder, Value::Time(t) => *t),
        Kind::Bytes => column!(BinaryBuilder, Value::Bytes(b) => b),
    }
}

/// Encodes a leg's rows with the text of what they were computed for (`what`); None when a
/// column mixes kinds of values or the rows are ragged (the leg then stays local).
pub fn encode(what: &str, rows: &[Vec<Value>]) -> Option<Vec<u8>> {
    let width = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|r| r.len() != width) {
        return None;
    }
    let mut fields = Vec::with_capacity(width);
    let mut columns = Vec::with_capacity(width);
    for c in 0..width {
        let kind = column_kind(rows, c)?;
        let meta = HashMap::from([(KIND.to_string(), kind.name().to_string())]);
        fields.push(Field::new(format!("c{c}"), kind.data_type(), true).with_metadata(meta));
        columns.push(build(rows, c, kind));
    }
    let schema = Arc::new(Schema::new(fields));
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    let batch = RecordBatch::try_new_with_options(schema.clone(), columns, &options).ok()?;
    let mut out = Vec::with_capacity(16 + what.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(what.len() as u32).to_le_bytes());
    out.extend_from_slice(what.as_bytes());
    let lz4 = IpcWriteOptions::default()
        .try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))
        .ok()?;
    let mut w = StreamWriter::try_new_with_options(&mut out, &schema, lz4).ok()?;
    w.write(&batch).ok()?;
    w.finish().ok()?;
    drop(w);
    Some(out)
}

/// Decodes what [`encode`] wrote, when it was computed for exactly `what`; None for any other
/// bytes (another leg under a colliding key, another format, damage).
pub fn decode(what: &str, bytes: &[u8]) -> Option<Vec<Vec<Value>>> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let stored = rest.get(4..4 + len)?;
    if stored != what.as_bytes() {
        return None;
    }
    let reader = arrow_ipc::reader::StreamReader::try_new(&rest[4 + len..], None).ok()?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.ok()?;
        let kinds = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.metadata().get(KIND).and_then(|k| Kind::parse(k)))
            .collect::<Option<Vec<_>>>()?;
        for r in 0..batch.num_rows() {
            let row = (0..batch.num_columns())
                .map(|c| value(batch.column(c).as_ref(), kinds[c], r))
                .collect::<Option<Vec<_>>>()?;
            rows.push(row);
        }
    }
    Some(rows)
}

fn value(a: &dyn Array, kind: Kind, r: usize) -> Option<Value> {
    if kind == Kind::Null || a.is_null(r) {
        return Some(Value::Null);
    }
    let any = a.as_any();
    let int = |r| any.downcast_ref::<Int64Array>().map(|a| a.value(r));
    let text = |r| any.downcast_ref::<StringArray>().map(|a| a.value(r).to_string());
    Some(match kind {
        Kind::Null => Value::Null,
        Kind::Bool => Value::Bool(any.downcast_ref::<BooleanArray>()?.value(r)),
        Kind::Int => Value::Int(int(r)?),
        Kind::Float => Value::Float(any.downcast_ref::<Float64Array>()?.value(r)),
        Kind::Numeric => Value::Numeric(Decimal::parse(&text(r)?)?),
        Kind::Text => Value::Text(text(r)?),
        Kind::Other => Value::Other(text(r)?),
        Kind::Date => Value::Date(any.downcast_ref::<Int32Array>()?.value(r)),
        Kind::Timestamp => Value::Timestamp(int(r)?),
        Kind::TimestampTz => Value::TimestampTz(int(r)?),
        Kind::Time => Value::Time(int(r)?),
        Kind::Bytes => Value::Bytes(any.downcast_ref::<BinaryArray>()?.value(r).to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
            (Value::Numeric(x), Value::Numeric(y)) => x.to_string() == y.to_string(),
            _ => format!("{a:?}") == format!("{b:?}"),
        }
    }

    #[test]
    fn every_kind_round_trips_exactly() {
        let rows = vec![
            vec![
                Value::Bool(true),
                Value::Int(i64::MIN),
                Value::Float(-0.0),
                Value::Numeric(Decimal::parse("-12.500").unwrap()),
                Value::Text("ü\u{0}'\"".into()),
                Value::Date(-3),
                Value::Timestamp(1),
                Value::TimestampTz(-1),
                Value::Time(86_399_999_999),
                Value::Bytes(vec![0, 255]),
                Value::Other("1 day".into()),
                Value::Null,
            ],
            vec![
                Value::Null,
                Value::Int(7),
                Value::Float(f64::NAN),
                Value::Numeric(Decimal::parse("0.00").unwrap()),
                Value::Null,
                Value::Date(0),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        ];
        let bytes = encode("leg sql", &rows).unwrap();
        let back = decode("leg sql", &bytes).unwrap();
        assert_eq!(back.len(), rows.len());
        for (a, b) in rows.iter().flatten().zip(back.iter().flatten()) {
            assert!(same(a, b), "{a:?} came back as {b:?}");
        }
        assert!(decode("another leg", &bytes).is_none(), "a leg is only read for its own key");
        assert!(decode("leg sql", &bytes[..bytes.len() - 3]).is_none(), "damage is a miss");
    }

    #[test]
    fn mixed_columns_and_empty_legs() {
        let mixed = vec![vec![Value::Int(1)], vec![Value::Other("NaN".into())]];
        assert!(encode("x", &mixed).is_none(), "a column of two kinds stays local");
        let empty: Vec<Vec<Value>> = vec![];
        assert_eq!(decode("x", &encode("x", &empty).unwrap()).unwrap().len(), 0);
    }
}
