//! Translation of psycopg-style `%s` placeholders into PostgreSQL's `$n` parameters.
//!
//! Only code counts: a `%s` inside a string literal, a quoted identifier, a dollar-quoted
//! body or a comment is left alone. `%%` becomes a single `%` everywhere but in comments, as
//! psycopg does, so `LIKE 'TEST-%%'` written for psycopg means `LIKE 'TEST-%'` here too.

use crate::sqllex::{Kind, tokenize};

/// A statement ready to prepare, plus where its placeholders were in the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub sql: String,
    /// byte offsets of each `%s` in the original text, in order
    pub placeholders: Vec<usize>,
}

impl Translated {
    pub fn count(&self) -> usize {
        self.placeholders.len()
    }
}

/// Rewrites `%s` as `$1`, `$2`, … and `%%` as `%`.
pub fn translate(sql: &str) -> Translated {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut placeholders = Vec::new();
    for tok in tokenize(sql) {
        match tok.kind {
            Kind::Placeholder => {
                placeholders.push(tok.start);
                out.push('$');
                out.push_str(&placeholders.len().to_string());
            }
            Kind::PercentPercent => out.push('%'),
            // psycopg formats the whole string, so a job written for it doubles every `%`,
            // even inside literals; a `%s` there is still data (see the module doc).
            Kind::String | Kind::DollarString | Kind::QuotedIdent => {
                out.push_str(&tok.text.replace("%%", "%"))
            }
            _ => out.push_str(tok.text),
        }
    }
    Translated {
        sql: out,
        placeholders,
    }
}

/// Removes a trailing `;` (and the white space or comments around it) so the statement can
/// be embedded in a larger one (`COPY (...) TO STDOUT`, a subquery).
pub fn strip_trailing_semicolon(sql: &str) -> &str {
    let tokens = tokenize(sql);
    let mut end = sql.len();
    for tok in tokens.iter().rev() {
        if tok.is_trivia() || tok.is_punct(";") {
            end = tok.start;
        } else {
            break;
        }
    }
    // Keep a trailing line comment from swallowing what we append: cut only at token edges,
    // and the cut above never leaves a line comment last because trivia is removed.
    &sql[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_in_order() {
        let t = translate("INSERT INTO t (a, b) VALUES (%s, %s) ON CONFLICT (a) DO NOTHING");
        assert_eq!(
            t.sql,
            "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(t.count(), 2);
    }

    #[test]
    fn skips_literals_identifiers_dollar_quotes_and_comments() {
        let src = "SELECT '%s', \"%s\", $$ %s $$, $t$%s$t$ /* %s */ -- %s\nFROM x WHERE u > %s";
        let t = translate(src);
        assert_eq!(t.count(), 1);
        assert!(t.sql.ends_with("WHERE u > $1"));
        assert!(t.sql.contains("'%s'"));
        assert!(t.sql.contains("\"%s\""));
        assert!(t.sql.contains("$$ %s $$"));
        assert!(t.sql.contains("-- %s"));
    }

    #[test]
    fn double_percent_is_a_literal_percent_as_in_psycopg() {
        let t = translate(
            "SELECT id %% 2, 'a%%', '100%%%%' FROM t WHERE name LIKE 'x%' AND u > %s -- 5%%",
        );
        assert_eq!(
            t.sql,
            "SELECT id % 2, 'a%', '100%%' FROM t WHERE name LIKE 'x%' AND u > $1 -- 5%%"
        );
    }

    #[test]
    fn escaped_quotes_do_not_end_literals() {
        let t = translate("SELECT 'it''s %s', E'\\' %s' WHERE a > %s");
        assert_eq!(t.count(), 1);
    }

    #[test]
    fn strips_trailing_semicolons_and_comments() {
        assert_eq!(strip_trailing_semicolon("SELECT 1 ; -- done\n"), "SELECT 1");
        assert_eq!(strip_trailing_semicolon("SELECT ';'"), "SELECT ';'");
    }
}
