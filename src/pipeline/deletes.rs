//! Deletions: find the keys of A's target that M no longer has, delete those rows in one
//! NULL-safe anti-join, and drop their digests from Redis.
//!
//! Both databases first fold their keys into per-bucket digests (count and sum of a hash
//! of each key's text). Only the keys of buckets that differ travel from M to A, so a run
//! with nothing deleted moves no keys at all.

use std::collections::HashMap;
use std::io::Write;

use postgres::Transaction;

use crate::db::quote_ident;
use crate::error::{Db, Error, Result, io, pg};
use crate::pipeline::digest::key_digest;
use crate::placeholders::strip_trailing_semicolon;
use crate::state::PendingState;

const FETCH: i32 = 10_000;

/// Per-bucket digests: bucket -> (count, sum of key hashes as text).
type Digests = HashMap<i32, (i64, String)>;

/// SQL fragments over a row alias's key columns.
struct KeySql {
    cols: Vec<String>,
    mask: u32,
}

impl KeySql {
    fn list(&self) -> String {
        self.cols.join(", ")
    }

    /// A hash of the key's text: the same on M and A for the same key values.
    fn hash(&self, alias: &str) -> String {
        let parts: Vec<String> = self.cols.iter().map(|c| format!("{alias}.{c}")).collect();
        format!("hashtextextended(row({})::text, 0)", parts.join(", "))
    }

    fn bucket(&self, alias: &str) -> String {
        format!("({} & {})::int4", self.hash(alias), self.mask)
    }
}

/// Buckets so that each holds about 16 keys: a few scattered deletions then move few keys.
fn bucket_count(rows: i64) -> u32 {
    ((rows.max(1) as u64 / 16).next_power_of_two()).clamp(64, 1 << 20) as u32
}

fn digests(tx: &mut Transaction<'_>, db: Db, from: &str, k: &KeySql) -> Result<Digests> {
    let sql = format!(
        "SELECT b, count(*), sum(h)::text FROM (SELECT {} AS b, {} AS h FROM {from}) AS x GROUP BY b",
        k.bucket("t"),
        k.hash("t")
    );
    let rows = tx
        .query(&sql, &[])
        .map_err(pg(db, "computing per-bucket key digests"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, i32>(0),
                (r.get::<_, i64>(1), r.get::<_, String>(2)),
            )
        })
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

/// Deletes from `target` the rows whose key is not among M's keys; returns how many.
pub fn reconcile(
    m: &mut Transaction<'_>,
    a: &mut Transaction<'_>,
    keys_sql: &str,
    target: &str,
    key_columns: &[String],
    rows_in_target: i64,
    pending: &mut PendingState,
) -> Result<u64> {
    let cols: Vec<String> = key_columns.iter().map(|c| quote_ident(c)).collect();
    let buckets = bucket_count(rows_in_target);
    let k = KeySql {
        cols: cols.clone(),
        mask: buckets - 1,
    };
    let keys_from = format!("({}\n) AS t", strip_trailing_semicolon(keys_sql));
    let target_from = format!("{target} AS t");

    // Both sides at once: M on a helper thread, A here.
    let (m_digests, a_digests) = std::thread::scope(|s| {
        let (k_ref, keys_from, m_ref) = (&k, &keys_from, &mut *m);
        let m_side = s.spawn(move || digests(m_ref, Db::Master, keys_from, k_ref));
        let a_side = digests(a, Db::Analytics, &target_from, &k);
        let m_side = m_side
            .join()
            .map_err(|_| Error::Job("the key digest thread panicked".into()))
            .and_then(|r| r);
        (m_side, a_side)
    });
    let (m_digests, a_digests) = (m_digests?, a_digests?);
    let mut differing: Vec<i32> = a_digests
        .iter()
        .filter(|(b, d)| m_digests.get(b) != Some(d))
        .map(|(b, _)| *b)
        .collect();
    if differing.is_empty() {
        return Ok(0);
    }
    differing.sort_unstable();
    // Past half the buckets, filtering costs more than it saves.
    let filter = differing.len() <= buckets as usize / 2;
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
    loop {
        let rows = a
            .query_portal(&portal, FETCH)
            .map_err(pg(Db::Analytics, "deleting rows gone from M"))?;
        for row in &rows {
            pending.delete(&key_digest(row, 0, cols.len())?)?;
        }
        deleted += rows.len() as u64;
        if rows.len() < FETCH as usize {
            break;
        }
    }
    a.batch_execute("DROP TABLE pg_temp.elt_keys")
        .map_err(pg(Db::Analytics, "dropping the key table"))?;
    Ok(deleted)
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
