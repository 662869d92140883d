//! Verification: proves that a job's target in A holds exactly what the job describes, without
//! trusting Redis. Every row the source returns on M (no watermark limit) and every row of the
//! target are turned into one canonical form (each value cast to the target column's type,
//! both sessions with the same settings), hashed with a keyed hash inside the databases and
//! folded into per-bucket digests; only the buckets whose digests differ are read key by
//! key, to count and name the rows that differ, are missing in A, or are extra in A.
//!
//! When the upsert writes each source value unchanged, M computes its side itself; when it
//! transforms values (`upper(%s)`), the source rows are copied into a temporary table on A
//! and the upsert's own expressions are evaluated over them there. Nothing is written: both
//! transactions are rolled back.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use postgres::Transaction;
use serde::Serialize;

use crate::db::{Access, Conn, Tx, quote_ident};
use crate::error::{Db, Error, Result, pg, pg_io};
use crate::jobfile::Job;
use crate::pipeline::plan::{Plan, WATERMARK_SETTING};
use crate::pipeline::watermark;

/// Keys per bucket aimed at: a difference reads about this many keys of each side.
const KEYS_PER_BUCKET: f64 = 512.0;
/// Rows per fetch while reading the keys of differing buckets.
const FETCH: i32 = 10_000;
/// Keys named per kind of difference.
const SAMPLES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Equal,
    Different,
    Failed,
}

/// Up to `SAMPLES` keys of each kind, each a list of its values as text (NULL as null).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SampleKeys {
    pub differ: Vec<Vec<Option<String>>>,
    pub missing: Vec<Vec<Option<String>>>,
    pub extra: Vec<Vec<Option<String>>>,
}

/// What verifying one job found.
#[derive(Debug, Clone, Serialize)]
pub struct JobVerification {
    pub job: String,
    pub status: Verdict,
    pub rows_m: u64,
    pub rows_a: u64,
    /// keys in both whose rows differ
    pub differ: u64,
    /// in M, not in A
    pub missing: u64,
    /// only in A
    pub extra: u64,
    pub sample_keys: SampleKeys,
    pub error: Option<String>,
}

impl JobVerification {
    fn new(job: &str, status: Verdict) -> Self {
        JobVerification {
            job: job.to_string(),
            status,
            rows_m: 0,
            rows_a: 0,
            differ: 0,
            missing: 0,
            extra: 0,
            sample_keys: SampleKeys::default(),
            error: None,
        }
    }

    pub fn failed(job: &str, error: String) -> Self {
        JobVerification {
            error: Some(error),
            ..JobVerification::new(job, Verdict::Failed)
        }
    }
}

/// One side's rows as SQL: `FROM` what, the key's and the row's canonical form.
struct Side {
    db: Db,
    from: String,
    key: String,
    /// each key part as text, for naming keys
    parts: Vec<String>,
    row: String,
}

impl Side {
    /// `SELECT hk, hr, parts… FROM …` with the seed as `$1`.
    fn hashed(&self) -> String {
        format!(
            "SELECT pg_catalog.hash_record_extended({}, $1) AS hk, \
                    pg_catalog.hash_record_extended({}, $1) AS hr, {} FROM {}",
            self.key,
            self.row,
            self.parts.join(", "),
            self.from
        )
    }
}

/// Verifies `job` over its own transactions on M and A (both rolled back).
pub fn verify_job(m: &mut Conn, a: &mut Conn, job: &Job, seed: i64) -> JobVerification {
    match Verifier::run(m, a, job, seed) {
        Ok(v) => v,
        Err(e) => JobVerification::failed(&job.name, crate::error::chain(&e)),
    }
}

struct Verifier<'t> {
    m: Tx<'t>,
    a: Tx<'t>,
    seed: i64,
}

impl<'t> Verifier<'t> {
    fn run(m: &'t mut Conn, a: &'t mut Conn, job: &Job, seed: i64) -> Result<JobVerification> {
        let mut v = Verifier {
            m: m.begin(Access::Snapshot)?,
            a: a.begin(Access::ReadWrite)?,
            seed,
        };
        let exists: bool =
            v.a.query_one(
                "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                &[&job.target_table],
            )
            .map_err(pg(Db::Analytics, "looking for the target"))?
            .get(0);
        if !exists {
            // Everything M has is missing; A cannot describe an absent table's rows.
            v.a.batch_execute(&job.create_table_sql)
                .map_err(pg(Db::Analytics, "running CREATE_TABLE_SQL (rolled back)"))?;
        }
        let plan = Plan::build(job, &mut v.m, &mut v.a)?;
        let earliest = watermark::earliest(&plan.watermark_type)?;
        v.m.execute(
            "SELECT pg_catalog.set_config($1, $2, true)",
            &[&WATERMARK_SETTING, &earliest],
        )
        .map_err(pg(Db::Master, "binding the earliest watermark"))?;
        let types = v.target_types(job, &plan)?;
        let target = v.target_side(job, &plan, &types);
        let (source, on_m) = match plan.one_to_one && types.iter().all(|t| t.1) {
            true => (v.source_on_m(job, &plan, &types), true),
            false => (v.source_on_a(job, &plan, &types)?, false),
        };
        let result = v.compare(job, &source, on_m, &target);
        let _ = v.m.rollback();
        let _ = v.a.rollback();
        result
    }

    /// The type (with its modifier) of each upsert column in the target, and whether it is
    /// built in (then M knows it too).
    fn target_types(&mut self, job: &Job, plan: &Plan) -> Result<Vec<(String, bool)>> {
        let rows = self
            .a
            .query(
                "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), \
                        a.atttypid < 16384 \
                 FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 \
                   AND NOT a.attisdropped",
                &[&job.target_table],
            )
            .map_err(pg(Db::Analytics, "reading the target's column types"))?;
        let by_name: BTreeMap<String, (String, bool)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        plan.upsert_columns
            .iter()
            .map(|c| {
                by_name
                    .get(c)
                    .cloned()
                    .ok_or_else(|| Error::Job(format!("{} has no column `{c}`", job.target_table)))
            })
            .collect()
    }

    fn target_side(&self, job: &Job, plan: &Plan, types: &[(String, bool)]) -> Side {
        let values = plan
            .upsert_columns
            .iter()
            .map(|c| format!("t.{}", quote_ident(c)))
            .collect();
        side(
            Db::Analytics,
            format!("{} AS t", job.target_table),
            job,
            plan,
            (values, types),
        )
    }

    /// M computes the canonical rows itself: each source value cast to its column's type.
    fn source_on_m(&self, job: &Job, plan: &Plan, types: &[(String, bool)]) -> Side {
        let values: Vec<String> = plan
            .source_names
            .iter()
            .zip(types)
            .map(|(n, (t, _))| format!("(elt_src.{})::{t}", quote_ident(n)))
            .collect();
        side(
            Db::Master,
            format!("({}) AS elt_src", plan.all_rows_sql),
            job,
            plan,
            (values, types),
        )
    }

    /// The source rows copied into a temporary table on A, where the upsert's expressions
    /// give the values it writes.
    fn source_on_a(&mut self, job: &Job, plan: &Plan, types: &[(String, bool)]) -> Result<Side> {
        self.a
            .batch_execute(&plan.stage_ddl)
            .map_err(pg(Db::Analytics, "creating the staging table"))?;
        copy_rows(&mut self.m, &mut self.a, plan)?;
        let values: Vec<String> = plan
            .upsert_exprs
            .iter()
            .zip(types)
            .map(|(e, (t, _))| format!("({e})::{t}"))
            .collect();
        Ok(side(
            Db::Analytics,
            "pg_temp.elt_stage AS s".into(),
            job,
            plan,
            (values, types),
        ))
    }

    /// The digests of both sides, computed at once when they live in different databases.
    fn both(
        &mut self,
        on_m: bool,
        source: &Side,
        target: &Side,
        mask: Option<i64>,
    ) -> Result<(Digests, Digests)> {
        let seed = self.seed;
        if !on_m {
            let src = digests(&mut self.a, source, seed, mask)?;
            return Ok((src, digests(&mut self.a, target, seed, mask)?));
        }
        std::thread::scope(|s| {
            let m = &mut self.m;
            let h = s.spawn(move || digests(m, source, seed, mask));
            let t = digests(&mut self.a, target, seed, mask);
            let src = h
                .join()
                .map_err(|_| Error::Job("the verification thread panicked".into()))?;
            Ok((src?, t?))
        })
    }

    /// Buckets of about `KEYS_PER_BUCKET` keys, as a mask of the key hash.
    fn bucket_mask(&mut self, job: &Job) -> i64 {
        let estimate: f64 = self
            .a
            .query_one(
                "SELECT greatest(reltuples, 1)::float8 FROM pg_catalog.pg_class \
                 WHERE oid = pg_catalog.to_regclass($1)",
                &[&job.target_table],
            )
            .map(|r| r.get(0))
            .unwrap_or(1.0);
        let buckets = ((estimate / KEYS_PER_BUCKET).ceil() as u64)
            .next_power_of_two()
            .clamp(64, 1 << 16) as i64;
        buckets - 1
    }

    fn compare(
        &mut self,
        job: &Job,
        source: &Side,
        on_m: bool,
        target: &Side,
    ) -> Result<JobVerification> {
        // Most tables are equal: one summary per side settles that, without the cost of
        // grouping every row into buckets.
        let (src_total, tgt_total) = self.both(on_m, source, target, None)?;
        if src_total == tgt_total {
            let rows = src_total.values().map(|d| d.0).sum::<i64>() as u64;
            return Ok(JobVerification {
                rows_m: rows,
                rows_a: rows,
                ..JobVerification::new(&job.name, Verdict::Equal)
            });
        }
        let mask = self.bucket_mask(job);
        let (src_digests, tgt_digests) = self.both(on_m, source, target, Some(mask))?;
        let mut out = JobVerification {
            rows_m: src_digests.values().map(|d| d.0).sum::<i64>() as u64,
            rows_a: tgt_digests.values().map(|d| d.0).sum::<i64>() as u64,
            ..JobVerification::new(&job.name, Verdict::Equal)
        };
        let differing: Vec<i32> = src_digests
            .iter()
            .filter(|(b, d)| tgt_digests.get(b) != Some(d))
            .map(|(b, _)| *b)
            .chain(
                tgt_digests
                    .keys()
                    .filter(|b| !src_digests.contains_key(b))
                    .copied(),
            )
            .collect();
        if !differing.is_empty() {
            out.status = Verdict::Different;
            let src_tx: &mut Transaction<'_> = if on_m { &mut self.m } else { &mut self.a };
            let mut src = Cursor::open(src_tx, source, self.seed, mask, &differing)?;
            let mut tgt = Cursor::open(&mut self.a, target, self.seed, mask, &differing)?;
            let mut pair = Pair {
                m: &mut self.m,
                a: &mut self.a,
            };
            Differences { out: &mut out }.walk(&mut pair, &mut src, &mut tgt)?;
        }
        Ok(out)
    }
}

/// One side's SQL from the values it writes and their target types, in upsert column order.
fn side(
    db: Db,
    from: String,
    job: &Job,
    plan: &Plan,
    (values, types): (Vec<String>, &[(String, bool)]),
) -> Side {
    let canonical: Vec<String> = values
        .iter()
        .zip(types)
        .map(|(v, (t, _))| canonical(v, t))
        .collect();
    let key_at: Vec<usize> = job
        .key_columns
        .iter()
        .filter_map(|k| plan.upsert_columns.iter().position(|c| c == k))
        .collect();
    let key: Vec<&str> = key_at.iter().map(|&i| canonical[i].as_str()).collect();
    Side {
        db,
        from,
        key: format!("row({})", key.join(", ")),
        parts: key_at
            .iter()
            .map(|&i| format!("({})::text", values[i]))
            .collect(),
        row: format!("row({})", canonical.join(", ")),
    }
}

/// A value in the form that is hashed: itself when its type's hash is a hash of the value's
/// bytes (equal hashes then mean equal text), else its text, so that `1.0` and `1.00`, `-0`
/// and `0`, `{1,2}` and `[0:1]={1,2}`, which PostgreSQL's own hashes treat as equal, differ.
/// Strings hash under the byte order collation, whatever the column's.
fn canonical(value: &str, type_name: &str) -> String {
    const BY_VALUE: [&str; 11] = [
        "smallint",
        "integer",
        "bigint",
        "boolean",
        "uuid",
        "bytea",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
        "time without time zone",
        "oid",
    ];
    let string = type_name == "text" || type_name.starts_with("character varying");
    // A declared scale gives every value the same digits after the point.
    let scaled = type_name.starts_with("numeric(");
    match () {
        _ if string => format!("({value}) COLLATE \"C\""),
        _ if scaled || BY_VALUE.contains(&type_name) => format!("({value})"),
        _ => format!("({value})::text"),
    }
}

/// Per bucket: (rows, sum of key hashes, sum of row hashes); sums are NULL for no rows.
type Digests = BTreeMap<i32, (i64, Option<String>, Option<String>)>;

/// Per bucket of `mask`, or one summary of every row (bucket 0) without a mask.
fn digests(tx: &mut Transaction<'_>, side: &Side, seed: i64, mask: Option<i64>) -> Result<Digests> {
    let (bucket, group) = match mask {
        Some(_) => ("(hk & $2)::int4", " GROUP BY 1"),
        None => ("0::int4", ""),
    };
    let sql = format!(
        "SELECT {bucket}, count(*), sum(hk)::text, sum(hr)::text FROM ({}) AS x{group}",
        side.hashed()
    );
    let what = || pg(side.db, "computing row digests");
    tx.batch_execute("SET LOCAL work_mem = '64MB'")
        .map_err(what())?;
    let rows = match mask {
        Some(mask) => tx.query(&sql, &[&seed, &mask]),
        None => tx.query(&sql, &[&seed]),
    }
    .map_err(what())?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(what())?,
                (
                    r.try_get(1).map_err(what())?,
                    r.try_get(2).map_err(what())?,
                    r.try_get(3).map_err(what())?,
                ),
            ))
        })
        .collect()
}

/// One row of a differing bucket: key hash, row hash, key parts.
type Entry = (i64, i64, Vec<Option<String>>);

/// Both transactions, for cursors that may live on either.
struct Pair<'p, 't> {
    m: &'p mut Transaction<'t>,
    a: &'p mut Transaction<'t>,
}

/// The rows of the differing buckets of one side, in key-hash order, read `FETCH` at a time.
struct Cursor {
    portal: postgres::Portal,
    db: Db,
    parts: usize,
    batch: std::vec::IntoIter<Entry>,
    done: bool,
}

impl Cursor {
    fn open(
        tx: &mut Transaction<'_>,
        side: &Side,
        seed: i64,
        mask: i64,
        buckets: &[i32],
    ) -> Result<Self> {
        let sql = format!(
            "SELECT * FROM ({}) AS x WHERE (hk & $2)::int4 = ANY($3) ORDER BY hk, hr",
            side.hashed()
        );
        let what = || pg(side.db, "reading the rows of differing buckets");
        let stmt = tx.prepare(&sql).map_err(what())?;
        let portal = tx.bind(&stmt, &[&seed, &mask, &buckets]).map_err(what())?;
        Ok(Cursor {
            portal,
            db: side.db,
            parts: side.parts.len(),
            batch: Vec::new().into_iter(),
            done: false,
        })
    }

    fn next(&mut self, pair: &mut Pair<'_, '_>) -> Result<Option<Entry>> {
        loop {
            if let Some(e) = self.batch.next() {
                return Ok(Some(e));
            }
            if self.done {
                return Ok(None);
            }
            let what = || pg(self.db, "reading the rows of differing buckets");
            let tx = match self.db {
                Db::Master => &mut *pair.m,
                Db::Analytics => &mut *pair.a,
            };
            let rows = tx.query_portal(&self.portal, FETCH).map_err(what())?;
            self.done = rows.len() < FETCH as usize;
            let mut batch = Vec::with_capacity(rows.len());
            for r in &rows {
                let parts = (0..self.parts)
                    .map(|i| r.try_get::<_, Option<String>>(2 + i))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(what())?;
                batch.push((
                    r.try_get(0).map_err(what())?,
                    r.try_get(1).map_err(what())?,
                    parts,
                ));
            }
            self.batch = batch.into_iter();
        }
    }
}

/// Counts and samples of what differs, filled by walking both cursors in key-hash order.
struct Differences<'o> {
    out: &'o mut JobVerification,
}

impl Differences<'_> {
    fn walk(&mut self, pair: &mut Pair<'_, '_>, src: &mut Cursor, tgt: &mut Cursor) -> Result<()> {
        let (mut s, mut t) = (src.next(pair)?, tgt.next(pair)?);
        loop {
            match (&s, &t) {
                (None, None) => return Ok(()),
                (Some(a), Some(b)) if a.0 == b.0 && a.2 == b.2 => {
                    if a.1 != b.1 {
                        self.note(Kind::Differ, &a.2);
                    }
                    s = src.next(pair)?;
                    t = tgt.next(pair)?;
                }
                (Some(a), Some(b)) if (a.0, &a.2) < (b.0, &b.2) => {
                    self.note(Kind::Missing, &a.2);
                    s = src.next(pair)?;
                }
                (Some(a), None) => {
                    self.note(Kind::Missing, &a.2);
                    s = src.next(pair)?;
                }
                (_, Some(b)) => {
                    self.note(Kind::Extra, &b.2);
                    t = tgt.next(pair)?;
                }
            }
        }
    }

    fn note(&mut self, kind: Kind, key: &[Option<String>]) {
        let (count, samples) = match kind {
            Kind::Differ => (&mut self.out.differ, &mut self.out.sample_keys.differ),
            Kind::Missing => (&mut self.out.missing, &mut self.out.sample_keys.missing),
            Kind::Extra => (&mut self.out.extra, &mut self.out.sample_keys.extra),
        };
        *count += 1;
        if samples.len() < SAMPLES {
            samples.push(key.to_vec());
        }
    }
}

enum Kind {
    Differ,
    Missing,
    Extra,
}

/// Pipes every source row from M into the staging table on A by binary COPY.
fn copy_rows(m: &mut Transaction<'_>, a: &mut Transaction<'_>, plan: &Plan) -> Result<()> {
    let mut from = m
        .copy_out(&format!(
            "COPY ({}) TO STDOUT (FORMAT binary)",
            plan.all_rows_sql
        ))
        .map_err(pg(Db::Master, "reading the source rows"))?;
    let mut to = a
        .copy_in(&plan.copy_in_sql)
        .map_err(pg(Db::Analytics, "copying the source rows into A"))?;
    loop {
        let chunk = from
            .fill_buf()
            .map_err(pg_io(Db::Master, "reading the source rows"))?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        to.write_all(chunk)
            .map_err(pg_io(Db::Analytics, "copying the source rows"))?;
        from.consume(n);
    }
    drop(from);
    to.finish()
        .map_err(pg(Db::Analytics, "copying the source rows into A"))?;
    Ok(())
}
