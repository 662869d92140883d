//! What the database checks share: where their problems go (located in the job file),
//! what M said about the source query, and running one check in a savepoint.

use postgres::types::Type;

use crate::db::Tx;
use crate::error::pg_message;
use crate::jobfile::{Job, Key, Positions, Problem, Severity};
use crate::placeholders::original_offset;

/// Where the problems go, located in the job file.
pub struct Checks<'a> {
    pub job: &'a Job,
    positions: &'a Positions,
    pub out: Vec<Problem>,
}

impl<'a> Checks<'a> {
    pub fn new(job: &'a Job, positions: &'a Positions) -> Self {
        Checks {
            job,
            positions,
            out: Vec::new(),
        }
    }

    /// A problem for `key`, at byte `offset` of its SQL when known (else its value).
    pub fn push(&mut self, sev: Severity, key: Key, offset: Option<usize>, msg: String) {
        let sql = self.job.statement(key);
        let at = offset
            .and_then(|o| self.positions.in_value(key.name(), sql, o))
            .or_else(|| self.positions.value(key.name()));
        let file = self.job.path.display().to_string();
        self.out
            .push(Problem::new(&file, key.name(), msg).at(at).severity(sev));
    }

    pub fn error(&mut self, key: Key, offset: Option<usize>, msg: String) {
        self.push(Severity::Error, key, offset, msg);
    }

    /// "M rejects it: …" at the position PostgreSQL names in `sent`, mapped back to the
    /// job's own text.
    pub fn rejected(&mut self, key: Key, db: &str, e: &postgres::Error, sent: &str) {
        let offset = error_offset(e, sent).map(|o| {
            if key.takes_parameters() {
                original_offset(self.job.statement(key), o)
            } else {
                o
            }
        });
        self.error(key, offset, format!("{db} rejects it: {}", pg_message(e)));
    }
}

/// The byte offset PostgreSQL gives for an error in `sent` (1-based characters).
fn error_offset(e: &postgres::Error, sent: &str) -> Option<usize> {
    match e.as_db_error()?.position()? {
        postgres::error::ErrorPosition::Original(p) => sent
            .char_indices()
            .nth((*p as usize).saturating_sub(1))
            .map(|(i, _)| i),
        _ => None,
    }
}

/// Runs `f` in a savepoint of `tx` and undoes it afterwards, so what fails there leaves
/// `tx` usable; `None` when the savepoint cannot be set (the connection is gone).
pub fn isolated<T>(tx: &mut Tx<'_>, f: impl FnOnce(&mut Tx<'_>) -> T) -> Option<T> {
    let mut sp = tx.nested("elt_check").ok()?;
    let r = f(&mut sp);
    let _ = sp.rollback();
    Some(r)
}

/// One output column of the source query as M describes it.
pub struct SourceCol {
    pub name: String,
    pub ty: Type,
    pub table_oid: u32,
    pub column_id: i16,
}

/// What M says of the source query.
pub struct Source {
    pub cols: Vec<SourceCol>,
    /// the placeholder's type: what the first run binds its earliest value as
    pub placeholder: Type,
}
