//! The keys a job file may hold: their names, which are required, and what kind of value
//! each takes.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    CreateTableSql,
    SelectSourceSql,
    UpsertTargetSql,
    SelectKeysSql,
    TargetTable,
    KeyColumns,
    /// Optional: the largest share of the target's rows one run may delete (0 < f ≤ 1).
    MaxDeleteFraction,
}

impl Key {
    /// Every key, required ones first, in the order problems about missing keys are listed.
    pub const ALL: [Key; 7] = [
        Key::CreateTableSql,
        Key::SelectSourceSql,
        Key::UpsertTargetSql,
        Key::SelectKeysSql,
        Key::TargetTable,
        Key::KeyColumns,
        Key::MaxDeleteFraction,
    ];

    /// The four keys that hold SQL statements.
    pub const STATEMENTS: [Key; 4] = [
        Key::CreateTableSql,
        Key::SelectSourceSql,
        Key::UpsertTargetSql,
        Key::SelectKeysSql,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Key::CreateTableSql => "CREATE_TABLE_SQL",
            Key::SelectSourceSql => "SELECT_SOURCE_SQL",
            Key::UpsertTargetSql => "UPSERT_TARGET_SQL",
            Key::SelectKeysSql => "SELECT_KEYS_SQL",
            Key::TargetTable => "TARGET_TABLE",
            Key::KeyColumns => "KEY_COLUMNS",
            Key::MaxDeleteFraction => "MAX_DELETE_FRACTION",
        }
    }

    /// The key written exactly `name` (keys are case-sensitive, as the spec says).
    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn is_required(self) -> bool {
        self != Key::MaxDeleteFraction
    }

    /// True for the statements sent with parameters: `%s` is a placeholder and `%%` a
    /// literal `%` there; the other two are sent as written.
    pub fn takes_parameters(self) -> bool {
        matches!(self, Key::SelectSourceSql | Key::UpsertTargetSql)
    }

    /// The required key `name` is probably a typo of (same letters but for case and `_`,
    /// or one a prefix of the other).
    pub fn similar_to(name: &str) -> Option<Key> {
        let b = name.to_ascii_uppercase();
        Key::ALL.into_iter().filter(|k| k.is_required()).find(|k| {
            let a = k.name();
            a == b
                || a.starts_with(&b)
                || b.starts_with(a)
                || a.replace('_', "") == b.replace('_', "")
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_typos_are_recognised() {
        for k in Key::ALL {
            assert_eq!(Key::from_name(k.name()), Some(k));
        }
        assert_eq!(Key::from_name("key_columns"), None);
        assert_eq!(Key::similar_to("KEY_COLUMN"), Some(Key::KeyColumns));
        assert_eq!(Key::similar_to("targettable"), Some(Key::TargetTable));
        assert_eq!(Key::similar_to("other"), None);
    }
}
