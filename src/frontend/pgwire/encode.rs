//! Arrow batches to PostgreSQL DataRows (text and binary formats) and bound parameters to
//! engine parameters.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, SchemaRef};
use bytes::BytesMut;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;
use tokio_postgres::types::FromSql;

use super::rows::Rows;
use crate::error::{Error, Result};
use crate::model::arrow::PG_OID;
use crate::model::column::{Column, Param};
use crate::model::value::Cell;

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

/// Encodes every row of a batch (the rows' cells in one buffer, split per row).
pub fn encode_batch(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> Result<Vec<DataRow>> {
    let types: Vec<Type> = fields.iter().map(|f| f.datatype().clone()).collect();
    let rows = Rows::new(batch, &types, |i| fields[i].format() == FieldFormat::Binary);
    let mut buf = BytesMut::with_capacity(batch.get_array_memory_size() + 64);
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        rows.write_row(&mut buf, row)?;
        out.push(DataRow::new(buf.split(), fields.len() as i16));
    }
    Ok(out)
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
            if let tokio_postgres::types::Kind::Array(elem) = ty.kind() {
                let text = super::binary::array_text(bytes, elem).ok_or_else(|| {
                    Error::data("22P03", format!("invalid binary array parameter ${}", i + 1))
                })?;
                return Ok(Param::Text(text));
            }
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
