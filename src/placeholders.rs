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
                // `a%s` must not become the identifier `a$1` (`$` may continue a name)
                if glued(&out) {
                    out.push(' ');
                }
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

/// True when text appended to `out` would continue an identifier or number.
pub fn glued(out: &str) -> bool {
    out.as_bytes()
        .last()
        .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80)
}

/// The byte offset in the original statement `sql` of a byte offset in its translation
/// (`translate(sql).sql`), so a position the server or the SQL parser gives in the
/// translation points at the analyst's own text.
pub fn original_offset(sql: &str, translated_offset: usize) -> usize {
    let mut t = 0usize;
    let mut n = 0usize;
    let mut prev = "";
    for tok in tokenize(sql) {
        let len = match tok.kind {
            Kind::Placeholder => {
                n += 1;
                1 + n.to_string().len() + usize::from(glued(prev))
            }
            Kind::PercentPercent => 1,
            Kind::String | Kind::DollarString | Kind::QuotedIdent => {
                tok.text.replace("%%", "%").len()
            }
            _ => tok.text.len(),
        };
        if translated_offset < t + len {
            let inside = translated_offset - t;
            return tok.start + inside.min(tok.text.len().saturating_sub(1));
        }
        t += len;
        prev = tok.text;
    }
    sql.len()
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

/// The source query with its watermark condition (`<expr> <op> %s`, the condition that ends
/// it) replaced by `TRUE`: every row the query describes, whatever its `updated_at`. Used to
/// backfill rows M has and A lacks. `None` when the condition cannot be found.
pub fn without_watermark_condition(sql: &str) -> Option<String> {
    let tokens = tokenize(sql);
    let sig: Vec<usize> = (0..tokens.len())
        .filter(|&i| !tokens[i].is_trivia())
        .collect();
    let ph = sig
        .iter()
        .position(|&i| tokens[i].kind == Kind::Placeholder)?;
    if sig
        .iter()
        .filter(|&&i| tokens[i].kind == Kind::Placeholder)
        .count()
        != 1
    {
        return None;
    }
    // the comparison operator right before the placeholder
    let op = ph.checked_sub(1)?;
    if tokens[sig[op]].kind != Kind::Operator {
        return None;
    }
    // the left operand reaches back to the previous boolean keyword at the same depth
    let mut depth = 0i32;
    let mut start = op;
    while start > 0 {
        let t = &tokens[sig[start - 1]];
        if t.is_punct(")") {
            depth += 1;
        } else if t.is_punct("(") {
            if depth == 0 {
                break;
            }
            depth -= 1;
        } else if depth == 0
            && [
                "AND", "OR", "WHERE", "HAVING", "NOT", "ON", "WHEN", "THEN", "ELSE",
            ]
            .iter()
            .any(|k| t.is_word(k))
        {
            break;
        }
        start -= 1;
    }
    if start == op {
        return None;
    }
    // a cast after the placeholder belongs to the condition
    let mut end = ph + 1;
    while end < sig.len() && tokens[sig[end]].kind == Kind::Cast {
        end += 1;
        while end < sig.len()
            && (matches!(tokens[sig[end]].kind, Kind::Word | Kind::QuotedIdent)
                || tokens[sig[end]].is_punct("."))
            && !tokens[sig[end]].is_word("AND")
            && !tokens[sig[end]].is_word("OR")
        {
            end += 1;
        }
    }
    let from = tokens[sig[start]].start;
    let to = tokens[sig[end - 1]].end();
    Some(format!("{}TRUE{}", &sql[..from], &sql[to..]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn translated_offsets_map_back() {
        let sql = "SELECT a %% 2, 'x%%' FROM t WHERE u > %s AND v";
        let t = translate(sql).sql;
        let v = t.find(" v").unwrap_or(0) + 1;
        assert_eq!(&sql[original_offset(sql, v)..], "v");
        let u = t.find("$1").unwrap_or(0);
        assert_eq!(
            &sql[original_offset(sql, u)..original_offset(sql, u) + 2],
            "%s"
        );
    }

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
    fn watermark_condition_becomes_true() {
        assert_eq!(
            without_watermark_condition("SELECT a FROM t WHERE x = 1 AND t.updated_at > %s;")
                .as_deref(),
            Some("SELECT a FROM t WHERE x = 1 AND TRUE;")
        );
        assert_eq!(
            without_watermark_condition(
                "SELECT a FROM t WHERE GREATEST(a.u, b.u) >= %s::timestamptz"
            )
            .as_deref(),
            Some("SELECT a FROM t WHERE TRUE")
        );
        assert_eq!(
            without_watermark_condition("SELECT a FROM t WHERE (x OR u > %s)").as_deref(),
            Some("SELECT a FROM t WHERE (x OR TRUE)")
        );
        assert_eq!(without_watermark_condition("SELECT 1"), None);
    }

    #[test]
    fn a_placeholder_glued_to_a_name_stays_a_parameter() {
        assert_eq!(translate("SELECT a%s").sql, "SELECT a $1");
        assert_eq!(translate("WHERE u > %s").sql, "WHERE u > $1");
    }

    #[test]
    fn strips_trailing_semicolons_and_comments() {
        assert_eq!(strip_trailing_semicolon("SELECT 1 ; -- done\n"), "SELECT 1");
        assert_eq!(strip_trailing_semicolon("SELECT ';'"), "SELECT ';'");
    }
}
