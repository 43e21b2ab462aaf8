//! Merging the legs: partial aggregates combined per group, then HAVING, outputs,
//! DISTINCT, ORDER BY and LIMIT/OFFSET; or, for plain rows, concatenate, sort and cut.

pub mod eval;
mod groups;

use std::collections::HashSet;

use crate::config::Dialect;
use crate::error::{Error, Result};
use crate::merge::eval::{binary, compare, eval, Row};
use crate::model::decimal::Decimal;
use crate::model::value::{GroupKey, Value};
use crate::plan::expr::BinOp;
use crate::plan::split::{AggCall, AggSpec, Combine, RowsSpec, SortKey, SortSource};

/// Settings that change merge semantics.
#[derive(Debug, Clone, Copy)]
pub struct MergeCtx {
    /// Warehouse dialect (AVG of integers differs).
    pub dialect: Dialect,
    /// Whether text may be compared by bytes.
    pub text_bytewise: bool,
    /// Whether equal text is equal bytes (false under a folding collation).
    pub text_keys: bool,
}

/// The group (or DISTINCT) key of some values; text keys only where bytes decide equality.
fn key_of(values: &[Value], text_keys: bool) -> Result<Vec<GroupKey>> {
    keys_allowed(values, text_keys)?;
    Ok(groups::owned_key(values))
}

/// Text keys group only where equal text is equal bytes (not under a folding collation).
fn keys_allowed(values: &[Value], text_keys: bool) -> Result<()> {
    if !text_keys && values.iter().any(|v| matches!(v, Value::Text(_))) {
        return Err(Error::unsplittable("text key under a case-insensitive collation"));
    }
    Ok(())
}

/// Merges aggregate legs into final output rows.
pub fn merge_aggregate(
    spec: &AggSpec,
    legs: Vec<Vec<Vec<Value>>>,
    ctx: MergeCtx,
) -> Result<Vec<Vec<Value>>> {
    let mut index = groups::GroupIndex::default();
    let mut groups: Vec<Vec<Value>> = Vec::new();
    for row in legs.into_iter().flatten() {
        let key = &row[..spec.n_keys];
        keys_allowed(key, ctx.text_keys)?;
        match index.find_or_add(key, &groups) {
            Some(g) => combine_into(&mut groups[g], row, spec, ctx)?,
            None => groups.push(row),
        }
    }
    let mut out: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
    for g in groups {
        let aggs = spec
            .aggs
            .iter()
            .map(|a| finish(a, &g, spec.n_cols, ctx.dialect))
            .collect::<Result<Vec<_>>>()?;
        let row = Row { cols: &g[..spec.n_cols], aggs: &aggs, text_bytewise: ctx.text_bytewise };
        if let Some(h) = &spec.having {
            if !matches!(eval(h, &row)?, Value::Bool(true)) {
                continue;
            }
        }
        let outputs = spec.outputs.iter().map(|e| eval(e, &row)).collect::<Result<Vec<_>>>()?;
        let keys = spec
            .order
            .iter()
            .map(|k| match &k.source {
                SortSource::Column(i) => Ok(outputs[*i].clone()),
                SortSource::Expr(e) => eval(e, &row),
            })
            .collect::<Result<Vec<_>>>()?;
        out.push((outputs, keys));
    }
    if spec.distinct {
        out = dedupe(out, |r| &r.0, ctx.text_keys)?;
    }
    sort_rows(&mut out, &spec.order, ctx.text_bytewise)?;
    Ok(cut(out.into_iter().map(|r| r.0).collect(), spec.limit, spec.offset))
}

/// Merges plain-row legs into final rows (hidden sort columns removed).
pub fn merge_rows(
    spec: &RowsSpec,
    legs: Vec<Vec<Vec<Value>>>,
    ctx: MergeCtx,
) -> Result<Vec<Vec<Value>>> {
    let mut rows: Vec<(Vec<Value>, Vec<Value>)> = legs
        .into_iter()
        .flatten()
        .map(|r| {
            let keys = spec
                .order
                .iter()
                .map(|k| match &k.source {
                    SortSource::Column(i) => r[*i].clone(),
                    SortSource::Expr(_) => Value::Null,
                })
                .collect();
            (r, keys)
        })
        .collect();
    if spec.distinct {
        rows = dedupe(rows, |r| &r.0[..spec.n_visible], ctx.text_keys)?;
    }
    sort_rows(&mut rows, &spec.order, ctx.text_bytewise)?;
    let mut out = cut(rows.into_iter().map(|r| r.0).collect(), spec.limit, spec.offset);
    for r in &mut out {
        r.truncate(spec.n_visible);
    }
    Ok(out)
}

fn dedupe<T, F: Fn(&T) -> &[Value]>(rows: Vec<T>, key: F, text_keys: bool) -> Result<Vec<T>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if seen.insert(key_of(key(&r), text_keys)?) {
            out.push(r);
        }
    }
    Ok(out)
}

fn cut(rows: Vec<Vec<Value>>, limit: Option<u64>, offset: u64) -> Vec<Vec<Value>> {
    let it = rows.into_iter().skip(offset as usize);
    match limit {
        Some(l) => it.take(l as usize).collect(),
        None => it.collect(),
    }
}

/// Stable sort with PostgreSQL's NULL placement; fails (→ passthrough) on comparisons the
/// engine cannot make exactly.
fn sort_rows(
    rows: &mut [(Vec<Value>, Vec<Value>)],
    order: &[SortKey],
    text_bytewise: bool,
) -> Result<()> {
    if order.is_empty() {
        return Ok(());
    }
    // validate comparability first so the sort itself cannot fail half-way
    for (i, k) in order.iter().enumerate() {
        let mut first: Option<&Value> = None;
        for r in rows.iter() {
            let v = &r.1[i];
            if v.is_null() {
                continue;
            }
            if let Some(f) = first {
                compare(f, v, text_bytewise)?;
            } else {
                first = Some(v);
                compare(v, v, text_bytewise)?;
            }
        }
        let _ = k;
    }
    rows.sort_by(|a, b| {
        for (i, k) in order.iter().enumerate() {
            let (x, y) = (&a.1[i], &b.1[i]);
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => {
                    if k.nulls_first {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    }
                }
                (false, true) => {
                    if k.nulls_first {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Less
                    }
                }
                _ => {
                    let o = compare(x, y, text_bytewise).unwrap_or(std::cmp::Ordering::Equal);
                    if k.desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    Ok(())
}

fn combine_into(acc: &mut [Value], row: Vec<Value>, spec: &AggSpec, ctx: MergeCtx) -> Result<()> {
    for (i, (c, v)) in spec.partials.iter().zip(row.into_iter().skip(spec.n_cols)).enumerate() {
        let slot = &mut acc[spec.n_cols + i];
        let current = std::mem::replace(slot, Value::Null);
        *slot = combine(*c, current, v, ctx.text_bytewise)?;
    }
    Ok(())
}

fn combine(c: Combine, a: Value, b: Value, text_bytewise: bool) -> Result<Value> {
    if a.is_null() {
        return Ok(b);
    }
    if b.is_null() {
        return Ok(a);
    }
    Ok(match c {
        Combine::Count | Combine::Sum => match (&a, &b) {
            (Value::Float(x), Value::Float(y)) => Value::Float(x + y),
            _ => binary(BinOp::Add, a, b, text_bytewise)?,
        },
        Combine::Min | Combine::Max => {
            let o = compare(&a, &b, text_bytewise)?;
            let keep_a = if c == Combine::Min {
                o != std::cmp::Ordering::Greater
            } else {
                o != std::cmp::Ordering::Less
            };
            if keep_a {
                a
            } else {
                b
            }
        }
        Combine::And | Combine::Or => match (&a, &b) {
            (Value::Bool(x), Value::Bool(y)) => {
                Value::Bool(if c == Combine::And { *x && *y } else { *x || *y })
            }
            _ => return Err(Error::unsplittable("bool aggregate over non-booleans")),
        },
    })
}

fn finish(call: &AggCall, g: &[Value], n_cols: usize, dialect: Dialect) -> Result<Value> {
    match call {
        AggCall::Direct(i) => Ok(g[n_cols + i].clone()),
        AggCall::Avg { sum, count } => avg(&g[n_cols + sum], &g[n_cols + count], dialect),
    }
}

fn zero_count() -> Error {
    Error::internal("avg over a zero count")
}

/// AVG from merged SUM and COUNT with the warehouse's result type: numeric division with
/// PostgreSQL's scale for integers and numerics; integer (truncating) division for integer
/// arguments on Redshift; float division for floats.
fn avg(sum: &Value, count: &Value, dialect: Dialect) -> Result<Value> {
    let n = match count {
        Value::Int(0) | Value::Null => return Ok(Value::Null),
        Value::Int(n) => *n,
        _ => return Err(Error::unsplittable("avg count")),
    };
    Ok(match sum {
        Value::Null => Value::Null,
        Value::Float(s) => Value::Float(s / n as f64),
        Value::Int(s) if dialect == Dialect::Redshift => Value::Int(s / n),
        Value::Int(s) => {
            Value::Numeric(Decimal::from_i64(*s).div(&Decimal::from_i64(n)).ok_or_else(zero_count)?)
        }
        Value::Numeric(_) if dialect == Dialect::Redshift => {
            // Redshift keeps the argument's scale; its rounding is not established here.
            return Err(Error::unsplittable("AVG of numeric under Redshift's result scale"));
        }
        Value::Numeric(s) => Value::Numeric(s.div(&Decimal::from_i64(n)).ok_or_else(zero_count)?),
        _ => return Err(Error::unsplittable("avg of a non-number")),
    })
}
