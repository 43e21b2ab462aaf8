//! libpq connection strings (URL and keyword forms): the TLS parameters tidemark reads itself
//! (tokio-postgres knows fewer `sslmode`s and no certificate files), and the rest as given.

use serde::Deserialize;

use crate::error::{Error, Result};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, certificate not checked.
    #[default]
    Prefer,
    /// TLS always, certificate not checked.
    Require,
    /// TLS always, chain checked against the roots.
    VerifyCa,
    /// TLS always, chain and host name checked.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling (`verify-full`).
    pub fn parse(text: &str) -> Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(Error::Config(format!("warehouse sslmode {other:?}: expected disable, prefer, require, verify-ca or verify-full"))),
        })
    }

    /// libpq's spelling.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is refused.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The TLS settings of the warehouse connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// `sslmode`.
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// `sslrootcert`: PEM file of trusted roots (default: the system's).
    #[serde(default)]
    pub root_cert: Option<String>,
    /// `sslcert`: PEM client certificate chain.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// `sslkey`: PEM private key of the client certificate.
    #[serde(default)]
    pub client_key: Option<String>,
}

impl TlsSettings {
    /// These settings with `over`'s given values in place (`[warehouse.tls]` over the URL).
    pub fn overridden_by(self, over: &TlsSettings) -> TlsSettings {
        TlsSettings {
            sslmode: over.sslmode.or(self.sslmode),
            root_cert: over.root_cert.clone().or(self.root_cert),
            client_cert: over.client_cert.clone().or(self.client_cert),
            client_key: over.client_key.clone().or(self.client_key),
        }
    }

    /// The effective mode: libpq's `require` with a root certificate checks the chain.
    pub fn mode(&self) -> SslMode {
        match (self.sslmode.unwrap_or_default(), &self.root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }
}

/// Splits the TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) off a libpq
/// connection string in URL or keyword form, returning the string without them (for
/// tokio-postgres, which knows fewer modes) and the settings.
pub fn split_url(url: &str) -> Result<(String, TlsSettings)> {
    let mut tls = TlsSettings::default();
    let mut take = |key: &str, value: &str| -> Result<bool> {
        match key {
            "sslmode" => tls.sslmode = Some(SslMode::parse(value)?),
            "sslrootcert" => tls.root_cert = Some(value.to_string()),
            "sslcert" => tls.client_cert = Some(value.to_string()),
            "sslkey" => tls.client_key = Some(value.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(k, &percent_decode(v))? {
                kept.push(pair);
            }
        }
        match kept.is_empty() {
            true => base.to_string(),
            false => format!("{base}?{}", kept.join("&")),
        }
    } else {
        let mut kept = Vec::new();
        for (k, v, raw) in keyword_pairs(url)? {
            if !take(&k, &v)? {
                kept.push(raw);
            }
        }
        kept.join(" ")
    };
    Ok((rest, tls))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key = value` pairs of a keyword connection string (values may be single-quoted with
/// backslash escapes), each with its original text.
fn keyword_pairs(s: &str) -> Result<Vec<(String, String, String)>> {
    let bad = || Error::Config("invalid warehouse connection string".into());
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let Some(&(start, _)) = chars.peek() else { break };
        let mut key = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if chars.next().map(|(_, c)| c) != Some('=') {
            return Err(bad());
        }
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek().is_some_and(|(_, c)| *c == '\'') {
            chars.next();
            loop {
                match chars.next().ok_or_else(bad)?.1 {
                    '\\' => value.push(chars.next().ok_or_else(bad)?.1),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        let end = chars.peek().map_or(s.len(), |(i, _)| *i);
        out.push((key, value, s[start..end].to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_come_off_both_forms() {
        let (rest, tls) = split_url(
            "postgres://u:p@h:5439/dev?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@h:5439/dev?application_name=x");
        assert_eq!(
            (tls.mode(), tls.root_cert.as_deref()),
            (SslMode::VerifyFull, Some("/etc/ca.pem"))
        );
        let (rest, tls) =
            split_url("host=h port=5439 sslmode=require sslrootcert='/a b/ca.pem' user=u").unwrap();
        assert_eq!(rest, "host=h port=5439 user=u");
        assert_eq!(
            tls.mode(),
            SslMode::VerifyCa,
            "require with a root certificate checks the chain"
        );
        assert!(split_url("postgres://h/db?sslmode=bogus").is_err());
        let (rest, tls) = split_url("postgres://h/db").unwrap();
        assert_eq!((rest.as_str(), tls.mode()), ("postgres://h/db", SslMode::Prefer));
        let over = TlsSettings { sslmode: Some(SslMode::Disable), ..Default::default() };
        assert_eq!(tls.overridden_by(&over).mode(), SslMode::Disable);
    }
}
