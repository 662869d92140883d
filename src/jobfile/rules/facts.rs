//! What each statement yields for the rules that relate statements to each other: the
//! statement rules fill these in, the `against` rules read them.

use crate::sqlshape::{ColumnDef, CreateInfo, OutName, TableName};

/// Everything known about the job, each `None` when unknown.
#[derive(Default)]
pub struct Facts<'a> {
    pub target: Option<TableName>,
    /// KEY_COLUMNS when it is a usable list
    pub keys: Option<&'a [String]>,
    pub create: Option<Created>,
    pub source: Option<Vec<OutName>>,
    pub upsert: Option<Upsert>,
    pub key_names: Option<KeyNames>,
}

/// What the upsert rules need of the created table: its columns and unique keys (from the
/// parser), and where each column is named in the SQL text.
pub struct Created {
    pub info: CreateInfo,
    pub column_at: Vec<Option<usize>>,
}

impl Created {
    pub fn columns(&self) -> Option<&[ColumnDef]> {
        self.info.columns.as_deref()
    }
}

/// What the rules relating statements need from the upsert; offsets in its SQL text.
pub struct Upsert {
    /// the inserted columns and where each is written
    pub columns: Vec<(String, usize)>,
    /// `%s` in VALUES, when that agrees with the column count (else already reported)
    pub placeholders: Option<usize>,
    pub values_at: usize,
    pub conflict: Option<(Vec<String>, usize)>,
    pub set: Option<(Vec<String>, usize)>,
}

/// The keys query's output names and where each column starts, plus where the query does.
pub struct KeyNames {
    pub columns: Vec<(OutName, Option<usize>)>,
    pub start: Option<usize>,
}
