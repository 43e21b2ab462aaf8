//! Folding a constant time expression to the instant the warehouse would compare with:
//! literals, bound parameters, the query's pinned now (already a literal, see
//! `split::substitute_now`), casts between date, timestamp and timestamptz, `AT TIME ZONE`,
//! `± interval`, `date ± n`, `date_trunc` and Redshift's `DATEADD`, evaluated in the
//! session's time zone. Whatever cannot be folded exactly is None, and the caller leaves
//! that bound to the warehouse (no windows, no chunk cut; the answer stays exact).
//!
//! Time zones come from the system's tz database (`/usr/share/zoneinfo`, the one Debian's
//! PostgreSQL uses). Near a zone's offset change (a day either side) local times are not
//! folded, because the warehouse's rules for skipped and repeated local times are its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, NaiveDateTime, Timelike};
use sqlparser::ast::{
    BinaryOperator, DataType, DateTimeField, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    TimezoneInfo, UnaryOperator, Value as SqlValue,
};

use crate::model::column::Param;
use crate::model::value::{is_utc_zone, parse_timestamp};

const MICROS: i64 = 1_000_000;
const DAY: i64 = 86_400 * MICROS;

/// A time zone tidemark can evaluate local times in.
#[derive(Clone, Debug, Default)]
pub enum Zone {
    /// UTC (and its synonyms): local time is the UTC wall clock.
    #[default]
    Utc,
    /// A named zone of the tz database.
    Named(Arc<tz::TimeZone>),
    /// A zone tidemark does not evaluate (a POSIX spec, an offset, an unknown name):
    /// nothing that depends on it is folded.
    Unknown,
}

impl Zone {
    /// The session zone named `name` as `SET TimeZone` takes it: UTC synonyms and
    /// `Area/Location` names of the tz database; anything else is [`Zone::Unknown`].
    pub fn named(name: &str) -> Zone {
        let name = name.trim().trim_matches('\'');
        if is_utc_zone(name) {
            return Zone::Utc;
        }
        let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || "_+-/".contains(c));
        let area = name.split('/').all(|p| p.starts_with(|c: char| c.is_ascii_alphabetic()));
        if !plain || !area || !name.contains('/') {
            return Zone::Unknown;
        }
        static ZONES: OnceLock<Mutex<HashMap<String, Zone>>> = OnceLock::new();
        let zones = ZONES.get_or_init(Default::default);
        let mut zones = zones.lock().unwrap_or_else(|e| e.into_inner());
        let load = || match tz::TimeZone::from_posix_tz(&format!(":{name}")) {
            Ok(z) => Zone::Named(Arc::new(z)),
            Err(_) => Zone::Unknown,
        };
        zones.entry(name.to_string()).or_insert_with(load).clone()
    }

    fn offset_at(&self, utc: i64) -> Option<i64> {
        match self {
            Zone::Utc => Some(0),
            Zone::Named(z) => {
                let t = z.find_local_time_type(utc.div_euclid(MICROS)).ok()?;
                Some(i64::from(t.ut_offset()) * MICROS)
            }
            Zone::Unknown => None,
        }
    }

    /// The offset at `utc` when it is the same a day before and after.
    fn steady_offset(&self, utc: i64) -> Option<i64> {
        let o = self.offset_at(utc)?;
        let same = |t: i64| self.offset_at(t) == Some(o);
        (same(utc.checked_sub(DAY)?) && same(utc.checked_add(DAY)?)).then_some(o)
    }

    /// The local wall clock (as µs of a timestamp) of the instant `utc`.
    pub fn to_local(&self, utc: i64) -> Option<i64> {
        utc.checked_add(self.steady_offset(utc)?)
    }

    /// The instant of the local wall-clock time `local`.
    pub fn to_utc(&self, local: i64) -> Option<i64> {
        let o = self.steady_offset(local)?;
        let utc = local.checked_sub(o)?;
        (self.steady_offset(utc)? == o).then_some(utc)
    }
}

/// How the session evaluates times.
#[derive(Clone, Debug, Default)]
pub struct TimeRules {
    /// The session's TimeZone.
    pub zone: Zone,
    /// Redshift's functions (`DATEADD`) are known.
    pub redshift: bool,
}

/// The type of a folded value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tz,
    Naive,
    Date,
}

/// A folded value: µs since 1970 (UTC for timestamptz, the wall clock otherwise; a date
/// is its midnight) or text whose type the comparison decides.
#[derive(Clone, Debug, PartialEq)]
enum Folded {
    At(i64, Kind),
    Text(String),
}

/// The value bound to placeholder `p` (`$1` is the first parameter), if any.
pub fn param<'a>(p: &str, params: &'a [Param]) -> Option<&'a Param> {
    let n: usize = p.strip_prefix('$')?.parse().ok()?;
    params.get(n.checked_sub(1)?)
}

/// The value of `e` as a bound on a time column of type timestamp (`naive`) or
/// timestamptz, with `params` bound; None when it is not a constant tidemark can fold.
pub fn bound(e: &Expr, naive: bool, params: &[Param], rules: &TimeRules) -> Option<i64> {
    let to = if naive { Kind::Naive } else { Kind::Tz };
    resolve(eval(e, params, rules)?, to, &rules.zone)
}

fn resolve(f: Folded, to: Kind, zone: &Zone) -> Option<i64> {
    match f {
        Folded::At(v, k) => convert(v, k, to, zone),
        Folded::Text(s) => text_as(&s, to, zone),
    }
}

/// The implicit or explicit cast of a value between the three time types.
fn convert(v: i64, from: Kind, to: Kind, zone: &Zone) -> Option<i64> {
    match (from, to) {
        (a, b) if a == b => Some(v),
        (Kind::Date, Kind::Naive) => Some(v),
        (Kind::Tz, Kind::Naive) => zone.to_local(v),
        (Kind::Naive | Kind::Date, Kind::Tz) => zone.to_utc(v),
        (Kind::Tz, Kind::Date) => Some(zone.to_local(v)?.div_euclid(DAY) * DAY),
        (Kind::Naive, Kind::Date) => Some(v.div_euclid(DAY) * DAY),
        _ => None,
    }
}

/// Text read as a value of type `to` (as the warehouse reads an untyped literal).
fn text_as(s: &str, to: Kind, zone: &Zone) -> Option<i64> {
    let t = s.trim();
    match to {
        Kind::Naive => parse_timestamp(t),
        Kind::Date => (t.len() == 10).then(|| parse_timestamp(t)).flatten(),
        Kind::Tz => match DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z")
            .or_else(|_| DateTime::parse_from_rfc3339(t))
        {
            Ok(d) => Some(d.timestamp_micros()),
            Err(_) => zone.to_utc(parse_timestamp(t)?),
        },
    }
}

fn kind_of(t: &DataType) -> Option<Kind> {
    match t {
        DataType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            Some(Kind::Naive)
        }
        DataType::Timestamp(_, _) => Some(Kind::Tz),
        DataType::Date => Some(Kind::Date),
        DataType::Custom(n, _) => match n.to_string().to_lowercase().as_str() {
            "timestamptz" => Some(Kind::Tz),
            "timestamp" => Some(Kind::Naive),
            _ => None,
        },
        _ => None,
    }
}

fn eval(e: &Expr, params: &[Param], rules: &TimeRules) -> Option<Folded> {
    let zone = &rules.zone;
    match e {
        Expr::Nested(x) => eval(x, params, rules),
        Expr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) => Some(Folded::Text(s.clone())),
            SqlValue::Placeholder(p) => match param(p, params)? {
                Param::Text(t) => Some(Folded::Text(t.clone())),
                Param::Null => None,
            },
            _ => None,
        },
        Expr::TypedString(ts) => {
            let k = kind_of(&ts.data_type)?;
            let SqlValue::SingleQuotedString(s) = &ts.value.value else { return None };
            Some(Folded::At(text_as(s, k, zone)?, k))
        }
        Expr::Cast { expr, data_type, format: None, .. } => {
            let k = kind_of(data_type)?;
            Some(Folded::At(resolve(eval(expr, params, rules)?, k, zone)?, k))
        }
        Expr::AtTimeZone { timestamp, time_zone } => {
            at_time_zone(timestamp, time_zone, params, rules)
        }
        Expr::BinaryOp { left, op: op @ (BinaryOperator::Plus | BinaryOperator::Minus), right } => {
            let minus = *op == BinaryOperator::Minus;
            let (v, k) = match eval(left, params, rules)? {
                Folded::At(v, k) => (v, k),
                // `'…' - interval` resolves to timestamptz - interval
                Folded::Text(s) => (text_as(&s, Kind::Tz, zone)?, Kind::Tz),
            };
            if let Some(n) = whole_number(right) {
                return (k == Kind::Date).then(|| {
                    let d = n.checked_mul(DAY)?;
                    Some(Folded::At(if minus { v.checked_sub(d)? } else { v.checked_add(d)? }, k))
                })?;
            }
            let iv = interval(right)?;
            let iv = if minus { iv.negate()? } else { iv };
            add_interval(v, k, iv, zone)
        }
        Expr::Function(_) => function(e, params, rules),
        _ => None,
    }
}

/// `x AT TIME ZONE 'z'` for UTC and `Area/Location` zones (not abbreviations, whose
/// meaning is the warehouse's table of them).
fn at_time_zone(ts: &Expr, z: &Expr, params: &[Param], rules: &TimeRules) -> Option<Folded> {
    let name = match z {
        Expr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) => s.as_str(),
            _ => return None,
        },
        _ => return None,
    };
    let z = Zone::named(name);
    let (v, k) = match eval(ts, params, rules)? {
        Folded::At(v, k) => (v, k),
        Folded::Text(s) => (text_as(&s, Kind::Tz, &rules.zone)?, Kind::Tz),
    };
    match k {
        Kind::Tz => Some(Folded::At(z.to_local(v)?, Kind::Naive)),
        Kind::Naive => Some(Folded::At(z.to_utc(v)?, Kind::Tz)),
        Kind::Date => None,
    }
}

/// An integer literal, possibly negated.
fn whole_number(e: &Expr) -> Option<i64> {
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => whole_number(expr)?.checked_neg(),
        Expr::UnaryOp { op: UnaryOperator::Plus, expr } => whole_number(expr),
        Expr::Nested(x) => whole_number(x),
        _ => None,
    }
}

/// An interval as the warehouse keeps it: months, days and microseconds apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interval {
    months: i64,
    days: i64,
    micros: i64,
}

impl Interval {
    fn negate(self) -> Option<Interval> {
        Some(Interval {
            months: self.months.checked_neg()?,
            days: self.days.checked_neg()?,
            micros: self.micros.checked_neg()?,
        })
    }

    fn add(&mut self, n: i64, unit: &str) -> Option<()> {
        let (months, days, micros) = match unit.to_lowercase().as_str() {
            "microsecond" | "microseconds" | "us" | "usec" | "usecs" => (0, 0, 1),
            "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => (0, 0, 1_000),
            "second" | "seconds" | "s" | "sec" | "secs" => (0, 0, MICROS),
            "minute" | "minutes" | "m" | "min" | "mins" => (0, 0, 60 * MICROS),
            "hour" | "hours" | "h" | "hr" | "hrs" => (0, 0, 3600 * MICROS),
            "day" | "days" | "d" => (0, 1, 0),
            "week" | "weeks" | "w" => (0, 7, 0),
            "month" | "months" | "mon" | "mons" => (1, 0, 0),
            "year" | "years" | "y" | "yr" | "yrs" => (12, 0, 0),
            _ => return None,
        };
        self.months = self.months.checked_add(n.checked_mul(months)?)?;
        self.days = self.days.checked_add(n.checked_mul(days)?)?;
        self.micros = self.micros.checked_add(n.checked_mul(micros)?)?;
        Some(())
    }
}

/// An interval literal: `INTERVAL '5 minutes'`, `INTERVAL '1 day 2 hours'`,
/// `INTERVAL '5' MINUTE`. None for other forms.
pub fn interval(e: &Expr) -> Option<Interval> {
    let Expr::Interval(iv) = e else { return None };
    if iv.last_field.is_some() {
        return None;
    }
    let text = match &*iv.value {
        Expr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) => s.clone(),
            SqlValue::Number(n, _) => n.clone(),
            _ => return None,
        },
        _ => return None,
    };
    let mut out = Interval::default();
    if let Some(f) = &iv.leading_field {
        let unit = match f {
            DateTimeField::Second | DateTimeField::Seconds => "second",
            DateTimeField::Minute | DateTimeField::Minutes => "minute",
            DateTimeField::Hour | DateTimeField::Hours => "hour",
            DateTimeField::Day | DateTimeField::Days => "day",
            DateTimeField::Week(None) | DateTimeField::Weeks => "week",
            DateTimeField::Month | DateTimeField::Months => "month",
            DateTimeField::Year | DateTimeField::Years => "year",
            _ => return None,
        };
        out.add(text.trim().parse().ok()?, unit)?;
        return Some(out);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return None;
    }
    for pair in words.chunks(2) {
        out.add(pair[0].parse().ok()?, pair[1])?;
    }
    Some(out)
}

/// `v + iv` as the warehouse adds: months (clamped to the month's end), then days, in
/// local time for a timestamptz, then the time part. A date becomes a timestamp.
fn add_interval(v: i64, k: Kind, iv: Interval, zone: &Zone) -> Option<Folded> {
    let calendar = |local: i64| add_days(add_months(local, iv.months)?, iv.days);
    match k {
        Kind::Naive | Kind::Date => {
            Some(Folded::At(calendar(v)?.checked_add(iv.micros)?, Kind::Naive))
        }
        Kind::Tz if iv.months == 0 && iv.days == 0 => {
            Some(Folded::At(v.checked_add(iv.micros)?, Kind::Tz))
        }
        Kind::Tz => {
            let utc = zone.to_utc(calendar(zone.to_local(v)?)?)?;
            Some(Folded::At(utc.checked_add(iv.micros)?, Kind::Tz))
        }
    }
}

fn naive(micros: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc())
}

fn add_days(local: i64, days: i64) -> Option<i64> {
    local.checked_add(days.checked_mul(DAY)?)
}

fn add_months(local: i64, months: i64) -> Option<i64> {
    if months == 0 {
        return Some(local);
    }
    let t = naive(local)?;
    let total = i64::from(t.year()) * 12 + i64::from(t.month0()) + months;
    let (y, m) = (i32::try_from(total.div_euclid(12)).ok()?, total.rem_euclid(12) as u32 + 1);
    let last = (28..=31).rev().find(|d| NaiveDate::from_ymd_opt(y, m, *d).is_some())?;
    let date = NaiveDate::from_ymd_opt(y, m, t.day().min(last))?;
    Some(date.and_time(t.time()).and_utc().timestamp_micros())
}

fn args(e: &Expr) -> Option<(String, Vec<&Expr>)> {
    let Expr::Function(f) = e else { return None };
    if f.name.0.len() != 1 || f.over.is_some() || f.filter.is_some() {
        return None;
    }
    let name = f.name.0[0].as_ident()?.value.to_lowercase();
    let FunctionArguments::List(l) = &f.args else { return None };
    if l.duplicate_treatment.is_some() || !l.clauses.is_empty() {
        return None;
    }
    let args = l
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some(x),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((name, args))
}

fn function(e: &Expr, params: &[Param], rules: &TimeRules) -> Option<Folded> {
    let (name, a) = args(e)?;
    match (name.as_str(), a.as_slice()) {
        ("date_trunc", [unit, x]) => {
            let unit = parse_unit(&word(unit)?)?;
            match eval(x, params, rules)? {
                Folded::At(v, Kind::Naive) => Some(Folded::At(truncate(v, unit), Kind::Naive)),
                Folded::At(v, Kind::Tz) => {
                    let z = &rules.zone;
                    Some(Folded::At(z.to_utc(truncate(z.to_local(v)?, unit))?, Kind::Tz))
                }
                _ => None,
            }
        }
        ("dateadd", [part, n, x]) if rules.redshift => {
            let mut iv = Interval::default();
            iv.add(whole_number(n)?, &date_part(&word(part)?)?)?;
            if iv.months != 0 {
                return None; // Redshift's month-end rule is its own
            }
            let v = match eval(x, params, rules)? {
                Folded::At(v, Kind::Naive | Kind::Date) => v,
                Folded::Text(s) => parse_timestamp(&s)?,
                Folded::At(_, Kind::Tz) => return None,
            };
            add_interval(v, Kind::Naive, iv, &rules.zone)
        }
        _ => None,
    }
}

/// A unit written as a string or a bare word.
fn word(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::Identifier(i) if i.quote_style.is_none() => Some(i.value.clone()),
        _ => None,
    }
}

/// Redshift's date part names and abbreviations, as interval units.
fn date_part(p: &str) -> Option<String> {
    let p = p.to_lowercase();
    Some(
        match p.as_str() {
            "microsecond" | "microseconds" | "microsec" | "microsecs" | "microsecnd"
            | "usecond" | "useconds" | "us" | "usec" | "usecs" => "microsecond",
            "millisecond" | "milliseconds" | "millisec" | "millisecs" | "millisecon" | "msec"
            | "msecs" | "msecond" | "mseconds" | "ms" => "millisecond",
            "second" | "seconds" | "s" | "sec" | "secs" => "second",
            "minute" | "minutes" | "m" | "min" | "mins" => "minute",
            "hour" | "hours" | "h" | "hr" | "hrs" => "hour",
            "day" | "days" | "d" => "day",
            "week" | "weeks" | "w" => "week",
            _ => return None,
        }
        .to_string(),
    )
}

/// Truncation units of date_trunc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// `second`
    Second,
    /// `minute`
    Minute,
    /// `hour`
    Hour,
    /// `day`
    Day,
    /// `week` (from Monday)
    Week,
    /// `month`
    Month,
    /// `quarter`
    Quarter,
    /// `year`
    Year,
}

/// A date_trunc unit by name.
pub fn parse_unit(s: &str) -> Option<Unit> {
    Some(match s.to_lowercase().as_str() {
        "second" => Unit::Second,
        "minute" => Unit::Minute,
        "hour" => Unit::Hour,
        "day" => Unit::Day,
        "week" => Unit::Week,
        "month" => Unit::Month,
        "quarter" => Unit::Quarter,
        "year" => Unit::Year,
        _ => return None,
    })
}

/// date_trunc of a timestamp (µs since 1970, no time zone).
pub fn truncate(micros: i64, unit: Unit) -> i64 {
    let Some(t) = naive(micros) else {
        return micros;
    };
    let day = t.date();
    let at = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or(t);
    let out: NaiveDateTime = match unit {
        Unit::Second => t.with_nanosecond(0).unwrap_or(t),
        Unit::Minute => t.with_nanosecond(0).and_then(|x| x.with_second(0)).unwrap_or(t),
        Unit::Hour => t
            .with_nanosecond(0)
            .and_then(|x| x.with_second(0))
            .and_then(|x| x.with_minute(0))
            .unwrap_or(t),
        Unit::Day => at(day),
        Unit::Week => at(day - ChronoDuration::days(day.weekday().num_days_from_monday() as i64)),
        Unit::Month => at(day.with_day(1).unwrap_or(day)),
        Unit::Quarter => {
            let m = (day.month() - 1) / 3 * 3 + 1;
            at(day.with_day(1).and_then(|d| d.with_month(m)).unwrap_or(day))
        }
        Unit::Year => at(day.with_day(1).and_then(|d| d.with_month(1)).unwrap_or(day)),
    };
    out.and_utc().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dialect;

    fn at(s: &str) -> i64 {
        parse_timestamp(s).unwrap()
    }

    fn fold(sql: &str, naive: bool, rules: &TimeRules) -> Option<i64> {
        let e = crate::plan::parse_expr(Dialect::Redshift, sql).unwrap();
        bound(&e, naive, &[], rules)
    }

    fn zone(name: &str) -> TimeRules {
        TimeRules { zone: Zone::named(name), redshift: true }
    }

    const NOW: &str = "CAST('2026-12-01 10:20:30+00' AS TIMESTAMPTZ)";

    #[test]
    fn truncates_like_postgres() {
        let t = at("2026-11-26 13:47:12.5");
        assert_eq!(truncate(t, Unit::Minute), at("2026-11-26 13:47:00"));
        assert_eq!(truncate(t, Unit::Hour), at("2026-11-26 13:00:00"));
        assert_eq!(truncate(t, Unit::Week), at("2026-11-23 00:00:00"));
        assert_eq!(truncate(t, Unit::Quarter), at("2026-10-01 00:00:00"));
    }

    #[test]
    fn intervals_keep_months_days_and_time_apart() {
        let iv = |s: &str| interval(&crate::plan::parse_expr(Dialect::Postgres, s).unwrap());
        let m = |months, days, micros| Some(Interval { months, days, micros });
        assert_eq!(iv("INTERVAL '5 minutes'"), m(0, 0, 300 * MICROS));
        assert_eq!(iv("INTERVAL '5' MINUTE"), m(0, 0, 300 * MICROS));
        assert_eq!(iv("INTERVAL '1 day 2 hours'"), m(0, 1, 7200 * MICROS));
        assert_eq!(iv("INTERVAL '1 mon 3 ms'"), m(1, 0, 3000));
        assert_eq!(iv("INTERVAL '1.5 hours'"), None);
        assert_eq!(iv("INTERVAL '2 fortnights'"), None);
    }

    #[test]
    fn utc_session_folds_every_spelling_of_now() {
        let utc = zone("UTC");
        let want = at("2026-12-01 09:20:30");
        for sql in [
            format!("{NOW} - INTERVAL '1 hour'"),
            format!("CAST({NOW} AS TIMESTAMP) - INTERVAL '60 minutes'"),
            format!("({NOW} AT TIME ZONE 'UTC') - INTERVAL '1 hour'"),
            format!("dateadd(hour, -1, CAST({NOW} AS TIMESTAMP))"),
            format!("dateadd('minute', -60, CAST({NOW} AS TIMESTAMP))"),
        ] {
            assert_eq!(fold(&sql, true, &utc), Some(want), "{sql}");
            assert_eq!(fold(&sql, false, &utc), Some(want), "{sql}");
        }
        let day = format!("CAST({NOW} AS DATE) - 1");
        assert_eq!(fold(&day, true, &utc), Some(at("2026-11-30 00:00:00")));
        let trunc = format!("date_trunc('day', {NOW}) - INTERVAL '1 day'");
        assert_eq!(fold(&trunc, false, &utc), Some(at("2026-11-30 00:00:00")));
        let month = format!("{NOW} - INTERVAL '1 month'");
        assert_eq!(fold(&month, false, &utc), Some(at("2026-11-01 10:20:30")));
    }

    #[test]
    fn other_zones_fold_in_local_time() {
        // Kolkata is UTC+05:30 all year
        let k = zone("Asia/Kolkata");
        let local = format!("CAST({NOW} AS TIMESTAMP) - INTERVAL '1 hour'");
        assert_eq!(fold(&local, true, &k), Some(at("2026-12-01 14:50:30")));
        // the same bound against a timestamptz column is the instant again
        assert_eq!(fold(&local, false, &k), Some(at("2026-12-01 09:20:30")));
        // current_date is the local date; its midnight is local midnight
        let today = format!("CAST({NOW} AS DATE)");
        assert_eq!(fold(&today, true, &k), Some(at("2026-12-01 00:00:00")));
        assert_eq!(fold(&today, false, &k), Some(at("2026-11-30 18:30:00")));
        let trunc = format!("date_trunc('day', {NOW})");
        assert_eq!(fold(&trunc, false, &k), Some(at("2026-11-30 18:30:00")));
        // an untyped literal against timestamptz is local time
        assert_eq!(fold("'2026-12-01 05:30:00'", false, &k), Some(at("2026-12-01 00:00:00")));
        assert_eq!(fold("'2026-12-01 05:30:00+00'", false, &k), Some(at("2026-12-01 05:30:00")));
    }

    #[test]
    fn offset_changes_and_unknown_zones_are_not_folded() {
        // New York leaves daylight time on 2026-11-01
        let ny = zone("America/New_York");
        let near = "CAST('2026-11-01 12:00:00+00' AS TIMESTAMPTZ)";
        assert_eq!(fold(&format!("CAST({near} AS TIMESTAMP)"), true, &ny), None);
        let far = format!("CAST({NOW} AS TIMESTAMP)");
        assert_eq!(fold(&far, true, &ny), Some(at("2026-12-01 05:20:30")));
        for name in ["EST", "+02", "UTC+3", "Nowhere/Atlantis", "../etc/passwd"] {
            assert!(matches!(Zone::named(name), Zone::Unknown), "{name}");
            assert_eq!(fold(&far, true, &zone(name)), None, "{name}");
        }
        // the instant itself needs no zone
        assert_eq!(fold(NOW, false, &zone("+02")), Some(at("2026-12-01 10:20:30")));
    }

    #[test]
    fn months_clamp_to_the_month_end() {
        let utc = zone("UTC");
        let e = "CAST('2026-03-31 08:00:00' AS TIMESTAMP) - INTERVAL '1 month'";
        assert_eq!(fold(e, true, &utc), Some(at("2026-02-28 08:00:00")));
        // Redshift's own month rule is not assumed
        let e = "dateadd(month, -1, CAST('2026-03-31 08:00:00' AS TIMESTAMP))";
        assert_eq!(fold(e, true, &utc), None);
    }
}
