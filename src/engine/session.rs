//! Per-client session state kept as PostgreSQL keeps it: settings from the startup packet (the
//! values RESET returns to), `SET` and `SET LOCAL`, undone by ROLLBACK and ROLLBACK TO SAVEPOINT,
//! the transaction block with its isolation level and savepoints, cursors and pins.

use std::collections::BTreeMap;

use super::Pins;

use crate::error::{Error, Result};
use crate::exec::warehouse::FORWARDED_PARAMS;
use crate::model::column::SessionParams;
use crate::model::freshness::Freshness;
pub use crate::plan::local::Scope;

/// The session setting that turns the caches off for a session.
const CACHE_SETTING: &str = "tidemark.cache";

/// A message to the client that does not fail the statement (NoticeResponse on pgwire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `WARNING` or `NOTICE`.
    pub severity: &'static str,
    /// SQLSTATE of the condition.
    pub sqlstate: &'static str,
    /// Message text.
    pub message: String,
}

impl Notice {
    fn warning(sqlstate: &'static str, message: &str) -> Notice {
        Notice { severity: "WARNING", sqlstate, message: message.into() }
    }
}

/// Settings at one point of a transaction, restored by ROLLBACK (TO SAVEPOINT).
#[derive(Debug, Clone, Default)]
struct Snapshot {
    settings: BTreeMap<String, String>,
    locals: BTreeMap<String, String>,
    isolation: Option<String>,
}

/// An open transaction block.
#[derive(Debug, Clone, Default)]
struct Txn {
    /// Session settings at BEGIN (ROLLBACK returns to them).
    at_begin: BTreeMap<String, String>,
    /// `SET LOCAL` values, dropped at the end of the block.
    locals: BTreeMap<String, String>,
    /// `BEGIN ISOLATION LEVEL ...` / `SET TRANSACTION ISOLATION LEVEL ...`.
    isolation: Option<String>,
    /// Savepoints, oldest first.
    savepoints: Vec<(String, Snapshot)>,
}

/// Settings that change no answer, so they do not keep a session off the pass-through fast
/// path (`extra_float_digits` of 1 or more prints floats exactly as the default does).
fn cosmetic(name: &str, value: &str) -> bool {
    match name {
        "application_name" => true,
        "extra_float_digits" => value.trim().parse::<i32>().is_ok_and(|v| v >= 1),
        _ => false,
    }
}

/// Per-client state: session parameters and the freshness of the last answer.
#[derive(Debug, Default)]
pub struct Session {
    /// Parameters set with SET (names lower case).
    pub settings: BTreeMap<String, String>,
    /// Parameters the client sent at startup (`TimeZone`, `options=-c ...`): where RESET goes.
    pub defaults: BTreeMap<String, String>,
    /// Freshness of the last query.
    pub last_freshness: Option<Freshness>,
    /// Open cursors.
    pub cursors: crate::cursors::Cursors,
    /// Watermarks pinned by the client (Flight tickets carry the snapshot taken when the
    /// FlightInfo was made); logical tables not listed use the current watermark.
    pub pinned: Pins,
    /// Flips to true when the client cancels the running statement (REST request ids).
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
    /// Which frontend the session belongs to (`rest`, `pgwire`, `flight`), for metrics.
    pub frontend: &'static str,
    /// One-statement sessions (REST) skip keeping `last_freshness`.
    pub forget_freshness: bool,
    /// The authenticated user (empty when anonymous): permissions and the query log.
    pub user: String,
    /// The user's statement timeout: the session's own may only be shorter.
    pub user_timeout: Option<std::time::Duration>,
    txn: Option<Txn>,
}

impl Session {
    /// An empty session of a frontend.
    pub fn new(frontend: &'static str) -> Session {
        Session { frontend, ..Default::default() }
    }

    /// Inside BEGIN ... COMMIT.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// The value of a parameter now: SET LOCAL, then SET, then the startup value.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.lookup(name)
    }

    /// Whether the session bypasses the caches (`SET tidemark.cache = off`, or a frontend's
    /// `no-cache`).
    pub fn bypasses_cache(&self) -> bool {
        self.lookup(CACHE_SETTING).is_some_and(|v| v.eq_ignore_ascii_case("off"))
    }

    /// Bypasses the caches for the rest of the session (a request's `no-cache`).
    pub fn bypass_cache(&mut self) {
        self.settings.insert(CACHE_SETTING.into(), "off".into());
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        self.txn
            .as_ref()
            .and_then(|t| t.locals.get(name))
            .or_else(|| self.settings.get(name))
            .or_else(|| self.defaults.get(name))
            .map(String::as_str)
    }

    /// True when the session itself set `name` (SET, SET LOCAL), not only its startup packet.
    fn set_in_session(&self, name: &str) -> bool {
        self.settings.contains_key(name)
            || self.txn.as_ref().is_some_and(|t| t.locals.contains_key(name))
    }

    /// Every parameter the session has a value for, with its current value.
    pub fn effective(&self) -> BTreeMap<String, String> {
        let mut all = self.defaults.clone();
        all.extend(self.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(t) = &self.txn {
            all.extend(t.locals.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        all
    }

    /// True when some parameter may change how the warehouse answers (the fast path then
    /// stays off, as it runs on connections with the warehouse's defaults).
    pub fn has_answer_settings(&self) -> bool {
        let locals = self.txn.iter().flat_map(|t| t.locals.iter());
        self.defaults.iter().chain(&self.settings).chain(locals).any(|(k, v)| !cosmetic(k, v))
    }

    /// `SET [LOCAL] name = value`; SET LOCAL outside a transaction block does nothing and
    /// warns (25P01), as in PostgreSQL.
    pub fn set(&mut self, name: &str, value: &str, scope: Scope) -> Option<Notice> {
        match (scope, self.txn.as_mut()) {
            (Scope::Local, Some(t)) => {
                t.locals.insert(name.into(), value.into());
                None
            }
            (Scope::Local, None) => {
                Some(Notice::warning("25P01", "SET LOCAL can only be used in transaction blocks"))
            }
            (Scope::Session, t) => {
                if let Some(t) = t {
                    t.locals.remove(name);
                }
                self.settings.insert(name.into(), value.into());
                None
            }
        }
    }

    /// `RESET name`: back to the startup value (or the warehouse's default).
    pub fn reset(&mut self, name: &str) {
        if let Some(t) = self.txn.as_mut() {
            t.locals.remove(name);
        }
        self.settings.remove(name);
    }

    /// `RESET ALL`.
    pub fn reset_all(&mut self) {
        if let Some(t) = self.txn.as_mut() {
            t.locals.clear();
        }
        self.settings.clear();
    }

    /// `DISCARD ALL`: settings back to the startup values, cursors closed; refused (25001)
    /// inside a transaction block.
    pub fn discard_all(&mut self) -> Result<()> {
        if self.txn.is_some() {
            return Err(Error::data("25001", "DISCARD ALL cannot run inside a transaction block"));
        }
        self.settings.clear();
        self.cursors.close(None)?;
        Ok(())
    }

    /// BEGIN / START TRANSACTION; inside a block it only warns (25001).
    pub fn begin(&mut self, isolation: Option<String>) -> Option<Notice> {
        if let Some(t) = self.txn.as_mut() {
            if isolation.is_some() {
                t.isolation = isolation;
            }
            return Some(Notice::warning("25001", "there is already a transaction in progress"));
        }
        self.txn = Some(Txn { at_begin: self.settings.clone(), isolation, ..Default::default() });
        None
    }

    /// COMMIT: session SETs stay, SET LOCAL values end; outside a block it warns (25P01).
    pub fn commit(&mut self) -> Option<Notice> {
        let notice = self.end_transaction().err();
        self.cursors.end_transaction();
        notice
    }

    /// ROLLBACK: settings return to what they were at BEGIN.
    pub fn rollback(&mut self) -> Option<Notice> {
        let at_begin = self.txn.as_ref().map(|t| t.at_begin.clone());
        let notice = self.end_transaction().err();
        if let Some(s) = at_begin {
            self.settings = s;
        }
        self.cursors.end_transaction();
        notice
    }

    fn end_transaction(&mut self) -> std::result::Result<(), Notice> {
        match self.txn.take() {
            Some(_) => Ok(()),
            None => Err(Notice::warning("25P01", "there is no transaction in progress")),
        }
    }

    fn txn_mut(&mut self, what: &str) -> Result<&mut Txn> {
        self.txn.as_mut().ok_or_else(|| {
            Error::data("25P01", format!("{what} can only be used in transaction blocks"))
        })
    }

    /// `SAVEPOINT name` (25P01 outside a transaction block).
    pub fn savepoint(&mut self, name: &str) -> Result<()> {
        let settings = self.settings.clone();
        let t = self.txn_mut("SAVEPOINT")?;
        let snap = Snapshot { settings, locals: t.locals.clone(), isolation: t.isolation.clone() };
        t.savepoints.push((name.to_string(), snap));
        Ok(())
    }

    /// The newest savepoint called `name` (3B001 when there is none).
    fn find_savepoint(t: &Txn, name: &str) -> Result<usize> {
        t.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| Error::data("3B001", format!("savepoint \"{name}\" does not exist")))
    }

    /// `RELEASE SAVEPOINT name`: forgets it and every later one, keeping the current values.
    pub fn release(&mut self, name: &str) -> Result<()> {
        let t = self.txn_mut("RELEASE SAVEPOINT")?;
        let i = Self::find_savepoint(t, name)?;
        t.savepoints.truncate(i);
        Ok(())
    }

    /// `ROLLBACK TO SAVEPOINT name`: settings as they were at the savepoint, which stays.
    pub fn rollback_to(&mut self, name: &str) -> Result<()> {
        let t = self.txn_mut("ROLLBACK TO SAVEPOINT")?;
        let i = Self::find_savepoint(t, name)?;
        t.savepoints.truncate(i + 1);
        let snap = t.savepoints[i].1.clone();
        t.locals = snap.locals;
        t.isolation = snap.isolation;
        self.settings = snap.settings;
        Ok(())
    }

    /// `SET TRANSACTION ISOLATION LEVEL x` inside a block (outside it only warns, 25P01).
    pub fn set_transaction_isolation(&mut self, level: Option<String>) -> Option<Notice> {
        match self.txn.as_mut() {
            Some(t) => {
                if level.is_some() {
                    t.isolation = level;
                }
                None
            }
            None => Some(Notice::warning(
                "25P01",
                "SET TRANSACTION can only be used in transaction blocks",
            )),
        }
    }

    /// The isolation level SHOW TRANSACTION ISOLATION LEVEL reports: the block's, else
    /// `default_transaction_isolation`, else read committed.
    pub fn isolation(&self) -> String {
        self.txn
            .as_ref()
            .and_then(|t| t.isolation.clone())
            .or_else(|| self.setting("default_transaction_isolation").map(str::to_string))
            .unwrap_or_else(|| "read committed".into())
    }

    /// The session parameters forwarded to the warehouse with each query. A startup
    /// `application_name` stays with tidemark (SHOW and current_setting answer it): forwarding
    /// every client's name would make pooled connections switch settings between clients.
    pub fn warehouse_params(&self) -> SessionParams {
        let mut params: SessionParams = self
            .effective()
            .into_iter()
            .filter(|(k, _)| FORWARDED_PARAMS.contains(&k.as_str()))
            .filter(|(k, _)| k != "application_name" || self.set_in_session(k))
            .collect();
        // Redshift takes statement_timeout only as integer milliseconds; PostgreSQL too.
        for (k, v) in params.iter_mut() {
            if let (true, Some(t)) = (k == "statement_timeout", timeout_of(v)) {
                *v = t.as_millis().to_string();
            }
        }
        if let Some(limit) = self.user_timeout {
            let own = self.setting("statement_timeout").and_then(timeout_of);
            let t = own.filter(|o| !o.is_zero() && *o < limit).unwrap_or(limit);
            params.retain(|(k, _)| k != "statement_timeout");
            params.push(("statement_timeout".into(), t.as_millis().to_string()));
            params.sort();
        }
        params
    }
}

/// A statement_timeout setting as a duration (PostgreSQL's plain numbers are milliseconds).
fn timeout_of(text: &str) -> Option<std::time::Duration> {
    let t = text.trim().trim_matches('\'');
    match t.parse::<u64>() {
        Ok(ms) => Some(std::time::Duration::from_millis(ms)),
        Err(_) => crate::config::parse_duration("statement_timeout", t).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_transactions_and_savepoints() {
        let mut s = Session::new("pgwire");
        s.defaults.insert("timezone".into(), "Europe/Berlin".into());
        s.set("search_path", "a", Scope::Session);
        assert!(s.set("search_path", "x", Scope::Local).is_some(), "SET LOCAL outside warns");
        assert_eq!(s.setting("search_path"), Some("a"));
        assert!(s.begin(Some("serializable".into())).is_none());
        assert_eq!(s.isolation(), "serializable");
        s.set("search_path", "b", Scope::Session);
        s.savepoint("p").unwrap();
        s.set("timezone", "UTC", Scope::Local);
        s.set("search_path", "c", Scope::Session);
        assert_eq!((s.setting("timezone"), s.setting("search_path")), (Some("UTC"), Some("c")));
        s.rollback_to("p").unwrap();
        assert_eq!(s.setting("timezone"), Some("Europe/Berlin"));
        assert_eq!(s.setting("search_path"), Some("b"));
        s.release("p").unwrap();
        assert_eq!(s.rollback_to("p").unwrap_err().sqlstate(), "3B001");
        assert!(s.rollback().is_none());
        assert_eq!(s.setting("search_path"), Some("a"), "ROLLBACK undoes SET");
        assert_eq!(s.isolation(), "read committed");
        assert!(s.commit().is_some(), "COMMIT outside a block warns");
        assert_eq!(s.savepoint("q").unwrap_err().sqlstate(), "25P01");
        s.begin(None);
        s.set("search_path", "d", Scope::Session);
        s.commit();
        assert_eq!(s.setting("search_path"), Some("d"), "COMMIT keeps SET");
        s.reset("search_path");
        s.reset("timezone");
        assert_eq!(s.setting("timezone"), Some("Europe/Berlin"), "RESET returns to startup");
        s.begin(None);
        assert_eq!(s.discard_all().unwrap_err().sqlstate(), "25001");
    }

    #[test]
    fn fast_path_ignores_cosmetic_settings() {
        let mut s = Session::new("pgwire");
        s.defaults.insert("application_name".into(), "pgbench".into());
        s.defaults.insert("extra_float_digits".into(), "2".into());
        assert!(!s.has_answer_settings());
        s.defaults.insert("timezone".into(), "Asia/Tokyo".into());
        assert!(s.has_answer_settings());
    }
}
