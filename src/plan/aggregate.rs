//! Planning an aggregate query: partial aggregates per leg and how the merge combines them.

use sqlparser::ast::{
    Distinct, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident,
    ObjectName, ObjectNamePart, Query, Select, SelectItem, UnaryOperator, Value as SqlValue,
};

use super::expr::{literal, BinOp, CastTo, EExpr, Func};
use crate::catalog::Facts;
use crate::error::Result;

use super::spec::*;
use super::sqlcheck::*;

/// Collects the leg's per-group columns and partial aggregates while lowering expressions.
pub(crate) struct AggBuilder<'a> {
    facts: &'a Facts,
    cols: Vec<String>,
    col_exprs: Vec<Expr>,
    partial_src: Vec<(String, Option<Expr>)>,
    partial_sql: Vec<String>,
    partials: Vec<Combine>,
    aggs: Vec<(String, AggCall)>,
}

impl AggBuilder<'_> {
    fn col(&mut self, e: &Expr) -> Result<usize> {
        if contains_subquery(e) {
            return Err(no("subquery over aggregates"));
        }
        let text = e.to_string();
        if let Some(i) = self.cols.iter().position(|c| *c == text) {
            return Ok(i);
        }
        self.cols.push(text);
        self.col_exprs.push(e.clone());
        Ok(self.cols.len() - 1)
    }

    fn partial(&mut self, f: &Function, name: &str, combine: Combine) -> usize {
        let mut g = f.clone();
        g.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]);
        self.partial_sql.push(g.to_string());
        self.partials.push(combine);
        let arg = match &f.args {
            FunctionArguments::List(l) => match l.args.first() {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e.clone()),
                _ => None,
            },
            _ => None,
        };
        let kind = if f.filter.is_some() { "filtered" } else { name };
        self.partial_src.push((kind.to_string(), arg));
        self.partials.len() - 1
    }

    fn agg(&mut self, f: &Function) -> Result<usize> {
        check_agg_args(f)?;
        let key = f.to_string();
        if let Some(i) = self.aggs.iter().position(|(k, _)| *k == key) {
            return Ok(i);
        }
        let call = match fn_name(f).as_str() {
            "count" => AggCall::Direct(self.partial(f, "count", Combine::Count)),
            "sum" => AggCall::Direct(self.partial(f, "sum", Combine::Sum)),
            "min" => AggCall::Direct(self.partial(f, "min", Combine::Min)),
            "max" => AggCall::Direct(self.partial(f, "max", Combine::Max)),
            "bool_and" | "every" => AggCall::Direct(self.partial(f, "bool_and", Combine::And)),
            "bool_or" => AggCall::Direct(self.partial(f, "bool_or", Combine::Or)),
            "avg" => {
                let sum = self.partial(f, "sum", Combine::Sum);
                let count = self.partial(f, "count", Combine::Count);
                AggCall::Avg { sum, count }
            }
            _ => return Err(no("aggregate that does not decompose")),
        };
        self.aggs.push((key, call));
        Ok(self.aggs.len() - 1)
    }

    fn lower(&mut self, e: &Expr) -> Result<EExpr> {
        if !contains_agg(e, self.facts) {
            if let Some(v) = literal(e) {
                return Ok(EExpr::Lit(v));
            }
            return Ok(EExpr::Col(self.col(e)?));
        }
        let b = |x: EExpr| Box::new(x);
        Ok(match e {
            Expr::Function(f) if is_agg_fn(f, self.facts) => EExpr::Agg(self.agg(f)?),
            Expr::Nested(x) => self.lower(x)?,
            Expr::BinaryOp { left, op, right } => {
                let op = BinOp::from_sql(op).ok_or_else(|| no("operator over aggregates"))?;
                if op == BinOp::Div && self.facts.redshift {
                    // Redshift's numeric division scale is not PostgreSQL's.
                    return Err(no("division over aggregates on Redshift"));
                }
                EExpr::Bin(op, b(self.lower(left)?), b(self.lower(right)?))
            }
            Expr::UnaryOp { op: UnaryOperator::Minus, expr } => EExpr::Neg(b(self.lower(expr)?)),
            Expr::UnaryOp { op: UnaryOperator::Plus, expr } => self.lower(expr)?,
            Expr::UnaryOp { op: UnaryOperator::Not, expr } => EExpr::Not(b(self.lower(expr)?)),
            Expr::IsNull(x) => EExpr::IsNull(b(self.lower(x)?), false),
            Expr::IsNotNull(x) => EExpr::IsNull(b(self.lower(x)?), true),
            Expr::Between { expr, negated, low, high } => {
                let x = self.lower(expr)?;
                let inside = EExpr::Bin(
                    BinOp::And,
                    b(EExpr::Bin(BinOp::GtEq, b(x.clone()), b(self.lower(low)?))),
                    b(EExpr::Bin(BinOp::LtEq, b(x), b(self.lower(high)?))),
                );
                if *negated {
                    EExpr::Not(b(inside))
                } else {
                    inside
                }
            }
            Expr::Cast {
                kind: sqlparser::ast::CastKind::Cast | sqlparser::ast::CastKind::DoubleColon,
                expr,
                data_type,
                format: None,
                ..
            } => {
                let to = CastTo::from_sql(data_type).ok_or_else(|| no("cast over aggregates"))?;
                EExpr::Cast(b(self.lower(expr)?), to)
            }
            Expr::Case { operand, conditions, else_result, .. } => EExpr::Case {
                operand: operand.as_ref().map(|o| self.lower(o)).transpose()?.map(b),
                whens: conditions
                    .iter()
                    .map(|w| Ok((self.lower(&w.condition)?, self.lower(&w.result)?)))
                    .collect::<Result<_>>()?,
                otherwise: else_result.as_ref().map(|o| self.lower(o)).transpose()?.map(b),
            },
            Expr::Function(f) => {
                let func =
                    Func::from_name(&fn_name(f)).ok_or_else(|| no("function over aggregates"))?;
                let args = scalar_args(f)?;
                EExpr::Func(func, args.iter().map(|a| self.lower(a)).collect::<Result<_>>()?)
            }
            _ => return Err(no("expression over aggregates")),
        })
    }
}

pub(crate) fn scalar_args(f: &Function) -> Result<Vec<&Expr>> {
    if f.filter.is_some()
        || f.null_treatment.is_some()
        || !matches!(f.parameters, FunctionArguments::None)
    {
        return Err(no("function modifiers"));
    }
    match &f.args {
        FunctionArguments::List(l) if l.duplicate_treatment.is_none() && l.clauses.is_empty() => l
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                _ => Err(no("function argument form")),
            })
            .collect(),
        _ => Err(no("function argument form")),
    }
}

pub(crate) fn check_agg_args(f: &Function) -> Result<()> {
    if f.null_treatment.is_some() || !matches!(f.parameters, FunctionArguments::None) {
        return Err(no("aggregate modifiers"));
    }
    match &f.args {
        FunctionArguments::List(l) => {
            if l.duplicate_treatment == Some(sqlparser::ast::DuplicateTreatment::Distinct) {
                return Err(no("DISTINCT aggregate"));
            }
            if !l.clauses.is_empty() || l.args.len() != 1 {
                return Err(no("aggregate argument form"));
            }
            match &l.args[0] {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(_)) => Ok(()),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if fn_name(f) == "count" => Ok(()),
                _ => Err(no("aggregate argument form")),
            }
        }
        _ => Err(no("aggregate argument form")),
    }
}

/// Resolves GROUP BY items to expressions: ordinals and output aliases (when no input
/// column has that name, as PostgreSQL resolves them) become the select expression.
pub(crate) fn group_exprs(s: &Select, inp: &SplitInput) -> Result<Vec<Expr>> {
    let GroupByExpr::Expressions(items, modifiers) = &s.group_by else {
        return Err(no("GROUP BY ALL"));
    };
    if !modifiers.is_empty() {
        return Err(no("GROUP BY modifiers"));
    }
    let proj = projection_exprs(s);
    let mut out = Vec::new();
    for g in items {
        if matches!(g, Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) | Expr::Tuple(_)) {
            return Err(no("grouping sets"));
        }
        if let Expr::Value(v) = g {
            if let SqlValue::Number(n, _) = &v.value {
                let k: usize = n.parse().map_err(|_| no("GROUP BY position"))?;
                let e = proj
                    .get(k.wrapping_sub(1))
                    .copied()
                    .flatten()
                    .ok_or_else(|| no("GROUP BY position"))?;
                out.push(e.clone());
                continue;
            }
        }
        if let Expr::Identifier(i) = g {
            let name = fold(i);
            let is_input = inp.columns.iter().any(|c| c.name == name);
            let alias = s.projection.iter().find_map(|p| match p {
                SelectItem::ExprWithAlias { expr, alias } if fold(alias) == name => Some(expr),
                _ => None,
            });
            if let (Some(e), false) = (alias, is_input) {
                if s.from.len() > 1 || s.from.iter().any(|t| !t.joins.is_empty()) {
                    return Err(no("GROUP BY alias in a join"));
                }
                out.push(e.clone());
                continue;
            }
        }
        out.push(g.clone());
    }
    Ok(out)
}

pub(crate) fn plan_aggregate(
    q: &Query,
    s: &Select,
    inp: &SplitInput,
) -> Result<(Shape, Render, Option<AggParts>)> {
    let (limit, offset) = limit_offset(q)?;
    let keys = group_exprs(s, inp)?;
    let mut b = AggBuilder {
        facts: inp.facts,
        cols: Vec::new(),
        col_exprs: Vec::new(),
        partial_src: Vec::new(),
        partial_sql: Vec::new(),
        partials: Vec::new(),
        aggs: Vec::new(),
    };
    for k in &keys {
        b.col(k)?;
    }
    let n_keys = b.cols.len();
    let mut outputs = Vec::new();
    for e in projection_exprs(s) {
        outputs.push(b.lower(e.ok_or_else(|| no("wildcard in an aggregate query"))?)?);
    }
    let having = s.having.as_ref().map(|h| b.lower(h)).transpose()?;
    let mut order = Vec::new();
    for o in order_exprs(q)? {
        let (desc, nulls_first) = sort_opts(o)?;
        let source = match output_ref(&o.expr, inp.described)? {
            Some(i) => SortSource::Column(i),
            None => SortSource::Expr(b.lower(&o.expr)?),
        };
        order.push(SortKey { source, desc, nulls_first });
    }
    let mut items: Vec<String> =
        b.cols.iter().enumerate().map(|(i, c)| format!("{c} AS \"__tm_k{i}\"")).collect();
    items.extend(b.partial_sql.iter().enumerate().map(|(i, p)| format!("{p} AS \"__tm_a{i}\"")));
    if items.is_empty() {
        items.push("1".into());
    }
    let head = format!("SELECT {}", items.join(", "));
    let group = if keys.is_empty() {
        String::new()
    } else {
        format!(" GROUP BY {}", b.cols[..n_keys].join(", "))
    };
    let parts = (b.col_exprs, n_keys, b.partial_src);
    let spec = AggSpec {
        n_keys,
        n_cols: b.cols.len(),
        partials: b.partials,
        aggs: b.aggs.into_iter().map(|(_, c)| c).collect(),
        outputs,
        having,
        order,
        distinct: matches!(s.distinct, Some(Distinct::Distinct)),
        limit,
        offset,
    };
    if spec.partials.is_empty() && b.cols.is_empty() {
        // `SELECT 1 FROM t HAVING ...` style: keep one placeholder column
        return Err(no("aggregate query without columns"));
    }
    let render: Render = std::sync::Arc::new(move |frame: &str| format!("{head} {frame}{group}"));
    Ok((Shape::Aggregate(spec), render, Some(parts)))
}
