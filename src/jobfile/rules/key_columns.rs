//! KEY_COLUMNS: a non-empty list of distinct names, each known to the job's statements; a
//! name none of them knows is reported once, here.

use super::facts::Facts;
use super::finding::Finding;
use crate::jobfile::keys::Key;
use crate::jobfile::parse::Fields;
use crate::sqlshape::{OutName, agree};

/// The list's own rules; returns it when it is usable by the other rules.
pub fn check<'a>(f: &'a Fields, out: &mut Vec<Finding>) -> Option<&'a [String]> {
    let cols = f.key_columns.as_deref()?;
    if cols.is_empty() {
        out.push(Finding::error(
            Key::KeyColumns,
            "must name at least one column",
            None,
        ));
    }
    for (i, c) in cols.iter().enumerate() {
        if c.trim().is_empty() {
            out.push(Finding::error(
                Key::KeyColumns,
                format!("item {} is empty", i + 1),
                None,
            ));
        } else if cols[..i].contains(c) {
            out.push(Finding::error(
                Key::KeyColumns,
                format!("column `{c}` is listed twice"),
                None,
            ));
        }
    }
    (!cols.is_empty() && cols.iter().all(|c| !c.trim().is_empty())).then_some(cols)
}

/// Whether each statement knows `k`: the created table, the upsert's columns, the
/// source's output and the keys query's output (`None` where unknown).
fn known_by(facts: &Facts<'_>, k: &str) -> [Option<bool>; 4] {
    let in_table = facts
        .create
        .as_ref()
        .and_then(|c| c.columns())
        .map(|c| c.iter().any(|c| c.name == k));
    let in_upsert = facts
        .upsert
        .as_ref()
        .map(|u| u.columns.iter().any(|(c, _)| c == k));
    let in_source = source_names(facts).map(|n| n.contains(&k));
    let in_keys = facts
        .key_names
        .as_ref()
        .filter(|n| {
            n.columns
                .iter()
                .all(|(x, _)| matches!(x, OutName::Named(_)))
        })
        .map(|n| n.columns.iter().any(|(x, _)| x.name() == Some(k)));
    [in_table, in_upsert, in_source, in_keys]
}

/// The source's output names, when the parser named them all.
fn source_names<'f>(facts: &'f Facts<'_>) -> Option<Vec<&'f str>> {
    facts
        .source
        .as_ref()
        .and_then(|names| names.iter().map(OutName::name).collect())
}

/// Each key against what the statements say; returns the keys no statement knows.
pub fn against(facts: &Facts<'_>, out: &mut Vec<Finding>) -> Vec<String> {
    let Some(keys) = facts.keys else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    for k in keys {
        let known = known_by(facts, k);
        let [in_table, in_upsert, in_source, _] = known;
        if known.iter().all(|x| *x == Some(false)) {
            unknown.push(k.clone());
            continue;
        }
        if in_upsert == Some(false) {
            let at = facts
                .upsert
                .as_ref()
                .and_then(|u| u.columns.first().map(|c| c.1));
            let msg = format!("KEY_COLUMNS names `{k}`, which is not among the inserted columns");
            out.push(Finding::error(Key::UpsertTargetSql, msg, at));
        }
        if let (Some(false), Some(names)) = (in_source, source_names(facts)) {
            out.push(Finding::error(
                Key::KeyColumns,
                agree::key_not_in_source(k, &names),
                None,
            ));
        }
        if in_table == Some(false) && in_upsert != Some(false) {
            let msg = format!("`{k}` is not a column of the table CREATE_TABLE_SQL creates");
            out.push(Finding::error(Key::KeyColumns, msg, None));
        }
    }
    for k in &unknown {
        out.push(Finding::error(
            Key::KeyColumns,
            format!(
                "`{k}` is not a column in any of the job's statements (check the spelling; \
                 KEY_COLUMNS names output columns of SELECT_SOURCE_SQL and SELECT_KEYS_SQL and \
                 columns of TARGET_TABLE)"
            ),
            None,
        ));
    }
    unknown
}
