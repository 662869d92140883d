//! Table names as PostgreSQL resolves them, read from tokens or from sqlparser's tree.

use std::fmt;

use sqlparser::ast::ObjectName;

use super::parse::name_parts;
use crate::sqllex::{Token, ident_value, significant, tokenize};

/// A possibly schema-qualified table name, normalised as PostgreSQL would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub table: String,
}

impl TableName {
    /// Two names denote the same table if the table parts agree and the schemas do when
    /// both are given (an unqualified name depends on A's search_path, which `--connect`
    /// checks).
    pub fn same_as(&self, other: &TableName) -> bool {
        self.table == other.table
            && match (&self.schema, &other.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

/// `table`, `schema.table` or `db.schema.table` as a whole text (TARGET_TABLE).
pub fn parse_table_name(text: &str) -> Option<TableName> {
    let toks = significant(&tokenize(text));
    let (name, used) = table_name_at(&toks, 0)?;
    (used == toks.len()).then_some(name)
}

/// Reads `ident`, `ident.ident` or `ident.ident.ident` at `toks[i]`; returns the name
/// (the last two parts) and the index after it. Read from tokens, not the parser's tree, so
/// a name is found in any statement PostgreSQL accepts.
pub fn table_name_at(toks: &[Token<'_>], i: usize) -> Option<(TableName, usize)> {
    let mut parts = vec![ident_value(toks.get(i)?)?];
    let mut next = i + 1;
    while parts.len() < 3 && toks.get(next).is_some_and(|t| t.is_punct(".")) {
        parts.push(ident_value(toks.get(next + 1)?)?);
        next += 2;
    }
    let table = parts.pop()?;
    Some((
        TableName {
            schema: parts.pop(),
            table,
        },
        next,
    ))
}

/// The table named by `n` (the last two parts of `db.schema.table`).
pub fn table_name(n: &ObjectName) -> Option<TableName> {
    let mut parts = name_parts(n);
    let table = parts.pop()?;
    Some(TableName {
        schema: parts.pop(),
        table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_keep_the_last_two_parts() {
        let t = parse_table_name("db.\"S\".T").unwrap();
        assert_eq!((t.schema.as_deref(), t.table.as_str()), (Some("S"), "t"));
        assert!(parse_table_name("a b").is_none());
    }
}
