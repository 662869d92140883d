//! Reading SQL text: sqlparser's tree of one statement and where its nodes are, and the
//! token helpers the shapes read with.

use std::fmt;

use sqlparser::ast::{Expr, Ident, ObjectName, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Location;

use crate::sqllex::{Kind, Token, significant, tokenize};

/// Why sqlparser could not read a statement: its own message and where it stopped (line
/// and column in characters of the text it was given, when it says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub at: Option<Location>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parses exactly one statement with the PostgreSQL dialect.
pub fn parse_one(sql: &str) -> Result<Statement, ParseError> {
    let mut v = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| {
        let text = e.to_string();
        let text = text
            .trim_start_matches("sql parser error: ")
            .trim_start_matches("sql tokenizer error: ");
        split_location(text)
    })?;
    match v.len() {
        1 => Ok(v.remove(0)),
        n => Err(ParseError {
            message: format!("{n} statements"),
            at: None,
        }),
    }
}

/// sqlparser appends ` at Line: L, Column: C` to its messages.
fn split_location(text: &str) -> ParseError {
    let parsed = text.rsplit_once(" at Line: ").and_then(|(msg, rest)| {
        let (line, col) = rest.split_once(", Column: ")?;
        let at = Location::new(line.trim().parse().ok()?, col.trim().parse().ok()?);
        Some(ParseError {
            message: msg.to_string(),
            at: Some(at),
        })
    });
    parsed.unwrap_or_else(|| ParseError {
        message: text.to_string(),
        at: None,
    })
}

/// The byte offset in `text` of a sqlparser location (1-based line and column in
/// characters); `None` for the empty location sqlparser gives nodes it has no span for.
pub fn offset_of(text: &str, at: Location) -> Option<usize> {
    if at.line == 0 || at.column == 0 {
        return None;
    }
    let line_start = if at.line == 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(usize::try_from(at.line).ok()? - 2)
            .map(|(i, _)| i + 1)?
    };
    let col = usize::try_from(at.column).ok()? - 1;
    let rest = &text[line_start..];
    rest.char_indices()
        .nth(col)
        .map(|(i, _)| line_start + i)
        .or_else(|| (rest.chars().count() == col).then_some(text.len()))
}

/// An identifier as PostgreSQL resolves it: unquoted folds to lower case.
pub fn ident(id: &Ident) -> String {
    match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_lowercase(),
    }
}

/// The parts of a dotted name, each resolved as PostgreSQL would.
pub(super) fn name_parts(n: &ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| p.as_ident().map(ident).unwrap_or_default())
        .collect()
}

/// True when `$n` appears in the expression (the lexer skips literals and comments).
pub fn has_param(e: &Expr) -> bool {
    tokenize(&e.to_string())
        .iter()
        .any(|t| t.kind == Kind::Param)
}

/// Index of the `)` matching the `(` at `open`.
pub(super) fn matching_paren(sig: &[Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in sig.iter().enumerate().skip(open) {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Splits tokens at commas outside parentheses and brackets.
pub(super) fn split_commas<'a, 'b>(toks: &'b [Token<'a>]) -> Vec<&'b [Token<'a>]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        if t.is_punct("(") || t.is_punct("[") {
            depth += 1;
        } else if t.is_punct(")") || t.is_punct("]") {
            depth -= 1;
        } else if depth == 0 && t.is_punct(",") {
            out.push(&toks[start..i]);
            start = i + 1;
        }
    }
    if start < toks.len() || !out.is_empty() {
        out.push(&toks[start..]);
    }
    out
}

/// Significant tokens without trailing semicolons.
pub fn code<'a>(tokens: &[Token<'a>]) -> Vec<Token<'a>> {
    let mut sig = significant(tokens);
    while sig.last().is_some_and(|t| t.is_punct(";")) {
        sig.pop();
    }
    sig
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_carry_their_location() {
        let e = parse_one("SELECT a FORM t").unwrap_err();
        assert_eq!(e.at, Some(Location::new(1, 15)), "{e:?}");
        assert!(!e.message.contains(" at Line:"), "{e:?}");
    }

    #[test]
    fn offsets_of_locations_count_characters() {
        let text = "é\n  ab";
        assert_eq!(
            offset_of(text, Location::new(2, 3)),
            Some(text.find('a').unwrap())
        );
        assert_eq!(offset_of(text, Location::new(1, 1)), Some(0));
        assert_eq!(offset_of(text, Location::new(0, 0)), None);
    }
}
