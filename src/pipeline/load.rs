//! Load: changed rows go into a temporary staging table by binary COPY, then into the
//! target with one set-based statement derived from UPSERT_TARGET_SQL; into an empty
//! target they stream by one binary COPY straight into it.

use std::io::Write;

use postgres::error::SqlState;
use postgres::{CopyInWriter, Transaction};

use crate::error::{Db, Result, pg, pg_io};
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
            .map_err(pg_io(Db::Analytics, "streaming rows into the target"))?;
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

/// The unique constraints of a table this run created, dropped while it is loaded and
/// rebuilt after, as `pg_restore` does: building an index once over all rows costs less
/// than maintaining it row by row. Each comes back from the catalog's own definitions (the
/// index with its options, then the constraint on it), so the table ends up exactly as
/// `CREATE_TABLE_SQL` made it.
pub struct DeferredKeys {
    table: String,
    constraints: Vec<Deferred>,
}

struct Deferred {
    name: String,
    /// `PRIMARY KEY` or `UNIQUE`
    kind: &'static str,
    /// `CREATE UNIQUE INDEX …` as `pg_get_indexdef` gives it
    index: String,
    /// `DEFERRABLE INITIALLY DEFERRED`, `DEFERRABLE` or nothing
    timing: &'static str,
}

/// The constraints on or referring to the table, with what rebuilding each needs.
const CONSTRAINTS: &str = "SELECT c.conname::text, c.contype::text, \
            pg_catalog.pg_get_indexdef(c.conindid), c.condeferrable, c.condeferred \
     FROM pg_catalog.pg_constraint c \
     WHERE c.conrelid = pg_catalog.to_regclass($1) OR c.confrelid = pg_catalog.to_regclass($1) \
     ORDER BY c.contype, c.conname";

impl DeferredKeys {
    /// Drops the table's unique constraints (inside the caller's savepoint, which brings
    /// them back if the load fails); `None` if it has none, or when something depends on
    /// them (a foreign key, an exclusion constraint): such a table loads as it is.
    pub fn drop(tx: &mut Transaction<'_>, table: &str) -> Result<Option<DeferredKeys>> {
        let what = || pg(Db::Analytics, "reading the target's constraints");
        let mut constraints = Vec::new();
        for r in &tx.query(CONSTRAINTS, &[&table]).map_err(what())? {
            let kind: String = r.try_get(1).map_err(what())?;
            let kind = match kind.as_str() {
                "p" => "PRIMARY KEY",
                "u" => "UNIQUE",
                "c" => continue,
                _ => return Ok(None),
            };
            let (deferrable, deferred): (bool, bool) =
                (r.try_get(3).map_err(what())?, r.try_get(4).map_err(what())?);
            constraints.push(Deferred {
                name: r.try_get(0).map_err(what())?,
                kind,
                index: r.try_get(2).map_err(what())?,
                timing: match (deferrable, deferred) {
                    (true, true) => " DEFERRABLE INITIALLY DEFERRED",
                    (true, false) => " DEFERRABLE",
                    _ => "",
                },
            });
        }
        if constraints.is_empty() {
            return Ok(None);
        }
        for c in &constraints {
            tx.batch_execute(&format!(
                "ALTER TABLE {table} DROP CONSTRAINT {}",
                crate::db::quote_ident(&c.name)
            ))
            .map_err(pg(Db::Analytics, "deferring the target's keys"))?;
        }
        Ok(Some(DeferredKeys {
            table: table.to_string(),
            constraints,
        }))
    }

    /// Builds the constraints again over the loaded rows. The error is the server's
    /// refusal (a key the source repeats shows as a unique violation).
    pub fn restore(self, tx: &mut Transaction<'_>) -> std::result::Result<(), postgres::Error> {
        // enough memory to sort the keys in memory
        tx.batch_execute("SET LOCAL maintenance_work_mem = '256MB'")?;
        for c in &self.constraints {
            let name = crate::db::quote_ident(&c.name);
            tx.batch_execute(&format!(
                "{}; ALTER TABLE {} ADD CONSTRAINT {name} {} USING INDEX {name}{}",
                c.index, self.table, c.kind, c.timing
            ))?;
        }
        Ok(())
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
                .map_err(pg_io(
                    Db::Analytics,
                    "streaming rows into the staging table",
                ))?;
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
