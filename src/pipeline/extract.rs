//! Extract: reads M's rows on their own thread, so reading M overlaps with diffing and
//! loading into A, and digests each row from its raw bytes.
//!
//! A full synchronisation reads M by binary `COPY (extraction) TO STDOUT`, the cheapest
//! path out of PostgreSQL; the watermark still travels as a bound parameter (into a
//! transaction-local setting the extraction reads). Incremental runs and drift repair read
//! a portal in batches, so the planner sees the watermark's value and can use an index.
//! Both paths produce the same batches: rows as fields in COPY binary form.

use std::io::BufRead;
use std::ops::Range;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use postgres::{Portal, Transaction};

use crate::db::Raw;
use crate::error::{Db, Error, Result, io, pg};
use crate::pipeline::digest::{self, push_field};
use crate::pipeline::keymerge::KeySum;
use crate::pipeline::plan::Plan;
use crate::state::{KeyDigest, RowDigest};

/// Rows fetched from M per round trip (and looked up in Redis per pipeline).
pub const FETCH_ROWS: i32 = 5_000;
/// Batches in flight between the reader and the loader: bounds memory.
pub const IN_FLIGHT: usize = 2;

const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// A batch of extracted rows. Each row is the extraction's fields in COPY binary form:
/// the key texts first, then the source columns.
#[derive(Default)]
pub struct Batch {
    data: Vec<u8>,
    /// per row: where its source columns start and where the row ends in `data`
    rows: Vec<Range<usize>>,
    pub keys: Vec<KeyDigest>,
    pub digests: Vec<RowDigest>,
    /// summary of the batch's keys when the key is one column (see `KeySum`)
    pub key_sum: KeySum,
    /// milliseconds spent fetching and digesting this batch
    pub fetch_ms: u64,
    pub digest_ms: u64,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The source columns of row `i` in COPY binary form, without the field count.
    pub fn fields(&self, i: usize) -> &[u8] {
        &self.data[self.rows[i].clone()]
    }

    /// Records the row whose key fields start at `key` and its source fields at `source`.
    fn add(&mut self, plan: &Plan, key: usize, source: usize, end: usize) {
        if plan.key_count == 1 {
            self.key_sum.add_field(&self.data[key..source]);
        }
        self.keys.push(digest::key_digest(&self.data[key..source]));
        self.digests
            .push(digest::row_digest(plan.columns, &self.data[source..end]));
        self.rows.push(source..end);
    }
}

/// Reads up to `FETCH_ROWS` rows of `portal`.
pub fn read_batch(m: &mut Transaction<'_>, portal: &Portal, plan: &Plan) -> Result<Batch> {
    let t = Instant::now();
    let rows = m
        .query_portal(portal, FETCH_ROWS)
        .map_err(pg(Db::Master, "reading rows of SELECT_SOURCE_SQL"))?;
    let fetch_ms = t.elapsed().as_millis() as u64;
    let t = Instant::now();
    let mut b = Batch {
        data: Vec::with_capacity(rows.len() * 256),
        rows: Vec::with_capacity(rows.len()),
        keys: Vec::with_capacity(rows.len()),
        digests: Vec::with_capacity(rows.len()),
        ..Batch::default()
    };
    let fields = plan.key_count + plan.columns;
    for row in &rows {
        let key = b.data.len();
        let mut source = key;
        for i in 0..fields {
            if i == plan.key_count {
                source = b.data.len();
            }
            let v = row
                .try_get::<_, Raw<'_>>(i)
                .map_err(|e| Error::Job(format!("reading column {i} of a source row: {e}")))?;
            push_field(&mut b.data, v.0);
        }
        let end = b.data.len();
        b.add(plan, key, source, end);
    }
    b.fetch_ms = fetch_ms;
    b.digest_ms = t.elapsed().as_millis() as u64;
    Ok(b)
}

/// Sends the portal's batches until it is exhausted, an error (sent as the last item), or
/// the receiver hangs up.
pub fn produce(
    m: &mut Transaction<'_>,
    portal: &Portal,
    plan: &Plan,
    out: SyncSender<Result<Batch>>,
) {
    loop {
        let batch = read_batch(m, portal, plan);
        let last = match &batch {
            Ok(b) => b.len() < FETCH_ROWS as usize,
            Err(_) => true,
        };
        if out.send(batch).is_err() || last {
            return;
        }
    }
}

/// Runs `copy_sql` (a binary `COPY ... TO STDOUT`) and sends its rows in batches, like
/// `produce`.
pub fn produce_copy(
    m: &mut Transaction<'_>,
    copy_sql: &str,
    plan: &Plan,
    out: &SyncSender<Result<Batch>>,
) {
    if let Err(e) = copy_batches(m, copy_sql, plan, out) {
        let _ = out.send(Err(e));
    }
}

fn copy_batches(
    m: &mut Transaction<'_>,
    copy_sql: &str,
    plan: &Plan,
    out: &SyncSender<Result<Batch>>,
) -> Result<()> {
    let reading = || pg(Db::Master, "reading rows of SELECT_SOURCE_SQL");
    let mut reader = m.copy_out(copy_sql).map_err(reading())?;
    let fields = (plan.key_count + plan.columns) as i16;
    let mut b = Batch::default();
    // bytes of `b.data` already parsed into rows (the rest is an incomplete row)
    let mut parsed = 0;
    let mut header = true;
    let mut done = false;
    loop {
        let t = Instant::now();
        let chunk = reader
            .fill_buf()
            .map_err(io("reading rows of SELECT_SOURCE_SQL from M"))?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        b.data.extend_from_slice(chunk);
        reader.consume(n);
        b.fetch_ms += t.elapsed().as_millis() as u64;
        if done {
            continue;
        }
        let t = Instant::now();
        if header {
            match header_len(&b.data)? {
                Some(len) => {
                    parsed = len;
                    header = false;
                }
                None => continue,
            }
        }
        while let Some(tuple) = next_tuple(&b.data[parsed..], fields, plan.key_count)? {
            match tuple {
                Tuple::End => {
                    done = true;
                    break;
                }
                Tuple::Row { key, source, len } => {
                    let end = parsed + len;
                    b.add(plan, parsed + key, parsed + source, end);
                    parsed = end;
                }
            }
        }
        b.digest_ms += t.elapsed().as_millis() as u64;
        if b.len() >= FETCH_ROWS as usize {
            let mut rest = Vec::with_capacity(b.data.capacity());
            rest.extend_from_slice(&b.data[parsed..]);
            b.data.truncate(parsed);
            let full = std::mem::replace(
                &mut b,
                Batch {
                    data: rest,
                    ..Batch::default()
                },
            );
            parsed = 0;
            if out.send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !done {
        return Err(Error::Job(
            "the binary COPY from M ended without its trailer".into(),
        ));
    }
    b.data.truncate(parsed);
    let _ = out.send(Ok(b));
    Ok(())
}

enum Tuple {
    /// offsets from the tuple's start: key fields, source fields, and the tuple's length
    Row {
        key: usize,
        source: usize,
        len: usize,
    },
    End,
}

/// Length of the binary COPY header at the start of `data`, `None` if incomplete.
fn header_len(data: &[u8]) -> Result<Option<usize>> {
    let fixed = COPY_SIGNATURE.len() + 8;
    if data.len() < fixed {
        return Ok(None);
    }
    if !data.starts_with(COPY_SIGNATURE) {
        return Err(Error::Job(
            "M sent a binary COPY without its signature".into(),
        ));
    }
    let ext = u32::from_be_bytes([data[15], data[16], data[17], data[18]]) as usize;
    Ok((data.len() >= fixed + ext).then_some(fixed + ext))
}

/// The next complete tuple at the start of `data`, `None` if incomplete.
fn next_tuple(data: &[u8], fields: i16, keys: usize) -> Result<Option<Tuple>> {
    if data.len() < 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([data[0], data[1]]);
    if count == -1 {
        return Ok(Some(Tuple::End));
    }
    if count != fields {
        return Err(Error::Job(format!(
            "M's binary COPY sent a row of {count} fields where {fields} were expected"
        )));
    }
    let mut pos = 2;
    let mut source = pos;
    for i in 0..count as usize {
        if i == keys {
            source = pos;
        }
        let Some(len) = data.get(pos..pos + 4) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4 + len.max(0) as usize;
        if pos > data.len() {
            return Ok(None);
        }
    }
    Ok(Some(Tuple::Row {
        key: 2,
        source,
        len: pos,
    }))
}
