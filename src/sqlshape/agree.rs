//! Mistakes that both `run` (when it prepares a job) and `validate` find, worded once, so a
//! user reads the same message from either. Each message is what follows `KEY: ` — in
//! `validate`'s `FILE: KEY: line L, column C: message` and in `run`'s `KEY: message`.

use super::query::OutName;

/// A mismatch between SELECT_KEYS_SQL's output and KEY_COLUMNS, at output column `column`
/// (0-based) of the keys query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub column: usize,
    pub message: String,
}

/// SELECT_KEYS_SQL's output columns against KEY_COLUMNS: same names, same order. Names the
/// caller cannot tell (`Unknown`) are not compared; a `*` is never reported.
pub fn keys_query_columns(names: &[OutName], keys: &[String]) -> Vec<Mismatch> {
    if names.contains(&OutName::Star) {
        return Vec::new();
    }
    if names.len() != keys.len() {
        return vec![Mismatch {
            column: keys.len().min(names.len().saturating_sub(1)),
            message: format!(
                "selects {} column(s) but KEY_COLUMNS names {}: it must select exactly {}, in \
                 that order",
                names.len(),
                keys.len(),
                keys.join(", ")
            ),
        }];
    }
    let mut out = Vec::new();
    for (i, (name, key)) in names.iter().zip(keys).enumerate() {
        let message = match name {
            OutName::Unnamed => format!(
                "output column {} has no name; give it an alias: `AS {key}`",
                i + 1
            ),
            OutName::Named(n) if n != key => format!(
                "output column {} is `{n}` but KEY_COLUMNS has `{key}` there: same names, same \
                 order",
                i + 1
            ),
            _ => continue,
        };
        out.push(Mismatch { column: i, message });
    }
    out
}

/// KEY_COLUMNS names a column SELECT_SOURCE_SQL does not return (reported for KEY_COLUMNS).
pub fn key_not_in_source(key: &str, source_columns: &[&str]) -> String {
    format!(
        "`{key}` is not an output column of SELECT_SOURCE_SQL (its columns: {}); each row's key \
         is read from it",
        source_columns.join(", ")
    )
}

/// KEY_COLUMNS are not all columns of the target; `why` is PostgreSQL's message (reported
/// for KEY_COLUMNS).
pub fn keys_not_in_target(why: &str) -> String {
    format!("not all are columns of TARGET_TABLE: {why}")
}

/// The upsert binds another number of values than the source returns (reported for
/// UPSERT_TARGET_SQL).
pub fn placeholder_count(placeholders: usize, source_columns: usize) -> String {
    format!(
        "has {placeholders} placeholder(s) but SELECT_SOURCE_SQL returns {source_columns} \
         column(s); values are bound in the order of the source's columns, so they must be equal"
    )
}

/// The server counts another number of parameters in the source query than one (reported
/// for SELECT_SOURCE_SQL).
pub fn source_parameters(seen: usize) -> String {
    format!("must have exactly one `%s` placeholder, the server sees {seen}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(v: &[&str]) -> Vec<OutName> {
        v.iter().map(|n| OutName::from_server(n)).collect()
    }

    #[test]
    fn keys_query_mismatches_name_the_column() {
        let keys = vec!["id".to_string(), "kind".to_string()];
        assert!(keys_query_columns(&named(&["id", "kind"]), &keys).is_empty());
        let m = keys_query_columns(&named(&["kind", "id"]), &keys);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].message,
            "output column 1 is `kind` but KEY_COLUMNS has `id` there: same names, same order"
        );
        let m = keys_query_columns(&named(&["id", "?column?"]), &keys);
        assert_eq!(
            m[0].message,
            "output column 2 has no name; give it an alias: `AS kind`"
        );
        let m = keys_query_columns(&named(&["id"]), &keys);
        assert_eq!(m[0].column, 0);
    }
}
