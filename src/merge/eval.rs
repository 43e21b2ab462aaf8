//! Evaluation of the aggregate skeleton with PostgreSQL semantics: integer division
//! truncates, numeric stays exact with PostgreSQL's scales, NULL propagates, AND/OR are
//! three-valued. Anything the engine cannot evaluate exactly is `Unsplittable`, which sends
//! the query to the warehouse whole.

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::model::decimal::Decimal;
use crate::model::value::Value;
use crate::plan::expr::{BinOp, CastTo, EExpr, Func};

/// What an expression is evaluated against: one merged group.
pub struct Row<'a> {
    /// Key and derived columns.
    pub cols: &'a [Value],
    /// Final aggregate values.
    pub aggs: &'a [Value],
    /// Whether text may be compared by bytes.
    pub text_bytewise: bool,
}

/// Evaluates an expression for one group.
pub fn eval(e: &EExpr, row: &Row) -> Result<Value> {
    Ok(match e {
        EExpr::Col(i) => row.cols[*i].clone(),
        EExpr::Agg(i) => row.aggs[*i].clone(),
        EExpr::Lit(v) => v.clone(),
        EExpr::Bin(op, l, r) => binary(*op, eval(l, row)?, eval(r, row)?, row.text_bytewise)?,
        EExpr::Neg(x) => negate(eval(x, row)?)?,
        EExpr::Not(x) => match eval(x, row)? {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(!b),
            _ => return Err(Error::unsplittable("NOT of a non-boolean")),
        },
        EExpr::IsNull(x, negated) => Value::Bool(eval(x, row)?.is_null() != *negated),
        EExpr::Func(f, args) => {
            let vals = args.iter().map(|a| eval(a, row)).collect::<Result<Vec<_>>>()?;
            function(*f, vals, row.text_bytewise)?
        }
        EExpr::Case { operand, whens, otherwise } => {
            case(operand.as_deref(), whens, otherwise.as_deref(), row)?
        }
        EExpr::Cast(x, to) => cast(eval(x, row)?, *to)?,
    })
}

fn case(
    operand: Option<&EExpr>,
    whens: &[(EExpr, EExpr)],
    otherwise: Option<&EExpr>,
    row: &Row,
) -> Result<Value> {
    let subject = operand.map(|o| eval(o, row)).transpose()?;
    for (cond, result) in whens {
        let c = eval(cond, row)?;
        let hit = match &subject {
            Some(s) => {
                matches!(binary(BinOp::Eq, s.clone(), c, row.text_bytewise)?, Value::Bool(true))
            }
            None => matches!(c, Value::Bool(true)),
        };
        if hit {
            return eval(result, row);
        }
    }
    otherwise.map(|o| eval(o, row)).transpose().map(|v| v.unwrap_or(Value::Null))
}

/// Compares two non-null values for ORDER BY / MIN / MAX.
pub fn compare(a: &Value, b: &Value, text_bytewise: bool) -> Result<Ordering> {
    if !text_bytewise && (matches!(a, Value::Text(_)) || matches!(b, Value::Text(_))) {
        return Err(Error::unsplittable("text ordering under a non-C collation"));
    }
    a.compare(b).ok_or_else(|| Error::unsplittable(format!("cannot compare {a:?} with {b:?}")))
}

fn overflow() -> Error {
    Error::data("22003", "bigint out of range")
}

fn div_zero() -> Error {
    Error::data("22012", "division by zero")
}

fn as_dec(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal::from_i64(*i)),
        Value::Numeric(d) => Some(d.clone()),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Numeric(d) => Some(d.to_f64()),
        _ => None,
    }
}

/// Applies a binary operator.
pub fn binary(op: BinOp, a: Value, b: Value, text_bytewise: bool) -> Result<Value> {
    match op {
        BinOp::And | BinOp::Or => return logic(op, &a, &b),
        _ => {}
    }
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    let cmp = |o: Ordering| -> Value {
        Value::Bool(match op {
            BinOp::Eq => o == Ordering::Equal,
            BinOp::NotEq => o != Ordering::Equal,
            BinOp::Lt => o == Ordering::Less,
            BinOp::LtEq => o != Ordering::Greater,
            BinOp::Gt => o == Ordering::Greater,
            _ => o != Ordering::Less,
        })
    };
    match op {
        BinOp::Eq | BinOp::NotEq if matches!((&a, &b), (Value::Text(_), Value::Text(_))) => {
            Ok(cmp(a.compare(&b).unwrap_or(Ordering::Less)))
        }
        BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq => {
            Ok(cmp(compare(&a, &b, text_bytewise)?))
        }
        _ => arith(op, &a, &b),
    }
}

fn logic(op: BinOp, a: &Value, b: &Value) -> Result<Value> {
    let t = |v: &Value| match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => Err(Error::unsplittable("AND/OR of a non-boolean")),
    };
    let (x, y) = (t(a)?, t(b)?);
    Ok(match (op, x, y) {
        (BinOp::And, Some(false), _) | (BinOp::And, _, Some(false)) => Value::Bool(false),
        (BinOp::And, Some(true), Some(true)) => Value::Bool(true),
        (BinOp::Or, Some(true), _) | (BinOp::Or, _, Some(true)) => Value::Bool(true),
        (BinOp::Or, Some(false), Some(false)) => Value::Bool(false),
        _ => Value::Null,
    })
}

fn arith(op: BinOp, a: &Value, b: &Value) -> Result<Value> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => int_arith(op, *x, *y),
        (Value::Float(_), _) | (_, Value::Float(_)) => {
            let (x, y) = match (as_f64(a), as_f64(b)) {
                (Some(x), Some(y)) => (x, y),
                _ => return Err(Error::unsplittable("arithmetic on non-numbers")),
            };
            float_arith(op, x, y)
        }
        _ => match (as_dec(a), as_dec(b)) {
            (Some(x), Some(y)) => dec_arith(op, &x, &y),
            _ => Err(Error::unsplittable("arithmetic on non-numbers")),
        },
    }
}

fn int_arith(op: BinOp, x: i64, y: i64) -> Result<Value> {
    let r = match op {
        BinOp::Add => x.checked_add(y),
        BinOp::Sub => x.checked_sub(y),
        BinOp::Mul => x.checked_mul(y),
        BinOp::Div => {
            if y == 0 {
                return Err(div_zero());
            }
            x.checked_div(y)
        }
        BinOp::Mod => {
            if y == 0 {
                return Err(div_zero());
            }
            Some(x.checked_rem(y).unwrap_or(0))
        }
        _ => return Err(Error::internal("not arithmetic")),
    };
    r.map(Value::Int).ok_or_else(overflow)
}

fn float_arith(op: BinOp, x: f64, y: f64) -> Result<Value> {
    let r = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => {
            if y == 0.0 {
                return Err(div_zero());
            }
            x / y
        }
        _ => return Err(Error::unsplittable("float modulo")),
    };
    if r.is_infinite() && x.is_finite() && y.is_finite() {
        return Err(Error::data("22003", "value out of range: overflow"));
    }
    Ok(Value::Float(r))
}

fn dec_arith(op: BinOp, x: &Decimal, y: &Decimal) -> Result<Value> {
    Ok(Value::Numeric(match op {
        BinOp::Add => x.add(y),
        BinOp::Sub => x.sub(y),
        BinOp::Mul => x.mul(y),
        BinOp::Div => x.div(y).ok_or_else(div_zero)?,
        _ => return Err(Error::unsplittable("numeric modulo")),
    }))
}

fn negate(v: Value) -> Result<Value> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(overflow)?),
        Value::Float(f) => Value::Float(-f),
        Value::Numeric(d) => Value::Numeric(d.neg()),
        _ => return Err(Error::unsplittable("negation of a non-number")),
    })
}

fn function(f: Func, args: Vec<Value>, text_bytewise: bool) -> Result<Value> {
    match f {
        Func::Coalesce => Ok(args.into_iter().find(|v| !v.is_null()).unwrap_or(Value::Null)),
        Func::NullIf => {
            let [a, b]: [Value; 2] =
                args.try_into().map_err(|_| Error::unsplittable("nullif arity"))?;
            let equal =
                matches!(binary(BinOp::Eq, a.clone(), b, text_bytewise)?, Value::Bool(true));
            Ok(if equal { Value::Null } else { a })
        }
        Func::Greatest | Func::Least => {
            let mut best: Option<Value> = None;
            for v in args.into_iter().filter(|v| !v.is_null()) {
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let o = compare(&v, &b, text_bytewise)?;
                        let take = if f == Func::Greatest {
                            o == Ordering::Greater
                        } else {
                            o == Ordering::Less
                        };
                        if take {
                            v
                        } else {
                            b
                        }
                    }
                });
            }
            Ok(best.unwrap_or(Value::Null))
        }
        Func::Abs => match args.as_slice() {
            [Value::Null] => Ok(Value::Null),
            [Value::Int(i)] => Ok(Value::Int(i.checked_abs().ok_or_else(overflow)?)),
            [Value::Float(x)] => Ok(Value::Float(x.abs())),
            [Value::Numeric(d)] => {
                Ok(Value::Numeric(if d.mant.sign() == num_bigint::Sign::Minus {
                    d.neg()
                } else {
                    d.clone()
                }))
            }
            _ => Err(Error::unsplittable("abs argument")),
        },
        Func::Round => round(args),
    }
}

fn round(args: Vec<Value>) -> Result<Value> {
    let digits = match args.get(1) {
        None => 0,
        Some(Value::Int(n)) => *n as i32,
        Some(Value::Null) => return Ok(Value::Null),
        Some(_) => return Err(Error::unsplittable("round digits")),
    };
    match (args.first(), args.len()) {
        (Some(Value::Null), _) => Ok(Value::Null),
        (Some(Value::Float(x)), 1) => Ok(Value::Float(x.round_ties_even())),
        (Some(Value::Numeric(d)), _) => Ok(Value::Numeric(d.round(digits))),
        (Some(Value::Int(i)), _) => Ok(Value::Numeric(Decimal::from_i64(*i).round(digits))),
        _ => Err(Error::unsplittable("round argument")),
    }
}

/// Evaluates a cast with PostgreSQL's rounding (numeric half away from zero, float half even).
pub fn cast(v: Value, to: CastTo) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let range = |i: i64, lo: i64, hi: i64, name: &str| {
        if i < lo || i > hi {
            Err(Error::data("22003", format!("{name} out of range")))
        } else {
            Ok(Value::Int(i))
        }
    };
    let as_int = |v: &Value| -> Result<i64> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Numeric(d) => d.to_i64_rounded().ok_or_else(overflow),
            Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.round_ties_even() as i64),
            Value::Float(_) => Err(overflow()),
            _ => Err(Error::unsplittable("cast to integer")),
        }
    };
    match to {
        CastTo::Int2 => range(as_int(&v)?, i16::MIN as i64, i16::MAX as i64, "smallint"),
        CastTo::Int4 => range(as_int(&v)?, i32::MIN as i64, i32::MAX as i64, "integer"),
        CastTo::Int8 => Ok(Value::Int(as_int(&v)?)),
        CastTo::Float8 => {
            as_f64(&v).map(Value::Float).ok_or_else(|| Error::unsplittable("cast to float"))
        }
        CastTo::Float4 => as_f64(&v)
            .map(|f| Value::Float(f as f32 as f64))
            .ok_or_else(|| Error::unsplittable("cast to real")),
        CastTo::Text => match v {
            Value::Float(_) => Err(Error::unsplittable("float to text")),
            other => Ok(Value::Text(other.to_pg_text().unwrap_or_default())),
        },
        CastTo::Numeric(spec) => {
            let d = match &v {
                Value::Float(_) => return Err(Error::unsplittable("float to numeric")),
                other => as_dec(other).ok_or_else(|| Error::unsplittable("cast to numeric"))?,
            };
            match spec {
                None => Ok(Value::Numeric(d)),
                Some((p, s)) => {
                    let r = d.round(s as i32);
                    let digits = r.mant.magnitude().to_string().len() as u32;
                    if digits > p && !r.is_zero() {
                        return Err(Error::data("22003", "numeric field overflow"));
                    }
                    Ok(Value::Numeric(r))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dialect;
    use crate::merge::{merge_aggregate, MergeCtx};
    use crate::plan::split::{AggCall, AggSpec, Combine, SortKey, SortSource};

    fn num(s: &str) -> Value {
        Value::Numeric(Decimal::parse(s).unwrap())
    }

    #[test]
    fn postgres_arithmetic_semantics() {
        let t = |op, a, b| binary(op, a, b, true).unwrap().to_pg_text();
        assert_eq!(t(BinOp::Div, Value::Int(7), Value::Int(2)), Some("3".into()));
        assert_eq!(t(BinOp::Div, Value::Int(-7), Value::Int(2)), Some("-3".into()));
        assert_eq!(t(BinOp::Div, num("7"), Value::Int(2)), Some("3.5000000000000000".into()));
        assert_eq!(t(BinOp::Mul, num("1.50"), num("2.5")), Some("3.750".into()));
        assert_eq!(t(BinOp::Add, Value::Int(1), Value::Null), None);
        assert!(matches!(
            binary(BinOp::Div, Value::Int(1), Value::Int(0), true),
            Err(Error::Data { sqlstate: "22012", .. })
        ));
        assert!(matches!(
            binary(BinOp::Add, Value::Int(i64::MAX), Value::Int(1), true),
            Err(Error::Data { sqlstate: "22003", .. })
        ));
        assert!(matches!(
            binary(BinOp::Lt, Value::Text("a".into()), Value::Text("b".into()), false),
            Err(Error::Unsplittable(_))
        ));
    }

    #[test]
    fn three_valued_logic_and_functions() {
        assert!(matches!(
            logic(BinOp::And, &Value::Null, &Value::Bool(false)).unwrap(),
            Value::Bool(false)
        ));
        assert!(logic(BinOp::Or, &Value::Null, &Value::Bool(false)).unwrap().is_null());
        let r = function(Func::Round, vec![num("2.675"), Value::Int(2)], true).unwrap();
        assert_eq!(r.to_pg_text().unwrap(), "2.68");
        let r = function(Func::Round, vec![Value::Float(2.5)], true).unwrap();
        assert_eq!(r.to_pg_text().unwrap(), "2");
        assert!(function(Func::NullIf, vec![Value::Int(0), Value::Int(0)], true)
            .unwrap()
            .is_null());
        assert_eq!(cast(num("2.5"), CastTo::Int4).unwrap().to_pg_text().unwrap(), "3");
        assert_eq!(
            cast(num("1234.567"), CastTo::Numeric(Some((6, 2)))).unwrap().to_pg_text().unwrap(),
            "1234.57"
        );
        assert!(cast(num("12345.6"), CastTo::Numeric(Some((5, 2)))).is_err());
    }

    #[test]
    fn merge_combines_partials_exactly() {
        // SELECT k, count(*), sum(big), avg(x) ... ORDER BY 2 DESC
        let spec = AggSpec {
            n_keys: 1,
            n_cols: 1,
            partials: vec![Combine::Count, Combine::Sum, Combine::Sum, Combine::Count],
            aggs: vec![AggCall::Direct(0), AggCall::Direct(1), AggCall::Avg { sum: 2, count: 3 }],
            outputs: vec![EExpr::Col(0), EExpr::Agg(0), EExpr::Agg(1), EExpr::Agg(2)],
            having: None,
            order: vec![SortKey { source: SortSource::Column(1), desc: true, nulls_first: true }],
            distinct: false,
            limit: None,
            offset: 0,
        };
        let big = num("9223372036854775807");
        let batch = vec![
            vec![Value::Text("a".into()), Value::Int(2), big.clone(), Value::Int(3), Value::Int(2)],
            vec![Value::Text("b".into()), Value::Int(1), Value::Null, Value::Null, Value::Int(0)],
        ];
        let speed =
            vec![vec![Value::Text("a".into()), Value::Int(1), big, Value::Int(4), Value::Int(1)]];
        let ctx = MergeCtx { dialect: Dialect::Postgres, text_bytewise: true, text_keys: true };
        let rows = merge_aggregate(&spec, vec![batch, speed], ctx).unwrap();
        let text: Vec<Vec<Option<String>>> =
            rows.iter().map(|r| r.iter().map(Value::to_pg_text).collect()).collect();
        assert_eq!(
            text,
            vec![
                vec![
                    Some("a".into()),
                    Some("3".into()),
                    Some("18446744073709551614".into()),
                    Some("2.3333333333333333".into())
                ],
                vec![Some("b".into()), Some("1".into()), None, None],
            ]
        );
        let ctx = MergeCtx { dialect: Dialect::Redshift, text_bytewise: true, text_keys: true };
        let spec1 = AggSpec { order: vec![], ..spec };
        let rows = merge_aggregate(
            &spec1,
            vec![vec![vec![
                Value::Text("x".into()),
                Value::Int(1),
                Value::Null,
                Value::Int(7),
                Value::Int(2),
            ]]],
            ctx,
        )
        .unwrap();
        assert_eq!(rows[0][3].to_pg_text().unwrap(), "3", "Redshift AVG(int) truncates");
    }
}
