//! Extract: reads SELECT_SOURCE_SQL's portal in batches and digests each row, on its own
//! thread, so reading M overlaps with diffing and loading into A.

use std::sync::mpsc::SyncSender;
use std::time::Instant;

use postgres::{Portal, Row, Transaction};

use crate::error::{Db, Result, pg};
use crate::pipeline::digest;
use crate::pipeline::plan::Plan;
use crate::state::{KeyDigest, RowDigest};

/// Rows fetched from M per round trip (and looked up in Redis per pipeline).
pub const FETCH_ROWS: i32 = 5_000;
/// Batches in flight between the reader and the loader: bounds memory.
pub const IN_FLIGHT: usize = 2;

pub struct Batch {
    pub rows: Vec<Row>,
    pub keys: Vec<KeyDigest>,
    pub digests: Vec<RowDigest>,
    /// milliseconds spent fetching and digesting this batch
    pub fetch_ms: u64,
    pub digest_ms: u64,
}

pub fn read_batch(m: &mut Transaction<'_>, portal: &Portal, plan: &Plan) -> Result<Batch> {
    let t = Instant::now();
    let rows = m
        .query_portal(portal, FETCH_ROWS)
        .map_err(pg(Db::Master, "reading rows of SELECT_SOURCE_SQL"))?;
    let fetch_ms = t.elapsed().as_millis() as u64;
    let t = Instant::now();
    let mut keys = Vec::with_capacity(rows.len());
    let mut digests = Vec::with_capacity(rows.len());
    for row in &rows {
        keys.push(digest::key_digest(row, plan.columns, plan.key_count)?);
        digests.push(digest::row_digest(row, plan.columns)?);
    }
    Ok(Batch {
        rows,
        keys,
        digests,
        fetch_ms,
        digest_ms: t.elapsed().as_millis() as u64,
    })
}

/// Sends batches until the portal is exhausted, an error (sent as the last item), or the
/// receiver hangs up.
pub fn produce(
    m: &mut Transaction<'_>,
    portal: &Portal,
    plan: &Plan,
    out: SyncSender<Result<Batch>>,
) {
    loop {
        let batch = read_batch(m, portal, plan);
        let last = match &batch {
            Ok(b) => b.rows.len() < FETCH_ROWS as usize,
            Err(_) => true,
        };
        if out.send(batch).is_err() || last {
            return;
        }
    }
}
