//! Statement fingerprints: the text of one statement with its literals replaced by `?`, the key
//! under which the engine remembers how a statement is classified. How tidemark classifies
//! a statement (local, split or pass-through, and which tables it reads) never depends on a
//! literal's value, so `SELECT name FROM dim WHERE id = 7` and `... id = 8` share a fingerprint.
//!
//! The lexer is deliberately strict: text it does not fully understand (comments, dollar
//! quotes, escape strings, backslashes, `$n` parameters, semicolons, NUL) has no fingerprint, and
//! such statements always take the full path.

/// The fingerprint of one statement, or None when the text holds anything the lexer does not
/// understand or more than one statement.
pub fn fingerprint(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let after_word = i > 0 && is_word(b[i - 1]);
        match c {
            b'\'' if !after_word => {
                i = skip_string(b, i)?;
                out.push(b'?');
                continue;
            }
            b'"' => {
                let end = skip_identifier(b, i)?;
                out.extend_from_slice(&b[i..end]);
                i = end;
                continue;
            }
            b'0'..=b'9' if !after_word => {
                while i < b.len() && (is_word(b[i]) || b[i] == b'.') {
                    i += 1;
                }
                out.push(b'?');
                continue;
            }
            b'\'' | b'$' | b'\\' | b';' | 0 => return None,
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The index after a standard string literal starting at `start` (`''` escapes a quote).
fn skip_string(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' | 0 => return None,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index after a quoted identifier starting at `start` (`""` escapes a quote).
fn skip_identifier(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            0 => return None,
            b'"' if b.get(i + 1) == Some(&b'"') => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            fingerprint("SELECT name FROM dim WHERE id = 42").as_deref(),
            Some("SELECT name FROM dim WHERE id = ?")
        );
        assert_eq!(fingerprint("SELECT 'it''s', 1.5e3, x1").as_deref(), Some("SELECT ?, ?, x1"));
        assert_eq!(fingerprint("SELECT \"a'b\" FROM t").as_deref(), Some("SELECT \"a'b\" FROM t"));
        assert_eq!(fingerprint("SELECT date '2026-01-01'").as_deref(), Some("SELECT date ?"));
    }

    #[test]
    fn anything_unusual_has_no_fingerprint() {
        for sql in [
            "SELECT 1; DELETE FROM t",
            "SELECT E'\\x'",
            "SELECT $$a$$",
            "SELECT $1",
            "SELECT 1 -- c",
            "SELECT /* c */ 1",
            "SELECT 'open",
            "SELECT \"open",
            "SELECT 'a\\'",
            "SELECT '\0'",
        ] {
            assert_eq!(fingerprint(sql), None, "{sql}");
        }
    }
}
