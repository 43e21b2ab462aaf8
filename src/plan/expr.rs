//! Expressions the engine evaluates after merging: the "aggregate skeleton" of SELECT,
//! HAVING and ORDER BY. Everything without an aggregate is computed by the warehouse in
//! the legs; only operators and a few functions over aggregates are evaluated here.

use sqlparser::ast::{BinaryOperator, DataType, Expr, Value as SqlValue};

use crate::model::decimal::Decimal;
use crate::model::value::Value;

/// Binary operators the engine evaluates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `AND`
    And,
    /// `OR`
    Or,
}

impl BinOp {
    /// Maps a parsed operator.
    pub fn from_sql(op: &BinaryOperator) -> Option<BinOp> {
        Some(match op {
            BinaryOperator::Plus => BinOp::Add,
            BinaryOperator::Minus => BinOp::Sub,
            BinaryOperator::Multiply => BinOp::Mul,
            BinaryOperator::Divide => BinOp::Div,
            BinaryOperator::Modulo => BinOp::Mod,
            BinaryOperator::Eq => BinOp::Eq,
            BinaryOperator::NotEq => BinOp::NotEq,
            BinaryOperator::Lt => BinOp::Lt,
            BinaryOperator::LtEq => BinOp::LtEq,
            BinaryOperator::Gt => BinOp::Gt,
            BinaryOperator::GtEq => BinOp::GtEq,
            BinaryOperator::And => BinOp::And,
            BinaryOperator::Or => BinOp::Or,
            _ => return None,
        })
    }
}

/// Scalar functions the engine evaluates over aggregates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Func {
    /// `round(x)` / `round(x, n)`
    Round,
    /// `abs(x)`
    Abs,
    /// `coalesce(...)`
    Coalesce,
    /// `nullif(a, b)`
    NullIf,
    /// `greatest(...)`
    Greatest,
    /// `least(...)`
    Least,
}

impl Func {
    /// Maps a function name (lower case).
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "round" => Func::Round,
            "abs" => Func::Abs,
            "coalesce" => Func::Coalesce,
            "nullif" => Func::NullIf,
            "greatest" => Func::Greatest,
            "least" => Func::Least,
            _ => return None,
        })
    }
}

/// Target types of casts the engine evaluates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CastTo {
    /// numeric, optionally numeric(p, s).
    Numeric(Option<(u32, u32)>),
    /// float8 / double precision.
    Float8,
    /// float4 / real.
    Float4,
    /// int2.
    Int2,
    /// int4.
    Int4,
    /// int8.
    Int8,
    /// text / varchar.
    Text,
}

impl CastTo {
    /// Maps a parsed data type, if the engine can evaluate the cast.
    pub fn from_sql(dt: &DataType) -> Option<CastTo> {
        let s = dt.to_string().to_lowercase().replace(' ', "");
        Some(match s.as_str() {
            "numeric" | "decimal" => CastTo::Numeric(None),
            "doubleprecision" | "float8" | "float" | "double" => CastTo::Float8,
            "real" | "float4" => CastTo::Float4,
            "smallint" | "int2" => CastTo::Int2,
            "int" | "integer" | "int4" => CastTo::Int4,
            "bigint" | "int8" => CastTo::Int8,
            "text" | "varchar" | "charactervarying" => CastTo::Text,
            other => {
                let inner = other
                    .strip_prefix("numeric(")
                    .or_else(|| other.strip_prefix("decimal("))?
                    .strip_suffix(')')?;
                let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
                CastTo::Numeric(Some((p.parse().ok()?, s.parse().ok()?)))
            }
        })
    }
}

/// An expression over one merged group.
#[derive(Debug, Clone)]
pub enum EExpr {
    /// A group key or a value the legs computed per group.
    Col(usize),
    /// The final value of the n-th aggregate.
    Agg(usize),
    /// A constant.
    Lit(Value),
    /// Binary operation.
    Bin(BinOp, Box<EExpr>, Box<EExpr>),
    /// Unary minus.
    Neg(Box<EExpr>),
    /// Logical NOT.
    Not(Box<EExpr>),
    /// `IS [NOT] NULL` (bool: negated).
    IsNull(Box<EExpr>, bool),
    /// Function call.
    Func(Func, Vec<EExpr>),
    /// CASE [operand] WHEN .. THEN .. [ELSE ..] END.
    Case {
        /// Simple-CASE operand.
        operand: Option<Box<EExpr>>,
        /// WHEN/THEN pairs.
        whens: Vec<(EExpr, EExpr)>,
        /// ELSE branch.
        otherwise: Option<Box<EExpr>>,
    },
    /// CAST.
    Cast(Box<EExpr>, CastTo),
}

/// A literal the engine can hold as a value, typed as PostgreSQL types it.
pub fn literal(e: &Expr) -> Option<Value> {
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => Some(number_literal(n)?),
            SqlValue::SingleQuotedString(s) => Some(Value::Text(s.clone())),
            SqlValue::Boolean(b) => Some(Value::Bool(*b)),
            SqlValue::Null => Some(Value::Null),
            _ => None,
        },
        // `-5` is the negation of the constant 5, with the same type
        Expr::UnaryOp { op: sqlparser::ast::UnaryOperator::Minus, expr } => match &**expr {
            Expr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => match number_literal(n)? {
                    Value::Int(i) => Some(Value::Int(i.checked_neg()?)),
                    Value::Numeric(d) => Some(Value::Numeric(d.neg())),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Integer literals are int4/int8 when they fit, otherwise numeric (as in PostgreSQL).
fn number_literal(n: &str) -> Option<Value> {
    if n.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = n.parse::<i64>() {
            return Some(Value::Int(i));
        }
    }
    if n.contains(['e', 'E']) {
        return None;
    }
    Decimal::parse(n).map(Value::Numeric)
}
