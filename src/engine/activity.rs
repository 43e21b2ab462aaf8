//! The recent statements: the last statements every frontend answered, each with who ran it,
//! from where, how (plan, legs, cache), how long it took, how many rows it sent and how it
//! ended — what PostgreSQL's `pg_stat_activity` shows of a running statement, kept for the
//! finished ones. The console's recent list and its split picture read them
//! (`GET /v1/recent`, `GET /v1/recent/{id}`). Bounded by a count and by bytes; nothing is
//! written to disk.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::model::column::Param;
use crate::model::freshness::{CacheStatus, Freshness, PlanKind};
use crate::plan::Explain;

/// Longest statement text kept (longer ones are cut, and say so).
const SQL_MAX: usize = 64 * 1024;
/// Bytes all records may hold together (statement texts, parameters, plans).
const BYTES_MAX: usize = 32 * 1024 * 1024;

/// One finished statement.
#[derive(Debug, Clone, Serialize)]
pub struct StatementRecord {
    /// Its id, increasing in the order statements started.
    pub id: u64,
    /// When it started (UTC, RFC 3339 with milliseconds; kept as microseconds since 1970,
    /// written as text only when read).
    #[serde(serialize_with = "rfc3339")]
    pub started_at: i64,
    /// Who ran it ("" when users are not configured).
    pub user: String,
    /// `rest`, `pgwire`, `flight` or `other`.
    pub frontend: &'static str,
    /// Its text as sent (cut at 64 KiB, see `sql_truncated`); null where hidden.
    pub sql: Option<Arc<str>>,
    /// True when `sql` was cut.
    pub sql_truncated: bool,
    /// Its bound parameters as text (null: SQL NULL); empty where hidden.
    pub params: Vec<Option<String>>,
    /// How it was answered; null when it failed before that was known.
    pub plan: Option<PlanKind>,
    /// Milliseconds from start until its answer was sent or it failed.
    pub ms: f64,
    /// Rows sent.
    pub rows: u64,
    /// Bytes of row data sent.
    pub bytes: u64,
    /// The answer cache's status (null: nothing cacheable).
    pub cache: Option<CacheStatus>,
    /// SQLSTATE of the error, when it failed.
    pub sqlstate: Option<String>,
    /// The error's message, when it failed; null where hidden.
    pub error: Option<String>,
    /// The answer's freshness: legs with rows, milliseconds and cache status.
    #[serde(serialize_with = "whole")]
    pub freshness: Option<Kept>,
    /// The plan it ran with: each leg's SQL and time range; null where hidden.
    pub explain: Option<Arc<Explain>>,
}

/// A statement's freshness as kept: whole, or for a statement the pass-through fast path
/// forwarded only what it is made of (written out whole when read: the fast path keeps
/// its per-statement cost to an allocation for the text).
// Most recorded statements are `Whole`: boxing it would add an allocation to each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Kept {
    /// The answer's freshness.
    Whole(Freshness),
    /// A forwarded statement: why it passed through, and how long until it was sent.
    Forwarded {
        /// Why it passes through.
        reason: Arc<str>,
        /// Milliseconds until the warehouse had it.
        elapsed_ms: f64,
    },
}

impl Kept {
    /// The freshness as every frontend reports it.
    pub fn freshness(&self) -> Freshness {
        match self {
            Kept::Whole(f) => f.clone(),
            Kept::Forwarded { reason, elapsed_ms } => Freshness::forwarded(reason, *elapsed_ms),
        }
    }

    /// How it was answered.
    pub fn plan(&self) -> PlanKind {
        match self {
            Kept::Whole(f) => f.plan,
            Kept::Forwarded { .. } => PlanKind::Passthrough,
        }
    }

    /// The answer cache's status.
    pub fn cache(&self) -> Option<CacheStatus> {
        match self {
            Kept::Whole(f) => f.cache,
            Kept::Forwarded { .. } => None,
        }
    }
}

fn whole<S: serde::Serializer>(k: &Option<Kept>, s: S) -> Result<S::Ok, S::Error> {
    k.as_ref().map(Kept::freshness).serialize(s)
}

/// Microseconds since 1970 as RFC 3339 text (`2026-12-05T17:52:12.123Z`).
fn rfc3339<S: serde::Serializer>(micros: &i64, s: S) -> Result<S::Ok, S::Error> {
    let t = chrono::DateTime::from_timestamp_micros(*micros).unwrap_or_default();
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl StatementRecord {
    /// Bytes this record holds, roughly.
    fn weight(&self) -> usize {
        let sql = self.sql.as_ref().map_or(0, |s| s.len());
        let params: usize = self.params.iter().map(|p| p.as_ref().map_or(8, |s| s.len())).sum();
        let plan: usize =
            self.explain.as_ref().map_or(0, |e| e.legs.iter().map(|l| l.sql.len()).sum());
        512 + sql + params + plan
    }

    /// The record as `viewer` may see it: another user's text, parameters, error message and
    /// plan are hidden unless the viewer may read all statements.
    pub fn seen_by(&self, viewer: &Viewer) -> StatementRecord {
        let mut r = self.clone();
        if !viewer.sees(&self.user) {
            r.sql = None;
            r.params = vec![];
            r.error = None;
            r.explain = None;
        }
        r
    }
}

/// Who asks for the recent statements.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The asking user ("" anonymous).
    pub user: String,
    /// Whether they may read every user's statements (`read_all_stats`, or no users).
    pub all: bool,
}

impl Viewer {
    /// Whether the viewer sees the text of `user`'s statements.
    pub fn sees(&self, user: &str) -> bool {
        self.all || self.user == user
    }
}

/// What to list of the recent statements.
#[derive(Debug, Clone, Default)]
pub struct RecentFilter {
    /// Only this user's.
    pub user: Option<String>,
    /// Only this frontend's.
    pub frontend: Option<String>,
    /// Only this plan class (`split`, `passthrough`, `local`).
    pub plan: Option<String>,
    /// Only failed (true) or only succeeded (false) ones.
    pub failed: Option<bool>,
    /// Only those whose visible text contains this (case-insensitive).
    pub text: Option<String>,
    /// Only those with an id below this (paging back).
    pub before: Option<u64>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl RecentFilter {
    fn keeps(&self, r: &StatementRecord) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.user, &r.user)
            && eq(&self.frontend, r.frontend)
            && eq(&self.plan, r.plan.map_or("", |p| p.name()))
            && self.failed.is_none_or(|f| f == r.sqlstate.is_some())
            && self.before.is_none_or(|b| r.id < b)
            && self.text.as_ref().is_none_or(|t| {
                r.sql.as_ref().is_some_and(|s| s.to_lowercase().contains(&t.to_lowercase()))
            })
    }
}

/// The last statements, newest last, bounded by count and bytes.
pub struct Activity {
    next: AtomicU64,
    keep: usize,
    /// The records with their weights, and the weights' sum.
    ring: Mutex<(VecDeque<(StatementRecord, usize)>, usize)>,
}

impl Activity {
    /// Keeps at most `keep` statements (0: none).
    pub fn new(keep: usize) -> Activity {
        Activity { next: AtomicU64::new(1), keep, ring: Mutex::new((VecDeque::new(), 0)) }
    }

    /// Whether statements are kept at all (`[console] recent` above 0).
    pub fn keeps(&self) -> bool {
        self.keep > 0
    }

    /// A new statement's id.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a finished statement, dropping the oldest beyond the bounds.
    pub fn push(&self, record: StatementRecord) {
        if self.keep == 0 {
            return;
        }
        let weight = record.weight();
        let mut dropped = Vec::new(); // freed after the lock is let go
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.0.push_back((record, weight));
        ring.1 += weight;
        while ring.0.len() > self.keep || (ring.1 > BYTES_MAX && ring.0.len() > 1) {
            if let Some((old, w)) = ring.0.pop_front() {
                ring.1 -= w;
                dropped.push(old);
            }
        }
        drop(ring);
        drop(dropped);
    }

    /// The statements `filter` keeps, newest first, as `viewer` may see them. A text filter
    /// only matches statements whose text the viewer sees.
    pub fn list(&self, filter: &RecentFilter, viewer: &Viewer) -> Vec<StatementRecord> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.0
            .iter()
            .rev()
            .map(|(r, _)| r.seen_by(viewer))
            .filter(|r| filter.keeps(r))
            .take(filter.limit)
            .collect()
    }

    /// One statement by id, as `viewer` may see it.
    pub fn get(&self, id: u64, viewer: &Viewer) -> Option<StatementRecord> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.0.iter().rev().find(|(r, _)| r.id == id).map(|(r, _)| r.seen_by(viewer))
    }
}

impl super::Engine {
    /// Who `user` is when reading the recent statements: everyone's text with
    /// `read_all_stats` or when no users are configured, else only their own.
    pub fn viewer(&self, user: &str) -> Viewer {
        let all = !self.access.required()
            || self.config.users.iter().any(|u| u.name == user && u.read_all_stats);
        Viewer { user: user.to_string(), all }
    }

    /// The recent statements `filter` keeps, newest first, as `viewer` may see them.
    pub fn recent(&self, filter: &RecentFilter, viewer: &Viewer) -> Vec<StatementRecord> {
        self.activity.list(filter, viewer)
    }

    /// One recent statement by id, as `viewer` may see it.
    pub fn recent_statement(&self, id: u64, viewer: &Viewer) -> Option<StatementRecord> {
        self.activity.get(id, viewer)
    }
}

/// A statement's text as kept: cut at [`SQL_MAX`] bytes on a character boundary.
pub fn kept_text(sql: &str) -> (Arc<str>, bool) {
    if sql.len() <= SQL_MAX {
        return (sql.into(), false);
    }
    let mut end = SQL_MAX;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    (sql[..end].into(), true)
}

/// Parameters as text for a record.
pub fn param_texts(params: &[Param]) -> Vec<Option<String>> {
    params
        .iter()
        .map(|p| match p {
            Param::Null => None,
            Param::Text(t) => Some(t.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, user: &str, sql: &str) -> StatementRecord {
        StatementRecord {
            id,
            started_at: 0,
            user: user.into(),
            frontend: "rest",
            sql: Some(sql.into()),
            sql_truncated: false,
            params: vec![Some("x".into())],
            plan: Some(PlanKind::Split),
            ms: 1.0,
            rows: 1,
            bytes: 1,
            cache: None,
            sqlstate: None,
            error: None,
            freshness: None,
            explain: None,
        }
    }

    #[test]
    fn keeps_the_newest_and_hides_others_text() {
        let a = Activity::new(2);
        for (i, u) in ["ann", "bob", "ann"].iter().enumerate() {
            a.push(record(i as u64 + 1, u, &format!("SELECT {i}")));
        }
        let ann = Viewer { user: "ann".into(), all: false };
        let all = RecentFilter { limit: 10, ..Default::default() };
        let seen = a.list(&all, &ann);
        assert_eq!(seen.iter().map(|r| r.id).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(seen[0].sql.as_deref(), Some("SELECT 2"));
        assert!(seen[1].sql.is_none() && seen[1].params.is_empty(), "bob's text is hidden");
        let admin = Viewer { user: "root".into(), all: true };
        assert_eq!(a.get(2, &admin).and_then(|r| r.sql).as_deref(), Some("SELECT 1"));
        let text = RecentFilter { text: Some("select 1".into()), limit: 10, ..all.clone() };
        assert!(a.list(&text, &ann).is_empty(), "a hidden text is not searched");
    }

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        let long = "é".repeat(SQL_MAX);
        let (kept, cut) = kept_text(&long);
        assert!(cut && kept.len() <= SQL_MAX && kept.chars().all(|c| c == 'é'));
    }
}
