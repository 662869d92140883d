//! Key comparison for a key of one integer column when many keys differ: both databases
//! stream their keys in order and elt merges the two streams, so each side reads its keys
//! once (an index scan where there is one), nothing is written to a temporary table, and
//! the rows to delete are found however scattered they are.

use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use postgres::Transaction;

use super::sql::MAX_REPAIR;
use crate::db::Raw;
use crate::error::{Db, Error, Result, io, pg};

/// A key in merge order: integers ascending, NULL last (`ORDER BY 1`'s order on both sides).
type Key = (bool, i64);
const NULL_KEY: Key = (true, 0);
/// Keys per message from M's reader to the merge.
const CHUNK: usize = 65_536;
/// Keys per `DELETE ... = ANY($1)`.
const DELETE_CHUNK: usize = 10_000;
/// Keys per fetch from a portal.
const FETCH: i32 = 50_000;

/// What the merge found.
#[derive(Debug, Default)]
pub struct Merged {
    /// keys M returned (with repeats)
    pub m_keys: i64,
    /// rows in A's target
    pub a_rows: i64,
    /// rows of A whose key M lacks
    pub gone_rows: u64,
    /// distinct keys of A that M lacks (non-NULL), spilled to a temporary file
    gone: Option<BufWriter<std::fs::File>>,
    gone_keys: u64,
    /// A has NULL keys and M has none
    gone_null: bool,
    /// keys M has and A lacks, as text, at most `MAX_REPAIR`
    pub missing: Vec<String>,
}

pub fn ordered_sql(from: &str, col: &str) -> String {
    format!("SELECT t.{col} FROM {from} ORDER BY 1")
}

/// Merges M's ordered keys (`m_sql`) with A's (`a_sql`); both are `ordered_sql` COPYs.
pub fn merge(
    m: &mut Transaction<'_>,
    a: &mut Transaction<'_>,
    m_sql: &str,
    a_sql: &str,
) -> Result<Merged> {
    std::thread::scope(|s| {
        let (send, recv) = sync_channel(4);
        s.spawn(move || {
            if let Err(e) = stream_keys(m, Db::Master, m_sql, &send) {
                let _ = send.send(Err(e));
            }
        });
        let mut from_m = Chunks::new(recv);
        let mut out = Merged::default();
        let mut m_cur = from_m.next()?;
        // The previous key of each side: both streams are ordered, so a key of one side
        // lower than the other's current key is matched only by that previous key.
        let mut prev_a: Option<Key> = None;
        let mut prev_missing: Option<Key> = None;
        let mut a_side = |a_key: Key| -> Result<()> {
            out.a_rows += 1;
            while let Some(mk) = m_cur.filter(|mk| *mk < a_key) {
                out.m_keys += 1;
                if prev_a != Some(mk) && prev_missing != Some(mk) {
                    note_missing(&mut out, mk);
                    prev_missing = Some(mk);
                }
                m_cur = from_m.next()?;
            }
            if m_cur != Some(a_key) {
                out.gone_rows += 1;
                if prev_a != Some(a_key) {
                    gone(&mut out, a_key)?;
                }
            }
            prev_a = Some(a_key);
            Ok(())
        };
        stream_with(a, Db::Analytics, a_sql, &mut a_side)?;
        // M's remaining keys are missing in A, but for repeats of A's last key.
        while let Some(mk) = m_cur {
            out.m_keys += 1;
            if prev_a != Some(mk) && prev_missing != Some(mk) {
                note_missing(&mut out, mk);
                prev_missing = Some(mk);
            }
            m_cur = from_m.next()?;
        }
        Ok(out)
    })
}

fn note_missing(out: &mut Merged, k: Key) {
    if k != NULL_KEY && out.missing.len() < MAX_REPAIR as usize {
        out.missing.push(k.1.to_string());
    }
}

fn gone(out: &mut Merged, k: Key) -> Result<()> {
    if k == NULL_KEY {
        out.gone_null = true;
        return Ok(());
    }
    let w = match &mut out.gone {
        Some(w) => w,
        None => out.gone.insert(BufWriter::new(
            tempfile::tempfile().map_err(io("creating a temporary file for deleted keys"))?,
        )),
    };
    out.gone_keys += 1;
    w.write_all(&k.1.to_be_bytes())
        .map_err(io("writing deleted keys to a temporary file"))
}

impl Merged {
    /// Deletes the rows found gone; `each` is told every deleted key's text (None: NULL).
    /// Returns rows deleted.
    pub fn delete(
        &mut self,
        a: &mut Transaction<'_>,
        target: &str,
        col: &str,
        mut each: impl FnMut(Option<&str>) -> Result<()>,
    ) -> Result<u64> {
        let mut deleted = 0;
        if let Some(w) = self.gone.take() {
            let mut file = w.into_inner().map_err(|e| Error::Io {
                what: "flushing deleted keys".into(),
                source: e.into_error(),
            })?;
            file.rewind().map_err(io("rewinding deleted keys"))?;
            let mut r = BufReader::new(file);
            let stmt = a
                .prepare(&format!(
                    "DELETE FROM {target} AS t WHERE t.{col} = ANY($1::int8[])"
                ))
                .map_err(pg(
                    Db::Analytics,
                    "preparing the deletion of rows gone from M",
                ))?;
            let mut keys = Vec::with_capacity(DELETE_CHUNK);
            let mut left = self.gone_keys;
            while left > 0 {
                keys.clear();
                let mut b = [0u8; 8];
                while keys.len() < DELETE_CHUNK && left > 0 {
                    r.read_exact(&mut b).map_err(io("reading deleted keys"))?;
                    keys.push(i64::from_be_bytes(b));
                    left -= 1;
                }
                deleted += a
                    .execute(&stmt, &[&keys])
                    .map_err(pg(Db::Analytics, "deleting rows gone from M"))?;
                for k in &keys {
                    each(Some(&k.to_string()))?;
                }
            }
        }
        if self.gone_null {
            deleted += a
                .execute(
                    &format!("DELETE FROM {target} AS t WHERE t.{col} IS NULL"),
                    &[],
                )
                .map_err(pg(Db::Analytics, "deleting rows gone from M"))?;
            each(None)?;
        }
        Ok(deleted)
    }
}

/// M's keys arriving in chunks from the reader thread.
struct Chunks {
    recv: Receiver<Result<Vec<Key>>>,
    chunk: std::vec::IntoIter<Key>,
}

impl Chunks {
    fn new(recv: Receiver<Result<Vec<Key>>>) -> Self {
        Chunks {
            recv,
            chunk: Vec::new().into_iter(),
        }
    }

    fn next(&mut self) -> Result<Option<Key>> {
        loop {
            if let Some(k) = self.chunk.next() {
                return Ok(Some(k));
            }
            match self.recv.recv() {
                Ok(c) => self.chunk = c?.into_iter(),
                Err(_) => return Ok(None),
            }
        }
    }
}

fn stream_keys(
    tx: &mut Transaction<'_>,
    db: Db,
    sql: &str,
    out: &SyncSender<Result<Vec<Key>>>,
) -> Result<()> {
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut hung_up = false;
    stream_with(tx, db, sql, &mut |k| {
        chunk.push(k);
        if chunk.len() == CHUNK && !hung_up {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            hung_up = out.send(Ok(full)).is_err();
        }
        Ok(())
    })?;
    if !chunk.is_empty() {
        let _ = out.send(Ok(chunk));
    }
    Ok(())
}

/// Reads one integer column in order through a portal and calls `each` with every key.
/// A portal, not COPY: the sync client pays a runtime round per COPY message, one per row,
/// while a portal's rows arrive `FETCH` at a time.
fn stream_with(
    tx: &mut Transaction<'_>,
    db: Db,
    sql: &str,
    each: &mut dyn FnMut(Key) -> Result<()>,
) -> Result<()> {
    // Enough memory to sort in memory when the keys come from no index.
    tx.batch_execute("SET LOCAL work_mem = '64MB'")
        .map_err(pg(db, "reading keys in order"))?;
    let stmt = tx.prepare(sql).map_err(pg(db, "reading keys in order"))?;
    let portal = tx
        .bind(&stmt, &[])
        .map_err(pg(db, "reading keys in order"))?;
    loop {
        let rows = tx
            .query_portal(&portal, FETCH)
            .map_err(pg(db, "reading keys in order"))?;
        for row in &rows {
            let v = row
                .try_get::<_, Raw<'_>>(0)
                .map_err(pg(db, "reading keys in order"))?;
            let key = match v.0 {
                None => NULL_KEY,
                Some(&[a, b]) => (false, i16::from_be_bytes([a, b]) as i64),
                Some(&[a, b, c, d]) => (false, i32::from_be_bytes([a, b, c, d]) as i64),
                Some(&[a, b, c, d, e, f, g, h]) => {
                    (false, i64::from_be_bytes([a, b, c, d, e, f, g, h]))
                }
                Some(other) => {
                    return Err(Error::Job(format!(
                        "the ordered keys from {db} hold a {}-byte integer",
                        other.len()
                    )));
                }
            };
            each(key)?;
        }
        if rows.len() < FETCH as usize {
            return Ok(());
        }
    }
}
