//! Session parameters a client sends in its startup packet (`TimeZone=UTC`,
//! `options=-c search_path=app`), and the ParameterStatus values announced for them, as
//! PostgreSQL treats them: they become the session's defaults, which RESET returns to.

use std::collections::{BTreeMap, HashMap};

use pgwire::api::auth::{DefaultServerParameterProvider, ServerParameterProvider};
use pgwire::api::ClientInfo;

/// Parameters PostgreSQL reports with ParameterStatus when they change.
pub const REPORTED: &[(&str, &str)] = &[
    ("application_name", "application_name"),
    ("datestyle", "DateStyle"),
    ("intervalstyle", "IntervalStyle"),
    ("timezone", "TimeZone"),
    ("client_encoding", "client_encoding"),
];

/// Startup keys that are not session parameters (or that tidemark fixes: UTF8 only).
const NOT_SETTINGS: &[&str] = &["user", "database", "replication", "client_encoding", "options"];

/// The session defaults in a client's startup parameters: every `key=value` but the
/// connection keys, plus each `-c name=value` / `--name=value` of `options`. Names are
/// lower-cased; values tidemark would refuse in SET (a read-write default) are ignored.
pub fn startup_defaults(meta: &HashMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in meta {
        let k = k.to_lowercase();
        if !NOT_SETTINGS.contains(&k.as_str()) {
            out.insert(k, v.clone());
        }
    }
    if let Some(options) = meta.get("options") {
        out.extend(parse_options(options));
    }
    out.retain(|k, v| crate::engine::check_setting(k, v).is_ok());
    out
}

/// The `name=value` pairs of libpq's `options` (`-c a=b -cx=y --z=w`, backslash escapes).
fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let pair = if w == "-c" {
            it.next()
        } else {
            w.strip_prefix("-c").or_else(|| w.strip_prefix("--")).map(str::to_string)
        };
        if let Some((k, v)) = pair.as_deref().and_then(|p| p.split_once('=')) {
            out.push((k.replace('-', "_").to_lowercase(), v.to_string()));
        }
    }
    out
}

/// ParameterStatus at startup: the server's values, with the client's own startup values
/// of the reported parameters (`TimeZone`, `DateStyle`, `IntervalStyle`, `application_name`).
pub struct Announced(pub DefaultServerParameterProvider);

impl ServerParameterProvider for Announced {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut params = self.0.server_parameters(client)?;
        let defaults = startup_defaults(client.metadata());
        for (key, name) in REPORTED {
            if let Some(v) = defaults.get(*key) {
                params.insert(name.to_string(), v.clone());
            }
        }
        Some(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_packet_settings() {
        let meta = HashMap::from([
            ("user".to_string(), "a".to_string()),
            ("TimeZone".to_string(), "Europe/Berlin".to_string()),
            ("client_encoding".to_string(), "SQL_ASCII".to_string()),
            ("default_transaction_read_only".to_string(), "off".to_string()),
            (
                "options".to_string(),
                "-c search_path=app\\ x -cstatement_timeout=5s --work-mem=4MB".to_string(),
            ),
        ]);
        let d = startup_defaults(&meta);
        assert_eq!(d.get("timezone").map(String::as_str), Some("Europe/Berlin"));
        assert_eq!(d.get("search_path").map(String::as_str), Some("app x"));
        assert_eq!(d.get("statement_timeout").map(String::as_str), Some("5s"));
        assert_eq!(d.get("work_mem").map(String::as_str), Some("4MB"));
        assert!(!d.contains_key("user") && !d.contains_key("client_encoding"));
        assert!(!d.contains_key("default_transaction_read_only"));
    }
}
