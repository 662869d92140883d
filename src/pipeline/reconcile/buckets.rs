//! Descending to the keys that can differ: both databases fold their keys into per-bucket
//! digests (count and exact sum of the keyed hash, buckets by the hash's low bits); only the
//! buckets whose digests differ matter. Their keys are either read from both sides and
//! compared in memory (few buckets), or, when they are many, M's keys of those buckets are
//! copied into a temporary table on A and compared there (memory stays flat).

use std::collections::{HashMap, HashSet};
use std::io::Write;

use postgres::Transaction;

use super::sql::{KeySql, MAX_REPAIR, Sides};
use crate::db::Raw;
use crate::error::{Db, Result, pg, pg_io};
use crate::pipeline::digest::key_digest_of;
use crate::state::PendingState;

const FETCH: i32 = 10_000;
/// Single-column keys that are NULL have no hash and land in this bucket.
pub const NULL_BUCKET: i32 = -1;

/// One bucket's digest: (bucket, count, exact sum of the keys' keyed hashes).
type Digest = (i32, i64, String);

/// Buckets whose digests differ between M and A (present on one side only included).
pub(super) fn differing(sides: &mut Sides<'_, '_, '_>, k: &KeySql) -> Result<Vec<i32>> {
    let sql = |from: &str| {
        format!(
            "SELECT ({h} & $2)::int4, count(*), coalesce(sum({h}), 0)::text \
             FROM {from} GROUP BY 1 ORDER BY 1 NULLS FIRST",
            h = k.hash("t")
        )
    };
    let (m_sql, a_sql) = (sql(&k.keys_from), sql(&k.target_from));
    let read = |tx: &mut Transaction<'_>, db: Db, sql: &str| -> Result<Vec<Digest>> {
        let what = || pg(db, "computing per-bucket key digests");
        // enough memory to hash-aggregate in memory instead of spilling to disk
        tx.batch_execute("SET LOCAL work_mem = '64MB'")
            .map_err(what())?;
        let rows = tx
            .query(sql, &[&k.seed, &(k.mask as i64)])
            .map_err(what())?;
        rows.iter()
            .map(|r| {
                let b: Option<i32> = r.try_get(0).map_err(what())?;
                Ok((
                    b.unwrap_or(NULL_BUCKET),
                    r.try_get(1).map_err(what())?,
                    r.try_get(2).map_err(what())?,
                ))
            })
            .collect()
    };
    let (md, ad) = sides.both(
        |m| read(m, Db::Master, &m_sql),
        |a| read(a, Db::Analytics, &a_sql),
    )?;
    let m_map: HashMap<i32, &Digest> = md.iter().map(|d| (d.0, d)).collect();
    let a_map: HashMap<i32, &Digest> = ad.iter().map(|d| (d.0, d)).collect();
    let mut out: Vec<i32> = m_map
        .iter()
        .filter(|(b, d)| a_map.get(b) != Some(d))
        .map(|(b, _)| *b)
        .chain(a_map.keys().filter(|b| !m_map.contains_key(b)).copied())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// A key as its parts' texts (NULL-safe: `None` is NULL).
type KeyParts = Vec<Option<String>>;

/// What comparing the keys of some buckets found.
pub struct Found {
    /// rows of A whose key M lacks: their `ctid`s and key parts
    pub gone: Vec<(String, KeyParts)>,
    /// keys M has and A lacks, in `KeySql::text` form
    pub missing: Vec<String>,
}

/// Reads the keys of `buckets` from both sides and compares them in memory.
pub(super) fn compare_in_memory(
    sides: &mut Sides<'_, '_, '_>,
    k: &KeySql,
    buckets: &[i32],
) -> Result<Found> {
    let with_null = buckets.contains(&NULL_BUCKET);
    let filter = format!(
        "WHERE ({h} & $2)::int4 = ANY($3) OR ($4 AND {h} IS NULL)",
        h = k.hash("t")
    );
    let m_sql = format!(
        "SELECT {}, {} FROM {} {filter}",
        k.part_texts("t"),
        k.text("t"),
        k.keys_from
    );
    let a_sql = format!(
        "SELECT {}, t.ctid::text FROM {} {filter}",
        k.part_texts("t"),
        k.target_from
    );
    let n = k.cols.len();
    let read =
        |tx: &mut Transaction<'_>, db: Db, sql: &str| -> Result<Vec<(KeyParts, Option<String>)>> {
            let what = || pg(db, "reading the keys of differing buckets");
            let rows = tx
                .query(sql, &[&k.seed, &(k.mask as i64), &buckets, &with_null])
                .map_err(what())?;
            rows.iter()
                .map(|r| {
                    let parts = (0..n)
                        .map(|i| r.try_get::<_, Option<String>>(i))
                        .collect::<std::result::Result<KeyParts, _>>()
                        .map_err(what())?;
                    Ok((parts, r.try_get(n).map_err(what())?))
                })
                .collect()
        };
    let (m_keys, a_keys) = sides.both(
        |m| read(m, Db::Master, &m_sql),
        |a| read(a, Db::Analytics, &a_sql),
    )?;
    let in_m: HashSet<&KeyParts> = m_keys.iter().map(|(p, _)| p).collect();
    let in_a: HashSet<&KeyParts> = a_keys.iter().map(|(p, _)| p).collect();
    let gone = a_keys
        .iter()
        .filter(|(p, _)| !in_m.contains(p))
        .filter_map(|(p, ctid)| Some((ctid.clone()?, p.clone())))
        .collect();
    let mut missing: Vec<String> = m_keys
        .iter()
        .filter(|(p, _)| !in_a.contains(p))
        .filter_map(|(_, text)| text.clone())
        .collect();
    missing.sort();
    missing.dedup();
    missing.truncate(MAX_REPAIR as usize);
    Ok(Found { gone, missing })
}

/// Deletes the rows `gone` names (by `ctid`, which is exact and NULL-safe within this
/// transaction) and drops their digests; returns rows deleted.
pub fn delete(
    a: &mut Transaction<'_>,
    target: &str,
    gone: &[(String, KeyParts)],
    pending: &mut PendingState,
) -> Result<u64> {
    let mut deleted = 0;
    let mut buf = Vec::with_capacity(64);
    for chunk in gone.chunks(FETCH as usize) {
        let ctids: Vec<&str> = chunk.iter().map(|(c, _)| c.as_str()).collect();
        deleted += a
            .execute(
                &format!("DELETE FROM {target} WHERE ctid = ANY($1::text[]::tid[])"),
                &[&ctids],
            )
            .map_err(pg(Db::Analytics, "deleting rows gone from M"))?;
        for (_, parts) in chunk {
            let parts = parts.iter().map(|p| p.as_deref().map(str::as_bytes));
            pending.delete(&key_digest_of(parts, &mut buf))?;
        }
    }
    Ok(deleted)
}

/// What the temporary-table comparison found and did.
pub struct AntiJoin {
    pub deleted: u64,
    pub missing: Vec<String>,
}

/// M's keys of `buckets` (all when `None`) copied into a temporary table on A and compared
/// there: the rows of A whose key M lacks are deleted (NULL-safe), and the keys A lacks
/// found. Memory stays flat however many keys move. `check` sees the rows to delete before
/// they go (the delete guard).
pub(super) fn anti_join(
    sides: &mut Sides<'_, '_, '_>,
    k: &KeySql,
    buckets: Option<&[i32]>,
    pending: &mut PendingState,
    check: impl Fn(u64) -> Result<()>,
) -> Result<AntiJoin> {
    let (m, a) = (&mut *sides.m, &mut *sides.a);
    let target = &k.target;
    a.batch_execute(&format!(
        "CREATE TEMP TABLE elt_keys ON COMMIT DROP AS SELECT {} FROM {target} WITH NO DATA",
        k.list()
    ))
    .map_err(pg(Db::Analytics, "creating the temporary key table"))?;
    copy_keys(m, a, k, buckets)?;
    a.batch_execute("ANALYZE pg_temp.elt_keys")
        .map_err(pg(Db::Analytics, "analysing the key table"))?;
    let missing = missing_in_target(a, k)?;
    let deleted = delete_absent(a, k, buckets, pending, &check)?;
    a.batch_execute("DROP TABLE pg_temp.elt_keys")
        .map_err(pg(Db::Analytics, "dropping the key table"))?;
    Ok(AntiJoin { deleted, missing })
}

/// The bucket filter of the statements below (`$1` seed, `$2` mask, `$3` buckets).
fn bucket_filter(k: &KeySql, alias: &str, buckets: Option<&[i32]>) -> String {
    match buckets {
        Some(_) => format!(
            "({h} & $2)::int4 = ANY($3) OR ($4 AND {h} IS NULL)",
            h = k.hash(alias)
        ),
        None => "true".into(),
    }
}

fn copy_keys(
    m: &mut Transaction<'_>,
    a: &mut Transaction<'_>,
    k: &KeySql,
    buckets: Option<&[i32]>,
) -> Result<()> {
    let fetch = format!(
        "SELECT {} FROM {} WHERE {}",
        k.part_texts("t"),
        k.keys_from,
        bucket_filter(k, "t", buckets)
    );
    let stmt = m
        .prepare(&fetch)
        .map_err(pg(Db::Master, "preparing SELECT_KEYS_SQL"))?;
    let with_null = buckets.is_some_and(|b| b.contains(&NULL_BUCKET));
    let portal = match buckets {
        Some(b) => m.bind(&stmt, &[&k.seed, &(k.mask as i64), &b, &with_null]),
        None => m.bind(&stmt, &[]),
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
            for i in 0..k.cols.len() {
                if i > 0 {
                    buf.push(b'\t');
                }
                copy_text(&mut buf, row.get::<_, Option<&str>>(i));
            }
            buf.push(b'\n');
        }
        w.write_all(&buf)
            .map_err(pg_io(Db::Analytics, "streaming M's keys into A"))?;
        buf.clear();
        if rows.len() < FETCH as usize {
            break;
        }
    }
    w.finish()
        .map_err(pg(Db::Analytics, "loading M's keys into A"))?;
    Ok(())
}

/// Deletes the target's rows (of `buckets`) whose key is not in `elt_keys`.
fn delete_absent(
    a: &mut Transaction<'_>,
    k: &KeySql,
    buckets: Option<&[i32]>,
    pending: &mut PendingState,
    check: &impl Fn(u64) -> Result<()>,
) -> Result<u64> {
    // Plain equality lets the planner hash the anti-join; keys with NULL parts, which
    // equality never matches, get a second IS NOT DISTINCT FROM check.
    let join = |op: &str| k.join("k", "t", op);
    let not_null = k.all_not_null("t");
    let delete = format!(
        "DELETE FROM {} AS t \
         WHERE ({}) AND NOT EXISTS (SELECT 1 FROM pg_temp.elt_keys AS k WHERE {}) \
           AND (({not_null}) OR NOT EXISTS (SELECT 1 FROM pg_temp.elt_keys AS k WHERE {})) \
         RETURNING {}",
        k.target,
        bucket_filter(k, "t", buckets),
        join("="),
        join("IS NOT DISTINCT FROM"),
        k.part_texts("t")
    );
    let stmt = a.prepare(&delete).map_err(pg(
        Db::Analytics,
        "preparing the deletion of rows gone from M",
    ))?;
    let with_null = buckets.is_some_and(|b| b.contains(&NULL_BUCKET));
    let portal = match buckets {
        Some(b) => a.bind(&stmt, &[&k.seed, &(k.mask as i64), &b, &with_null]),
        None => a.bind(&stmt, &[]),
    }
    .map_err(pg(Db::Analytics, "deleting rows gone from M"))?;
    let mut deleted = 0u64;
    let mut key_buf = Vec::with_capacity(64);
    loop {
        let rows = a
            .query_portal(&portal, FETCH)
            .map_err(pg(Db::Analytics, "deleting rows gone from M"))?;
        for row in &rows {
            let parts = (0..k.cols.len()).map(|i| row.try_get::<_, Raw<'_>>(i).map(|r| r.0));
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
    check(deleted)?;
    Ok(deleted)
}

/// Keys loaded from M into `pg_temp.elt_keys` that the target lacks (NULL-safe).
fn missing_in_target(a: &mut Transaction<'_>, k: &KeySql) -> Result<Vec<String>> {
    let join = |op: &str| k.join("t", "k", op);
    let sql = format!(
        "SELECT {} FROM pg_temp.elt_keys AS k \
         WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {}) \
           AND (({}) OR NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {})) \
         LIMIT {MAX_REPAIR}",
        k.text("k"),
        join("="),
        k.all_not_null("k"),
        join("IS NOT DISTINCT FROM"),
        target = k.target
    );
    let rows = a
        .query(&sql, &[])
        .map_err(pg(Db::Analytics, "finding rows M has and A lacks"))?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect())
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
}
