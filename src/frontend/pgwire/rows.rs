//! A batch's columns downcast once and written row by row, each cell in the binary form
//! PostgreSQL's `*_send` makes or in its text output: what DataRows and COPY are made of.
//! The common types are written straight from their Arrow arrays; the rest through values.

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, RecordBatch, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field};
use bytes::{BufMut, BytesMut};
use pgwire::api::Type;

use super::binary::{binary_of, is_plain_text, numeric_from_text, unsupported};
use crate::error::Result;
use crate::model::arrow::value_at;
use crate::model::value::{float_text, to_pg_epoch, PG_EPOCH_DAYS};

/// One column of a batch, downcast once.
enum Col<'a> {
    I16(&'a Int16Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    Oid(&'a Int64Array),
    F32(&'a Float32Array),
    F64(&'a Float64Array),
    Bool(&'a BooleanArray),
    Date(&'a Date32Array),
    Timestamp(&'a TimestampMicrosecondArray),
    Time(&'a Time64MicrosecondArray),
    Bytes(&'a BinaryArray),
    /// Text types and numerics held as their text.
    Text(&'a StringArray),
    Numeric(&'a StringArray),
    /// Anything else (and timestamps with a zone, arrays, ... in text): through its value.
    Value,
}

/// A batch's columns as cell writers, each in the format asked for.
pub struct Rows<'a> {
    batch: &'a RecordBatch,
    cols: Vec<(Col<'a>, &'a Type, bool)>,
}

impl<'a> Rows<'a> {
    /// Writers for `batch` whose columns are of PostgreSQL types `types`; `binary(i)` says
    /// whether column `i` is sent in binary.
    pub fn new(batch: &'a RecordBatch, types: &'a [Type], binary: impl Fn(usize) -> bool) -> Self {
        let cols = batch
            .columns()
            .iter()
            .zip(types)
            .enumerate()
            .map(|(i, (a, ty))| (col(a, ty), ty, binary(i)))
            .collect();
        Rows { batch, cols }
    }

    /// Appends every cell of `row` (`int32 length` + bytes, `-1` for NULL).
    pub fn write_row(&self, out: &mut BytesMut, row: usize) -> Result<()> {
        for (i, (c, ty, binary)) in self.cols.iter().enumerate() {
            let array = self.batch.column(i);
            if array.is_null(row) {
                out.put_i32(-1);
            } else if *binary {
                self.binary(out, c, ty, i, row)?;
            } else {
                self.text(out, c, ty, i, row);
            }
        }
        Ok(())
    }

    fn field(&self, i: usize) -> &Field {
        self.batch.schema_ref().field(i)
    }

    fn binary(&self, out: &mut BytesMut, c: &Col, ty: &Type, i: usize, row: usize) -> Result<()> {
        match c {
            Col::I16(a) => put(out, &a.value(row).to_be_bytes()),
            Col::I32(a) => put(out, &a.value(row).to_be_bytes()),
            Col::I64(a) => put(out, &a.value(row).to_be_bytes()),
            Col::Oid(a) => put(out, &(a.value(row) as u32).to_be_bytes()),
            Col::F32(a) => put(out, &a.value(row).to_be_bytes()),
            Col::F64(a) => put(out, &a.value(row).to_be_bytes()),
            Col::Bool(a) => put(out, &[a.value(row) as u8]),
            Col::Date(a) => put(out, &a.value(row).saturating_sub(PG_EPOCH_DAYS).to_be_bytes()),
            Col::Timestamp(a) => put(out, &to_pg_epoch(a.value(row)).to_be_bytes()),
            Col::Time(a) => put(out, &a.value(row).to_be_bytes()),
            Col::Bytes(a) => put(out, a.value(row)),
            Col::Text(a) => put(out, a.value(row).as_bytes()),
            Col::Numeric(a) => {
                let len_at = out.len();
                out.put_i32(0);
                numeric_from_text(a.value(row), out).ok_or_else(|| unsupported(ty))?;
                let len = (out.len() - len_at - 4) as i32;
                out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
            }
            Col::Value => {
                let v = value_at(self.batch.column(i), self.field(i), row);
                put(out, &binary_of(&v, ty)?)
            }
        }
        Ok(())
    }

    fn text(&self, out: &mut BytesMut, c: &Col, ty: &Type, i: usize, row: usize) {
        let mut digits = itoa_buffer();
        match c {
            Col::I16(a) => put(out, int_text(&mut digits, a.value(row) as i64)),
            Col::I32(a) => put(out, int_text(&mut digits, a.value(row) as i64)),
            Col::I64(a) | Col::Oid(a) => put(out, int_text(&mut digits, a.value(row))),
            Col::F32(a) => put(out, float_text(a.value(row) as f64, true).as_bytes()),
            Col::F64(a) => put(out, float_text(a.value(row), false).as_bytes()),
            Col::Bool(a) => put(out, if a.value(row) { b"t" } else { b"f" }),
            Col::Text(a) | Col::Numeric(a) => put(out, a.value(row).as_bytes()),
            _ => {
                let v = value_at(self.batch.column(i), self.field(i), row);
                put(out, v.pg_text_as(ty).unwrap_or_default().as_bytes())
            }
        }
    }
}

fn col<'a>(a: &'a ArrayRef, ty: &Type) -> Col<'a> {
    match (a.data_type(), ty) {
        (DataType::Int16, _) => Col::I16(a.as_primitive()),
        (DataType::Int32, _) => Col::I32(a.as_primitive()),
        (DataType::Int64, &Type::OID) => Col::Oid(a.as_primitive()),
        (DataType::Int64, _) => Col::I64(a.as_primitive()),
        (DataType::Float32, _) => Col::F32(a.as_primitive()),
        (DataType::Float64, _) => Col::F64(a.as_primitive()),
        (DataType::Boolean, _) => Col::Bool(a.as_boolean()),
        (DataType::Date32, _) => Col::Date(a.as_primitive()),
        (DataType::Timestamp(..), _) => Col::Timestamp(a.as_primitive()),
        (DataType::Time64(_), _) => Col::Time(a.as_primitive()),
        (DataType::Binary, _) => Col::Bytes(a.as_binary()),
        (DataType::Utf8, t) if is_plain_text(t) => Col::Text(a.as_string()),
        (DataType::Utf8, &Type::NUMERIC) => Col::Numeric(a.as_string()),
        _ => Col::Value,
    }
}

fn put(out: &mut BytesMut, bytes: &[u8]) {
    out.put_i32(bytes.len() as i32);
    out.put_slice(bytes);
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// The decimal digits of `v` in `buf`, without allocating.
fn int_text(buf: &mut [u8; 20], v: i64) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_print_as_postgres_does() {
        for v in [0i64, 7, -7, 1234567890, i64::MIN, i64::MAX] {
            let mut buf = itoa_buffer();
            assert_eq!(int_text(&mut buf, v), v.to_string().as_bytes());
        }
    }
}
