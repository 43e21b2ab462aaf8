//! PostgreSQL's binary send forms (what `*_send` functions produce), for binary DataRows and
//! binary COPY: written straight from Arrow arrays for the common types, from values for
//! the rest.

use bytes::BufMut;
use pgwire::api::Type;
use tokio_postgres::types::Kind;

use crate::error::{Error, Result};
use crate::model::value::{to_pg_epoch, Cell, Value, PG_EPOCH_DAYS};
use tokio_postgres::types::FromSql;

/// Text types whose binary form is their UTF-8 text.
pub fn is_plain_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN
    )
}

/// The error for a value whose binary form tidemark cannot make.
pub fn unsupported(ty: &Type) -> Error {
    Error::NotSupported(format!("binary output of type {}", ty.name()))
}

/// The binary form of one non-NULL value of type `ty`.
pub fn binary_of(v: &Value, ty: &Type) -> Result<Vec<u8>> {
    Ok(match (v, ty) {
        (Value::Bool(b), _) => vec![*b as u8],
        (Value::Int(i), &Type::INT2) => (*i as i16).to_be_bytes().to_vec(),
        (Value::Int(i), &Type::INT4) => (*i as i32).to_be_bytes().to_vec(),
        (Value::Int(i), &Type::OID) => (*i as u32).to_be_bytes().to_vec(),
        (Value::Int(i), &Type::INT8) => i.to_be_bytes().to_vec(),
        (Value::Float(f), &Type::FLOAT4) => (*f as f32).to_be_bytes().to_vec(),
        (Value::Float(f), &Type::FLOAT8) => f.to_be_bytes().to_vec(),
        (Value::Other(s) | Value::Text(s), &Type::NUMERIC) => {
            let mut out = Vec::with_capacity(16);
            numeric_from_text(s, &mut out).ok_or_else(|| unsupported(ty))?;
            out
        }
        (Value::Numeric(d), _) => {
            let mut out = Vec::with_capacity(16);
            numeric_from_text(&d.to_string(), &mut out).ok_or_else(|| unsupported(ty))?;
            out
        }
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
        (Value::Text(s) | Value::Other(s), &Type::UUID) => {
            uuid_binary(s).ok_or_else(|| unsupported(ty))?
        }
        (Value::Text(s) | Value::Other(s), &Type::INTERVAL) => {
            interval_binary(s).ok_or_else(|| unsupported(ty))?
        }
        (Value::Text(s), &Type::CHAR) => s.as_bytes().first().map(|b| vec![*b]).unwrap_or_default(),
        (Value::Text(s), t) if matches!(t.kind(), Kind::Array(_)) => {
            array_binary(s, t).ok_or_else(|| unsupported(ty))?
        }
        (Value::Text(s), _) if !matches!(*ty, Type::INTERVAL | Type::UUID) => s.as_bytes().to_vec(),
        _ => return Err(unsupported(ty)),
    })
}

fn uuid_binary(s: &str) -> Option<Vec<u8>> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    (0..16).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// PostgreSQL's binary numeric (`numeric_send`: ndigits, weight, sign, dscale, base-10000
/// digits without leading or trailing zero groups) from its text form, appended to `out`.
pub fn numeric_from_text(s: &str, out: &mut impl BufMut) -> Option<()> {
    let special = match s {
        "NaN" => Some(0xC000u16),
        "Infinity" => Some(0xD000),
        "-Infinity" => Some(0xF000),
        _ => None,
    };
    if let Some(sign) = special {
        out.put_slice(&[0, 0, 0, 0]);
        out.put_slice(&sign.to_be_bytes());
        out.put_slice(&[0, 0]);
        return Some(());
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || (int.is_empty() && frac.is_empty())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let dscale = u16::try_from(frac.len()).ok()?;
    // base-10000 groups aligned on the decimal point
    let lead = (4 - int.len() % 4) % 4;
    let digit = |i: usize, text: &str, pad: usize| -> i16 {
        let mut g = 0i16;
        for k in 0..4 {
            let pos = (i * 4 + k).checked_sub(pad);
            let d = pos.and_then(|p| text.as_bytes().get(p)).map_or(0, |b| (b - b'0') as i16);
            g = g * 10 + d;
        }
        g
    };
    let int_groups = (int.len() + lead) / 4;
    let frac_groups = frac.len().div_ceil(4);
    let mut groups: Vec<i16> = (0..int_groups).map(|i| digit(i, int, lead)).collect();
    groups.extend((0..frac_groups).map(|i| digit(i, frac, 0)));
    let mut weight = int_groups as i32 - 1;
    let first = groups.iter().position(|g| *g != 0);
    let (start, end) = match first {
        Some(f) => (f, groups.iter().rposition(|g| *g != 0).map_or(f, |l| l + 1)),
        None => (groups.len(), groups.len()),
    };
    weight -= start as i32;
    let kept = &groups[start..end];
    let (weight, sign) =
        if kept.is_empty() { (0, 0u16) } else { (weight, if neg { 0x4000 } else { 0 }) };
    out.put_slice(&(kept.len() as i16).to_be_bytes());
    out.put_slice(&i16::try_from(weight).ok()?.to_be_bytes());
    out.put_slice(&sign.to_be_bytes());
    out.put_slice(&dscale.to_be_bytes());
    for g in kept {
        out.put_slice(&g.to_be_bytes());
    }
    Some(())
}

/// PostgreSQL's binary interval (microseconds, days, months) from the text tidemark renders
/// intervals with (`1 year 2 mons -3 days -04:05:06.5`, IntervalStyle postgres).
pub fn interval_binary(s: &str) -> Option<Vec<u8>> {
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let words: Vec<&str> = s.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w.contains(':') {
            micros = micros.checked_add(clock_micros(w)?)?;
            i += 1;
            continue;
        }
        let n: i64 = w.parse().ok()?;
        let unit = words.get(i + 1)?.trim_end_matches('s');
        match unit {
            "year" => months = months.checked_add(n.checked_mul(12)?)?,
            "mon" => months = months.checked_add(n)?,
            "day" => days = days.checked_add(n)?,
            _ => return None,
        }
        i += 2;
    }
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&micros.to_be_bytes());
    out.extend_from_slice(&i32::try_from(days).ok()?.to_be_bytes());
    out.extend_from_slice(&i32::try_from(months).ok()?.to_be_bytes());
    Some(out)
}

/// `[-|+]HH:MM:SS[.ffffff]` in microseconds.
fn clock_micros(w: &str) -> Option<i64> {
    let (neg, w) = match w.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, w.strip_prefix('+').unwrap_or(w)),
    };
    let mut parts = w.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec = parts.next().unwrap_or("0");
    let (s, f) = sec.split_once('.').unwrap_or((sec, ""));
    let s: i64 = s.parse().ok()?;
    let frac: i64 = if f.is_empty() { 0 } else { format!("{f:0<6}").get(..6)?.parse().ok()? };
    let total = h.checked_mul(3_600_000_000)?.checked_add(m * 60_000_000 + s * 1_000_000 + frac)?;
    Some(if neg { -total } else { total })
}

/// One level of a parsed array literal.
enum Node {
    List(Vec<Node>),
    Elem(Option<String>),
}

/// `array_send` of an array from its text (`{1,2}`, `{{a,"b c"},{NULL,d}}`, `[0:1]={1,2}`;
/// `int2vector` and `oidvector` print as `1 2 3` and start at index 0).
fn array_binary(text: &str, ty: &Type) -> Option<Vec<u8>> {
    let Kind::Array(elem) = ty.kind() else { return None };
    let vector = matches!(*ty, Type::INT2_VECTOR | Type::OID_VECTOR);
    let (lower, root) = if vector {
        let items = text.split_whitespace().map(|w| Node::Elem(Some(w.to_string()))).collect();
        (vec![0], Node::List(items))
    } else {
        let (lower, body) = match text.split_once('=') {
            Some((bounds, body)) if bounds.starts_with('[') => (lower_bounds(bounds)?, body),
            _ => (vec![], text),
        };
        let mut chars = body.trim().chars().peekable();
        (lower, parse_list(&mut chars)?)
    };
    let mut dims = Vec::new();
    let mut level = &root;
    while let Node::List(items) = level {
        dims.push(items.len());
        match items.first() {
            Some(first) => level = first,
            None => break,
        }
    }
    let mut cells = Vec::new();
    flatten(&root, &dims, 0, &mut cells)?;
    if cells.is_empty() {
        dims.clear();
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(dims.len() as i32).to_be_bytes());
    out.extend_from_slice(&i32::from(cells.iter().any(Option::is_none)).to_be_bytes());
    out.extend_from_slice(&elem.oid().to_be_bytes());
    for (i, d) in dims.iter().enumerate() {
        out.extend_from_slice(&(*d as i32).to_be_bytes());
        out.extend_from_slice(&lower.get(i).copied().unwrap_or(1).to_be_bytes());
    }
    for cell in cells {
        match cell {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(t) => {
                let bytes = binary_of(&element_value(&t, elem)?, elem).ok()?;
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(&bytes);
            }
        }
    }
    Some(out)
}

/// The lower bounds of `[l:u][l:u]` dimension decorations.
fn lower_bounds(bounds: &str) -> Option<Vec<i32>> {
    bounds
        .split(']')
        .filter(|b| !b.is_empty())
        .map(|b| b.trim_start_matches('[').split_once(':').and_then(|(l, _)| l.parse().ok()))
        .collect()
}

/// Elements in row-major order, checking every sub-array has the size of the first.
fn flatten(node: &Node, dims: &[usize], depth: usize, out: &mut Vec<Option<String>>) -> Option<()> {
    match node {
        Node::Elem(e) if depth == dims.len() => out.push(e.clone()),
        Node::List(items) if depth < dims.len() && items.len() == dims[depth] => {
            for item in items {
                flatten(item, dims, depth + 1, out)?;
            }
        }
        _ => return None,
    }
    Some(())
}

/// `{ item, ... }` where an item is a nested list, a quoted element or an unquoted one.
fn parse_list(chars: &mut std::iter::Peekable<std::str::Chars>) -> Option<Node> {
    if chars.next()? != '{' {
        return None;
    }
    let mut items = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek()? {
            '}' if items.is_empty() => {
                chars.next();
                return Some(Node::List(items));
            }
            '{' => items.push(parse_list(chars)?),
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '\\' => s.push(chars.next()?),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                items.push(Node::Elem(Some(s)));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '}' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                let s = s.trim().to_string();
                items.push(Node::Elem((!s.eq_ignore_ascii_case("null")).then_some(s)));
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next()? {
            ',' => continue,
            '}' => return Some(Node::List(items)),
            _ => return None,
        }
    }
}

/// An array element's text as a value of the element type.
fn element_value(text: &str, elem: &Type) -> Option<Value> {
    Some(match *elem {
        Type::BOOL => Value::Bool(matches!(text, "t" | "true")),
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Value::Int(text.parse().ok()?),
        Type::FLOAT4 | Type::FLOAT8 => Value::Float(match text {
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            t => t.parse().ok()?,
        }),
        Type::NUMERIC => Value::Other(text.to_string()),
        _ => Value::Text(text.to_string()),
    })
}

/// The text form of a binary array (`array_recv`'s input): `{1,2,NULL}`, nested braces for
/// more dimensions, `[lb:ub]=` when a lower bound is not 1; elements decoded with `elem`.
pub fn array_text(raw: &[u8], elem: &Type) -> Option<String> {
    let int = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(raw.get(at..at + 4)?.try_into().ok()?))
    };
    let ndim = usize::try_from(int(0)?).ok().filter(|n| *n <= 6)?;
    let mut at = 12;
    let mut dims = Vec::with_capacity(ndim);
    let mut bounds = String::new();
    for _ in 0..ndim {
        let (len, lower) = (usize::try_from(int(at)?).ok()?, int(at + 4)?);
        if lower != 1 {
            bounds.push_str(&format!("[{lower}:{}]", lower as i64 + len as i64 - 1));
        }
        dims.push(len);
        at += 8;
    }
    if ndim == 0 {
        return Some("{}".into());
    }
    let total = dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d))?;
    let mut items = Vec::with_capacity(total.min(1 << 16));
    for _ in 0..total {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            items.push("NULL".to_string());
            continue;
        }
        let bytes = raw.get(at..at + len as usize)?;
        at += len as usize;
        let Cell(v) = Cell::from_sql(elem, bytes).ok()?;
        items.push(quote_element(&v.pg_text_as(elem)?));
    }
    let body = nest(&items, &dims);
    Some(if bounds.is_empty() { body } else { format!("{bounds}={body}") })
}

/// Quotes an array element as `array_out` does when it must.
fn quote_element(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.eq_ignore_ascii_case("null")
        && !s.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if plain {
        return s.to_string();
    }
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `{...}` per dimension around the row-major elements.
fn nest(items: &[String], dims: &[usize]) -> String {
    match dims {
        [] | [_] => format!("{{{}}}", items.join(",")),
        [first, rest @ ..] => {
            let size = items.len() / first.max(&1);
            let parts: Vec<String> = items.chunks(size.max(1)).map(|c| nest(c, rest)).collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decimal::Decimal;

    #[test]
    fn numeric_round_trips_through_the_exact_decoder() {
        for s in [
            "0",
            "12.50",
            "-100000",
            "0.0001",
            "123456789.123456789",
            "-0.5",
            "10000",
            "0.00",
            "00012.3400",
            "99999999",
            "1.00000001",
        ] {
            let mut raw = Vec::new();
            numeric_from_text(s, &mut raw).unwrap();
            let back = Decimal::from_pg_binary(&raw).unwrap().unwrap().to_string();
            assert_eq!(back, Decimal::parse(s).unwrap().to_string(), "{s}");
        }
        let mut raw = Vec::new();
        numeric_from_text("NaN", &mut raw).unwrap();
        assert_eq!(raw, [0, 0, 0, 0, 0xC0, 0, 0, 0]);
        assert!(numeric_from_text("1e5", &mut Vec::new()).is_none());
    }

    #[test]
    fn arrays_from_their_text() {
        let b = array_binary("{a,\"b c\",NULL}", &Type::TEXT_ARRAY).unwrap();
        let mut want = vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 25, 0, 0, 0, 3, 0, 0, 0, 1];
        want.extend_from_slice(&[
            0, 0, 0, 1, b'a', 0, 0, 0, 3, b'b', b' ', b'c', 255, 255, 255, 255,
        ]);
        assert_eq!(b, want);
        let v = array_binary("1 2", &Type::INT2_VECTOR).unwrap();
        assert_eq!(&v[..20], &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 21, 0, 0, 0, 2, 0, 0, 0, 0]);
        let m = array_binary("{{1,2},{3,4}}", &Type::INT4_ARRAY).unwrap();
        assert_eq!(&m[..4], &[0, 0, 0, 2]);
        assert_eq!(
            array_binary("{}", &Type::INT4_ARRAY).unwrap(),
            vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23]
        );
        assert!(array_binary("{{1},{2,3}}", &Type::INT4_ARRAY).is_none());
    }

    #[test]
    fn arrays_round_trip_through_their_text() {
        for (text, ty, elem) in [
            ("{a,\"b c\",NULL,\"\",\"q\\\"\"}", Type::TEXT_ARRAY, Type::TEXT),
            ("{{1,2},{3,4}}", Type::INT4_ARRAY, Type::INT4),
            ("{}", Type::INT8_ARRAY, Type::INT8),
            ("{1.50,NULL}", Type::NUMERIC_ARRAY, Type::NUMERIC),
        ] {
            let raw = array_binary(text, &ty).unwrap();
            assert_eq!(array_text(&raw, &elem).unwrap(), text);
        }
        let raw = array_binary("1 2", &Type::INT2_VECTOR).unwrap();
        assert_eq!(array_text(&raw, &Type::INT2).unwrap(), "[0:1]={1,2}");
    }

    #[test]
    fn intervals_parse_back() {
        let b = interval_binary("1 year 2 mons -3 days -04:05:06.5").unwrap();
        let micros = -(4 * 3_600_000_000i64 + 5 * 60_000_000 + 6_500_000);
        assert_eq!(&b[..8], &micros.to_be_bytes());
        assert_eq!(&b[8..12], &(-3i32).to_be_bytes());
        assert_eq!(&b[12..], &14i32.to_be_bytes());
        assert_eq!(interval_binary("00:00:00").unwrap(), vec![0; 16]);
    }
}
