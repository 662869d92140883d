//! `INSERT INTO t (…) VALUES (…) ON CONFLICT …`: the upsert's shape, which the pipeline
//! turns into its set-based merge, and what its `ON CONFLICT` clause does.
//!
//! The shape is read from tokens, not from sqlparser's tree: the merge must be derived from
//! any upsert PostgreSQL accepts, including syntax sqlparser does not read, and `validate`
//! checks the column list and `VALUES` on this same reading, so the two agree by
//! construction.

use std::fmt;

use sqlparser::ast::{
    AssignmentTarget, ConflictTarget, DoUpdate, Expr, Insert, OnConflictAction, OnInsert, SetExpr,
    Statement, TableObject,
};

use super::name::{TableName, table_name, table_name_at};
use super::parse::{code, ident, matching_paren, name_parts, parse_one, split_commas};
use crate::placeholders::translate;
use crate::sqllex::{Token, ident_value, tokenize};

/// What the upsert's parts look like; offsets are bytes of the text it was read from.
#[derive(Debug, Clone)]
pub struct UpsertShape {
    pub table: TableName,
    pub table_at: usize,
    pub columns: Vec<String>,
    /// where each column of the list is written
    pub column_at: Vec<usize>,
    /// byte range in the source of the `VALUES (...)` clause, `VALUES` keyword included
    pub values_range: (usize, usize),
    /// the source text of each top-level expression inside `VALUES (...)`
    pub value_exprs: Vec<String>,
    /// where each of those expressions starts
    pub value_at: Vec<usize>,
}

/// Why a statement is not `INSERT INTO t (cols) VALUES (exprs) …`, and where reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    pub message: String,
    pub at: Option<usize>,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn fail<T>(message: impl Into<String>, at: Option<usize>) -> Result<T, ShapeError> {
    Err(ShapeError {
        message: message.into(),
        at,
    })
}

/// Reads `INSERT INTO name (cols) VALUES (exprs) ...`. The pipeline derives its set-based
/// merge from this, so `validate` requires it too.
pub fn upsert_shape(sql: &str) -> Result<UpsertShape, ShapeError> {
    let tokens = tokenize(sql);
    let sig = code(&tokens);
    let at = |i: usize| sig.get(i).or(sig.last()).map(|t| t.start);
    if !(sig.first().is_some_and(|t| t.is_word("INSERT"))
        && sig.get(1).is_some_and(|t| t.is_word("INTO")))
    {
        return fail("must begin with `INSERT INTO`", at(0));
    }
    let Some((table, mut i)) = table_name_at(&sig, 2) else {
        return fail("no table name after `INSERT INTO`", at(2));
    };
    if sig.get(i).is_some_and(|t| t.is_word("AS")) {
        i += 2;
    }
    if !sig.get(i).is_some_and(|t| t.is_punct("(")) {
        return fail(
            "must list the target columns: `INSERT INTO t (c1, c2, …) VALUES (%s, %s, …)`",
            at(i),
        );
    }
    let Some(close) = matching_paren(&sig, i) else {
        return fail("unbalanced parentheses in the column list", at(i));
    };
    let (columns, column_at) = column_list(&sig[i + 1..close])?;
    let (values_range, value_exprs, value_at) = values(sql, &sig, close + 1)?;
    Ok(UpsertShape {
        table,
        table_at: sig[2].start,
        columns,
        column_at,
        values_range,
        value_exprs,
        value_at,
    })
}

/// The names of `(c1, c2, …)` and where each is.
fn column_list(toks: &[Token<'_>]) -> Result<(Vec<String>, Vec<usize>), ShapeError> {
    let mut columns = Vec::new();
    let mut at = Vec::new();
    for part in split_commas(toks) {
        match part {
            [one] => match ident_value(one) {
                Some(c) => {
                    columns.push(c);
                    at.push(one.start);
                }
                None => {
                    return fail(
                        format!("`{}` is not a column name", one.text),
                        Some(one.start),
                    );
                }
            },
            _ => {
                return fail(
                    "the column list must hold plain column names",
                    part.first().map(|t| t.start),
                );
            }
        }
    }
    Ok((columns, at))
}

type Values = ((usize, usize), Vec<String>, Vec<usize>);

/// `VALUES (e1, e2, …)` at `sig[i]`: its byte range, each expression's text and offset.
fn values(sql: &str, sig: &[Token<'_>], i: usize) -> Result<Values, ShapeError> {
    let at = |i: usize| sig.get(i).or(sig.last()).map(|t| t.start);
    if !sig.get(i).is_some_and(|t| t.is_word("VALUES")) {
        return fail(
            "must use `VALUES (%s, …)` right after the column list",
            at(i),
        );
    }
    if !sig.get(i + 1).is_some_and(|t| t.is_punct("(")) {
        return fail("`VALUES` must be followed by `(`", at(i + 1));
    }
    let Some(close) = matching_paren(sig, i + 1) else {
        return fail("unbalanced parentheses in VALUES", at(i + 1));
    };
    if sig.get(close + 1).is_some_and(|t| t.is_punct(",")) {
        return fail(
            "must insert a single row: `VALUES (%s, …)` once",
            at(close + 1),
        );
    }
    let parts = split_commas(&sig[i + 2..close]);
    let exprs = parts
        .iter()
        .map(|part| match (part.first(), part.last()) {
            (Some(a), Some(b)) => sql[a.start..b.end()].to_string(),
            _ => String::new(),
        })
        .collect();
    let starts = parts
        .iter()
        .map(|p| p.first().map_or(sig[i + 1].start, |t| t.start))
        .collect();
    Ok(((sig[i].start, sig[close].end()), exprs, starts))
}

// ---------------------------------------------------------------------------------------
// What sqlparser reads of the upsert

#[derive(Debug, Clone)]
pub enum Conflict {
    Missing,
    DoNothing,
    /// `ON CONFLICT DO UPDATE` without a target
    NoTarget,
    OnConstraint,
    Columns {
        columns: Vec<String>,
        /// the columns `DO UPDATE SET` assigns
        set: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct UpsertInfo {
    pub table: Option<TableName>,
    /// the rows of `VALUES`, or None when the source is not a VALUES list
    pub rows: Option<Vec<Vec<Expr>>>,
    pub conflict: Conflict,
    /// the columns of `ON CONFLICT (…)`, whatever the action
    pub conflict_columns: Option<Vec<String>>,
    /// every `DO UPDATE SET` assignment is `c = EXCLUDED.c`, without a `WHERE`: the row
    /// then ends up holding exactly the inserted values
    pub plain_set: bool,
}

pub fn upsert_info(stmt: &Statement) -> Option<UpsertInfo> {
    let Statement::Insert(ins) = stmt else {
        return None;
    };
    Some(from_insert(ins))
}

/// The conflict columns of an upsert's `ON CONFLICT (…)`, when the parser can read it.
pub fn conflict_columns(upsert_sql: &str) -> Option<Vec<String>> {
    let stmt = parse_one(&translate(upsert_sql).sql).ok()?;
    match upsert_info(&stmt)?.conflict {
        Conflict::Columns { columns, .. } => Some(columns),
        _ => None,
    }
}

/// True when the upsert's `DO UPDATE SET` assigns `c = EXCLUDED.c` only (no `WHERE`): a
/// target row equal to the inserted values is then left exactly as it is.
pub fn plain_update_set(upsert_sql: &str) -> bool {
    parse_one(&translate(upsert_sql).sql)
        .ok()
        .and_then(|s| upsert_info(&s))
        .is_some_and(|u| u.plain_set)
}

fn from_insert(ins: &Insert) -> UpsertInfo {
    let table = match &ins.table {
        TableObject::TableName(n) => table_name(n),
        _ => None,
    };
    let rows = ins.source.as_ref().and_then(|q| match q.body.as_ref() {
        SetExpr::Values(v) => Some(v.rows.iter().map(|r| r.content.clone()).collect()),
        _ => None,
    });
    let on_conflict = match &ins.on {
        Some(OnInsert::OnConflict(oc)) => Some(oc),
        _ => None,
    };
    let conflict_columns = on_conflict.and_then(|oc| match &oc.conflict_target {
        Some(ConflictTarget::Columns { columns, .. }) => Some(columns.iter().map(ident).collect()),
        _ => None,
    });
    let conflict = match on_conflict {
        None => Conflict::Missing,
        Some(oc) => match (&oc.conflict_target, &oc.action) {
            (_, OnConflictAction::DoNothing) => Conflict::DoNothing,
            (None, _) => Conflict::NoTarget,
            (Some(ConflictTarget::OnConstraint(_)), _) => Conflict::OnConstraint,
            (Some(ConflictTarget::Columns { columns, .. }), OnConflictAction::DoUpdate(du)) => {
                Conflict::Columns {
                    columns: columns.iter().map(ident).collect(),
                    set: assigned(du),
                }
            }
        },
    };
    let plain_set = on_conflict.is_some_and(|oc| match &oc.action {
        OnConflictAction::DoUpdate(du) => is_plain(du),
        OnConflictAction::DoNothing => false,
    });
    UpsertInfo {
        table,
        rows,
        conflict,
        conflict_columns,
        plain_set,
    }
}

/// The columns `DO UPDATE SET` assigns.
fn assigned(du: &DoUpdate) -> Vec<String> {
    du.assignments
        .iter()
        .flat_map(|a| match &a.target {
            AssignmentTarget::ColumnName(n) => name_parts(n).pop().into_iter().collect::<Vec<_>>(),
            AssignmentTarget::Tuple(ns) => ns.iter().filter_map(|n| name_parts(n).pop()).collect(),
        })
        .collect()
}

/// Every assignment is `c = EXCLUDED.c` and there is no `WHERE`.
fn is_plain(du: &DoUpdate) -> bool {
    du.selection.is_none()
        && du.assignments.iter().all(|a| match (&a.target, &a.value) {
            (AssignmentTarget::ColumnName(n), Expr::CompoundIdentifier(parts)) => {
                parts.len() == 2
                    && parts[0].value.eq_ignore_ascii_case("excluded")
                    && parts[0].quote_style.is_none()
                    && name_parts(n).last() == Some(&ident(&parts[1]))
            }
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_reads_columns_values_and_their_offsets() {
        let sql = "INSERT INTO s.t (a, \"B\") VALUES ($1, lower($2)) ON CONFLICT (a) DO NOTHING";
        let s = upsert_shape(sql).unwrap();
        assert_eq!(s.columns, vec!["a", "B"]);
        assert_eq!(s.column_at[1], sql.find("\"B\"").unwrap());
        assert_eq!(s.value_exprs, vec!["$1", "lower($2)"]);
        assert_eq!(s.value_at[1], sql.find("lower").unwrap());
        assert_eq!(
            &sql[s.values_range.0..s.values_range.1],
            "VALUES ($1, lower($2))"
        );
        let e = upsert_shape("INSERT INTO t (a) VALUS ($1)").unwrap_err();
        assert_eq!(e.at, Some(18));
    }

    #[test]
    fn plain_update_set_only_for_excluded_assignments() {
        let yes =
            "INSERT INTO t (a, b) VALUES (%s, %s) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b";
        assert!(plain_update_set(yes));
        assert!(!plain_update_set(&yes.replace("EXCLUDED.b", "t.b + 1")));
        assert_eq!(conflict_columns(yes), Some(vec!["a".to_string()]));
    }
}
