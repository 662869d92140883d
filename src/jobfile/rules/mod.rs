//! The job-file rules that need no database, grouped by the key they report on. Each
//! statement is read once (`stmt`: our lexer's tokens and sqlparser's tree); `syntax` holds
//! what every statement must be; each key's file checks that statement, and a second pass
//! (`against`) relates the statements to each other, on what the parser read for certain.

mod create;
mod facts;
mod finding;
mod key_columns;
mod keys_sql;
mod source;
mod stmt;
mod syntax;
mod upsert;

use super::keys::Key;
use super::parse::Fields;
use super::problem::{Problem, Severity};
use crate::sqlshape::{self, TableName};
use facts::Facts;
use finding::Finding;
use stmt::Stmt;

/// Checks every rule of the job-file table on the keys that were readable; problems come
/// back in file order.
pub fn check_rules(file: &str, f: &Fields) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut facts = Facts {
        target: target_table(f, &mut out),
        keys: key_columns::check(f, &mut out),
        ..Facts::default()
    };
    let stmts: Vec<Stmt<'_>> = Key::STATEMENTS
        .into_iter()
        .filter_map(|k| f.statement(k).map(|sql| syntax::read(k, sql)))
        .collect();
    for s in &stmts {
        let mut found = Vec::new();
        syntax::check(s, &mut found);
        match s.key {
            Key::CreateTableSql => {
                facts.create = create::check(s, facts.target.as_ref(), &mut found)
            }
            Key::SelectSourceSql => facts.source = source::check(s, &mut found),
            Key::UpsertTargetSql => {
                facts.upsert = upsert::check(s, facts.target.as_ref(), &mut found)
            }
            _ => facts.key_names = keys_sql::check(s, &mut found),
        }
        let found_error = found.iter().any(|f| f.severity == Severity::Error);
        syntax::verdict(s, found_error, &mut found);
        out.extend(found);
    }
    let mut cross = Vec::new();
    let typos = key_columns::against(&facts, &mut cross);
    keys_sql::against(&facts, &typos, &mut cross);
    upsert::against(&facts, &mut cross);
    create::against(&facts, &mut cross);
    out.extend(cross.into_iter().map(|c| Finding {
        blocks_run: false,
        ..c
    }));
    locate(file, f, out)
}

/// TARGET_TABLE is a table name.
fn target_table(f: &Fields, out: &mut Vec<Finding>) -> Option<TableName> {
    let raw = f.target_table.as_deref()?;
    let parsed = sqlshape::parse_table_name(raw);
    if parsed.is_none() {
        out.push(Finding::error(
            Key::TargetTable,
            format!("`{raw}` is not a table name (expected `table` or `schema.table`)"),
            None,
        ));
    }
    parsed
}

/// Turns findings into problems located in the file, sorted by position.
fn locate(file: &str, f: &Fields, found: Vec<Finding>) -> Vec<Problem> {
    let pos = &f.positions;
    let mut out: Vec<Problem> = found
        .into_iter()
        .map(|x| {
            let key = x.key.name();
            let at = match (f.statement(x.key), x.at) {
                (Some(sql), Some(off)) => pos.in_value(key, sql, off),
                _ => None,
            }
            .or_else(|| pos.value(key));
            let mut p = Problem::new(file, key, x.message)
                .at(at)
                .severity(x.severity);
            p.blocks_run = x.blocks_run;
            p
        })
        .collect();
    out.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column.unwrap_or(0)));
    out
}

#[cfg(test)]
mod tests;
