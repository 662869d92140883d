//! Load: changed rows go into a temporary staging table by binary COPY, then into the
//! target with one set-based statement derived from UPSERT_TARGET_SQL; into an empty
//! target they stream by one binary COPY straight into it.

use std::io::Write;

use postgres::error::SqlState;
use postgres::{CopyInWriter, Transaction};

use crate::error::{Db, Result, io, pg};
use crate::pipeline::plan::Plan;

const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const COPY_TRAILER: &[u8] = &[0xff, 0xff];
/// Rows per COPY + merge round; bounds memory to one batch of changed rows.
pub const FLUSH_ROWS: usize = 20_000;
const FLUSH_BYTES: usize = 16 << 20;
/// Bytes handed to the direct COPY at a time: small enough that A never waits long for
/// its next rows, large enough to be one message.
const STREAM_BYTES: usize = 1 << 20;

/// One binary COPY straight into an empty target, open for the whole extraction, so A
/// ingests rows while M is still sending them.
pub struct DirectCopy<'t> {
    writer: CopyInWriter<'t>,
    buf: Vec<u8>,
    columns: i16,
    pub rows: u64,
}

impl<'t> DirectCopy<'t> {
    pub fn start(tx: &'t mut Transaction<'_>, sql: &str, columns: usize) -> Result<Self> {
        let writer = tx
            .copy_in(sql)
            .map_err(pg(Db::Analytics, "starting COPY into the target"))?;
        let mut buf = Vec::with_capacity(STREAM_BYTES + (64 << 10));
        buf.extend_from_slice(COPY_HEADER);
        Ok(DirectCopy {
            writer,
            buf,
            columns: columns as i16,
            rows: 0,
        })
    }

    /// Queues one row (its fields in COPY binary form); true when queued rows were sent.
    pub fn push(&mut self, fields: &[u8]) -> Result<bool> {
        self.buf.extend_from_slice(&self.columns.to_be_bytes());
        self.buf.extend_from_slice(fields);
        self.rows += 1;
        if self.buf.len() < STREAM_BYTES {
            return Ok(false);
        }
        self.send()?;
        Ok(true)
    }

    fn send(&mut self) -> Result<()> {
        self.writer
            .write_all(&self.buf)
            .map_err(io("streaming rows into the target"))?;
        self.buf.clear();
        Ok(())
    }

    /// Ends the COPY: rows written, or the server's refusal (a key repeated in the source
    /// shows as a unique violation).
    pub fn finish(mut self) -> Result<std::result::Result<u64, postgres::Error>> {
        self.buf.extend_from_slice(COPY_TRAILER);
        self.send()?;
        Ok(self.writer.finish())
    }
}

/// Is `e` the refusal of a direct COPY because a key repeats?
pub fn is_repeated_key(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Changed rows on their way into the target through the staging table, a batch at a time.
pub struct Loader {
    buf: Vec<u8>,
    rows: usize,
    stage_ready: bool,
    /// Drop staged rows the target already holds unchanged (full re-sync over data).
    prune: bool,
    pub upserted: u64,
}

impl Loader {
    /// `prune` drops staged rows that the target already holds (a full re-sync over
    /// existing rows).
    pub fn new(plan: &Plan, prune: bool) -> Self {
        Loader {
            buf: Vec::new(),
            rows: 0,
            stage_ready: false,
            prune: prune && plan.prune_unchanged_sql.is_some(),
            upserted: 0,
        }
    }

    /// Queues a row's source columns (fields in COPY binary form).
    pub fn push(&mut self, plan: &Plan, fields: &[u8]) {
        self.buf
            .extend_from_slice(&(plan.columns as i16).to_be_bytes());
        self.buf.extend_from_slice(fields);
        self.rows += 1;
    }

    pub fn should_flush(&self) -> bool {
        self.rows >= FLUSH_ROWS || self.buf.len() >= FLUSH_BYTES
    }

    /// Writes the queued rows to the target.
    pub fn flush(&mut self, plan: &Plan, tx: &mut Transaction<'_>) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        if self.stage_ready {
            tx.batch_execute("TRUNCATE pg_temp.elt_stage RESTART IDENTITY")
                .map_err(pg(Db::Analytics, "emptying the staging table"))?;
        } else {
            tx.batch_execute(&plan.stage_ddl)
                .map_err(pg(Db::Analytics, "creating the staging table"))?;
            self.stage_ready = true;
        }
        {
            let mut w = tx
                .copy_in(&plan.copy_in_sql)
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
            if let Some(sql) = &plan.prune_unchanged_sql {
                tx.execute(sql.as_str(), &[])
                    .map_err(pg(Db::Analytics, "skipping rows the target already holds"))?;
            }
        }
        self.merge(plan, tx)?;
        self.buf.clear();
        self.rows = 0;
        Ok(())
    }

    fn merge(&mut self, plan: &Plan, tx: &mut Transaction<'_>) -> Result<()> {
        let mut sp = tx
            .savepoint("elt_merge")
            .map_err(pg(Db::Analytics, "starting the merge"))?;
        match sp.execute(&plan.merge_sql, &[]) {
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
                    .prepare(&plan.merge_one_sql)
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
