//! Deletions: M's keys stream into a temporary table on A, one NULL-safe anti-join deletes
//! the target rows whose key M no longer has, and their key digests leave Redis.

use std::io::Write;

use postgres::Transaction;

use crate::db::quote_ident;
use crate::error::{Db, Result, io, pg};
use crate::pipeline::digest::key_digest;
use crate::placeholders::strip_trailing_semicolon;
use crate::state::PendingState;

const FETCH: i32 = 10_000;

/// Deletes from `target` the rows whose key is not among M's keys; returns how many.
pub fn reconcile(
    m: &mut Transaction<'_>,
    a: &mut Transaction<'_>,
    keys_sql: &str,
    target: &str,
    key_columns: &[String],
    pending: &mut PendingState,
) -> Result<u64> {
    let cols: Vec<String> = key_columns.iter().map(|c| quote_ident(c)).collect();
    let list = cols.join(", ");
    a.batch_execute(&format!(
        "CREATE TEMP TABLE elt_keys ON COMMIT DROP AS SELECT {list} FROM {target} WITH NO DATA"
    ))
    .map_err(pg(Db::Analytics, "creating the temporary key table"))?;
    {
        let mut reader = m
            .copy_out(&format!(
                "COPY ({}) TO STDOUT",
                strip_trailing_semicolon(keys_sql)
            ))
            .map_err(pg(Db::Master, "running SELECT_KEYS_SQL"))?;
        let mut writer = a
            .copy_in(&format!("COPY pg_temp.elt_keys ({list}) FROM STDIN"))
            .map_err(pg(Db::Analytics, "starting COPY of M's keys"))?;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = std::io::Read::read(&mut reader, &mut chunk)
                .map_err(io("reading M's keys (SELECT_KEYS_SQL)"))?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&chunk[..n])
                .map_err(io("streaming M's keys into A"))?;
        }
        writer
            .finish()
            .map_err(pg(Db::Analytics, "loading M's keys into A"))?;
    }
    a.batch_execute("ANALYZE pg_temp.elt_keys")
        .map_err(pg(Db::Analytics, "analysing the key table"))?;

    // Plain equality lets the planner hash the anti-join; keys with NULL parts, which
    // equality never matches, get a second IS NOT DISTINCT FROM check.
    let eq = cols
        .iter()
        .map(|c| format!("k.{c} = t.{c}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let not_null = cols
        .iter()
        .map(|c| format!("t.{c} IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let same = cols
        .iter()
        .map(|c| format!("k.{c} IS NOT DISTINCT FROM t.{c}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let texts = cols
        .iter()
        .map(|c| format!("t.{c}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let delete = format!(
        "DELETE FROM {target} AS t \
         WHERE NOT EXISTS (SELECT 1 FROM pg_temp.elt_keys AS k WHERE {eq}) \
           AND (({not_null}) OR NOT EXISTS (SELECT 1 FROM pg_temp.elt_keys AS k WHERE {same})) \
         RETURNING {texts}"
    );
    let stmt = a.prepare(&delete).map_err(pg(
        Db::Analytics,
        "preparing the deletion of rows gone from M",
    ))?;
    let portal = a
        .bind(&stmt, &[])
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
