//! The SQL both sides of a key comparison share: a key's hash, text and joins over the
//! quoted key columns, and the pair of transactions every comparison reads.

use postgres::Transaction;

use super::summary::{HashSql, KeySummary};
use crate::db::quote_ident;
use crate::error::{Db, Error, Result};
use crate::jobfile::Job;
use crate::placeholders::strip_trailing_semicolon;

/// Keys missing in A repaired per run at most; the next run continues.
pub const MAX_REPAIR: i64 = 100_000;

/// SQL over the keys of both sides; the seed is `$1` wherever a hash is.
pub(super) struct KeySql {
    /// the key columns, quoted
    pub(super) cols: Vec<String>,
    /// one integer column on both sides: hash the number itself, not its text
    pub(super) integer: bool,
    pub(super) seed: i64,
    pub(super) mask: u32,
    /// `(SELECT_KEYS_SQL) AS t`
    pub(super) keys_from: String,
    /// `TARGET_TABLE AS t`
    pub(super) target_from: String,
    pub(super) target: String,
    /// rows in the target after the load (from its summary)
    pub(super) target_rows: i64,
}

impl KeySql {
    /// The key SQL of `job`: its key columns over `SELECT_KEYS_SQL` (M) and the target (A).
    pub(super) fn new(job: &Job, integer: bool, seed: i64) -> KeySql {
        KeySql {
            cols: job.key_columns.iter().map(|c| quote_ident(c)).collect(),
            integer,
            seed,
            mask: 0,
            keys_from: format!(
                "({}\n) AS t",
                strip_trailing_semicolon(&job.select_keys_sql)
            ),
            target_from: format!("{} AS t", job.target_table),
            target: job.target_table.clone(),
            target_rows: 0,
        }
    }

    /// The keyed summary of the keys over `from` (`keys_from` on M, `target_from` on A).
    pub(super) fn summary(
        &self,
        tx: &mut Transaction<'_>,
        db: Db,
        from: &str,
    ) -> Result<KeySummary> {
        let (hash, present) = (self.hash("t"), self.present("t"));
        let key = HashSql {
            hash: &hash,
            present: &present,
        };
        KeySummary::query(tx, db, key, from, self.seed)
    }

    pub(super) fn list(&self) -> String {
        self.cols.join(", ")
    }

    /// The keyed hash of a key: the same on M and A for the same key values. A single
    /// column hashes its own text (NULL hashes to NULL on both sides alike); several hash
    /// the text of their row, which keeps column boundaries and NULLs apart.
    pub(super) fn hash(&self, alias: &str) -> String {
        let parts: Vec<String> = self.cols.iter().map(|c| format!("{alias}.{c}")).collect();
        match parts.as_slice() {
            [one] if self.integer => format!("hashint8extended({one}::int8, $1)"),
            [one] => format!("hashtextextended({one}::text, $1)"),
            _ => format!("hashtextextended(row({})::text, $1)", parts.join(", ")),
        }
    }

    /// NULL exactly when `hash(alias)` is.
    pub(super) fn present(&self, alias: &str) -> String {
        match self.cols.as_slice() {
            [one] => format!("{alias}.{one}"),
            _ => "*".into(),
        }
    }

    pub(super) fn part_texts(&self, alias: &str) -> String {
        self.cols
            .iter()
            .map(|c| format!("{alias}.{c}::text"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key as one text value, the form drift repair matches on.
    pub(super) fn text(&self, alias: &str) -> String {
        text_of(&self.cols, alias)
    }

    pub(super) fn join(&self, left: &str, right: &str, op: &str) -> String {
        self.cols
            .iter()
            .map(|c| format!("{left}.{c} {op} {right}.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    pub(super) fn all_not_null(&self, alias: &str) -> String {
        self.cols
            .iter()
            .map(|c| format!("{alias}.{c} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

fn text_of(quoted: &[String], alias: &str) -> String {
    let parts: Vec<String> = quoted.iter().map(|c| format!("{alias}.{c}")).collect();
    match parts.as_slice() {
        [one] => format!("{one}::text"),
        _ => format!("row({})::text", parts.join(", ")),
    }
}

/// The SQL expression of `cols` (unquoted names) over `alias` in the form
/// `Reconciled::missing` holds.
pub fn key_text(cols: &[String], alias: &str) -> String {
    let quoted: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    text_of(&quoted, alias)
}

/// M's snapshot and A's transaction: every comparison reads both.
pub(super) struct Sides<'s, 'm, 'a> {
    pub(super) m: &'s mut Transaction<'m>,
    pub(super) a: &'s mut Transaction<'a>,
    /// ask both at the same time (M on a helper thread); small tables ask one by one
    pub(super) parallel: bool,
}

impl Sides<'_, '_, '_> {
    /// Runs `fm` on M and `fa` on A.
    pub(super) fn both<R1: Send, R2>(
        &mut self,
        fm: impl FnOnce(&mut Transaction<'_>) -> Result<R1> + Send,
        fa: impl FnOnce(&mut Transaction<'_>) -> Result<R2>,
    ) -> Result<(R1, R2)> {
        let (m, a) = (&mut *self.m, &mut *self.a);
        if !self.parallel {
            let rm = fm(m)?;
            return Ok((rm, fa(a)?));
        }
        std::thread::scope(|s| {
            let handle = s.spawn(move || fm(m));
            let ra = fa(a);
            let rm = handle
                .join()
                .map_err(|_| Error::Job("the key comparison thread panicked".into()))?;
            Ok((rm?, ra?))
        })
    }
}
