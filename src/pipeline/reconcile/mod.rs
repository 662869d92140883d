//! Deletions and drift: compares the keys M's `SELECT_KEYS_SQL` returns with the keys of
//! the target in A, deletes the rows M no longer has (NULL-safe, within the delete guards)
//! and finds the keys A lacks (for drift repair).
//!
//! Cost follows what differs: first a keyed summary of each side's key set (see `summary`),
//! computed inside both databases at once; equal summaries mean nothing to delete or repair
//! and no key moves. Otherwise per-bucket digests find the buckets that differ, and only
//! their keys are compared; when too many differ for that to pay, an integer key falls back
//! to an ordered merge of both sides (`merge`) and other keys to a temporary table on A.

mod buckets;
mod merge;
mod sql;
pub mod summary;

use postgres::Transaction;

use crate::db::Tx;
use crate::error::{Db, Error, Result};
use crate::jobfile::Job;
use crate::pipeline::digest::key_digest_of;
use crate::state::PendingState;
use sql::{KeySql, Sides};
pub use sql::{MAX_REPAIR, key_text};
use summary::KeySummary;

/// Deletions this small are never refused: the guards are for accidents on real tables.
pub const GUARD_MIN_ROWS: u64 = 1000;
/// Below this many rows both sides are asked one after the other: a thread costs more.
const PARALLEL_MIN_ROWS: i64 = 50_000;
/// Keys per bucket of the digest level aimed at.
const KEYS_PER_BUCKET: i64 = 1024;
/// At most this many keys are read into memory to compare differing buckets.
const IN_MEMORY_KEYS: i64 = 200_000;

/// Limits on what one run may delete.
pub struct Guard {
    /// Refuse deleting more than this share of the target's rows (1.0: no limit).
    pub max_fraction: f64,
    /// `--force-deletes`: this run is allowed anyway.
    pub force: bool,
}

impl Guard {
    /// Refuses to empty a target of `GUARD_MIN_ROWS` rows or more because M returned no key.
    fn check_source_not_empty(&self, m_keys: i64, a_rows: i64, target: &str) -> Result<()> {
        if m_keys == 0 && a_rows as u64 >= GUARD_MIN_ROWS && !self.force {
            return Err(Error::Job(format!(
                "delete guard: SELECT_KEYS_SQL returned no rows while {target} holds {a_rows}; \
                 refusing to delete them all (nothing was changed; if M's table really is \
                 empty, run this job once with `elt run-job JOB --force-deletes`)"
            )));
        }
        Ok(())
    }

    /// Refuses deleting more than `max_fraction` of the target (deletions of at least
    /// `GUARD_MIN_ROWS` rows).
    fn check_share(&self, deleting: u64, a_rows: i64, target: &str) -> Result<()> {
        if deleting >= GUARD_MIN_ROWS
            && (deleting as f64) > self.max_fraction * a_rows as f64
            && !self.force
        {
            return Err(Error::Job(format!(
                "delete guard: this run would delete {deleting} of {a_rows} rows of {target} \
                 (more than MAX_DELETE_FRACTION {}); nothing was changed; if this is intended, \
                 run this job once with `elt run-job JOB --force-deletes`",
                self.max_fraction
            )));
        }
        Ok(())
    }
}

/// What reconciling keys found.
#[derive(Debug, Default)]
pub struct Reconciled {
    pub deleted: u64,
    /// Rows in the target before the deletions (after the load).
    pub target_rows: i64,
    /// Keys (in `key_text` form) that M has and A lacks.
    pub missing: Vec<String>,
}

/// M's summary of an integer key, as `Reconciler::run` computes it: lets a first load ask M
/// while A is still busy with the rows.
pub fn integer_key_summary(m: &mut Transaction<'_>, job: &Job, seed: i64) -> Result<KeySummary> {
    let k = KeySql::new(job, true, seed);
    k.summary(m, Db::Master, &k.keys_from)
}

/// Compares M's keys with those of the target in A: deletes the rows M no longer has and
/// finds the keys A lacks.
pub struct Reconciler<'j> {
    pub job: &'j Job,
    /// about how many rows the target holds (sizes the buckets, decides the threads)
    pub rows_hint: i64,
    pub guard: Guard,
    /// the keys just loaded into an empty target, which then holds nothing else
    pub loaded: Option<KeySummary>,
    /// the job's secret summary seed
    pub seed: i64,
    /// the key is one integer column on M and on A
    pub integer: bool,
    /// M's key summary, when it was computed already (while A took a first load)
    pub m_summary: Option<KeySummary>,
}

impl Reconciler<'_> {
    pub fn run(
        &self,
        m: &mut Tx<'_>,
        a: &mut Tx<'_>,
        pending: &mut PendingState,
    ) -> Result<Reconciled> {
        let job = self.job;
        let mut k = KeySql::new(job, self.integer, self.seed);
        let mut sides = Sides {
            m,
            a,
            parallel: self.rows_hint >= PARALLEL_MIN_ROWS,
        };
        let (ms, at) = self.summaries(&mut sides, &k)?;
        self.guard
            .check_source_not_empty(ms.rows, at.rows, &job.target_table)?;
        if ms == at {
            return Ok(Reconciled {
                target_rows: at.rows,
                ..Reconciled::default()
            });
        }
        let rows = ms.rows.max(at.rows).max(1);
        let buckets = ((rows / KEYS_PER_BUCKET).max(1) as u64)
            .next_power_of_two()
            .clamp(64, 1 << 16) as i64;
        k.mask = (buckets - 1) as u32;
        // More keys differing than a quarter of the buckets: most buckets differ anyway.
        k.target_rows = at.rows;
        if (ms.rows - at.rows).abs() * 4 > buckets {
            log::info!("the key sets of M and A differ widely; comparing all keys");
            return self.compare_all(&mut sides, &k, pending);
        }
        let differing = buckets::differing(&mut sides, &k)?;
        let keys_there = differing.len() as i64 * (rows / buckets + 1);
        log::info!(
            "{} of {buckets} key buckets differ between M and A",
            differing.len()
        );
        if differing.len() as i64 * 2 > buckets || keys_there > IN_MEMORY_KEYS {
            return match k.integer {
                true => self.compare_all(&mut sides, &k, pending),
                false => self.anti_join(&mut sides, &k, Some(&differing), pending),
            };
        }
        let found = buckets::compare_in_memory(&mut sides, &k, &differing)?;
        self.guard
            .check_share(found.gone.len() as u64, at.rows, &job.target_table)?;
        let deleted = buckets::delete(sides.a, &job.target_table, &found.gone, pending)?;
        Ok(Reconciled {
            deleted,
            target_rows: at.rows,
            missing: found.missing,
        })
    }

    /// The key summaries of M and of the target (computed by elt for a fresh load).
    fn summaries(
        &self,
        sides: &mut Sides<'_, '_, '_>,
        k: &KeySql,
    ) -> Result<(KeySummary, KeySummary)> {
        let loaded = self.loaded.filter(|s| k.integer && s.is_valid());
        let m_sum = |m: &mut Transaction<'_>| k.summary(m, Db::Master, &k.keys_from);
        match (loaded, self.m_summary) {
            (Some(l), Some(m)) => Ok((m, l)),
            (Some(l), None) => Ok((m_sum(sides.m)?, l)),
            (None, _) => sides.both(m_sum, |a| k.summary(a, Db::Analytics, &k.target_from)),
        }
    }

    /// Every key of both sides: an ordered merge for an integer key, else the temporary
    /// table on A.
    fn compare_all(
        &self,
        sides: &mut Sides<'_, '_, '_>,
        k: &KeySql,
        pending: &mut PendingState,
    ) -> Result<Reconciled> {
        if !k.integer {
            return self.anti_join(sides, k, None, pending);
        }
        let (m, a) = (&mut *sides.m, &mut *sides.a);
        let target = k.target.as_str();
        let col = &k.cols[0];
        let mut merged = merge::merge(
            m,
            a,
            &merge::ordered_sql(&k.keys_from, col),
            &merge::ordered_sql(&k.target_from, col),
        )?;
        self.guard
            .check_share(merged.gone_rows, merged.a_rows, target)?;
        let mut key_buf = Vec::with_capacity(32);
        let deleted = merged.delete(a, target, col, |text| {
            let d = key_digest_of([text.map(str::as_bytes)].into_iter(), &mut key_buf);
            pending.delete(&d)
        })?;
        Ok(Reconciled {
            deleted,
            target_rows: merged.a_rows,
            missing: std::mem::take(&mut merged.missing),
        })
    }

    fn anti_join(
        &self,
        sides: &mut Sides<'_, '_, '_>,
        k: &KeySql,
        differing: Option<&[i32]>,
        pending: &mut PendingState,
    ) -> Result<Reconciled> {
        let (target, a_rows) = (k.target.as_str(), k.target_rows);
        let found = buckets::anti_join(sides, k, differing, pending, |deleting| {
            self.guard.check_share(deleting, a_rows, target)
        })?;
        Ok(Reconciled {
            deleted: found.deleted,
            target_rows: a_rows,
            missing: found.missing,
        })
    }
}
