//! Splits a simple-query string into statements at top-level semicolons, respecting
//! quotes, dollar quotes and comments, and keeping each statement's exact text.

/// The non-empty statements of `sql`, each with its original text.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => i = skip_quoted(b, i),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'$' => i = skip_dollar(sql, i),
            b';' => {
                push(&mut out, &sql[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    push(&mut out, &sql[start..]);
    out
}

fn push<'a>(out: &mut Vec<&'a str>, stmt: &'a str) {
    if !is_blank(stmt) {
        out.push(stmt.trim());
    }
}

/// True when the text holds only whitespace and comments.
pub fn is_blank(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            _ => return false,
        }
    }
    true
}

fn skip_quoted(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn skip_block_comment(b: &[u8], start: usize) -> usize {
    let (mut depth, mut i) = (0usize, start);
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Skips `$tag$ ... $tag$`; a `$` that does not open a dollar quote (e.g. `$1`) is one byte.
fn skip_dollar(sql: &str, start: usize) -> usize {
    let rest = &sql[start + 1..];
    let tag_len = rest.find('$');
    let Some(n) = tag_len else { return start + 1 };
    let tag = &rest[..n];
    if !tag.chars().all(|c| c.is_alphanumeric() || c == '_')
        || tag.starts_with(|c: char| c.is_ascii_digit())
    {
        return start + 1;
    }
    let delim = &sql[start..start + n + 2];
    match sql[start + n + 2..].find(delim) {
        Some(end) => start + n + 2 + end + delim.len(),
        None => sql.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_respecting_quotes_and_comments() {
        assert_eq!(split_statements("select 1; select 2"), vec!["select 1", "select 2"]);
        assert_eq!(
            split_statements("select ';'; -- c;\nselect 2;"),
            vec!["select ';'", "-- c;\nselect 2"]
        );
        assert_eq!(
            split_statements("select $$a;b$$, $1; /* x; */ select \"a;\""),
            vec!["select $$a;b$$, $1", "/* x; */ select \"a;\""]
        );
        assert!(split_statements(" ; ;\n").is_empty());
        assert!(is_blank("-- only a comment\n /* and */ "));
    }
}
