//! One statement of a job file as the rules see it: its text, our lexer's tokens, and what
//! sqlparser read of it, with the way back from the parser's positions to the file's text.

use sqlparser::ast::Statement;
use sqlparser::tokenizer::Location;

use super::finding::Finding;
use crate::jobfile::keys::Key;
use crate::placeholders::{original_offset, translate};
use crate::sqllex::{Kind, Token, tokenize};
use crate::sqlshape::{self, ParseError};

/// What the parser made of a statement.
#[derive(Debug)]
pub enum Parsed {
    Read(Box<Statement>),
    /// the parser failed, not yet told apart (see `syntax::read`)
    Failed(ParseError),
    /// the parser failed on what is likely PostgreSQL syntax it lacks: the finding is a note
    Unsupported(Finding),
    /// the statement is not valid SQL: the finding is its one syntax error
    Broken(Finding),
    /// not handed to the parser: a problem found by our lexer already spoils it
    NotTried,
}

pub struct Stmt<'a> {
    pub key: Key,
    pub text: &'a str,
    pub tokens: Vec<Token<'a>>,
    /// significant tokens without trailing semicolons
    pub code: Vec<Token<'a>>,
    pub parsed: Parsed,
    /// the text the parser read: `%s` → `$n` where the statement takes parameters
    parser_text: Option<String>,
}

impl<'a> Stmt<'a> {
    pub fn new(key: Key, text: &'a str) -> Stmt<'a> {
        let tokens = tokenize(text);
        let code = sqlshape::code(&tokens);
        let mut s = Stmt {
            key,
            text,
            tokens,
            code,
            parsed: Parsed::NotTried,
            parser_text: None,
        };
        if s.fit_for_parser() {
            let input = if key.takes_parameters() {
                translate(text).sql
            } else {
                text.to_string()
            };
            s.parsed = match sqlshape::parse_one(&input) {
                Ok(stmt) => Parsed::Read(Box::new(stmt)),
                Err(e) => Parsed::Failed(e),
            };
            s.parser_text = Some(input);
        }
        s
    }

    /// Our lexer finds nothing that already makes the statement wrong: something to read,
    /// every literal closed, one statement, and in a statement sent as written no `%s` or
    /// `%%` (the parser would read them as operators).
    fn fit_for_parser(&self) -> bool {
        let as_written_marks = !self.key.takes_parameters()
            && self
                .code
                .iter()
                .any(|t| matches!(t.kind, Kind::Placeholder | Kind::PercentPercent));
        !self.code.is_empty()
            && !self.tokens.iter().any(|t| t.unterminated)
            && !self.code.iter().any(|t| t.is_punct(";"))
            && !as_written_marks
    }

    /// The parser's tree, when it read the statement.
    pub fn tree(&self) -> Option<&Statement> {
        match &self.parsed {
            Parsed::Read(s) => Some(s),
            _ => None,
        }
    }

    /// True when the parser could not read a statement that is likely PostgreSQL syntax
    /// it lacks: the few rules that matter then fall back to tokens.
    pub fn unreadable(&self) -> bool {
        matches!(self.parsed, Parsed::Unsupported(_))
    }

    /// The byte offset in the statement's text of a position the parser gave.
    pub fn offset(&self, at: Location) -> Option<usize> {
        let parsed = self.parser_text.as_deref()?;
        let off = sqlshape::offset_of(parsed, at)?;
        Some(if self.key.takes_parameters() {
            original_offset(self.text, off)
        } else {
            off
        })
    }

    /// Where the statement's first token is.
    pub fn start(&self) -> Option<usize> {
        self.code.first().map(|t| t.start)
    }

    /// Offset of the first code token at or after byte `from` that is one of `words`.
    pub fn word_at(&self, from: usize, words: &[&str]) -> Option<usize> {
        self.code
            .iter()
            .find(|t| t.start >= from && words.iter().any(|w| t.is_word(w)))
            .map(|t| t.start)
    }

    /// Offsets of the `%s` placeholders in code.
    pub fn placeholders(&self) -> Vec<usize> {
        self.code
            .iter()
            .filter(|t| t.kind == Kind::Placeholder)
            .map(|t| t.start)
            .collect()
    }
}
