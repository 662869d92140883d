//! KEY_COLUMNS: a non-empty list of distinct names, each known to the job's statements; a
//! name none of them knows is reported once, here.

use super::{Facts, Finding};
use crate::jobfile::Key;
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

/// Each key against what the statements say; returns the keys no statement knows.
pub fn against(facts: &Facts<'_>, out: &mut Vec<Finding>) -> Vec<String> {
    let Some(keys) = facts.keys else {
        return Vec::new();
    };
    let table_cols = facts.create.as_ref().and_then(|c| c.columns());
    let source_names: Option<Vec<&str>> = facts
        .source
        .as_ref()
        .and_then(|names| names.iter().map(OutName::name).collect());
    let mut unknown = Vec::new();
    for k in keys {
        let in_table = table_cols.map(|c| c.iter().any(|c| &c.name == k));
        let in_upsert = facts
            .upsert
            .as_ref()
            .map(|u| u.columns.iter().any(|(c, _)| c == k));
        let in_source = source_names.as_ref().map(|n| n.contains(&k.as_str()));
        let in_keys = facts
            .key_names
            .as_ref()
            .filter(|n| {
                n.columns
                    .iter()
                    .all(|(x, _)| matches!(x, OutName::Named(_)))
            })
            .map(|n| n.columns.iter().any(|(x, _)| x.name() == Some(k.as_str())));
        if [in_table, in_upsert, in_source, in_keys]
            .iter()
            .all(|x| *x == Some(false))
        {
            unknown.push(k.clone());
            continue;
        }
        if in_upsert == Some(false) {
            let at = facts
                .upsert
                .as_ref()
                .and_then(|u| u.columns.first().map(|c| c.1));
            out.push(Finding::error(
                Key::UpsertTargetSql,
                format!("KEY_COLUMNS names `{k}`, which is not among the inserted columns"),
                at,
            ));
        }
        if let (Some(false), Some(names)) = (in_source, &source_names) {
            out.push(Finding::error(
                Key::KeyColumns,
                agree::key_not_in_source(k, names),
                None,
            ));
        }
        if in_table == Some(false) && in_upsert != Some(false) {
            out.push(Finding::error(
                Key::KeyColumns,
                format!("`{k}` is not a column of the table CREATE_TABLE_SQL creates"),
                None,
            ));
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
