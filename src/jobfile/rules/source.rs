//! SELECT_SOURCE_SQL: a query with exactly one `%s`, in the comparison that ends its last
//! WHERE (or HAVING), nothing after it.

use super::finding::Finding;
use super::stmt::Stmt;
use crate::sqllex::Kind;
use crate::sqlshape::{self, OutName, Trailing};

const TRAILING_RULE: &str = "must end with a condition on the `%s` placeholder, e.g. \
     `WHERE updated_at > %s`; nothing may follow it but a trailing `;`";

/// Checks the query; returns its output names when the parser read it.
pub fn check(s: &Stmt<'_>, out: &mut Vec<Finding>) -> Option<Vec<OutName>> {
    let first = s.code.first()?;
    let is_query = first.is_word("SELECT") || first.is_word("WITH") || first.is_punct("(");
    if !is_query {
        out.push(Finding::error(
            s.key,
            "must be a SELECT query",
            Some(first.start),
        ));
        return None;
    }
    let ph = one_placeholder(s, out)?;
    if s.unreadable() {
        if !trailing_by_tokens(s, ph) {
            out.push(Finding::error(s.key, TRAILING_RULE, Some(ph)));
        }
        return None;
    }
    let Some(q) = s.tree().and_then(sqlshape::query_of) else {
        if s.tree().is_some() {
            out.push(Finding::error(
                s.key,
                "must be a SELECT query",
                Some(first.start),
            ));
        }
        return None;
    };
    if let Some(f) = trailing(s, sqlshape::trailing_condition(q), ph) {
        out.push(f);
    }
    sqlshape::output_names(q).map(|v| v.into_iter().map(|o| o.name).collect())
}

/// The offset of the one `%s`, or the problem with their number.
fn one_placeholder(s: &Stmt<'_>, out: &mut Vec<Finding>) -> Option<usize> {
    let ph = s.placeholders();
    match ph.as_slice() {
        [one] => Some(*one),
        [] => {
            out.push(Finding::error(
                s.key,
                "must end with a condition on a `%s` placeholder, e.g. `WHERE updated_at > %s` \
                 (a `%s` inside a string literal, quoted identifier or comment does not count)",
                s.code.last().map(|t| t.start),
            ));
            None
        }
        [_, second, ..] => {
            out.push(Finding::error(
                s.key,
                format!(
                    "has {} `%s` placeholders; exactly one is allowed, in the condition that \
                     ends the query (write `%%` for a literal `%`)",
                    ph.len()
                ),
                Some(*second),
            ));
            None
        }
    }
}

/// The parser's verdict on the trailing condition, located at the placeholder or at the
/// clause that follows it.
fn trailing(s: &Stmt<'_>, verdict: Trailing, ph: usize) -> Option<Finding> {
    let message = match verdict {
        Trailing::Ok => return None,
        Trailing::NotSelect => {
            return Some(Finding::error(s.key, "must be a SELECT query", s.start()));
        }
        Trailing::ClauseAfter(clause) => {
            let words = [
                "ORDER", "LIMIT", "OFFSET", "FETCH", "FOR", "GROUP", "WINDOW", "QUALIFY",
            ];
            let at = s.word_at(ph, &words).unwrap_or(ph);
            return Some(Finding::error(
                s.key,
                format!("{TRAILING_RULE} (here {clause} follows it)"),
                Some(at),
            ));
        }
        Trailing::NoCondition | Trailing::NotInLastCondition => format!(
            "{TRAILING_RULE}; here the `%s` is not in the last condition of the query's WHERE \
             (move other conditions before it, joined with AND)"
        ),
        Trailing::NotAComparison => format!(
            "{TRAILING_RULE}; here the `%s` is not compared with anything (write e.g. \
             `updated_at > %s`)"
        ),
    };
    Some(Finding::error(s.key, message, Some(ph)))
}

/// For a query the parser cannot read: a comparison right before the placeholder, a WHERE
/// or HAVING before it, and nothing after it but a cast.
fn trailing_by_tokens(s: &Stmt<'_>, ph: usize) -> bool {
    let sig = &s.code;
    let Some(at) = sig.iter().position(|t| t.start == ph) else {
        return false;
    };
    let stops = [
        "ORDER",
        "LIMIT",
        "OFFSET",
        "GROUP",
        "HAVING",
        "UNION",
        "FOR",
        "AND",
        "OR",
        "FETCH",
        "WINDOW",
        "EXCEPT",
        "INTERSECT",
        "WHERE",
        "FROM",
    ];
    let rest = &sig[at + 1..];
    let type_token = |t: &crate::sqllex::Token<'_>| {
        (matches!(
            t.kind,
            Kind::Word | Kind::QuotedIdent | Kind::Number | Kind::Cast
        ) && !stops.iter().any(|w| t.is_word(w)))
            || [".", "(", ")", "[", "]", ","].iter().any(|p| t.is_punct(p))
    };
    let trailing_ok =
        rest.is_empty() || (rest[0].kind == Kind::Cast && rest[1..].iter().all(type_token));
    let compares = at.checked_sub(1).map(|i| &sig[i]).is_some_and(|t| {
        (t.kind == Kind::Operator && [">", ">=", "<", "<=", "=", "<>", "!="].contains(&t.text))
            || t.is_word("AND")
            || t.is_word("BETWEEN")
    });
    let has_condition = sig[..at]
        .iter()
        .any(|t| t.is_word("WHERE") || t.is_word("HAVING"));
    trailing_ok && compares && has_condition
}
