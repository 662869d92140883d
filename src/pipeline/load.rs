//! Load: changed rows go into a temporary staging table by binary COPY, then into the
//! target with one set-based statement derived from UPSERT_TARGET_SQL.

use std::io::Write;

use postgres::error::SqlState;
use postgres::{Row, Transaction};

use crate::error::{Db, Result, io, pg};
use crate::pipeline::digest::raw;
use crate::pipeline::plan::Plan;

const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const COPY_TRAILER: &[u8] = &[0xff, 0xff];
/// Rows per COPY + merge round; bounds memory to one batch of changed rows.
pub const FLUSH_ROWS: usize = 20_000;
const FLUSH_BYTES: usize = 16 << 20;

pub struct Loader<'p> {
    plan: &'p Plan,
    buf: Vec<u8>,
    rows: usize,
    stage_ready: bool,
    /// Drop staged rows the target already holds unchanged (full re-sync over data).
    prune: bool,
    /// The target was empty when the run began: COPY straight into it.
    direct: bool,
    pub upserted: u64,
}

impl<'p> Loader<'p> {
    /// `target_was_empty` enables the direct COPY path; `prune` drops staged rows that the
    /// target already holds (a full re-sync over existing rows).
    pub fn new(plan: &'p Plan, target_was_empty: bool, prune: bool) -> Self {
        Loader {
            plan,
            buf: Vec::with_capacity(1 << 20),
            rows: 0,
            stage_ready: false,
            prune: prune && plan.prune_unchanged_sql.is_some(),
            direct: target_was_empty && plan.direct_copy_sql.is_some(),
            upserted: 0,
        }
    }

    /// Queues the source columns of `row` in COPY binary form.
    pub fn push(&mut self, row: &Row) -> Result<()> {
        self.buf
            .extend_from_slice(&(self.plan.columns as i16).to_be_bytes());
        for i in 0..self.plan.columns {
            match raw(row, i)? {
                None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    self.buf.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    self.buf.extend_from_slice(b);
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    pub fn should_flush(&self) -> bool {
        self.rows >= FLUSH_ROWS || self.buf.len() >= FLUSH_BYTES
    }

    /// Writes the queued rows to the target.
    pub fn flush(&mut self, tx: &mut Transaction<'_>) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        if self.direct && self.copy_direct(tx)? {
            self.buf.clear();
            self.rows = 0;
            return Ok(());
        }
        if self.stage_ready {
            tx.batch_execute("TRUNCATE pg_temp.elt_stage RESTART IDENTITY")
                .map_err(pg(Db::Analytics, "emptying the staging table"))?;
        } else {
            tx.batch_execute(&self.plan.stage_ddl)
                .map_err(pg(Db::Analytics, "creating the staging table"))?;
            self.stage_ready = true;
        }
        {
            let mut w = tx
                .copy_in(&self.plan.copy_in_sql)
                .map_err(pg(Db::Analytics, "starting COPY into the staging table"))?;
            w.write_all(COPY_HEADER)
                .and_then(|_| w.write_all(&self.buf))
                .and_then(|_| w.write_all(COPY_TRAILER))
                .map_err(io("streaming rows into the staging table"))?;
            w.finish().map_err(pg(
                Db::Analytics,
                "copying changed rows into the staging table",
            ))?;
        }
        if self.prune {
            if let Some(sql) = &self.plan.prune_unchanged_sql {
                tx.execute(sql.as_str(), &[])
                    .map_err(pg(Db::Analytics, "skipping rows the target already holds"))?;
            }
        }
        self.merge(tx)?;
        self.buf.clear();
        self.rows = 0;
        Ok(())
    }

    /// COPY into the target itself; false (and nothing written) when a row's key already
    /// exists there, so the batch goes through staging and the upsert instead.
    fn copy_direct(&mut self, tx: &mut Transaction<'_>) -> Result<bool> {
        let Some(sql) = &self.plan.direct_copy_sql else {
            return Ok(false);
        };
        let mut sp = tx
            .savepoint("elt_copy")
            .map_err(pg(Db::Analytics, "starting the load"))?;
        let copied = {
            let mut w = sp
                .copy_in(sql.as_str())
                .map_err(pg(Db::Analytics, "starting COPY into the target"))?;
            w.write_all(COPY_HEADER)
                .and_then(|_| w.write_all(&self.buf))
                .and_then(|_| w.write_all(COPY_TRAILER))
                .map_err(io("streaming rows into the target"))?;
            w.finish()
        };
        match copied {
            Ok(n) => {
                sp.commit()
                    .map_err(pg(Db::Analytics, "finishing the load"))?;
                self.upserted += n;
                Ok(true)
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                sp.rollback()
                    .map_err(pg(Db::Analytics, "undoing the failed COPY"))?;
                self.direct = false;
                Ok(false)
            }
            Err(e) => Err(pg(Db::Analytics, "copying rows into the target")(e)),
        }
    }

    fn merge(&mut self, tx: &mut Transaction<'_>) -> Result<()> {
        let mut sp = tx
            .savepoint("elt_merge")
            .map_err(pg(Db::Analytics, "starting the merge"))?;
        match sp.execute(&self.plan.merge_sql, &[]) {
            Ok(n) => {
                sp.commit()
                    .map_err(pg(Db::Analytics, "finishing the merge"))?;
                self.upserted += n;
            }
            Err(e) if e.code() == Some(&SqlState::CARDINALITY_VIOLATION) => {
                // The batch holds one conflict key twice: apply rows one by one, in order,
                // as UPSERT_TARGET_SQL would.
                sp.rollback()
                    .map_err(pg(Db::Analytics, "undoing the failed merge"))?;
                log::info!("a batch repeats a conflict key; applying its rows one by one");
                let stmt = tx
                    .prepare(&self.plan.merge_one_sql)
                    .map_err(pg(Db::Analytics, "preparing the one-row merge"))?;
                for ord in 1..=self.rows as i64 {
                    self.upserted += tx
                        .execute(&stmt, &[&ord])
                        .map_err(pg(Db::Analytics, "running UPSERT_TARGET_SQL"))?;
                }
            }
            Err(e) => return Err(pg(Db::Analytics, "running UPSERT_TARGET_SQL")(e)),
        }
        Ok(())
    }
}
