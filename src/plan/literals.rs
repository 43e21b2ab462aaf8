//! Literals the split rewrites: now-forms pinned to the query's instant, the describe form,
//! and backslashes doubled for a warehouse that reads them as escapes.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Expr, FunctionArguments, Ident, Query, SelectItem,
    SetExpr,
};

use super::sqlcheck::fn_name;
use crate::catalog::Facts;
use crate::config::Dialect;
use crate::model::value::timestamp_text;

/// The name of a spelling of now (`now()`, `current_date`, on Redshift `getdate()` and
/// `SYSDATE`, ...), as the warehouse names a result column of it; None for other expressions.
pub(crate) fn now_form(e: &Expr, dialect: Dialect) -> Option<String> {
    let redshift = dialect == Dialect::Redshift;
    match e {
        Expr::Identifier(i) if redshift && i.quote_style.is_none() => {
            i.value.eq_ignore_ascii_case("sysdate").then(|| "sysdate".to_string())
        }
        Expr::Function(f) => {
            let name = fn_name(f);
            let known = matches!(
                name.as_str(),
                "now"
                    | "current_timestamp"
                    | "transaction_timestamp"
                    | "statement_timestamp"
                    | "current_date"
                    | "localtimestamp"
                    | "current_time"
                    | "localtime"
            ) || (redshift && name == "getdate");
            known.then_some(name)
        }
        _ => None,
    }
}

/// The warehouse's name for a select item that is a spelling of now, maybe cast (a cast
/// keeps its argument's name).
pub(crate) fn now_item_name(e: &Expr, dialect: Dialect) -> Option<String> {
    match e {
        Expr::Nested(x) | Expr::Cast { expr: x, .. } => now_item_name(x, dialect),
        other => now_form(other, dialect),
    }
}

/// The text to describe a query by when it reads now in any spelling: the query with now
/// replaced by a fixed instant (the result types are the same at every instant, the text
/// stays one describe-cache entry, and on Redshift leader-node functions such as `SYSDATE`
/// are never described against a table), its select items keeping the names the warehouse
/// gives the original. None: describe the client's own text.
pub fn describe_form(q: &Query, dialect: Dialect, facts: &Facts) -> Option<String> {
    let mut any = false;
    let _ = visit_expressions(q, |e| {
        any |= now_form(e, dialect).is_some();
        ControlFlow::<()>::Continue(())
    });
    if !any {
        return None;
    }
    let mut q = q.clone();
    let SetExpr::Select(s) = &mut *q.body else { return None };
    for item in &mut s.projection {
        if let SelectItem::UnnamedExpr(e) = item {
            if let Some(name) = now_item_name(e, dialect) {
                let alias = Ident::with_quote('"', name);
                *item = SelectItem::ExprWithAlias { expr: e.clone(), alias };
            }
        }
    }
    let text = substitute_now(&mut q, 0, dialect).then(|| q.to_string())?;
    Some(if reescapes(dialect, facts) { escape_backslashes(&text) } else { text })
}

/// Whether SQL printed from a parsed query writes `\` for `\`: under the Redshift dialect
/// the parser reads `\` in '...' as an escape (a literal holds the value the client meant),
/// and a warehouse that does the same would read a lone printed `\` as an escape again.
pub fn reescapes(dialect: Dialect, facts: &Facts) -> bool {
    dialect == Dialect::Redshift && facts.backslash_escapes
}

/// Whether the parser and the warehouse disagree on `\` in '...' (the Redshift dialect over a
/// warehouse that reads it literally, or the PostgreSQL dialect over one that escapes): the
/// parsed literals then hold other values than the warehouse reads, and a query with a
/// backslash passes through.
pub fn backslashes_disagree(dialect: Dialect, facts: &Facts) -> bool {
    (dialect == Dialect::Redshift) != facts.backslash_escapes
}

/// Doubles every `\` inside the '...' (and N'...') string literals of SQL printed by
/// sqlparser, leaving identifiers, E'...' strings (printed with their own escapes) and
/// dollar-quoted strings as they are.
pub fn escape_backslashes(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 8);
    let mut i = 0;
    while i < b.len() {
        let end = match b[i] {
            b'\'' if e_prefixed(b, i) => quoted_end(b, i, Quote::Escaped),
            b'\'' => {
                let end = quoted_end(b, i, Quote::Plain);
                for &c in &b[i..end] {
                    out.extend_from_slice(if c == b'\\' {
                        b"\\\\"
                    } else {
                        std::slice::from_ref(&c)
                    });
                }
                i = end;
                continue;
            }
            b'"' => quoted_end(b, i, Quote::Ident),
            b'$' => dollar_end(sql, i),
            _ => i + 1,
        };
        out.extend_from_slice(&b[i..end]);
        i = end;
    }
    // only ASCII was added, between whole UTF-8 sequences
    String::from_utf8(out).unwrap_or_else(|_| sql.to_string())
}

/// Whether the quote at `i` opens an E'...' string (an `E` that starts a word).
pub(crate) fn e_prefixed(b: &[u8], i: usize) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    i > 0 && matches!(b[i - 1], b'E' | b'e') && (i < 2 || !word(b[i - 2]))
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Quote {
    Plain,
    Escaped,
    Ident,
}

/// The index after the quoted run starting at `i` (a doubled quote stays inside; in an
/// E'...' string a backslash escapes the next byte).
pub(crate) fn quoted_end(b: &[u8], i: usize, kind: Quote) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        let escaped = kind == Quote::Escaped && b[j] == b'\\';
        if escaped || (b[j] == q && b.get(j + 1) == Some(&q)) {
            j += 2;
        } else if b[j] == q {
            return j + 1;
        } else {
            j += 1;
        }
    }
    b.len()
}

/// The index after a `$tag$...$tag$` string starting at `i`, or `i + 1` for another `$`
/// (a `$1` placeholder).
pub(crate) fn dollar_end(sql: &str, i: usize) -> usize {
    let rest = &sql[i + 1..];
    let tag_len = rest.find('$').filter(|n| {
        rest[..*n].chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !rest.starts_with(|c: char| c.is_ascii_digit())
    });
    let Some(n) = tag_len else { return i + 1 };
    let tag = &sql[i..i + n + 2];
    match sql[i + tag.len()..].find(tag) {
        Some(k) => i + tag.len() + k + tag.len(),
        None => sql.len(),
    }
}

/// Replaces `now()`, `current_timestamp`, `current_date` and friends (on Redshift also
/// `getdate()` and `SYSDATE`) by typed literals of
/// the query's snapshot instant so that every leg sees the same instant (and the leg SQL is
/// cacheable). Returns false when a form cannot be replaced (the query is passed through).
pub fn substitute_now(q: &mut Query, now_micros: i64, dialect: Dialect) -> bool {
    substitute_now_counting(q, now_micros, dialect).is_some()
}

/// [`substitute_now`], saying how many calls it replaced (None: one it could not).
pub fn substitute_now_counting(q: &mut Query, now_micros: i64, dialect: Dialect) -> Option<usize> {
    let instant = format!("CAST('{}+00' AS TIMESTAMPTZ)", timestamp_text(now_micros));
    let mut ok = true;
    let mut replaced = 0;
    let _ = visit_expressions_mut(q, |e| {
        // Redshift's SYSDATE: the transaction's start as a timestamp in the session zone
        if matches!(e, Expr::Identifier(i) if i.quote_style.is_none()
            && i.value.eq_ignore_ascii_case("sysdate") && dialect == Dialect::Redshift)
        {
            match super::parse_expr(dialect, &format!("CAST({instant} AS TIMESTAMP)")) {
                Ok(new) => (*e, replaced) = (new, replaced + 1),
                Err(_) => ok = false,
            }
            return ControlFlow::Continue(());
        }
        if let Expr::Function(f) = e {
            let no_args = match &f.args {
                FunctionArguments::None => true,
                FunctionArguments::List(l) => l.args.is_empty(),
                _ => false,
            };
            let name = fn_name(f);
            let text = match name.as_str() {
                "now" | "current_timestamp" | "transaction_timestamp" | "statement_timestamp" => {
                    instant.clone()
                }
                "current_date" => format!("CAST({instant} AS DATE)"),
                "localtimestamp" => format!("CAST({instant} AS TIMESTAMP)"),
                // Redshift's "now" in the session time zone, as a timestamp
                "getdate" if dialect == Dialect::Redshift => {
                    format!("CAST({instant} AS TIMESTAMP)")
                }
                "current_time" => format!("CAST({instant} AS TIMETZ)"),
                "localtime" => format!("CAST({instant} AS TIME)"),
                _ => return ControlFlow::<()>::Continue(()),
            };
            if !no_args || f.name.0.len() != 1 {
                ok = false;
                return ControlFlow::Continue(());
            }
            match super::parse_expr(dialect, &text) {
                Ok(new) => (*e, replaced) = (new, replaced + 1),
                Err(_) => ok = false,
            }
        }
        ControlFlow::Continue(())
    });
    ok.then_some(replaced)
}
