//! Streaming fast path: PostgreSQL binary rows straight into Arrow columns, without an
//! intermediate value per cell (text is appended from the row buffer; numerics are rendered
//! from their base-10000 digits without big-integer arithmetic).

use std::error::Error as StdError;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Row;

use crate::error::{Error, Result};
use crate::model::column::Column;
use crate::model::value::{decode_numeric, from_pg_epoch, Cell, NumericWire, Value, PG_EPOCH_DAYS};

/// The raw binary bytes of one cell (None for NULL).
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }
    fn from_sql_null(_: &Type) -> std::result::Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn cells<'a>(rows: &'a [Row], col: usize) -> impl Iterator<Item = Result<Option<&'a [u8]>>> + 'a {
    rows.iter().map(move |r| {
        r.try_get::<_, Raw>(col).map(|c| c.0).map_err(|e| Error::internal(format!("decode: {e}")))
    })
}

fn short(ty: &Type) -> Error {
    Error::internal(format!("short binary value of type {}", ty.name()))
}

macro_rules! fixed {
    ($builder:expr, $rows:expr, $col:expr, $ty:expr, $n:literal, $conv:expr) => {{
        let mut b = $builder;
        for cell in cells($rows, $col) {
            match cell? {
                None => b.append_null(),
                Some(raw) => {
                    let arr: [u8; $n] = raw.try_into().map_err(|_| short($ty))?;
                    b.append_value($conv(arr));
                }
            }
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

/// Builds one record batch from rows, column by column.
pub fn batch_from_pg_rows(
    schema: &SchemaRef,
    columns: &[Column],
    rows: &[Row],
    wire: NumericWire,
) -> Result<RecordBatch> {
    let arrays = columns
        .iter()
        .enumerate()
        .map(|(i, c)| match (wire, &c.ty) {
            (NumericWire::Redshift, &Type::NUMERIC) => redshift_numeric(rows, i),
            _ => column(&c.ty, rows, i),
        })
        .collect::<Result<Vec<_>>>()?;
    if arrays.is_empty() {
        let opts = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
        return Ok(RecordBatch::try_new_with_options(schema.clone(), arrays, &opts)?);
    }
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

/// A NUMERIC column in Redshift's binary form, as decimal text like the PostgreSQL path.
fn redshift_numeric(rows: &[Row], col: usize) -> Result<ArrayRef> {
    let mut b = StringBuilder::new();
    for (row, cell) in rows.iter().zip(cells(rows, col)) {
        match cell? {
            None => b.append_null(),
            Some(raw) => {
                let typmod = row.columns()[col].type_modifier();
                match decode_numeric(raw, typmod, NumericWire::Redshift) {
                    Ok(Value::Numeric(d)) => b.append_value(d.to_string()),
                    Ok(_) => b.append_null(),
                    Err(e) => return Err(Error::internal(format!("decode: {e}"))),
                }
            }
        }
    }
    Ok(Arc::new(b.finish()))
}

fn column(ty: &Type, rows: &[Row], col: usize) -> Result<ArrayRef> {
    Ok(match *ty {
        Type::BOOL => fixed!(BooleanBuilder::new(), rows, col, ty, 1, |a: [u8; 1]| a[0] != 0),
        Type::INT2 => fixed!(Int16Builder::new(), rows, col, ty, 2, i16::from_be_bytes),
        Type::INT4 => fixed!(Int32Builder::new(), rows, col, ty, 4, i32::from_be_bytes),
        Type::INT8 => fixed!(Int64Builder::new(), rows, col, ty, 8, i64::from_be_bytes),
        Type::OID => {
            fixed!(Int64Builder::new(), rows, col, ty, 4, |a| u32::from_be_bytes(a) as i64)
        }
        Type::FLOAT4 => fixed!(Float32Builder::new(), rows, col, ty, 4, f32::from_be_bytes),
        Type::FLOAT8 => fixed!(Float64Builder::new(), rows, col, ty, 8, f64::from_be_bytes),
        Type::DATE => {
            fixed!(Date32Builder::new(), rows, col, ty, 4, |a| i32::from_be_bytes(a)
                .saturating_add(PG_EPOCH_DAYS))
        }
        Type::TIMESTAMP => {
            fixed!(TimestampMicrosecondBuilder::new(), rows, col, ty, 8, |a| from_pg_epoch(
                i64::from_be_bytes(a)
            ))
        }
        Type::TIMESTAMPTZ => {
            fixed!(TimestampMicrosecondBuilder::new().with_timezone("UTC"), rows, col, ty, 8, |a| {
                from_pg_epoch(i64::from_be_bytes(a))
            })
        }
        Type::TIME => fixed!(Time64MicrosecondBuilder::new(), rows, col, ty, 8, i64::from_be_bytes),
        Type::BYTEA => {
            let mut b = BinaryBuilder::new();
            for cell in cells(rows, col) {
                b.append_option(cell?);
            }
            Arc::new(b.finish())
        }
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::JSON
        | Type::JSONB => {
            let skip = usize::from(*ty == Type::JSONB);
            let mut b = StringBuilder::new();
            for cell in cells(rows, col) {
                match cell? {
                    None => b.append_null(),
                    Some(raw) => b.append_value(
                        std::str::from_utf8(raw.get(skip..).unwrap_or(&[]))
                            .map_err(|_| Error::internal("invalid UTF-8 from the warehouse"))?,
                    ),
                }
            }
            Arc::new(b.finish())
        }
        Type::NUMERIC => {
            let mut b = StringBuilder::new();
            let mut s = String::new();
            for cell in cells(rows, col) {
                match cell? {
                    None => b.append_null(),
                    Some(raw) => {
                        s.clear();
                        numeric_text(raw, &mut s).ok_or_else(|| short(ty))?;
                        b.append_value(&s);
                    }
                }
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::new();
            for cell in cells(rows, col) {
                match cell? {
                    None => b.append_null(),
                    Some(raw) => {
                        let Cell(v) = Cell::from_sql(ty, raw)
                            .map_err(|e| Error::internal(format!("decode: {e}")))?;
                        b.append_option(Value::to_pg_text(&v));
                    }
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// Renders PostgreSQL's binary numeric as its text form, straight from the digits.
pub fn numeric_text(raw: &[u8], out: &mut String) -> Option<()> {
    use std::fmt::Write;
    let rd =
        |i: usize| -> Option<i16> { Some(i16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?])) };
    let ndigits = rd(0)? as usize;
    let weight = rd(2)? as i32;
    let sign = rd(4)? as u16;
    let dscale = rd(6)? as usize;
    match sign {
        0xC000 => return out.write_str("NaN").ok(),
        0xD000 => return out.write_str("Infinity").ok(),
        0xF000 => return out.write_str("-Infinity").ok(),
        _ => {}
    }
    let digit = |i: i32| -> i16 {
        if i < 0 || i as usize >= ndigits {
            0
        } else {
            rd(8 + 2 * i as usize).unwrap_or(0)
        }
    };
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        write!(out, "{}", digit(0)).ok()?;
        for i in 1..=weight {
            write!(out, "{:04}", digit(i)).ok()?;
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut i = weight + 1;
        while out.len() - start < dscale {
            write!(out, "{:04}", digit(i)).ok()?;
            i += 1;
        }
        out.truncate(start + dscale);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decimal::Decimal;

    fn encode(ndigits: &[i16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(ndigits.len() as i16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in ndigits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numeric_text_matches_the_exact_decoder() {
        let cases = [
            encode(&[12, 5000], 0, 0, 2),
            encode(&[10], 1, 0x4000, 0),
            encode(&[], 0, 0, 0),
            encode(&[], 0, 0, 3),
            encode(&[1], -1, 0, 4),
            encode(&[5000], -1, 0x4000, 1),
            encode(&[1, 2345, 6789], 1, 0, 8),
            encode(&[9999, 9999], 3, 0, 0),
            encode(&[12], -2, 0, 10),
        ];
        for raw in cases {
            let mut s = String::new();
            numeric_text(&raw, &mut s).unwrap();
            let exact = Decimal::from_pg_binary(&raw).unwrap().unwrap().to_string();
            assert_eq!(s, exact, "{raw:?}");
        }
    }
}
