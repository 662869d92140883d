//! What every statement must be, whatever its key: something to run, literals closed, one
//! statement, `%s`/`%%` only where they mean something, and SQL at all. When sqlparser
//! cannot read a statement, this tells a broken statement (an error at one place) from
//! PostgreSQL syntax the parser lacks (a note: the statement is never rejected for that).

use sqlparser::keywords::ALL_KEYWORDS;

use super::finding::{Finding, close_names};
use super::stmt::{Parsed, Stmt};
use crate::jobfile::keys::Key;
use crate::sqllex::{Kind, Token};
use crate::sqlshape::ParseError;

/// Reads one statement and, when the parser fails, tells which kind of failure it is.
pub fn read(key: Key, text: &str) -> Stmt<'_> {
    let mut s = Stmt::new(key, text);
    if let Parsed::Failed(e) = &s.parsed {
        let diagnosis = diagnose(&s, e);
        s.parsed = diagnosis;
    }
    s
}

/// The rules our lexer checks on every statement.
pub fn check(s: &Stmt<'_>, out: &mut Vec<Finding>) {
    if let Some(t) = s.tokens.iter().find(|t| t.unterminated) {
        let what = match t.kind {
            Kind::String | Kind::DollarString => "string literal",
            Kind::QuotedIdent => "quoted identifier",
            _ => "comment",
        };
        let start: String = t.text.chars().take(20).collect();
        out.push(Finding::error(
            s.key,
            format!("unterminated {what} starting with `{start}`"),
            Some(t.start),
        ));
    }
    if s.code.is_empty() {
        out.push(Finding::error(s.key, "is empty", None));
        return;
    }
    if let Some(semi) = s.code.iter().find(|t| t.is_punct(";")) {
        out.push(Finding::error(
            s.key,
            "holds more than one statement; only one is allowed (a trailing `;` is fine)",
            Some(semi.start),
        ));
    }
    if !s.key.takes_parameters() {
        as_written(s, out);
    }
}

/// The parser's verdict, after the key's own rules ran (`found_error`: they found an error
/// in this statement). A syntax error is reported only when nothing else was: the mistake a
/// key's rule names (`CREATE TABLE IF NOT EXIST`, `VALUS`) is the same one, and one mistake
/// gets one error at one place.
///
/// The error does not stop `run`: PostgreSQL has the last word on its own syntax, so a
/// statement this misjudges still runs.
pub fn verdict(s: &Stmt<'_>, found_error: bool, out: &mut Vec<Finding>) {
    match &s.parsed {
        Parsed::Broken(f) if !found_error => out.push(Finding {
            blocks_run: false,
            ..f.clone()
        }),
        Parsed::Unsupported(f) => out.push(f.clone()),
        _ => {}
    }
}

/// `%s` and `%%` in a statement that is sent as written (no parameters).
fn as_written(s: &Stmt<'_>, out: &mut Vec<Finding>) {
    if let Some(t) = s.code.iter().find(|t| t.kind == Kind::Placeholder) {
        out.push(Finding::error(
            s.key,
            "must not contain a `%s` placeholder: it is sent as written",
            Some(t.start),
        ));
    }
    if let Some(t) = s.code.iter().find(|t| t.kind == Kind::PercentPercent) {
        out.push(Finding::error(
            s.key,
            "`%%` is only a literal `%` in SELECT_SOURCE_SQL and UPSERT_TARGET_SQL; this \
             statement is sent as written, so write a single `%`",
            Some(t.start),
        ));
    }
}

/// The parser failed: an error when the statement is simply broken, else a note.
fn diagnose(s: &Stmt<'_>, e: &ParseError) -> Parsed {
    if let Some(f) = lexical_breakage(s) {
        return Parsed::Broken(f);
    }
    let at = e.at.and_then(|l| s.offset(l));
    let (expected, found) = expected_and_found(&e.message);
    let broken = match found {
        Some("EOF") => Some(format!(
            "the statement ends too early: expected {}",
            expected.unwrap_or("more")
        )),
        Some(word) if is_word(word) => misplaced_word(s, at, word, expected),
        _ => None,
    };
    match broken {
        Some(message) => Parsed::Broken(Finding::error(
            s.key,
            format!("syntax error: {message}"),
            at.or(s.code.last().map(|t| t.start)),
        )),
        None => Parsed::Unsupported(Finding::note(
            s.key,
            format!(
                "the SQL parser (sqlparser, PostgreSQL dialect) cannot read this statement \
                 ({}), which may be PostgreSQL syntax it lacks; its rules were checked token \
                 by token, and `validate --connect` lets PostgreSQL itself check it",
                e.message
            ),
            at,
        )),
    }
}

/// Never valid SQL, found by our lexer: an unbalanced parenthesis or an empty list item.
fn lexical_breakage(s: &Stmt<'_>) -> Option<Finding> {
    let mut open: Vec<&Token<'_>> = Vec::new();
    for (i, t) in s.code.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| &s.code[p]);
        if t.is_punct("(") {
            open.push(t);
        } else if t.is_punct(")") && open.pop().is_none() {
            return Some(Finding::error(
                s.key,
                "syntax error: this `)` closes no `(`",
                Some(t.start),
            ));
        }
        let empty_item = (t.is_punct(",") || t.is_punct(")"))
            && prev.is_some_and(|p| p.is_punct(",") || (t.is_punct(",") && p.is_punct("(")));
        if empty_item {
            return Some(Finding::error(
                s.key,
                "syntax error: an empty item in a list (two commas in a row, or a comma next to a parenthesis)",
                Some(t.start),
            ));
        }
    }
    open.last().map(|t| {
        Finding::error(
            s.key,
            "syntax error: this `(` is never closed",
            Some(t.start),
        )
    })
}

/// A word where the parser wanted something else: broken when it looks like a misspelt
/// keyword, or is no keyword at all (then it is where no name can stand), unless it sits
/// in one of PostgreSQL's special call forms (`xmlelement(name foo …)`).
fn misplaced_word(
    s: &Stmt<'_>,
    at: Option<usize>,
    word: &str,
    expected: Option<&str>,
) -> Option<String> {
    let wanted = expected.unwrap_or("");
    let suggestion = wanted
        .split([',', ' '])
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphabetic()))
        .filter(|w| w.len() > 2 && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .find(|w| {
            !w.eq_ignore_ascii_case(word)
                && close_names(&w.to_ascii_uppercase(), &word.to_ascii_uppercase())
        });
    let keyword = ALL_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word));
    if suggestion.is_none() && (keyword || in_special_call(s, at)) {
        return None;
    }
    let hint = suggestion
        .map(|w| format!(" (did you mean `{w}`?)"))
        .unwrap_or_default();
    Some(format!(
        "`{word}` cannot stand here: expected {wanted}{hint}"
    ))
}

/// True when `at` is inside the parentheses of a call to an `xml…` or `json…` function,
/// whose arguments PostgreSQL reads with a grammar of their own.
fn in_special_call(s: &Stmt<'_>, at: Option<usize>) -> bool {
    let Some(at) = at else { return false };
    let mut calls: Vec<bool> = Vec::new();
    for (i, t) in s.code.iter().enumerate().take_while(|(_, t)| t.start < at) {
        if t.is_punct("(") {
            let name = i
                .checked_sub(1)
                .map(|p| s.code[p].text.to_ascii_lowercase());
            calls.push(name.is_some_and(|n| n.starts_with("xml") || n.starts_with("json")));
        } else if t.is_punct(")") {
            calls.pop();
        }
    }
    calls.contains(&true)
}

/// `Expected: X, found: Y` as sqlparser words its errors.
fn expected_and_found(message: &str) -> (Option<&str>, Option<&str>) {
    let Some((head, found)) = message.rsplit_once(", found: ") else {
        return (None, None);
    };
    (head.strip_prefix("Expected: "), Some(found.trim()))
}

fn is_word(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}
