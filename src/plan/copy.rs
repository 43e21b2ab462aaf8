//! `COPY ... TO STDOUT` as PostgreSQL 15 accepts it: the source (a query or a table with
//! columns), the target, and every option in both spellings (`WITH (FORMAT csv, HEADER, ...)`
//! and the pre-9.0 `WITH CSV HEADER QUOTE AS '"'`, `WITH BINARY`, `COPY BINARY t`), checked
//! the way PostgreSQL's `ProcessCopyOptions` checks them, with its SQLSTATEs.
//!
//! tidemark parses COPY itself (sqlparser does not know every form) and hands the inner query
//! to the normal classifier, so a COPY of a logical table splits like the query would.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{Error, Result};

/// The data format of a COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated text with backslash escapes (the default).
    Text,
    /// Comma-separated values with quoting.
    Csv,
    /// PostgreSQL's binary COPY format (signature, header, tuples, trailer).
    Binary,
}

/// Which columns CSV output always quotes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ForceQuote {
    /// Only values that need it.
    #[default]
    None,
    /// Every non-NULL value (`FORCE_QUOTE *`).
    All,
    /// Non-NULL values of these output columns.
    Columns(Vec<String>),
}

/// The options of a `COPY ... TO STDOUT`, with PostgreSQL's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// Data format.
    pub format: CopyFormat,
    /// A first line with the column names (text and CSV).
    pub header: bool,
    /// Field separator (one byte).
    pub delimiter: u8,
    /// How NULL is written.
    pub null: String,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character (defaults to the quote).
    pub escape: u8,
    /// CSV columns quoted whatever their value.
    pub force_quote: ForceQuote,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            format: CopyFormat::Text,
            header: false,
            delimiter: b'\t',
            null: "\\N".into(),
            quote: b'"',
            escape: b'"',
            force_quote: ForceQuote::None,
        }
    }
}

/// What a COPY statement reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// `COPY (query) ...`: the query text.
    Query(String),
    /// `COPY table [(columns)] ...`.
    Table {
        /// The table name as written (quoted parts keep their quotes).
        name: String,
        /// Column list as written (empty: every column).
        columns: Vec<String>,
    },
}

/// A parsed `COPY ... TO STDOUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    /// What is copied.
    pub source: CopySource,
    /// How it is written.
    pub options: CopyOptions,
}

impl CopyOut {
    /// The SELECT whose rows the COPY writes.
    pub fn query(&self) -> String {
        match &self.source {
            CopySource::Query(q) => q.clone(),
            CopySource::Table { name, columns } if columns.is_empty() => {
                format!("SELECT * FROM {name}")
            }
            CopySource::Table { name, columns } => {
                format!("SELECT {} FROM {name}", columns.join(", "))
            }
        }
    }
}

/// Whether `sql` is a COPY statement (its first word, after comments, is COPY). Cheap: it
/// runs for every statement classified.
pub fn is_copy(sql: &str) -> bool {
    first_word(sql).eq_ignore_ascii_case("copy")
}

/// The first word of a statement, after whitespace and `--` / `/* */` comments.
pub fn first_word(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    &rest[..end]
}

/// Parses a COPY statement. `COPY ... FROM` and COPY to a file or program are refused with
/// 25006 (tidemark is read-only and writes no files); malformed text is 42601.
pub fn parse(sql: &str) -> Result<CopyOut> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Error::Syntax(e.to_string()))?;
    let mut p = Cursor { sql, tokens: tokens.into_iter().filter(not_space).collect(), at: 0 };
    p.expect_word("COPY")?;
    let binary_head = p.eat_word("BINARY");
    let source = p.source()?;
    let to = if p.eat_word("TO") {
        true
    } else if p.eat_word("FROM") {
        false
    } else {
        return Err(p.unexpected("TO or FROM"));
    };
    if !to {
        return Err(Error::ReadOnly("COPY FROM".into()));
    }
    if !p.eat_word("STDOUT") {
        return Err(Error::ReadOnly("COPY to a file or program".into()));
    }
    let mut opts = RawOptions::default();
    if binary_head {
        opts.add("format", Arg::Word("binary".into()))?;
    }
    p.options(&mut opts)?;
    p.eat(&Token::SemiColon);
    if p.peek().is_some() {
        return Err(p.unexpected("end of statement"));
    }
    Ok(CopyOut { source, options: opts.resolve()? })
}

fn not_space(t: &TokenWithSpan) -> bool {
    !matches!(t.token, Token::Whitespace(_))
}

/// An option's argument as written.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    None,
    Word(String),
    Str(String),
    Star,
    List(Vec<String>),
}

impl Arg {
    fn text(&self) -> Option<&str> {
        match self {
            Arg::Word(s) | Arg::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Options as given, before defaults and checks.
#[derive(Default)]
struct RawOptions(Vec<(String, Arg)>);

impl RawOptions {
    /// Adds one option; a repeated option is 42601, as in PostgreSQL.
    fn add(&mut self, name: &str, arg: Arg) -> Result<()> {
        let known = [
            "format",
            "freeze",
            "delimiter",
            "null",
            "header",
            "quote",
            "escape",
            "force_quote",
            "force_not_null",
            "force_null",
            "encoding",
        ];
        if !known.contains(&name) {
            return Err(Error::Syntax(format!("option \"{name}\" not recognized")));
        }
        if self.0.iter().any(|(n, _)| n == name) {
            return Err(Error::Syntax("conflicting or redundant options".into()));
        }
        self.0.push((name.to_string(), arg));
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Arg> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// The options with PostgreSQL's defaults and checks (ProcessCopyOptions, COPY TO).
    fn resolve(self) -> Result<CopyOptions> {
        let format = match self.get("format") {
            None => CopyFormat::Text,
            Some(a) => match a.text().map(str::to_ascii_lowercase).as_deref() {
                Some("text") => CopyFormat::Text,
                Some("csv") => CopyFormat::Csv,
                Some("binary") => CopyFormat::Binary,
                _ => {
                    return Err(invalid(format!("COPY format \"{}\" not recognized", arg_text(a))))
                }
            },
        };
        let csv = format == CopyFormat::Csv;
        let binary = format == CopyFormat::Binary;
        let mut o = CopyOptions { format, ..Default::default() };
        if csv {
            o.delimiter = b',';
            o.null = String::new();
        }
        if let Some(a) = self.get("freeze") {
            boolean("freeze", a)?;
        }
        if let Some(a) = self.get("encoding") {
            let e = a.text().unwrap_or_default().replace(['-', '_'], "");
            if !matches!(e.to_ascii_uppercase().as_str(), "UTF8" | "UNICODE") {
                return Err(Error::NotSupported(format!(
                    "COPY encoding {}: tidemark speaks UTF8 only",
                    arg_text(a)
                )));
            }
        }
        if let Some(a) = self.get("delimiter") {
            if binary {
                return Err(Error::Syntax("cannot specify DELIMITER in BINARY mode".into()));
            }
            o.delimiter = one_byte(a, "COPY delimiter")?;
        }
        if let Some(a) = self.get("null") {
            if binary {
                return Err(Error::Syntax("cannot specify NULL in BINARY mode".into()));
            }
            o.null = a.text().ok_or_else(|| needs_string("null"))?.to_string();
        }
        if let Some(a) = self.get("header") {
            if binary {
                return Err(not_supported("cannot specify HEADER in BINARY mode"));
            }
            o.header = header(a)?;
        }
        o.quote = match self.get("quote") {
            Some(_) if !csv => return Err(not_supported("COPY quote available only in CSV mode")),
            Some(a) => one_byte(a, "COPY quote")?,
            None => b'"',
        };
        o.escape = match self.get("escape") {
            Some(_) if !csv => return Err(not_supported("COPY escape available only in CSV mode")),
            Some(a) => one_byte(a, "COPY escape")?,
            None => o.quote,
        };
        if let Some(a) = self.get("force_quote") {
            if !csv {
                return Err(not_supported("COPY force quote available only in CSV mode"));
            }
            o.force_quote = match a {
                Arg::Star => ForceQuote::All,
                Arg::List(cols) => ForceQuote::Columns(cols.clone()),
                _ => {
                    return Err(invalid(
                        "argument to option \"force_quote\" must be a list of column names",
                    ))
                }
            };
        }
        for name in ["force_not_null", "force_null"] {
            if self.get(name).is_some() {
                let what = if name == "force_null" { "force null" } else { "force not null" };
                return Err(not_supported(format!("COPY {what} only available using COPY FROM")));
            }
        }
        check_characters(&o)?;
        Ok(o)
    }
}

/// PostgreSQL's checks of the delimiter, quote and NULL string against each other.
fn check_characters(o: &CopyOptions) -> Result<()> {
    if o.format == CopyFormat::Binary {
        return Ok(());
    }
    let d = o.delimiter;
    if d == b'\n' || d == b'\r' {
        return Err(invalid("COPY delimiter cannot be newline or carriage return"));
    }
    if o.null.contains(['\r', '\n']) {
        return Err(invalid("COPY null representation cannot use newline or carriage return"));
    }
    if o.format == CopyFormat::Text && b"\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(&d) {
        return Err(invalid(format!("COPY delimiter cannot be \"{}\"", d as char)));
    }
    if o.format == CopyFormat::Csv {
        if d == o.quote {
            return Err(invalid("COPY delimiter and quote must be different"));
        }
        if o.null.as_bytes().contains(&o.quote) {
            return Err(not_supported(
                "CSV quote character must not appear in the NULL specification",
            ));
        }
    }
    if o.null.as_bytes().contains(&d) {
        return Err(not_supported("COPY delimiter must not appear in the NULL specification"));
    }
    Ok(())
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::data("22023", msg.into())
}

fn not_supported(msg: impl Into<String>) -> Error {
    Error::NotSupported(msg.into())
}

fn needs_string(name: &str) -> Error {
    Error::Syntax(format!("{name} requires a string value"))
}

fn arg_text(a: &Arg) -> String {
    match a {
        Arg::None => String::new(),
        Arg::Word(s) | Arg::Str(s) => s.clone(),
        Arg::Star => "*".into(),
        Arg::List(l) => l.join(", "),
    }
}

/// A single one-byte character (PostgreSQL: 0A000 otherwise).
fn one_byte(a: &Arg, what: &str) -> Result<u8> {
    let s = a.text().ok_or_else(|| needs_string(what))?;
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(not_supported(format!("{what} must be a single one-byte character"))),
    }
}

fn boolean(name: &str, a: &Arg) -> Result<bool> {
    let text = match a {
        Arg::None => return Ok(true),
        other => other.text().map(str::to_ascii_lowercase),
    };
    match text.as_deref() {
        Some("true" | "on" | "1" | "t" | "yes") => Ok(true),
        Some("false" | "off" | "0" | "f" | "no") => Ok(false),
        _ => Err(Error::Syntax(format!("{name} requires a Boolean value"))),
    }
}

/// HEADER [boolean | MATCH]; MATCH is for COPY FROM only.
fn header(a: &Arg) -> Result<bool> {
    if a.text().is_some_and(|t| t.eq_ignore_ascii_case("match")) {
        return Err(not_supported("cannot use \"match\" with HEADER in COPY TO"));
    }
    boolean("header", a)
}

/// Tokens of a COPY statement, read front to back.
struct Cursor<'a> {
    sql: &'a str,
    tokens: Vec<TokenWithSpan>,
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|t| &t.token).filter(|t| **t != Token::EOF)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.peek().cloned();
        if t.is_some() {
            self.at += 1;
        }
        t
    }

    fn eat(&mut self, tok: &Token) -> bool {
        if self.peek() == Some(tok) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.is_word(w);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn expect_word(&mut self, w: &str) -> Result<()> {
        if self.eat_word(w) {
            Ok(())
        } else {
            Err(self.unexpected(w))
        }
    }

    fn unexpected(&self, wanted: &str) -> Error {
        let found = self.peek().map(|t| t.to_string()).unwrap_or_else(|| "end of input".into());
        Error::Syntax(format!("syntax error in COPY: expected {wanted}, found {found}"))
    }

    /// Byte offset in the SQL text of a tokenizer location (line and column count chars).
    fn offset(&self, loc: Location) -> usize {
        let mut line = 1;
        let mut col = 1;
        for (i, c) in self.sql.char_indices() {
            if line == loc.line && col == loc.column {
                return i;
            }
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        self.sql.len()
    }

    /// `( query )` or `table [( columns )]`.
    fn source(&mut self) -> Result<CopySource> {
        if self.peek() == Some(&Token::LParen) {
            let open = self.at;
            let mut depth = 0usize;
            while let Some(t) = self.next() {
                match t {
                    Token::LParen => depth += 1,
                    Token::RParen => {
                        depth -= 1;
                        if depth == 0 {
                            let from = self.offset(self.tokens[open].span.end);
                            let to = self.offset(self.tokens[self.at - 1].span.start);
                            let query = self.sql.get(from..to).unwrap_or_default().trim();
                            return Ok(CopySource::Query(query.to_string()));
                        }
                    }
                    _ => {}
                }
            }
            return Err(Error::Syntax("syntax error in COPY: unbalanced parentheses".into()));
        }
        let mut name = self.ident()?;
        while self.eat(&Token::Period) {
            name = format!("{name}.{}", self.ident()?);
        }
        let columns = if self.eat(&Token::LParen) { self.ident_list()? } else { vec![] };
        Ok(CopySource::Table { name, columns })
    }

    /// One identifier as written (quoted ones keep their quotes).
    fn ident(&mut self) -> Result<String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(match w.quote_style {
                Some(q) => format!("{q}{}{q}", w.value.replace(q, &format!("{q}{q}"))),
                None => w.value,
            }),
            _ => {
                self.at = self.at.saturating_sub(1);
                Err(self.unexpected("a name"))
            }
        }
    }

    /// `a, b, c )` after an opening parenthesis: the names, folded as PostgreSQL folds them.
    fn ident_list(&mut self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        loop {
            out.push(self.ident()?);
            if self.eat(&Token::RParen) {
                return Ok(out);
            }
            if !self.eat(&Token::Comma) {
                return Err(self.unexpected(", or )"));
            }
        }
    }

    /// `[WITH] ( name [arg], ... )` or the legacy option words.
    fn options(&mut self, opts: &mut RawOptions) -> Result<()> {
        self.eat_word("WITH");
        if self.eat(&Token::LParen) {
            loop {
                let name = match self.next() {
                    Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
                    _ => return Err(self.unexpected("an option name")),
                };
                let arg = self.option_arg()?;
                opts.add(&name, arg)?;
                if self.eat(&Token::RParen) {
                    return Ok(());
                }
                if !self.eat(&Token::Comma) {
                    return Err(self.unexpected(", or )"));
                }
            }
        }
        while let Some(Token::Word(_)) = self.peek() {
            self.legacy_option(opts)?;
        }
        Ok(())
    }

    /// The argument of a parenthesized option: nothing, a word, a string, a number, `*` or a list.
    fn option_arg(&mut self) -> Result<Arg> {
        Ok(match self.peek() {
            Some(Token::Comma | Token::RParen) | None => Arg::None,
            Some(Token::Mul) => {
                self.at += 1;
                Arg::Star
            }
            Some(Token::LParen) => {
                self.at += 1;
                Arg::List(self.ident_list()?.into_iter().map(|c| unquote(&c)).collect())
            }
            Some(Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s)) => {
                let s = s.clone();
                self.at += 1;
                Arg::Str(s)
            }
            Some(Token::Number(n, _)) => {
                let n = n.clone();
                self.at += 1;
                Arg::Word(n)
            }
            Some(Token::Word(w)) => {
                let v = w.value.clone();
                self.at += 1;
                Arg::Word(v)
            }
            Some(_) => return Err(self.unexpected("an option value")),
        })
    }

    /// A string after an optional AS (legacy DELIMITER, NULL, QUOTE, ESCAPE, ENCODING).
    fn legacy_string(&mut self) -> Result<Arg> {
        self.eat_word("AS");
        match self.next() {
            Some(Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s)) => Ok(Arg::Str(s)),
            _ => {
                self.at = self.at.saturating_sub(1);
                Err(self.unexpected("a string"))
            }
        }
    }

    /// One pre-9.0 option (`BINARY`, `CSV`, `HEADER`, `DELIMITER [AS] 'x'`, `FORCE QUOTE ...`).
    fn legacy_option(&mut self, opts: &mut RawOptions) -> Result<()> {
        let word = match self.next() {
            Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
            _ => return Err(self.unexpected("a COPY option")),
        };
        match word.as_str() {
            "BINARY" => opts.add("format", Arg::Word("binary".into())),
            "CSV" => opts.add("format", Arg::Word("csv".into())),
            "HEADER" => opts.add("header", Arg::None),
            "FREEZE" => opts.add("freeze", Arg::None),
            "DELIMITER" => opts.add("delimiter", self.legacy_string()?),
            "NULL" => opts.add("null", self.legacy_string()?),
            "QUOTE" => opts.add("quote", self.legacy_string()?),
            "ESCAPE" => opts.add("escape", self.legacy_string()?),
            "ENCODING" => opts.add("encoding", self.legacy_string()?),
            "FORCE" => self.legacy_force(opts),
            other => Err(Error::Syntax(format!("syntax error at or near \"{other}\" in COPY"))),
        }
    }

    /// `FORCE QUOTE {* | cols}`, `FORCE NOT NULL cols`, `FORCE NULL cols`.
    fn legacy_force(&mut self, opts: &mut RawOptions) -> Result<()> {
        let name = if self.eat_word("QUOTE") {
            "force_quote"
        } else if self.eat_word("NOT") {
            self.expect_word("NULL")?;
            "force_not_null"
        } else if self.eat_word("NULL") {
            "force_null"
        } else {
            return Err(self.unexpected("QUOTE, NOT NULL or NULL"));
        };
        if name == "force_quote" && self.eat(&Token::Mul) {
            return opts.add(name, Arg::Star);
        }
        let mut cols = vec![unquote(&self.ident()?)];
        while self.eat(&Token::Comma) {
            cols.push(unquote(&self.ident()?));
        }
        opts.add(name, Arg::List(cols))
    }
}

/// An identifier as PostgreSQL resolves it: quoted keeps its case, unquoted is lower-cased.
fn unquote(ident: &str) -> String {
    match ident.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => ident.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(sql: &str) -> CopyOptions {
        parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).options
    }

    fn code(sql: &str) -> String {
        parse(sql).map(|_| "ok".to_string()).unwrap_or_else(|e| e.sqlstate().to_string())
    }

    #[test]
    fn sources_and_spellings() {
        let c = parse("COPY (SELECT '(', \")\" FROM t WHERE (a)) TO STDOUT").unwrap();
        assert_eq!(c.source, CopySource::Query("SELECT '(', \")\" FROM t WHERE (a)".into()));
        let c = parse("copy public.\"Ev\" (a, \"B\") to stdout").unwrap();
        assert_eq!(c.query(), "SELECT a, \"B\" FROM public.\"Ev\"");
        assert_eq!(opts("COPY t TO STDOUT WITH BINARY").format, CopyFormat::Binary);
        assert_eq!(opts("COPY BINARY t TO STDOUT").format, CopyFormat::Binary);
        assert_eq!(opts("COPY (SELECT 1) TO STDOUT (FORMAT binary)").format, CopyFormat::Binary);
        let o = opts("COPY t TO STDOUT WITH CSV HEADER QUOTE AS '|' ESCAPE '\\' FORCE QUOTE *");
        assert_eq!((o.format, o.header, o.quote, o.escape), (CopyFormat::Csv, true, b'|', b'\\'));
        assert_eq!(o.force_quote, ForceQuote::All);
        let o =
            opts("COPY t TO STDOUT (FORMAT 'csv', HEADER true, FORCE_QUOTE (a, \"B\"), NULL 'x')");
        assert_eq!(o.force_quote, ForceQuote::Columns(vec!["a".into(), "B".into()]));
        assert_eq!((o.delimiter, o.null.as_str()), (b',', "x"));
        let o = opts("COPY t TO STDOUT DELIMITER AS ';' NULL AS 'n';");
        assert_eq!((o.format, o.delimiter, o.null.as_str()), (CopyFormat::Text, b';', "n"));
        assert!(!opts("COPY t TO STDOUT (HEADER off)").header);
    }

    #[test]
    fn refusals_have_postgres_sqlstates() {
        assert_eq!(code("COPY t FROM STDIN"), "25006");
        assert_eq!(code("COPY t TO '/tmp/x'"), "25006");
        assert_eq!(code("COPY t TO PROGRAM 'ls'"), "25006");
        assert_eq!(code("COPY t TO STDOUT (FORMAT xml)"), "22023");
        assert_eq!(code("COPY t TO STDOUT (FORMAT binary, DELIMITER ',')"), "42601");
        assert_eq!(code("COPY t TO STDOUT (DELIMITER 'ab')"), "0A000");
        assert_eq!(code("COPY t TO STDOUT (QUOTE '\"')"), "0A000");
        assert_eq!(code("COPY t TO STDOUT (FORMAT csv, DELIMITER '\"')"), "22023");
        assert_eq!(code("COPY t TO STDOUT (HEADER match)"), "0A000");
        assert_eq!(code("COPY t TO STDOUT (FORMAT csv, FORCE_NOT_NULL (a))"), "0A000");
        assert_eq!(code("COPY t TO STDOUT (HEADER, HEADER)"), "42601");
        assert_eq!(code("COPY t TO STDOUT (BOGUS)"), "42601");
        assert_eq!(code("COPY t TO STDOUT (DELIMITER 'x')"), "22023");
        assert_eq!(code("COPY (SELECT 1 TO STDOUT"), "42601");
        assert!(is_copy("  /* c */ copy t to stdout") && !is_copy("SELECT 'copy'"));
        assert!(is_copy("-- x\nCOPY(SELECT 1) TO STDOUT") && !is_copy("copying"));
    }
}
