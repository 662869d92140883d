//! Queries: the output column names PostgreSQL gives a SELECT, and whether it ends with the
//! placeholder condition a watermark needs.

use sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Query, Select, SelectItem, SetExpr, Spanned, Statement,
};
use sqlparser::tokenizer::Location;

use super::parse::{has_param, ident, name_parts};

/// An output column's name as PostgreSQL gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutName {
    Named(String),
    /// an expression PostgreSQL calls `?column?`
    Unnamed,
    /// cannot tell without the database (a sub-select, an unusual expression)
    Unknown,
    /// `*` or `t.*`: any number of columns
    Star,
}

impl OutName {
    pub fn name(&self) -> Option<&str> {
        match self {
            OutName::Named(n) => Some(n),
            _ => None,
        }
    }

    /// A name as the database reports it: PostgreSQL calls an unnamed column `?column?`.
    pub fn from_server(name: &str) -> OutName {
        if name == "?column?" {
            OutName::Unnamed
        } else {
            OutName::Named(name.to_string())
        }
    }
}

/// One output column and where its expression starts in the text the parser read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: OutName,
    pub at: Location,
}

pub fn query_of(stmt: &Statement) -> Option<&Query> {
    match stmt {
        Statement::Query(q) => Some(q),
        _ => None,
    }
}

/// The output columns of a query (the first branch of a set operation names them).
pub fn output_names(q: &Query) -> Option<Vec<Output>> {
    let mut body = q.body.as_ref();
    loop {
        match body {
            SetExpr::Select(s) => return Some(select_names(s)),
            SetExpr::SetOperation { left, .. } => body = left,
            SetExpr::Query(q) => body = q.body.as_ref(),
            _ => return None,
        }
    }
}

fn select_names(s: &Select) -> Vec<Output> {
    s.projection
        .iter()
        .map(|item| Output {
            name: match item {
                SelectItem::UnnamedExpr(e) => expr_name(e),
                SelectItem::ExprWithAlias { alias, .. } => OutName::Named(ident(alias)),
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => OutName::Star,
                SelectItem::ExprWithAliases { .. } => OutName::Unknown,
            },
            at: item.span().start,
        })
        .collect()
}

/// PostgreSQL's FigureColname for the expressions analysts write.
fn expr_name(e: &Expr) -> OutName {
    match e {
        Expr::Identifier(id) => OutName::Named(ident(id)),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .map(|p| OutName::Named(ident(p)))
            .unwrap_or(OutName::Unknown),
        Expr::Function(f) => name_parts(&f.name)
            .pop()
            .map(OutName::Named)
            .unwrap_or(OutName::Unknown),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => match expr_name(expr) {
            OutName::Unnamed => OutName::Unknown,
            other => other,
        },
        Expr::Case { .. } => OutName::Named("case".into()),
        Expr::AtTimeZone { .. } => OutName::Named("timezone".into()),
        Expr::Extract { .. } => OutName::Named("extract".into()),
        Expr::Value(_)
        | Expr::BinaryOp { .. }
        | Expr::UnaryOp { .. }
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::Between { .. }
        | Expr::In { .. } => OutName::Unnamed,
        _ => OutName::Unknown,
    }
}

/// Why a query does not end with the placeholder condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trailing {
    Ok,
    NotSelect,
    /// a clause follows the condition (ORDER BY, LIMIT, GROUP BY, …)
    ClauseAfter(&'static str),
    /// no WHERE (or HAVING) on the last SELECT
    NoCondition,
    /// the last condition does not involve the placeholder
    NotInLastCondition,
    /// the placeholder is in the last condition, but not in a comparison
    NotAComparison,
}

pub fn trailing_condition(q: &Query) -> Trailing {
    if let Some(clause) = clause_after(q) {
        return Trailing::ClauseAfter(clause);
    }
    let mut body = q.body.as_ref();
    let select = loop {
        match body {
            SetExpr::Select(s) => break s,
            SetExpr::SetOperation { right, .. } => body = right,
            SetExpr::Query(inner) => return trailing_condition(inner),
            _ => return Trailing::NotSelect,
        }
    };
    if !select.named_window.is_empty() {
        return Trailing::ClauseAfter("WINDOW");
    }
    if select.qualify.is_some() {
        return Trailing::ClauseAfter("QUALIFY");
    }
    let group_by = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(e, _) => !e.is_empty(),
    };
    let cond = match (&select.having, &select.selection) {
        (Some(h), _) => h,
        (None, _) if group_by => return Trailing::ClauseAfter("GROUP BY"),
        (None, Some(w)) => w,
        (None, None) => return Trailing::NoCondition,
    };
    last_condition(cond)
}

/// A clause of the whole query that would follow its last WHERE.
fn clause_after(q: &Query) -> Option<&'static str> {
    if q.order_by.is_some() {
        Some("ORDER BY")
    } else if q.limit_clause.is_some() {
        Some("LIMIT/OFFSET")
    } else if q.fetch.is_some() {
        Some("FETCH")
    } else if !q.locks.is_empty() {
        Some("FOR UPDATE/SHARE")
    } else {
        None
    }
}

/// The verdict on the rightmost leaf of a WHERE or HAVING condition.
fn last_condition(cond: &Expr) -> Trailing {
    let mut leaf = cond;
    loop {
        match leaf {
            Expr::Nested(e) => leaf = e,
            Expr::BinaryOp {
                op: BinaryOperator::And | BinaryOperator::Or,
                right,
                ..
            } => leaf = right,
            _ => break,
        }
    }
    if !has_param(leaf) {
        return Trailing::NotInLastCondition;
    }
    let comparison = matches!(
        leaf,
        Expr::BinaryOp {
            op: BinaryOperator::Gt
                | BinaryOperator::GtEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Eq
                | BinaryOperator::NotEq,
            ..
        } | Expr::Between { .. }
            | Expr::IsDistinctFrom(..)
    );
    if comparison {
        Trailing::Ok
    } else {
        Trailing::NotAComparison
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_one;
    use super::*;

    fn q(sql: &str) -> Statement {
        parse_one(sql).unwrap()
    }

    #[test]
    fn output_names_follow_postgresql() {
        let s = q(
            "SELECT a, t.b, c AS \"C\", d::text, lower(e), 1, x + 1, (f), CASE WHEN true THEN 1 END, t.* FROM t",
        );
        let names: Vec<OutName> = output_names(query_of(&s).unwrap())
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        use OutName::*;
        assert_eq!(
            names,
            vec![
                Named("a".into()),
                Named("b".into()),
                Named("C".into()),
                Named("d".into()),
                Named("lower".into()),
                Unnamed,
                Unnamed,
                Named("f".into()),
                Named("case".into()),
                Star
            ]
        );
    }

    #[test]
    fn output_columns_know_where_they_start() {
        let s = q("SELECT a,\n  t.b AS c FROM t");
        let out = output_names(query_of(&s).unwrap()).unwrap();
        assert_eq!(out[1].at, Location::new(2, 3));
    }

    #[test]
    fn trailing_condition_cases() {
        let t = |s: &str| trailing_condition(query_of(&q(s)).unwrap());
        assert_eq!(t("SELECT a FROM t WHERE u > $1"), Trailing::Ok);
        assert_eq!(
            t("SELECT a FROM t WHERE x AND (u > $1::timestamptz)"),
            Trailing::Ok
        );
        assert_eq!(t("SELECT a FROM t WHERE $1 < u"), Trailing::Ok);
        assert_eq!(
            t("WITH c AS (SELECT 1) SELECT a FROM t, c WHERE GREATEST(u, v) > $1"),
            Trailing::Ok
        );
        assert_eq!(
            t("SELECT a, max(u) FROM t GROUP BY a HAVING max(u) > $1"),
            Trailing::Ok
        );
        assert_eq!(
            t("SELECT a FROM t WHERE u > $1 ORDER BY a"),
            Trailing::ClauseAfter("ORDER BY")
        );
        assert_eq!(
            t("SELECT a FROM t WHERE u > $1 GROUP BY a"),
            Trailing::ClauseAfter("GROUP BY")
        );
        assert_eq!(
            t("SELECT a FROM t WHERE u > $1 AND x"),
            Trailing::NotInLastCondition
        );
        assert_eq!(t("SELECT a FROM t"), Trailing::NoCondition);
        assert_eq!(t("SELECT a FROM t WHERE f($1)"), Trailing::NotAComparison);
    }
}
