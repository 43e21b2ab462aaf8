//! The window leg: which split aggregates the Redis windows can answer, which buckets they
//! read, and how bucket hashes become leg rows shaped like the SQL legs' partials.
//!
//! A query is window-eligible when every group key is a window dimension or a time bucket
//! no finer than the bucket width, every filter is on a dimension (=, <>, IN, NOT IN,
//! IS [NOT] NULL) or on the time column, and every partial aggregate comes from a stored
//! measure. Whatever cannot be proven exact here returns a reason and the speed table
//! answers instead.

use std::collections::HashMap;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart,
    Value as SqlValue,
};

use super::prune::is_time;
use super::timefold::{self, parse_unit, truncate, TimeRules, Unit};
use crate::catalog::ColumnInfo;
use crate::config::{Measure, WindowsConfig};
use crate::model::column::Param;
use crate::model::decimal::Decimal;
use crate::model::value::Value;
use crate::windows::{reader::Bucket, DIM_SEP, NULL_DIM};

/// Why windows cannot answer a query.
pub type Reason = String;

const MICROS: i64 = 1_000_000;

/// Type of a dimension column as the SQL legs return it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DimKind {
    Text,
    Int,
    Bool,
}

/// Type of a measure column as the SQL legs return its sum/min/max.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NumKind {
    /// int2/int4: sum is bigint.
    Small,
    /// int8: sum is numeric.
    Big,
    /// numeric(p, s): stored in units of 10^-s.
    Numeric(u32),
}

/// The windows configuration of one table resolved against its columns.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// Bucket width in microseconds.
    pub bucket: i64,
    /// Retention in microseconds.
    pub retention: i64,
    /// True for a `timestamp` (without time zone) time column.
    pub naive: bool,
    dims: Vec<(String, DimKind)>,
    measures: Vec<Measure>,
    columns: HashMap<String, NumKind>,
}

fn dim_kind(ty: &str) -> Option<DimKind> {
    match ty {
        "text" | "varchar" | "name" => Some(DimKind::Text),
        "int2" | "int4" | "int8" => Some(DimKind::Int),
        "bool" => Some(DimKind::Bool),
        _ => None,
    }
}

fn num_kind(c: &ColumnInfo) -> Option<NumKind> {
    match (c.ty.as_str(), c.scale) {
        ("int2" | "int4", _) => Some(NumKind::Small),
        ("int8", _) => Some(NumKind::Big),
        ("numeric", Some(s)) => Some(NumKind::Numeric(s)),
        _ => None,
    }
}

impl WindowSpec {
    /// Resolves `cfg` against the table's columns; errors name the offending key.
    pub fn resolve(
        cfg: &WindowsConfig,
        columns: &[ColumnInfo],
        time_column: &str,
    ) -> Result<WindowSpec, String> {
        let find = |name: &str| columns.iter().find(|c| c.name == name);
        let naive = match find(time_column).map(|c| c.ty.as_str()) {
            Some("timestamp") => true,
            Some("timestamptz") => false,
            other => return Err(format!("windows need a timestamp time column, not {other:?}")),
        };
        let mut dims = Vec::new();
        for d in &cfg.dimensions {
            let c = find(d).ok_or_else(|| format!("windows dimension {d:?} is not a column"))?;
            let k = dim_kind(&c.ty).ok_or_else(|| {
                format!(
                    "windows dimension {d:?} has type {}; use text, varchar, integer or boolean",
                    c.ty
                )
            })?;
            dims.push((d.clone(), k));
        }
        let measures = cfg.parsed_measures().map_err(|e| e.to_string())?;
        if !measures.contains(&Measure::Count) {
            return Err(
                "windows measures must include count (it decides which groups exist)".into()
            );
        }
        let mut kinds = HashMap::new();
        for m in &measures {
            if let Some(col) = m.column() {
                let c = find(col)
                    .ok_or_else(|| format!("windows measure column {col:?} is not a column"))?;
                let k = num_kind(c).ok_or_else(|| {
                    format!("windows measure column {col:?} has type {}; use an integer or numeric(p,s)", c.ty)
                })?;
                kinds.insert(col.to_string(), k);
            }
        }
        Ok(WindowSpec {
            bucket: cfg.bucket_secs().map_err(|e| e.to_string())? * MICROS,
            retention: cfg.retention_secs().map_err(|e| e.to_string())? * MICROS,
            naive,
            dims,
            measures,
            columns: kinds,
        })
    }

    fn dim(&self, e: &Expr, q: &Ident) -> Option<usize> {
        let name = column_name(e, q)?;
        self.dims.iter().position(|(d, _)| *d == name)
    }
}

/// A column reference `col` or `qualifier.col`, folded like PostgreSQL folds names.
fn column_name(e: &Expr, q: &Ident) -> Option<String> {
    let fold = |i: &Ident| {
        if i.quote_style.is_some() {
            i.value.clone()
        } else {
            i.value.to_lowercase()
        }
    };
    match e {
        Expr::Identifier(i) => Some(fold(i)),
        Expr::CompoundIdentifier(p)
            if p.len() == 2 && p[0].value.eq_ignore_ascii_case(&q.value) =>
        {
            Some(fold(&p[1]))
        }
        Expr::Nested(x) => column_name(x, q),
        _ => None,
    }
}

/// Where a group key comes from.
#[derive(Debug, Clone, Copy)]
enum KeySrc {
    Dim(usize),
    Trunc(Unit),
}

/// Where a partial aggregate comes from.
#[derive(Debug, Clone)]
enum PartSrc {
    Count,
    NonNull(String),
    Sum(String),
    Min(String),
    Max(String),
}

/// A filter on one dimension.
#[derive(Debug, Clone)]
enum DimTest {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    IsNull,
    NotNull,
}

/// A bound on the time column: `time <op> micros`.
#[derive(Debug, Clone)]
struct TimeBound {
    op: BinaryOperator,
    at: i64,
}

/// A query the windows can answer: key and partial sources, filters and time bounds.
#[derive(Debug, Clone)]
pub struct WindowQuery {
    keys: Vec<KeySrc>,
    parts: Vec<PartSrc>,
    dim_tests: Vec<(usize, DimTest)>,
    bounds: Vec<TimeBound>,
}

/// What the split planner knows about an aggregate over the logical table alone.
#[derive(Debug, Clone)]
pub struct AggShape {
    /// Per-group columns of the legs (keys first).
    pub cols: Vec<Expr>,
    /// Number of group keys among `cols`.
    pub n_keys: usize,
    /// Partial aggregates: function name and argument (None for `*`).
    pub partials: Vec<(String, Option<Expr>)>,
    /// WHERE clause.
    pub selection: Option<Expr>,
    /// Name the logical table is referenced by.
    pub qualifier: Ident,
    /// The time column.
    pub time_column: String,
}

/// Decides whether the windows can answer `shape`; `params` bind `$n`.
pub fn analyze(
    shape: &AggShape,
    spec: &WindowSpec,
    (params, rules): (&[Param], &TimeRules),
) -> Result<WindowQuery, Reason> {
    if shape.cols.len() != shape.n_keys {
        return Err("an output expression is not a group key".into());
    }
    let keys = shape.cols.iter().map(|c| key_src(c, shape, spec)).collect::<Result<_, _>>()?;
    let parts = shape
        .partials
        .iter()
        .map(|(f, a)| part_src(f, a.as_ref(), shape, spec))
        .collect::<Result<_, _>>()?;
    let mut wq = WindowQuery { keys, parts, dim_tests: vec![], bounds: vec![] };
    let mut conj = Vec::new();
    if let Some(e) = &shape.selection {
        conjuncts(e, &mut conj);
    }
    for c in conj {
        filter(c, (shape, spec), (params, rules), &mut wq)?;
    }
    Ok(wq)
}

/// The largest constant lower bound (`>=`, `>`, BETWEEN) the WHERE clause puts on the time
/// column, in microseconds; None when there is none that evaluates without the session
/// time zone.
pub fn lower_bound(
    selection: Option<&Expr>,
    q: &Ident,
    time_column: &str,
    naive: bool,
    (params, rules): (&[Param], &TimeRules),
) -> Option<i64> {
    let mut conj = Vec::new();
    if let Some(e) = selection {
        conjuncts(e, &mut conj);
    }
    let is_t = |x: &Expr| is_time(x, q, time_column);
    conj.into_iter()
        .filter_map(|c| match c {
            Expr::BinaryOp { left, op, right } if is_t(left) || is_t(right) => {
                let (op, other) = if is_t(left) { (op.clone(), right) } else { (flip(op), left) };
                matches!(op, BinaryOperator::Gt | BinaryOperator::GtEq)
                    .then(|| timefold::bound(other, naive, params, rules))
                    .flatten()
            }
            Expr::Between { expr, negated: false, low, .. } if is_t(expr) => {
                timefold::bound(low, naive, params, rules)
            }
            _ => None,
        })
        .max()
}

/// The WHERE clause without the constant lower bounds on the time column that are at or
/// below `upto` (a piece starting at `upto` implies them), so pieces of different sliding
/// ranges have the same SQL. None when nothing is left.
pub fn without_lower_bounds(
    selection: Option<&Expr>,
    q: &Ident,
    time_column: &str,
    naive: bool,
    (params, rules): (&[Param], &TimeRules),
    upto: i64,
) -> Option<Expr> {
    let mut conj = Vec::new();
    conjuncts(selection?, &mut conj);
    let is_t = |x: &Expr| is_time(x, q, time_column);
    // `time >= v` with v <= upto, or `time > v` with v < upto; nothing else (BETWEEN also
    // bounds from above)
    let implied = |c: &Expr| match c {
        Expr::BinaryOp { left, op, right } if is_t(left) || is_t(right) => {
            let (op, other) = if is_t(left) { (op.clone(), right) } else { (flip(op), left) };
            match (op, timefold::bound(other, naive, params, rules)) {
                (BinaryOperator::GtEq, Some(v)) => v <= upto,
                (BinaryOperator::Gt, Some(v)) => v < upto,
                _ => false,
            }
        }
        _ => false,
    };
    conj.into_iter().filter(|c| !implied(c)).map(|c| Expr::Nested(Box::new(c.clone()))).reduce(
        |a, b| Expr::BinaryOp { left: Box::new(a), op: BinaryOperator::And, right: Box::new(b) },
    )
}

fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(x) => conjuncts(x, out),
        other => out.push(other),
    }
}

fn key_src(e: &Expr, shape: &AggShape, spec: &WindowSpec) -> Result<KeySrc, Reason> {
    if let Some(i) = spec.dim(e, &shape.qualifier) {
        return Ok(KeySrc::Dim(i));
    }
    let Expr::Function(f) = e else {
        return Err(format!("group key {e} is not a window dimension or time bucket"));
    };
    let name = f.name.0.last().and_then(ObjectNamePart::as_ident).map(|i| i.value.to_lowercase());
    let args = match &f.args {
        FunctionArguments::List(l)
            if name.as_deref() == Some("date_trunc") && l.args.len() == 2 =>
        {
            &l.args
        }
        _ => return Err(format!("group key {e} is not a window dimension or time bucket")),
    };
    let (unit, col) = match (&args[0], &args[1]) {
        (
            FunctionArg::Unnamed(FunctionArgExpr::Expr(u)),
            FunctionArg::Unnamed(FunctionArgExpr::Expr(c)),
        ) => (u, c),
        _ => return Err("date_trunc argument form".into()),
    };
    if !is_time(col, &shape.qualifier, &shape.time_column) {
        return Err("date_trunc of a column other than the time column".into());
    }
    if !spec.naive {
        return Err("date_trunc on timestamptz depends on the session time zone".into());
    }
    let unit = match unit {
        Expr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) => parse_unit(s),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| format!("date_trunc unit {unit}"))?;
    let span = match unit {
        Unit::Second => MICROS,
        Unit::Minute => 60 * MICROS,
        Unit::Hour => 3600 * MICROS,
        _ => 86_400 * MICROS,
    };
    if span % spec.bucket != 0 {
        return Err("time bucket finer than the windows bucket".into());
    }
    Ok(KeySrc::Trunc(unit))
}

fn part_src(
    f: &str,
    arg: Option<&Expr>,
    shape: &AggShape,
    spec: &WindowSpec,
) -> Result<PartSrc, Reason> {
    let col = match arg {
        None if f == "count" => return Ok(PartSrc::Count),
        None => return Err(format!("{f}(*)")),
        Some(a) => column_name(a, &shape.qualifier)
            .ok_or_else(|| format!("{f}() of an expression the windows do not keep"))?,
    };
    let has = |m: Measure| spec.measures.contains(&m);
    let src = match f {
        "count" if has(Measure::Sum(col.clone())) => PartSrc::NonNull(col),
        "sum" if has(Measure::Sum(col.clone())) => PartSrc::Sum(col),
        "min" if has(Measure::Min(col.clone())) => PartSrc::Min(col),
        "max" if has(Measure::Max(col.clone())) => PartSrc::Max(col),
        _ => return Err(format!("{f}({col}) is not a windows measure")),
    };
    Ok(src)
}

fn filter(
    e: &Expr,
    (shape, spec): (&AggShape, &WindowSpec),
    (params, rules): (&[Param], &TimeRules),
    wq: &mut WindowQuery,
) -> Result<(), Reason> {
    let q = &shape.qualifier;
    let is_t = |x: &Expr| is_time(x, q, &shape.time_column);
    let unfit = || format!("filter {e} cannot be applied to windows");
    match e {
        Expr::BinaryOp { left, op, right } if is_t(left) || is_t(right) => {
            let (op, other) = if is_t(left) { (op.clone(), right) } else { (flip(op), left) };
            if !matches!(
                op,
                BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq
            ) {
                return Err(unfit());
            }
            let at = timefold::bound(other, spec.naive, params, rules).ok_or_else(unfit)?;
            wq.bounds.push(TimeBound { op, at });
        }
        Expr::Between { expr, negated: false, low, high } if is_t(expr) => {
            let lo = timefold::bound(low, spec.naive, params, rules).ok_or_else(unfit)?;
            let hi = timefold::bound(high, spec.naive, params, rules).ok_or_else(unfit)?;
            wq.bounds.push(TimeBound { op: BinaryOperator::GtEq, at: lo });
            wq.bounds.push(TimeBound { op: BinaryOperator::LtEq, at: hi });
        }
        _ => {
            let (i, test) = dim_test(e, q, spec, params).ok_or_else(unfit)?;
            wq.dim_tests.push((i, test));
        }
    }
    Ok(())
}

fn flip(op: &BinaryOperator) -> BinaryOperator {
    match op {
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        other => other.clone(),
    }
}

/// A literal (or bound parameter) compared with a dimension, as the dimension's text.
fn dim_literal(e: &Expr, kind: DimKind, params: &[Param]) -> Option<String> {
    let text = match e {
        Expr::Nested(x) => return dim_literal(x, kind, params),
        Expr::Value(v) => match (&v.value, kind) {
            (SqlValue::SingleQuotedString(s), DimKind::Text) => s.clone(),
            (SqlValue::Number(n, _), DimKind::Int) => n.clone(),
            (SqlValue::Placeholder(p), _) => match timefold::param(p, params)? {
                Param::Text(t) => t.clone(),
                Param::Null => return None,
            },
            _ => return None,
        },
        Expr::UnaryOp { op: sqlparser::ast::UnaryOperator::Minus, expr }
            if kind == DimKind::Int =>
        {
            format!("-{}", dim_literal(expr, kind, params)?)
        }
        _ => return None,
    };
    match kind {
        DimKind::Text => Some(text),
        DimKind::Int => text.trim().parse::<i64>().ok().map(|v| v.to_string()),
        DimKind::Bool => None,
    }
}

fn dim_test(e: &Expr, q: &Ident, spec: &WindowSpec, params: &[Param]) -> Option<(usize, DimTest)> {
    let kind_of = |i: usize| spec.dims[i].1;
    match e {
        Expr::IsNull(x) => Some((spec.dim(x, q)?, DimTest::IsNull)),
        Expr::IsNotNull(x) => Some((spec.dim(x, q)?, DimTest::NotNull)),
        Expr::BinaryOp { left, op, right } => {
            let (i, lit) = match (spec.dim(left, q), spec.dim(right, q)) {
                (Some(i), None) => (i, right),
                (None, Some(i)) => (i, left),
                _ => return None,
            };
            let v = dim_literal(lit, kind_of(i), params)?;
            match op {
                BinaryOperator::Eq => Some((i, DimTest::Eq(v))),
                BinaryOperator::NotEq => Some((i, DimTest::Ne(v))),
                _ => None,
            }
        }
        Expr::In { expr, target: sqlparser::ast::InTarget::List(list), negated, global: false } => {
            let i = spec.dim(expr, q)?;
            let vals = list
                .iter()
                .map(|x| dim_literal(x, kind_of(i), params))
                .collect::<Option<Vec<_>>>()?;
            Some((i, if *negated { DimTest::NotIn(vals) } else { DimTest::In(vals) }))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- buckets

/// The buckets a query reads: from `from` (where the speed leg stops) on.
#[derive(Debug, Clone)]
pub struct BucketPlan {
    /// S: the speed leg reads `time < S`, the windows every bucket from S on.
    pub from: i64,
    /// Bucket starts (epoch seconds) to read, after time bounds dropped empty ones.
    pub starts: Vec<i64>,
}

/// Chooses the buckets: S = H aligned down to a bucket (or W when W is past it and
/// aligned); every bucket from S through the one after `now` (a little clock skew),
/// except those the query's time bounds exclude. Fails when a bound cuts a bucket or
/// buckets from S on may have expired.
pub fn buckets(
    wq: &WindowQuery,
    spec: &WindowSpec,
    h: i64,
    w: i64,
    now: i64,
) -> Result<BucketPlan, Reason> {
    let b = spec.bucket;
    let aligned_h = h.div_euclid(b) * b;
    let from = if aligned_h >= w {
        aligned_h
    } else if w.rem_euclid(b) == 0 {
        w
    } else {
        return Err("the high-water mark is behind an unaligned batch watermark".into());
    };
    if from < now - (spec.retention - b) {
        return Err("the high-water mark is older than the windows retention".into());
    }
    let last = now.div_euclid(b) * b + b;
    let mut starts = Vec::new();
    let mut s = from;
    while s <= last {
        match bucket_in(wq, s, b) {
            Some(true) => starts.push(s / MICROS),
            Some(false) => {}
            None => return Err("a time bound cuts a windows bucket".into()),
        }
        s += b;
    }
    Ok(BucketPlan { from, starts })
}

/// Whether every instant of [s, s + b) passes the bounds (Some(true)), none does
/// (Some(false)), or some do (None).
fn bucket_in(wq: &WindowQuery, s: i64, b: i64) -> Option<bool> {
    let (lo, hi) = (s, s + b - 1);
    let mut all = true;
    for t in &wq.bounds {
        let (pass_lo, pass_hi) = match t.op {
            BinaryOperator::Lt => (lo < t.at, hi < t.at),
            BinaryOperator::LtEq => (lo <= t.at, hi <= t.at),
            BinaryOperator::Gt => (lo > t.at, hi > t.at),
            _ => (lo >= t.at, hi >= t.at),
        };
        match (pass_lo, pass_hi) {
            (false, false) => return Some(false),
            (true, true) => {}
            _ => all = false,
        }
    }
    all.then_some(true)
}

// ---------------------------------------------------------------- rows

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyPart {
    Dim(Option<String>),
    Time(i64),
}

/// Running totals of one group, per measure column, in stored units.
#[derive(Debug, Default, Clone)]
struct Acc {
    count: i64,
    sums: HashMap<String, i128>,
    nn: HashMap<String, i64>,
    mins: HashMap<String, i64>,
    maxs: HashMap<String, i64>,
}

/// Folds bucket hashes (read for `starts`) into leg rows: group keys, then partials.
pub fn rows(
    wq: &WindowQuery,
    spec: &WindowSpec,
    starts: &[i64],
    buckets: &[Bucket],
) -> Result<Vec<Vec<Value>>, Reason> {
    let mut groups: HashMap<Vec<KeyPart>, Acc> = HashMap::new();
    for (start, bucket) in starts.iter().zip(buckets) {
        for (field, raw) in bucket {
            let (measure, dims) = field.split_once('|').ok_or_else(|| bad(field))?;
            let dims = split_dims(dims, spec.dims.len()).ok_or_else(|| bad(field))?;
            if !passes(wq, &dims) {
                continue;
            }
            let key = wq.keys.iter().map(|k| key_part(*k, &dims, *start)).collect();
            let v: i64 = raw.trim().parse().map_err(|_| bad(field))?;
            add(groups.entry(key).or_default(), measure, v);
        }
    }
    if wq.keys.is_empty() && groups.is_empty() {
        groups.insert(vec![], Acc::default());
    }
    groups
        .into_iter()
        .filter(|(k, a)| k.is_empty() || a.count > 0)
        .map(|(k, a)| row(wq, spec, k, &a))
        .collect()
}

fn bad(field: &str) -> Reason {
    format!("malformed windows field {field:?}")
}

fn split_dims(dims: &str, n: usize) -> Option<Vec<Option<&str>>> {
    if n == 0 {
        return dims.is_empty().then(Vec::new);
    }
    let v: Vec<Option<&str>> =
        dims.split(DIM_SEP).map(|d| if d == NULL_DIM { None } else { Some(d) }).collect();
    (v.len() == n).then_some(v)
}

fn passes(wq: &WindowQuery, dims: &[Option<&str>]) -> bool {
    wq.dim_tests.iter().all(|(i, t)| match (t, dims[*i]) {
        (DimTest::IsNull, v) => v.is_none(),
        (DimTest::NotNull, v) => v.is_some(),
        (_, None) => false,
        (DimTest::Eq(x), Some(v)) => v == x,
        (DimTest::Ne(x), Some(v)) => v != x,
        (DimTest::In(xs), Some(v)) => xs.iter().any(|x| x == v),
        (DimTest::NotIn(xs), Some(v)) => xs.iter().all(|x| x != v),
    })
}

fn key_part(k: KeySrc, dims: &[Option<&str>], start_secs: i64) -> KeyPart {
    match k {
        KeySrc::Dim(i) => KeyPart::Dim(dims[i].map(str::to_string)),
        KeySrc::Trunc(u) => KeyPart::Time(truncate(start_secs * MICROS, u)),
    }
}

fn add(a: &mut Acc, measure: &str, v: i64) {
    if measure == "count" {
        a.count += v;
    } else if let Some(c) = measure.strip_prefix("sum:") {
        *a.sums.entry(c.into()).or_default() += v as i128;
    } else if let Some(c) = measure.strip_prefix("nn:") {
        *a.nn.entry(c.into()).or_default() += v;
    } else if let Some(c) = measure.strip_prefix("min:") {
        let e = a.mins.entry(c.into()).or_insert(v);
        *e = (*e).min(v);
    } else if let Some(c) = measure.strip_prefix("max:") {
        let e = a.maxs.entry(c.into()).or_insert(v);
        *e = (*e).max(v);
    }
}

fn row(
    wq: &WindowQuery,
    spec: &WindowSpec,
    key: Vec<KeyPart>,
    a: &Acc,
) -> Result<Vec<Value>, Reason> {
    let mut out = Vec::with_capacity(key.len() + wq.parts.len());
    for (k, src) in key.into_iter().zip(&wq.keys) {
        out.push(match (k, src) {
            (KeyPart::Time(t), _) => Value::Timestamp(t),
            (KeyPart::Dim(None), _) => Value::Null,
            (KeyPart::Dim(Some(s)), KeySrc::Dim(i)) => dim_value(&s, spec.dims[*i].1)?,
            (KeyPart::Dim(_), KeySrc::Trunc(_)) => return Err("key mismatch".into()),
        });
    }
    for p in &wq.parts {
        let kind = |c: &str| spec.columns.get(c).copied().unwrap_or(NumKind::Small);
        out.push(match p {
            PartSrc::Count => Value::Int(a.count),
            PartSrc::NonNull(c) => Value::Int(a.nn.get(c).copied().unwrap_or(0)),
            PartSrc::Sum(c) => a.sums.get(c).map_or(Value::Null, |s| sum_value(*s, kind(c))),
            PartSrc::Min(c) => a.mins.get(c).map_or(Value::Null, |v| num_value(*v, kind(c))),
            PartSrc::Max(c) => a.maxs.get(c).map_or(Value::Null, |v| num_value(*v, kind(c))),
        });
    }
    Ok(out)
}

fn dim_value(s: &str, kind: DimKind) -> Result<Value, Reason> {
    Ok(match kind {
        DimKind::Text => Value::Text(s.to_string()),
        DimKind::Int => {
            Value::Int(s.parse().map_err(|_| format!("dimension value {s:?} is not an integer"))?)
        }
        DimKind::Bool => match s {
            "t" | "true" | "1" => Value::Bool(true),
            "f" | "false" | "0" => Value::Bool(false),
            _ => return Err(format!("dimension value {s:?} is not a boolean")),
        },
    })
}

fn decimal(units: i128, scale: u32) -> Value {
    Value::Numeric(Decimal { mant: units.into(), scale })
}

/// A sum with the type the warehouse gives SUM of the column.
fn sum_value(units: i128, kind: NumKind) -> Value {
    match kind {
        NumKind::Small => match i64::try_from(units) {
            Ok(v) => Value::Int(v),
            Err(_) => decimal(units, 0),
        },
        NumKind::Big => decimal(units, 0),
        NumKind::Numeric(s) => decimal(units, s),
    }
}

/// A min/max with the column's own type.
fn num_value(units: i64, kind: NumKind) -> Value {
    match kind {
        NumKind::Small | NumKind::Big => Value::Int(units),
        NumKind::Numeric(s) => decimal(units as i128, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_are_exact() {
        let wq = WindowQuery {
            keys: vec![],
            parts: vec![],
            dim_tests: vec![],
            bounds: vec![TimeBound { op: BinaryOperator::GtEq, at: 25 * MICROS }],
        };
        let b = 10 * MICROS;
        assert_eq!(bucket_in(&wq, 30 * MICROS, b), Some(true));
        assert_eq!(bucket_in(&wq, 10 * MICROS, b), Some(false));
        assert_eq!(bucket_in(&wq, 20 * MICROS, b), None);
    }
}
