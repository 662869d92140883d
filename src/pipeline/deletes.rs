//! Deletions: find the keys of A's target that M no longer has, delete those rows in one
//! NULL-safe anti-join, and drop their digests from Redis.
//!
//! Both databases first fold their keys into per-bucket digests (count and sum of a hash
//! of each key's text). Only the keys of buckets that differ travel from M to A, so a run
//! with nothing deleted moves no keys at all.

use std::io::Write;

use postgres::Transaction;

use crate::db::Tx;

use crate::db::Raw;
use crate::db::quote_ident;
use crate::error::{Db, Error, Result, io, pg};
use crate::jobfile::Job;
use crate::pipeline::digest::key_digest_of;
use crate::pipeline::keymerge::{self, KeySum, MAX_REPAIR};
use crate::placeholders::strip_trailing_semicolon;
use crate::state::PendingState;

const FETCH: i32 = 10_000;

/// Deletions this small are never refused: the guards are for accidents on real tables.
pub const GUARD_MIN_ROWS: u64 = 1000;

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
                 refusing to delete them all (nothing was changed; run with --force-deletes \
                 once if M's table really is empty)"
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
                 (more than MAX_DELETE_FRACTION {}); nothing was changed; run with \
                 --force-deletes once if this is intended",
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
    /// Keys (as `KeySql::text` forms) that M has and A lacks.
    pub missing: Vec<String>,
}

/// One bucket's digest: (bucket, count, two sums of 31-bit slices of the key hashes).
/// Single-column keys that are NULL have no hash and land in bucket `NULL_BUCKET`.
type Digest = (i32, i64, Option<i64>, Option<i64>);
const NULL_BUCKET: i32 = -1;
/// Digest rows per fetch; both sides stream in bucket order, so memory stays flat.
const DIGEST_FETCH: i32 = 20_000;

/// SQL fragments over a row alias's key columns.
struct KeySql {
    cols: Vec<String>,
    mask: u32,
    /// One integer column on both sides: hash the number itself, not its text.
    integer: bool,
}

impl KeySql {
    fn list(&self) -> String {
        self.cols.join(", ")
    }

    /// A hash of the key's text: the same on M and A for the same key values. A single
    /// column hashes its own text (NULL hashes to NULL on both sides alike); several hash
    /// the text of their row, which keeps column boundaries.
    fn hash(&self, alias: &str) -> String {
        let parts: Vec<String> = self.cols.iter().map(|c| format!("{alias}.{c}")).collect();
        match parts.as_slice() {
            [one] if self.integer => format!("hashint8extended({one}::int8, 0)"),
            [one] => format!("hashtextextended({one}::text, 0)"),
            _ => format!("hashtextextended(row({})::text, 0)", parts.join(", ")),
        }
    }

    /// The key as one text value, the form drift repair matches on.
    fn text(&self, alias: &str) -> String {
        let parts: Vec<String> = self.cols.iter().map(|c| format!("{alias}.{c}")).collect();
        match parts.as_slice() {
            [one] => format!("{one}::text"),
            _ => format!("row({})::text", parts.join(", ")),
        }
    }

    fn bucket(&self, alias: &str) -> String {
        format!("({} & {})::int4", self.hash(alias), self.mask)
    }
}

/// Buckets so that each holds about 16 keys: a few scattered deletions then move few keys.
fn bucket_count(rows: i64) -> u32 {
    ((rows.max(1) as u64 / 16).next_power_of_two()).clamp(64, 1 << 20) as u32
}

fn digest_sql(from: &str, k: &KeySql) -> String {
    format!(
        "SELECT (h & {})::int4 AS b, count(*), sum((h & 2147483647)::int4), \
                sum(((h >> 31) & 2147483647)::int4) \
         FROM (SELECT {} AS h FROM {from}) AS x GROUP BY 1 ORDER BY 1 NULLS FIRST",
        k.mask,
        k.hash("t")
    )
}

fn digest_row(r: &postgres::Row) -> Digest {
    let bucket: Option<i32> = r.get(0);
    (bucket.unwrap_or(NULL_BUCKET), r.get(1), r.get(2), r.get(3))
}

/// Streams one side's digests, in bucket order, to `out` (an error is the last item).
fn send_digests(
    tx: &mut Transaction<'_>,
    db: Db,
    sql: &str,
    out: std::sync::mpsc::SyncSender<Result<Vec<Digest>>>,
) {
    let run = |tx: &mut Transaction<'_>| -> Result<()> {
        // Enough memory to hash-aggregate and sort in memory instead of spilling to disk.
        tx.batch_execute("SET LOCAL work_mem = '64MB'")
            .map_err(pg(db, "computing per-bucket key digests"))?;
        let stmt = tx
            .prepare(sql)
            .map_err(pg(db, "computing per-bucket key digests"))?;
        let portal = tx
            .bind(&stmt, &[])
            .map_err(pg(db, "computing per-bucket key digests"))?;
        loop {
            let rows = tx
                .query_portal(&portal, DIGEST_FETCH)
                .map_err(pg(db, "reading per-bucket key digests"))?;
            let last = rows.len() < DIGEST_FETCH as usize;
            if out.send(Ok(rows.iter().map(digest_row).collect())).is_err() || last {
                return Ok(());
            }
        }
    };
    if let Err(e) = run(tx) {
        let _ = out.send(Err(e));
    }
}

/// Buckets whose digests differ between M and A (present on one side only included), and
/// the key totals of both sides. Both databases compute at once; only digests travel.
struct Comparison {
    differing: Vec<i32>,
    m_keys: i64,
    a_rows: i64,
}

fn compare(
    m: &mut Transaction<'_>,
    a: &mut Transaction<'_>,
    m_sql: &str,
    a_sql: &str,
) -> Result<Comparison> {
    std::thread::scope(|s| {
        let (m_send, m_recv) = std::sync::mpsc::sync_channel(2);
        let (a_send, a_recv) = std::sync::mpsc::sync_channel(2);
        s.spawn(move || send_digests(m, Db::Master, m_sql, m_send));
        s.spawn(move || send_digests(a, Db::Analytics, a_sql, a_send));
        let next = |rx: &std::sync::mpsc::Receiver<Result<Vec<Digest>>>| -> Result<std::vec::IntoIter<Digest>> {
            match rx.recv() {
                Ok(batch) => Ok(batch?.into_iter()),
                Err(_) => Ok(Vec::new().into_iter()),
            }
        };
        let mut mi = next(&m_recv)?;
        let mut ai = next(&a_recv)?;
        let mut mcur = mi.next();
        let mut acur = ai.next();
        let mut c = Comparison {
            differing: Vec::new(),
            m_keys: 0,
            a_rows: 0,
        };
        loop {
            if mcur.is_none() {
                mi = next(&m_recv)?;
                mcur = mi.next();
            }
            if acur.is_none() {
                ai = next(&a_recv)?;
                acur = ai.next();
            }
            match (&mcur, &acur) {
                (None, None) => return Ok(c),
                (Some(md), Some(ad)) if md.0 == ad.0 => {
                    c.m_keys += md.1;
                    c.a_rows += ad.1;
                    if md != ad {
                        c.differing.push(md.0);
                    }
                    mcur = mi.next();
                    acur = ai.next();
                }
                (Some(md), Some(ad)) if md.0 < ad.0 => {
                    c.m_keys += md.1;
                    c.differing.push(md.0);
                    mcur = mi.next();
                }
                (Some(md), None) => {
                    c.m_keys += md.1;
                    c.differing.push(md.0);
                    mcur = mi.next();
                }
                (_, Some(ad)) => {
                    c.a_rows += ad.1;
                    c.differing.push(ad.0);
                    acur = ai.next();
                }
            }
        }
    })
}

/// True when the key is one integer column on M and on A: its hash can then skip text.
fn integer_key(
    m: &mut Tx<'_>,
    a: &mut Tx<'_>,
    keys_from: &str,
    target: &str,
    cols: &[String],
) -> Result<bool> {
    use postgres::types::Type;
    let [col] = cols else { return Ok(false) };
    let int = |t: &Type| matches!(*t, Type::INT2 | Type::INT4 | Type::INT8);
    let m_stmt = m
        .prepare(&format!("SELECT t.{col} FROM {keys_from}"))
        .map_err(pg(Db::Master, "preparing SELECT_KEYS_SQL"))?;
    let a_stmt = a
        .prepare(&format!("SELECT t.{col} FROM {target} AS t"))
        .map_err(pg(Db::Analytics, "reading the key column's type"))?;
    Ok(m_stmt.columns().first().is_some_and(|c| int(c.type_()))
        && a_stmt.columns().first().is_some_and(|c| int(c.type_())))
}

/// Appends one value to a COPY text line.
fn copy_text(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => out.extend_from_slice(b"\\N"),
        Some(s) => {
            for b in s.bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    _ => out.push(b),
                }
            }
        }
    }
}

/// Compares the keys of M (`SELECT_KEYS_SQL`) with those of the target in A: deletes the
/// rows M no longer has (within the delete guards) and finds the keys A lacks.
pub struct Reconciler<'j> {
    pub job: &'j Job,
    /// about how many rows the target holds (sizes the key buckets)
    pub rows_hint: i64,
    pub guard: Guard,
    /// the keys just loaded into an empty target, which then holds nothing else
    pub loaded: Option<KeySum>,
}

impl Reconciler<'_> {
    /// Deletes from the target the rows whose key is not among M's keys.
    pub fn run(
        &self,
        m: &mut Tx<'_>,
        a: &mut Tx<'_>,
        pending: &mut PendingState,
    ) -> Result<Reconciled> {
        let job = self.job;
        let keys_from = format!(
            "({}\n) AS t",
            strip_trailing_semicolon(&job.select_keys_sql)
        );
        let cols: Vec<String> = job.key_columns.iter().map(|c| quote_ident(c)).collect();
        if integer_key(m, a, &keys_from, &job.target_table, &cols)? {
            if let Some(loaded) = self.loaded.filter(KeySum::is_valid) {
                // The target was empty and holds just the rows loaded: if M's keys sum up
                // the same, there is nothing to delete and nothing missing, and A need not
                // be read.
                if KeySum::query(m, Db::Master, &keys_from, &cols[0])? == loaded {
                    return Ok(Reconciled {
                        target_rows: loaded.rows(),
                        ..Reconciled::default()
                    });
                }
                log::info!(
                    "SELECT_KEYS_SQL describes other keys than the rows loaded; comparing them"
                );
            }
            return self.ordered(m, a, &keys_from, &cols[0], pending);
        }
        self.by_buckets(m, a, &keys_from, &cols, pending)
    }

    /// For a key of one integer column: an ordered merge of both sides' keys.
    fn ordered(
        &self,
        m: &mut Transaction<'_>,
        a: &mut Transaction<'_>,
        keys_from: &str,
        col: &str,
        pending: &mut PendingState,
    ) -> Result<Reconciled> {
        let target = self.job.target_table.as_str();
        let mut merged = keymerge::merge(
            m,
            a,
            &keymerge::ordered_sql(keys_from, col),
            &keymerge::ordered_sql(&format!("{target} AS t"), col),
        )?;
        let a_rows = merged.a_rows;
        self.guard
            .check_source_not_empty(merged.m_keys, a_rows, target)?;
        self.guard.check_share(merged.gone_rows, a_rows, target)?;
        let mut key_buf = Vec::with_capacity(32);
        let deleted = merged.delete(a, target, col, |text| {
            let d = key_digest_of([text.map(str::as_bytes)].into_iter(), &mut key_buf);
            pending.delete(&d)
        })?;
        Ok(Reconciled {
            deleted,
            target_rows: a_rows,
            missing: std::mem::take(&mut merged.missing),
        })
    }

    /// For other keys: per-bucket digests on both sides, then the keys of differing buckets.
    fn by_buckets(
        &self,
        m: &mut Transaction<'_>,
        a: &mut Transaction<'_>,
        keys_from: &str,
        cols: &[String],
        pending: &mut PendingState,
    ) -> Result<Reconciled> {
        let (target, guard) = (self.job.target_table.as_str(), &self.guard);
        let buckets = bucket_count(self.rows_hint);
        let k = KeySql {
            cols: cols.to_vec(),
            mask: buckets - 1,
            integer: false,
        };
        let keys_from = keys_from.to_string();
        let target_from = format!("{target} AS t");
        // Both sides at once: M on a helper thread, A here.
        let Comparison {
            mut differing,
            m_keys,
            a_rows,
        } = compare(
            m,
            a,
            &digest_sql(&keys_from, &k),
            &digest_sql(&target_from, &k),
        )?;
        guard.check_source_not_empty(m_keys, a_rows, target)?;
        if differing.is_empty() {
            return Ok(Reconciled {
                target_rows: a_rows,
                ..Reconciled::default()
            });
        }
        differing.sort_unstable();
        // Past half the buckets, filtering costs more than it saves.
        let filter = differing.len() <= buckets as usize / 2 && !differing.contains(&NULL_BUCKET);
        log::info!(
            "{} of {} key buckets differ between M and A",
            differing.len(),
            buckets
        );

        a.batch_execute(&format!(
            "CREATE TEMP TABLE elt_keys ON COMMIT DROP AS SELECT {} FROM {target} WITH NO DATA",
            k.list()
        ))
        .map_err(pg(Db::Analytics, "creating the temporary key table"))?;
        let texts = |alias: &str| {
            cols.iter()
                .map(|c| format!("{alias}.{c}::text"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let where_bucket = |alias: &str| {
            if filter {
                format!(" WHERE {} = ANY($1)", k.bucket(alias))
            } else {
                String::new()
            }
        };
        {
            let fetch = format!(
                "SELECT {} FROM {keys_from}{}",
                texts("t"),
                where_bucket("t")
            );
            let stmt = m
                .prepare(&fetch)
                .map_err(pg(Db::Master, "preparing SELECT_KEYS_SQL"))?;
            let portal = if filter {
                m.bind(&stmt, &[&differing])
            } else {
                m.bind(&stmt, &[])
            }
            .map_err(pg(Db::Master, "running SELECT_KEYS_SQL"))?;
            let mut w = a
                .copy_in(&format!("COPY pg_temp.elt_keys ({}) FROM STDIN", k.list()))
                .map_err(pg(Db::Analytics, "starting COPY of M's keys"))?;
            let mut buf = Vec::with_capacity(1 << 16);
            loop {
                let rows = m
                    .query_portal(&portal, FETCH)
                    .map_err(pg(Db::Master, "reading SELECT_KEYS_SQL"))?;
                for row in &rows {
                    for i in 0..cols.len() {
                        if i > 0 {
                            buf.push(b'\t');
                        }
                        copy_text(&mut buf, row.get::<_, Option<&str>>(i));
                    }
                    buf.push(b'\n');
                }
                w.write_all(&buf).map_err(io("streaming M's keys into A"))?;
                buf.clear();
                if rows.len() < FETCH as usize {
                    break;
                }
            }
            w.finish()
                .map_err(pg(Db::Analytics, "loading M's keys into A"))?;
        }
        a.batch_execute("ANALYZE pg_temp.elt_keys")
            .map_err(pg(Db::Analytics, "analysing the key table"))?;
        let missing = missing_in_target(a, target, &k)?;

        // Plain equality lets the planner hash the anti-join; keys with NULL parts, which
        // equality never matches, get a second IS NOT DISTINCT FROM check.
        let join = |op: &str| {
            cols.iter()
                .map(|c| format!("k.{c} {op} t.{c}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let not_null = cols
            .iter()
            .map(|c| format!("t.{c} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let bucket_cond = if filter {
            format!("{} = ANY($1) AND ", k.bucket("t"))
        } else {
            String::new()
        };
        let delete = format!(
            "DELETE FROM {target} AS t \
         WHERE {bucket_cond}NOT EXISTS (SELECT 1 FROM pg_temp.elt_keys AS k WHERE {}) \
           AND (({not_null}) OR NOT EXISTS (SELECT 1 FROM pg_temp.elt_keys AS k WHERE {})) \
         RETURNING {}",
            join("="),
            join("IS NOT DISTINCT FROM"),
            texts("t")
        );
        let stmt = a.prepare(&delete).map_err(pg(
            Db::Analytics,
            "preparing the deletion of rows gone from M",
        ))?;
        let portal = if filter {
            a.bind(&stmt, &[&differing])
        } else {
            a.bind(&stmt, &[])
        }
        .map_err(pg(Db::Analytics, "deleting rows gone from M"))?;
        let mut deleted = 0u64;
        let mut key_buf = Vec::with_capacity(64);
        loop {
            let rows = a
                .query_portal(&portal, FETCH)
                .map_err(pg(Db::Analytics, "deleting rows gone from M"))?;
            for row in &rows {
                let parts = (0..cols.len()).map(|i| row.try_get::<_, Raw<'_>>(i).map(|r| r.0));
                let parts = parts
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(pg(Db::Analytics, "reading a deleted row's key"))?;
                pending.delete(&key_digest_of(parts.into_iter(), &mut key_buf))?;
            }
            deleted += rows.len() as u64;
            if rows.len() < FETCH as usize {
                break;
            }
        }
        // Returning an error rolls the whole job back: nothing is deleted.
        guard.check_share(deleted, a_rows, target)?;
        a.batch_execute("DROP TABLE pg_temp.elt_keys")
            .map_err(pg(Db::Analytics, "dropping the key table"))?;
        Ok(Reconciled {
            deleted,
            target_rows: a_rows,
            missing,
        })
    }
}

/// Keys loaded from M into `pg_temp.elt_keys` that the target lacks (NULL-safe).
fn missing_in_target(a: &mut Transaction<'_>, target: &str, k: &KeySql) -> Result<Vec<String>> {
    let join = |op: &str| {
        k.cols
            .iter()
            .map(|c| format!("t.{c} {op} k.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let not_null = k
        .cols
        .iter()
        .map(|c| format!("k.{c} IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!(
        "SELECT {} FROM pg_temp.elt_keys AS k \
         WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {}) \
           AND (({not_null}) OR NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {})) \
         LIMIT {MAX_REPAIR}",
        k.text("k"),
        join("="),
        join("IS NOT DISTINCT FROM")
    );
    let rows = a
        .query(&sql, &[])
        .map_err(pg(Db::Analytics, "finding rows M has and A lacks"))?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect())
}

/// The SQL expression of `cols` (quoted) over `alias` in the form `Reconciled::missing` holds.
pub fn key_text(cols: &[String], alias: &str) -> String {
    KeySql {
        cols: cols.iter().map(|c| quote_ident(c)).collect(),
        mask: 0,
        integer: false,
    }
    .text(alias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        let mut out = Vec::new();
        copy_text(&mut out, Some("a\tb\nc\\d"));
        out.push(b'\t');
        copy_text(&mut out, None);
        assert_eq!(out, b"a\\tb\\nc\\\\d\t\\N");
    }

    #[test]
    fn buckets_hold_about_sixteen_keys() {
        assert_eq!(bucket_count(0), 64);
        assert_eq!(bucket_count(1_000_000), 65536);
    }
}
