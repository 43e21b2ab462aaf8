//! `COPY ... TO STDOUT` data in PostgreSQL's three formats, framed as PostgreSQL frames it:
//! one CopyData message per row; text and CSV headers in a message of their own; the binary
//! signature and header in front of the first row (or of the trailer when there is none),
//! and the binary trailer in a message of its own. Escaping and quoting follow copyto.c.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::{Bytes, BytesMut};
use pgwire::api::Type;

use super::encode::field_type;
use super::rows::Rows;
use crate::engine::{CopyFormat, CopyOptions, ForceQuote};
use crate::error::Result;
use crate::model::arrow::value_at;

/// The binary COPY signature, flags (no OIDs) and an empty header extension.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Writes one COPY's messages.
pub struct CopyWriter {
    opts: CopyOptions,
    types: Vec<Type>,
    names: Vec<String>,
    force: Vec<bool>,
    /// Binary only: the signature still has to go in front of the next message.
    signature_pending: bool,
}

impl CopyWriter {
    /// A writer for rows of `schema` in the format `opts` asks for.
    pub fn new(schema: &SchemaRef, opts: CopyOptions) -> CopyWriter {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let force = names
            .iter()
            .map(|n| match &opts.force_quote {
                ForceQuote::None => false,
                ForceQuote::All => true,
                ForceQuote::Columns(cols) => cols.contains(n),
            })
            .collect();
        CopyWriter {
            signature_pending: opts.format == CopyFormat::Binary,
            types: schema.fields().iter().map(|f| field_type(f)).collect(),
            names,
            force,
            opts,
        }
    }

    /// The overall format code of CopyOutResponse (0 text, 1 binary).
    pub fn format_code(&self) -> i8 {
        i8::from(self.opts.format == CopyFormat::Binary)
    }

    /// The header line (text and CSV with HEADER), a message of its own.
    pub fn header(&self) -> Option<Bytes> {
        if !self.opts.header || self.opts.format == CopyFormat::Binary {
            return None;
        }
        let mut line = Vec::new();
        let single = self.names.len() == 1;
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                line.push(self.opts.delimiter);
            }
            match self.opts.format {
                CopyFormat::Csv => self.csv_value(&mut line, name, false, single),
                _ => self.text_value(&mut line, name),
            }
        }
        line.push(b'\n');
        Some(line.into())
    }

    /// One message per row of the batch (slices of one buffer).
    pub fn rows(&mut self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        if self.opts.format == CopyFormat::Binary {
            return self.binary_rows(batch);
        }
        Ok((0..batch.num_rows()).map(|row| self.text_row(batch, row)).collect())
    }

    /// The last message: the binary trailer (with the signature when no row was sent).
    pub fn trailer(&mut self) -> Option<Bytes> {
        if self.opts.format != CopyFormat::Binary {
            return None;
        }
        let mut out = BytesMut::new();
        if std::mem::take(&mut self.signature_pending) {
            out.extend_from_slice(BINARY_HEADER);
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        Some(out.freeze())
    }

    fn binary_rows(&mut self, batch: &RecordBatch) -> Result<Vec<Bytes>> {
        let writers = Rows::new(batch, &self.types, |_| true);
        let mut buf = BytesMut::with_capacity(batch.get_array_memory_size() + 64);
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            if std::mem::take(&mut self.signature_pending) {
                buf.extend_from_slice(BINARY_HEADER);
            }
            buf.extend_from_slice(&(self.types.len() as i16).to_be_bytes());
            writers.write_row(&mut buf, row)?;
            out.push(buf.split().freeze());
        }
        Ok(out)
    }

    fn text_row(&self, batch: &RecordBatch, row: usize) -> Bytes {
        let mut line = Vec::with_capacity(16 * self.types.len());
        let schema = batch.schema();
        let single = self.types.len() == 1;
        for (col, ty) in self.types.iter().enumerate() {
            if col > 0 {
                line.push(self.opts.delimiter);
            }
            let v = value_at(batch.column(col), schema.field(col), row);
            match (v.pg_text_as(ty), self.opts.format) {
                (None, _) => line.extend_from_slice(self.opts.null.as_bytes()),
                (Some(t), CopyFormat::Csv) => {
                    self.csv_value(&mut line, &t, self.force[col], single)
                }
                (Some(t), _) => self.text_value(&mut line, &t),
            }
        }
        line.push(b'\n');
        line.into()
    }

    /// A value in text format: backslash escapes for control characters, backslash and the
    /// delimiter (CopyAttributeOutText).
    fn text_value(&self, out: &mut Vec<u8>, s: &str) {
        for &b in s.as_bytes() {
            let escaped = match b {
                0x08 => Some(b'b'),
                0x0c => Some(b'f'),
                b'\n' => Some(b'n'),
                b'\r' => Some(b'r'),
                b'\t' => Some(b't'),
                0x0b => Some(b'v'),
                b'\\' => Some(b'\\'),
                d if d == self.opts.delimiter => Some(d),
                _ => None,
            };
            match escaped {
                Some(e) => out.extend_from_slice(&[b'\\', e]),
                None => out.push(b),
            }
        }
    }

    /// A value in CSV: quoted when forced, when it equals the NULL string, when it holds the
    /// delimiter, the quote or a line break, or when a lone column holds `\.`; inside quotes
    /// the quote and escape characters are escaped (CopyAttributeOutCSV).
    fn csv_value(&self, out: &mut Vec<u8>, s: &str, force: bool, single: bool) {
        let (d, q, e) = (self.opts.delimiter, self.opts.quote, self.opts.escape);
        let quote = force
            || s == self.opts.null
            || (single && s == "\\.")
            || s.bytes().any(|b| b == d || b == q || b == b'\n' || b == b'\r');
        if !quote {
            out.extend_from_slice(s.as_bytes());
            return;
        }
        out.push(q);
        for &b in s.as_bytes() {
            if b == q || b == e {
                out.push(e);
            }
            out.push(b);
        }
        out.push(q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arrow::{batch_from_rows, schema_for};
    use crate::model::column::Column;
    use crate::model::value::Value;

    fn batch() -> RecordBatch {
        let cols = vec![Column::new("a", Type::TEXT), Column::new("n", Type::INT4)];
        let schema = schema_for(&cols);
        let rows = vec![
            vec![Value::Text("x\ty\\z".into()), Value::Int(1)],
            vec![Value::Text("".into()), Value::Null],
            vec![Value::Text("say \"hi\", ok".into()), Value::Int(-2)],
        ];
        batch_from_rows(&schema, &cols, rows).unwrap()
    }

    fn all(opts: CopyOptions) -> Vec<u8> {
        let b = batch();
        let mut w = CopyWriter::new(&b.schema(), opts);
        let mut out: Vec<u8> = w.header().map(|h| h.to_vec()).unwrap_or_default();
        for r in w.rows(&b).unwrap() {
            out.extend_from_slice(&r);
        }
        out.extend(w.trailer().map(|t| t.to_vec()).unwrap_or_default());
        out
    }

    #[test]
    fn text_and_csv_as_postgres_writes_them() {
        let text = all(CopyOptions { header: true, ..Default::default() });
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "a\tn\nx\\ty\\\\z\t1\n\t\\N\nsay \"hi\", ok\t-2\n"
        );
        let csv = CopyOptions {
            format: CopyFormat::Csv,
            header: true,
            delimiter: b',',
            null: String::new(),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(all(csv)).unwrap(),
            "a,n\nx\ty\\z,1\n\"\",\n\"say \"\"hi\"\", ok\",-2\n"
        );
    }

    #[test]
    fn binary_frames_signature_rows_and_trailer() {
        let b = batch();
        let mut w = CopyWriter::new(
            &b.schema(),
            CopyOptions { format: CopyFormat::Binary, ..Default::default() },
        );
        let rows = w.rows(&b).unwrap();
        assert!(rows[0].starts_with(BINARY_HEADER));
        assert_eq!(&rows[1][..], &[0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(&w.trailer().unwrap()[..], &[0xff, 0xff]);
        let mut empty = CopyWriter::new(
            &b.schema(),
            CopyOptions { format: CopyFormat::Binary, ..Default::default() },
        );
        let t = empty.trailer().unwrap();
        assert_eq!(&t[..BINARY_HEADER.len()], BINARY_HEADER);
        assert_eq!(t.len(), BINARY_HEADER.len() + 2);
    }
}
