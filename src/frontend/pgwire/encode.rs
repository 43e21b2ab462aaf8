//! Arrow batches to PostgreSQL DataRows (text and binary formats) and bound parameters to
//! engine parameters.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, SchemaRef};
use bytes::{BufMut, BytesMut};
use num_bigint::Sign;
use num_traits::Zero;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;
use tokio_postgres::types::FromSql;

use crate::error::{Error, Result};
use crate::exec::arrow::{value_at, PG_OID};
use crate::exec::decimal::Decimal;
use crate::exec::value::{float_text, to_pg_epoch, Cell, Value, PG_EPOCH_DAYS};
use crate::exec::warehouse::{Column, Param};

/// The wire format of result column `idx` (clients may send fewer codes than columns).
pub fn format_for(format: Option<&Format>, idx: usize) -> FieldFormat {
    match format {
        None => FieldFormat::Text,
        Some(Format::Individual(codes)) if idx >= codes.len() => {
            if codes.len() == 1 {
                FieldFormat::from(codes[0])
            } else {
                FieldFormat::Text
            }
        }
        Some(f) => f.format_for(idx),
    }
}

/// The PostgreSQL type recorded on an Arrow field.
pub fn field_type(f: &Field) -> Type {
    f.metadata()
        .get(PG_OID)
        .and_then(|o| o.parse().ok())
        .and_then(Type::from_oid)
        .unwrap_or(Type::TEXT)
}

/// Row description fields for an Arrow schema.
pub fn fields_for_schema(schema: &SchemaRef, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(f.name().clone(), None, None, field_type(f), format_for(format, i))
        })
        .collect()
}

/// Row description fields for described warehouse columns.
pub fn fields_for_columns(columns: &[Column], format: Option<&Format>) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            FieldInfo::new(c.name.clone(), None, None, c.ty.clone(), format_for(format, i))
        })
        .collect()
}

/// Encodes every row of a batch.
pub fn encode_batch(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> Result<Vec<DataRow>> {
    let schema = batch.schema();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut buf = BytesMut::with_capacity(16 * fields.len());
        for (col, info) in fields.iter().enumerate() {
            let v = value_at(batch.column(col), schema.field(col), row);
            encode_cell(&mut buf, &v, info.datatype(), info.format())?;
        }
        out.push(DataRow::new(buf, fields.len() as i16));
    }
    Ok(out)
}

fn encode_cell(buf: &mut BytesMut, v: &Value, ty: &Type, format: FieldFormat) -> Result<()> {
    if v.is_null() {
        buf.put_i32(-1);
        return Ok(());
    }
    let bytes = match format {
        FieldFormat::Text => text_of(v, ty).into_bytes(),
        FieldFormat::Binary => binary_of(v, ty)?,
    };
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(&bytes);
    Ok(())
}

/// Text form of a cell as PostgreSQL prints it (None for NULL).
pub fn text_cell(v: &Value, ty: &Type) -> Option<String> {
    if v.is_null() {
        None
    } else {
        Some(text_of(v, ty))
    }
}

fn text_of(v: &Value, ty: &Type) -> String {
    match v {
        Value::Float(f) => float_text(*f, *ty == Type::FLOAT4),
        other => other.to_pg_text().unwrap_or_default(),
    }
}

fn binary_of(v: &Value, ty: &Type) -> Result<Vec<u8>> {
    let unsupported = || Error::NotSupported(format!("binary output of type {}", ty.name()));
    Ok(match (v, ty) {
        (Value::Bool(b), _) => vec![*b as u8],
        (Value::Int(i), &Type::INT2) => (*i as i16).to_be_bytes().to_vec(),
        (Value::Int(i), &Type::INT4) => (*i as i32).to_be_bytes().to_vec(),
        (Value::Int(i), &Type::OID) => (*i as u32).to_be_bytes().to_vec(),
        (Value::Int(i), &Type::INT8) => i.to_be_bytes().to_vec(),
        (Value::Float(f), &Type::FLOAT4) => (*f as f32).to_be_bytes().to_vec(),
        (Value::Float(f), &Type::FLOAT8) => f.to_be_bytes().to_vec(),
        (Value::Other(s), &Type::NUMERIC) | (Value::Text(s), &Type::NUMERIC) => {
            match Decimal::parse(s) {
                Some(d) => numeric_binary(&d),
                None if s == "NaN" => vec![0, 0, 0, 0, 0xC0, 0, 0, 0],
                None => return Err(unsupported()),
            }
        }
        (Value::Numeric(d), _) => numeric_binary(d),
        (Value::Date(d), _) => d.saturating_sub(PG_EPOCH_DAYS).to_be_bytes().to_vec(),
        (Value::Timestamp(t), _) | (Value::TimestampTz(t), _) => {
            to_pg_epoch(*t).to_be_bytes().to_vec()
        }
        (Value::Time(t), _) => t.to_be_bytes().to_vec(),
        (Value::Bytes(b), _) => b.clone(),
        (Value::Text(s), &Type::JSONB) => {
            let mut out = vec![1u8];
            out.extend_from_slice(s.as_bytes());
            out
        }
        (Value::Other(s), &Type::UUID) => uuid_binary(s).ok_or_else(unsupported)?,
        (Value::Text(s), _) if !matches!(*ty, Type::INTERVAL | Type::UUID) => s.as_bytes().to_vec(),
        _ => return Err(unsupported()),
    })
}

fn uuid_binary(s: &str) -> Option<Vec<u8>> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    (0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect()
}

/// PostgreSQL binary numeric: ndigits, weight, sign, dscale, base-10000 digits.
fn numeric_binary(d: &Decimal) -> Vec<u8> {
    let neg = d.mant.sign() == Sign::Minus;
    let digits = if d.mant.is_zero() { String::new() } else { d.mant.magnitude().to_string() };
    let scale = d.scale as usize;
    // pad so the fractional part is a multiple of 4 digits and the integer part too
    let frac_pad = (4 - scale % 4) % 4;
    let mut s = digits.clone();
    s.push_str(&"0".repeat(frac_pad));
    let int_len = digits.len().saturating_sub(scale);
    let frac_len = scale + frac_pad;
    let lead_pad = (4 - int_len % 4) % 4;
    if digits.len() < scale {
        s = format!("{}{}", "0".repeat(scale - digits.len()), s);
    }
    let s = format!("{}{}", "0".repeat(lead_pad), s);
    let groups: Vec<i16> = s
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or("0").parse().unwrap_or(0))
        .collect();
    let int_groups = (int_len + lead_pad) / 4;
    let mut weight = int_groups as i32 - 1;
    let _ = frac_len;
    // strip leading and trailing zero groups
    let mut start = 0;
    while start < groups.len() && groups[start] == 0 {
        start += 1;
        weight -= 1;
    }
    let mut end = groups.len();
    while end > start && groups[end - 1] == 0 {
        end -= 1;
    }
    let kept = &groups[start..end];
    if kept.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + 2 * kept.len());
    out.extend_from_slice(&(kept.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&(if neg { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(d.scale as u16).to_be_bytes());
    for g in kept {
        out.extend_from_slice(&g.to_be_bytes());
    }
    out
}

/// Decodes bound parameters (text or binary) into engine parameters (text form).
pub fn decode_params(
    raw: &[Option<bytes::Bytes>],
    format: &Format,
    types: &[Type],
) -> Result<Vec<Param>> {
    raw.iter()
        .enumerate()
        .map(|(i, p)| {
            let Some(bytes) = p else { return Ok(Param::Null) };
            let binary = match format {
                Format::Individual(codes) if codes.len() == 1 => codes[0] == 1,
                Format::Individual(codes) if i >= codes.len() => false,
                f => f.is_binary(i),
            };
            if !binary {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| Error::data("22021", "parameter is not valid UTF-8"))?;
                return Ok(Param::Text(text.to_string()));
            }
            let ty = types.get(i).cloned().unwrap_or(Type::UNKNOWN);
            let Cell(v) = Cell::from_sql(&ty, bytes).map_err(|e| {
                Error::data("22P03", format!("invalid binary parameter ${}: {e}", i + 1))
            })?;
            Ok(match v.to_pg_text() {
                Some(t) => Param::Text(t),
                None => Param::Null,
            })
        })
        .collect()
}

/// A RowDescription body as the warehouse sent it, as pgwire's message.
pub fn row_description_from_wire(
    mut body: BytesMut,
) -> Result<pgwire::messages::data::RowDescription> {
    use bytes::Buf;
    use pgwire::messages::data::{FieldDescription, RowDescription};
    let bad = || Error::Unavailable("malformed RowDescription from the warehouse".into());
    if body.len() < 2 {
        return Err(bad());
    }
    let n = body.get_i16();
    let mut fields = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let end = body.iter().position(|b| *b == 0).ok_or_else(bad)?;
        let name = String::from_utf8_lossy(&body[..end]).into_owned();
        body.advance(end + 1);
        if body.len() < 18 {
            return Err(bad());
        }
        fields.push(FieldDescription::new(
            name,
            body.get_i32(),
            body.get_i16(),
            body.get_u32(),
            body.get_i16(),
            body.get_i32(),
            body.get_i16(),
        ));
    }
    Ok(RowDescription::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_round_trips() {
        for s in ["0", "12.50", "-100000", "0.0001", "123456789.123456789", "-0.5", "10000", "0.00"]
        {
            let d = Decimal::parse(s).unwrap();
            let back = Decimal::from_pg_binary(&numeric_binary(&d)).unwrap().unwrap();
            assert_eq!(back.to_string(), s, "{s}");
        }
    }

    #[test]
    fn hostile_binary_parameters_are_refused_not_panicking() {
        // Found by the `pgwire` fuzz target: i64::MIN microseconds in an interval overflowed
        // `abs()`; timestamps near i64::MAX overflowed the epoch shift.
        let cases: [(&[u8], Type); 4] = [
            (&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x9a, 0x9a, 0x80, 0x13], Type::INTERVAL),
            (&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], Type::TIMESTAMP),
            (&[0x80, 0, 0, 0, 0, 0, 0, 1], Type::TIMESTAMPTZ),
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], Type::TIME),
        ];
        for (raw, ty) in cases {
            let raw = [Some(bytes::Bytes::copy_from_slice(raw))];
            let out = decode_params(&raw, &Format::UnifiedBinary, std::slice::from_ref(&ty));
            match out {
                Ok(p) if ty == Type::INTERVAL => {
                    assert_eq!(
                        p,
                        vec![Param::Text(
                            "-141762558 years -5 mons -2562047788:00:54.775808".into()
                        )]
                    )
                }
                Ok(p) => panic!("{ty} decoded to {p:?}"),
                Err(e) => assert_eq!(e.sqlstate(), "22P03", "{ty}: {e}"),
            }
        }
    }
}
