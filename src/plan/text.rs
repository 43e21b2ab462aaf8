//! Whether the merge may compare a query's text values by bytes. The warehouse compares text
//! under a collation: a locale orders differently from bytes, and a case-insensitive or
//! nondeterministic collation makes different bytes equal. The engine merges text only where
//! bytes give the warehouse's answer; elsewhere the merge gives up and the query passes through.

use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, Expr, ObjectNamePart, Query, SelectItem, SetExpr};

use crate::catalog::{Collation, Facts, WILDCARD_COLUMN};

/// What the merge may do with text in one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRules {
    /// Text may be ordered by bytes (ORDER BY, MIN/MAX, comparisons).
    pub order_bytewise: bool,
    /// Equal text is equal bytes (group keys, DISTINCT, equality in HAVING, window filters).
    pub keys_bytewise: bool,
}

impl TextRules {
    /// Rules for plain bytewise text (C collation).
    pub const BYTES: TextRules = TextRules { order_bytewise: true, keys_bytewise: true };
}

/// The rules for `q`: the database default, narrowed by every collated column it names, every
/// `COLLATE` clause and Redshift's `COLLATE()` function.
pub fn text_rules(q: &Query, facts: &Facts) -> TextRules {
    let worst = referenced(q, facts);
    TextRules {
        order_bytewise: facts.text_bytewise && worst.is_none(),
        keys_bytewise: facts.text_keys_bytewise && worst != Some(Collation::Folding),
    }
}

fn referenced(q: &Query, facts: &Facts) -> Option<Collation> {
    let any = facts.collated.values().copied().max();
    if facts.collated.contains_key(WILDCARD_COLUMN) || (has_wildcard(q) && any.is_some()) {
        return any;
    }
    let mut worst = None;
    let _ = visit_expressions(q, |e| {
        let found = match e {
            Expr::Identifier(i) => facts.collated.get(&i.value.to_lowercase()).copied(),
            Expr::CompoundIdentifier(p) => {
                p.last().and_then(|i| facts.collated.get(&i.value.to_lowercase())).copied()
            }
            Expr::Collate { collation, .. } => collate_clause(&collation.to_string()),
            Expr::Function(f) if is_collate_fn(f) => Some(Collation::Folding),
            _ => None,
        };
        worst = worst.max(found);
        ControlFlow::<()>::Continue(())
    });
    worst
}

fn is_collate_fn(f: &sqlparser::ast::Function) -> bool {
    f.name
        .0
        .last()
        .and_then(ObjectNamePart::as_ident)
        .is_some_and(|i| i.value.eq_ignore_ascii_case("collate"))
}

/// A `COLLATE "x"` clause: bytewise names change nothing, any other may fold.
fn collate_clause(name: &str) -> Option<Collation> {
    let bare = name.trim_matches('"').rsplit('.').next().unwrap_or_default().trim_matches('"');
    match bare {
        "C" | "POSIX" | "ucs_basic" => None,
        _ => Some(Collation::Folding),
    }
}

fn has_wildcard(q: &Query) -> bool {
    fn body(s: &SetExpr) -> bool {
        match s {
            SetExpr::Select(sel) => sel
                .projection
                .iter()
                .any(|p| matches!(p, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..))),
            SetExpr::Query(q) => body(&q.body),
            SetExpr::SetOperation { left, right, .. } => body(left) || body(right),
            _ => false,
        }
    }
    body(&q.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dialect;
    use std::collections::HashMap;

    fn facts(collated: &[(&str, Collation)]) -> Facts {
        let mut f = Facts::with_names(&[], &[], &[]);
        f.collated = collated.iter().map(|(n, c)| (n.to_string(), *c)).collect::<HashMap<_, _>>();
        f
    }

    fn rules(sql: &str, f: &Facts) -> TextRules {
        let stmt = crate::plan::parse(Dialect::Postgres, sql).unwrap().remove(0);
        let sqlparser::ast::Statement::Query(q) = stmt else { panic!("not a query") };
        text_rules(&q, f)
    }

    #[test]
    fn collated_columns_narrow_the_rules() {
        let f = facts(&[("fruit", Collation::Folding), ("city", Collation::Ordered)]);
        assert_eq!(rules("SELECT country, count(*) FROM events GROUP BY 1", &f), TextRules::BYTES);
        let r = rules("SELECT e.fruit, count(*) FROM events e GROUP BY 1", &f);
        assert!(!r.keys_bytewise && !r.order_bytewise);
        let r = rules("SELECT max(city) FROM events", &f);
        assert!(r.keys_bytewise && !r.order_bytewise);
        let r = rules("SELECT * FROM events ORDER BY id LIMIT 3", &f);
        assert!(!r.keys_bytewise);
    }

    #[test]
    fn collate_clauses_and_the_collate_function_fold() {
        let f = facts(&[]);
        assert!(!rules("SELECT country COLLATE \"und-ci\" FROM events", &f).keys_bytewise);
        assert_eq!(rules("SELECT country COLLATE \"C\" FROM events", &f), TextRules::BYTES);
        assert!(!rules("SELECT collate(country, 'ci') FROM events", &f).keys_bytewise);
    }

    #[test]
    fn redshift_show_table_collations_are_read() {
        let ddl = "CREATE TABLE public.category (\ncatid smallint NOT NULL distkey,\n\
                   catgroup character varying(10) ENCODE lzo COLLATE case_insensitive,\n\
                   \"Cat Name\" character varying(10) ENCODE lzo COLLATE ci,\n\
                   catdesc character varying(50) ENCODE lzo COLLATE case_sensitive\n\
                   ) DISTSTYLE KEY SORTKEY ( catid );";
        assert_eq!(crate::catalog::case_insensitive_columns(ddl), vec!["catgroup", "Cat Name"]);
    }
}
