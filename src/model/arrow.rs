//! Conversion between engine values and Arrow record batches. Every field keeps its
//! PostgreSQL type name in metadata (`pg_type`) so each frontend can report the true type.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tokio_postgres::types::Type;

use super::column::Column;
use super::value::Value;
use crate::error::{Error, Result};

/// Metadata key holding the PostgreSQL type name of a field.
pub const PG_TYPE: &str = "pg_type";
/// Metadata key holding the PostgreSQL type OID of a field.
pub const PG_OID: &str = "pg_oid";
/// Metadata key holding the PostgreSQL type modifier of a field (`numeric(p,s)`), when any.
pub const PG_TYPMOD: &str = "pg_typmod";

/// The Arrow type used for a PostgreSQL type. numeric maps to Utf8 holding the exact
/// decimal text (PostgreSQL numerics have per-value scale, which Decimal128 cannot hold).
pub fn arrow_type(ty: &Type) -> DataType {
    match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 | Type::OID => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        Type::BYTEA => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// An Arrow schema for warehouse columns.
pub fn schema_for(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(field_of).collect::<Vec<_>>()))
}

/// The field of a warehouse column: Arrow type from the type the engine holds; metadata
/// with the type clients are told and the type modifier.
pub fn field_of(c: &Column) -> Field {
    let shown = c.shown.as_ref().unwrap_or(&c.ty);
    let mut meta = HashMap::from([
        (PG_TYPE.to_string(), shown.name().to_string()),
        (PG_OID.to_string(), shown.oid().to_string()),
    ]);
    if c.typmod >= 0 {
        meta.insert(PG_TYPMOD.to_string(), c.typmod.to_string());
    }
    Field::new(&c.name, arrow_type(&c.ty), true).with_metadata(meta)
}

/// One field with its PostgreSQL type in metadata.
pub fn field_for(name: &str, ty: &Type) -> Field {
    let meta = HashMap::from([
        (PG_TYPE.to_string(), ty.name().to_string()),
        (PG_OID.to_string(), ty.oid().to_string()),
    ]);
    Field::new(name, arrow_type(ty), true).with_metadata(meta)
}

/// The PostgreSQL type name recorded for a field (`text` when absent).
pub fn pg_type_name(field: &Field) -> &str {
    field.metadata().get(PG_TYPE).map(String::as_str).unwrap_or("text")
}

/// Builds one record batch from rows of values typed as `columns`.
pub fn batch_from_rows(
    schema: &SchemaRef,
    columns: &[Column],
    rows: Vec<Vec<Value>>,
) -> Result<RecordBatch> {
    let mut arrays = Vec::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        arrays.push(build_array(&c.ty, rows.iter().map(|r| &r[i]))?);
    }
    if arrays.is_empty() {
        let opts = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
        return Ok(RecordBatch::try_new_with_options(schema.clone(), arrays, &opts)?);
    }
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

fn mismatch(ty: &Type, v: &Value) -> Error {
    Error::unsplittable(format!("value {v:?} does not fit result type {}", ty.name()))
}

macro_rules! build {
    ($builder:expr, $vals:expr, $ty:expr, $($pat:pat => $out:expr),+) => {{
        let mut b = $builder;
        for v in $vals {
            match v {
                Value::Null => b.append_null(),
                $($pat => b.append_value($out),)+
                other => return Err(mismatch($ty, other)),
            }
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

fn build_array<'a>(ty: &Type, vals: impl Iterator<Item = &'a Value>) -> Result<ArrayRef> {
    let int = |i: &i64, lo: i64, hi: i64| -> Result<i64> {
        if *i < lo || *i > hi {
            Err(Error::data("22003", format!("{i} is out of range for type {}", ty.name())))
        } else {
            Ok(*i)
        }
    };
    Ok(match arrow_type(ty) {
        DataType::Boolean => build!(BooleanBuilder::new(), vals, ty, Value::Bool(b) => *b),
        DataType::Int16 => {
            let mut b = Int16Builder::new();
            for v in vals {
                match v {
                    Value::Null => b.append_null(),
                    Value::Int(i) => {
                        b.append_value(int(i, i16::MIN as i64, i16::MAX as i64)? as i16)
                    }
                    o => return Err(mismatch(ty, o)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Int32 => {
            let mut b = Int32Builder::new();
            for v in vals {
                match v {
                    Value::Null => b.append_null(),
                    Value::Int(i) => {
                        b.append_value(int(i, i32::MIN as i64, i32::MAX as i64)? as i32)
                    }
                    o => return Err(mismatch(ty, o)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Int64 => build!(Int64Builder::new(), vals, ty, Value::Int(i) => *i),
        DataType::Float32 => build!(Float32Builder::new(), vals, ty,
            Value::Float(f) => *f as f32, Value::Int(i) => *i as f32),
        DataType::Float64 => build!(Float64Builder::new(), vals, ty,
            Value::Float(f) => *f, Value::Int(i) => *i as f64, Value::Numeric(d) => d.to_f64()),
        DataType::Date32 => build!(Date32Builder::new(), vals, ty, Value::Date(d) => *d),
        DataType::Timestamp(_, None) => build!(TimestampMicrosecondBuilder::new(), vals, ty,
            Value::Timestamp(t) => *t),
        DataType::Timestamp(_, Some(_)) => {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for v in vals {
                match v {
                    Value::Null => b.append_null(),
                    Value::TimestampTz(t) => b.append_value(*t),
                    o => return Err(mismatch(ty, o)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Time64(_) => {
            build!(Time64MicrosecondBuilder::new(), vals, ty, Value::Time(t) => *t)
        }
        DataType::Binary => build!(BinaryBuilder::new(), vals, ty, Value::Bytes(b) => b),
        _ => {
            let numeric = *ty == Type::NUMERIC;
            let mut b = StringBuilder::new();
            for v in vals {
                match (v, numeric) {
                    (Value::Null, _) => b.append_null(),
                    (Value::Numeric(_) | Value::Int(_) | Value::Other(_), true) => {
                        b.append_value(v.to_pg_text().unwrap_or_default())
                    }
                    (Value::Float(_), true) => return Err(mismatch(ty, v)),
                    (Value::Text(_) | Value::Other(_), false) => {
                        b.append_value(v.to_pg_text().unwrap_or_default())
                    }
                    (o, _) => return Err(mismatch(ty, o)),
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// Reads one cell back as an engine value (frontends use this to encode rows).
pub fn value_at(array: &ArrayRef, field: &Field, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    let numeric = pg_type_name(field) == "numeric";
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int16 => Value::Int(array.as_primitive::<Int16Type>().value(row) as i64),
        DataType::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(row) as i64),
        DataType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Date32 => Value::Date(array.as_primitive::<Date32Type>().value(row)),
        DataType::Timestamp(_, tz) => {
            let t = array.as_primitive::<TimestampMicrosecondType>().value(row);
            if tz.is_some() {
                Value::TimestampTz(t)
            } else {
                Value::Timestamp(t)
            }
        }
        DataType::Time64(_) => {
            Value::Time(array.as_primitive::<Time64MicrosecondType>().value(row))
        }
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        // numerics converted for Arrow clients, read back as their exact text
        DataType::Decimal128(..) => {
            Value::Other(array.as_primitive::<Decimal128Type>().value_as_string(row))
        }
        DataType::Utf8 => {
            let s = array.as_string::<i32>().value(row).to_string();
            if numeric {
                Value::Other(s)
            } else {
                Value::Text(s)
            }
        }
        _ => Value::Null,
    }
}
