//! SELECT_KEYS_SQL: a query whose output columns are KEY_COLUMNS, same names, same order.

use super::facts::{Facts, KeyNames};
use super::finding::Finding;
use super::stmt::Stmt;
use crate::jobfile::keys::Key;
use crate::sqlshape::{self, OutName, agree};

pub fn check(s: &Stmt<'_>, out: &mut Vec<Finding>) -> Option<KeyNames> {
    let tree = s.tree()?;
    let Some(q) = sqlshape::query_of(tree) else {
        out.push(Finding::error(s.key, "must be a SELECT query", s.start()));
        return None;
    };
    let columns = sqlshape::output_names(q)?
        .into_iter()
        .map(|o| (o.name, s.offset(o.at)))
        .collect();
    Some(KeyNames {
        columns,
        start: s.start(),
    })
}

/// The output columns against KEY_COLUMNS; a key that no statement knows (`typos`) is
/// reported once, for KEY_COLUMNS, not here again.
pub fn against(facts: &Facts<'_>, typos: &[String], out: &mut Vec<Finding>) {
    let (Some(keys), Some(named)) = (facts.keys, &facts.key_names) else {
        return;
    };
    let names: Vec<OutName> = named.columns.iter().map(|(n, _)| n.clone()).collect();
    let same_count = names.len() == keys.len();
    for m in agree::keys_query_columns(&names, keys) {
        if same_count && typos.contains(&keys[m.column]) {
            continue;
        }
        let at = named
            .columns
            .get(m.column)
            .and_then(|c| c.1)
            .or(named.start);
        out.push(Finding::error(Key::SelectKeysSql, m.message, at));
    }
}
