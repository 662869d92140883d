//! Extract: reads M's rows in batches and digests each row from its raw bytes. The first
//! batch is read on the caller's thread; only a source with more rows than that gets a
//! reader thread of its own, so reading M then overlaps with diffing and loading into A
//! while a small job starts no thread at all.
//!
//! Every run reads M by binary `COPY (extraction) TO STDOUT`, the cheapest path out of
//! PostgreSQL; the watermark still travels as a bound parameter (into a transaction-local
//! setting the extraction reads, whose value the planner folds when it estimates, so a
//! recent watermark gets the index on its column). Drift repair reads a portal in batches.
//! Both paths produce the same batches: rows as fields in COPY binary form.

use std::io::BufRead;
use std::ops::Range;
use std::sync::mpsc;
use std::time::Instant;

use postgres::{CopyOutReader, Portal, Transaction};

use crate::db::Raw;
use crate::error::{Db, Error, Result, pg, pg_io};
use crate::pipeline::digest::{self, push_field};
use crate::pipeline::plan::Plan;
use crate::pipeline::reconcile::summary::KeySummary;
use crate::state::{KeyDigest, RowDigest};

/// Rows fetched from M per round trip (and looked up in Redis per pipeline).
pub const FETCH_ROWS: usize = 5_000;
/// Batches in flight between the reader thread and the loader: bounds memory.
const IN_FLIGHT: usize = 2;

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
    /// summary of the batch's keys when the key is one column (see `KeySummary`)
    pub key_sum: KeySummary,
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
        match plan.int_key {
            Some(i) => {
                let v = digest::int_field(&self.data[source..end], i);
                self.key_sum.add_int(v, plan.seed);
                let mut text = [0u8; 24];
                self.keys
                    .push(digest::key_digest(digest::int_key_field(v, &mut text)));
            }
            None => {
                if plan.key_count == 1 {
                    self.key_sum.add_field(&self.data[key..source], plan.seed);
                }
                self.keys.push(digest::key_digest(&self.data[key..source]));
            }
        }
        self.digests
            .push(digest::row_digest(plan.columns, &self.data[source..end]));
        self.rows.push(source..end);
    }
}

/// Where batches come from: a portal or a binary COPY.
pub trait Rows: Send {
    /// The next batch; `None` once the source is exhausted.
    fn next_batch(&mut self) -> Result<Option<Batch>>;
}

/// Calls `each` with every batch of `rows`, reading ahead on a thread when there is more than
/// one batch. Stops at the first error of either side.
pub fn for_each_batch(
    mut rows: impl Rows,
    mut each: impl FnMut(Batch) -> Result<()>,
) -> Result<()> {
    let Some(first) = rows.next_batch()? else {
        return Ok(());
    };
    let more = first.len() >= FETCH_ROWS;
    each(first)?;
    if !more {
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (send, recv) = mpsc::sync_channel(IN_FLIGHT);
        let reader = scope.spawn(move || {
            loop {
                let batch = rows.next_batch();
                let last = !matches!(&batch, Ok(Some(_)));
                if send.send(batch).is_err() || last {
                    return;
                }
            }
        });
        let consumed = (|| {
            for batch in &recv {
                match batch? {
                    Some(b) => each(b)?,
                    None => break,
                }
            }
            Ok(())
        })();
        // hanging up stops the reader if we stopped early
        drop(recv);
        reader
            .join()
            .map_err(|_| Error::Job("the extraction thread panicked".into()))?;
        consumed
    })
}

/// A portal over the extraction (or drift repair), read `FETCH_ROWS` at a time.
pub struct PortalRows<'t, 'c> {
    m: &'t mut Transaction<'c>,
    portal: Portal,
    plan: &'t Plan,
    done: bool,
}

impl<'t, 'c> PortalRows<'t, 'c> {
    pub fn new(m: &'t mut Transaction<'c>, portal: Portal, plan: &'t Plan) -> Self {
        PortalRows {
            m,
            portal,
            plan,
            done: false,
        }
    }
}

impl Rows for PortalRows<'_, '_> {
    fn next_batch(&mut self) -> Result<Option<Batch>> {
        if self.done {
            return Ok(None);
        }
        let t = Instant::now();
        let rows = self
            .m
            .query_portal(&self.portal, FETCH_ROWS as i32)
            .map_err(pg(Db::Master, "reading rows of SELECT_SOURCE_SQL"))?;
        let fetch_ms = t.elapsed().as_millis() as u64;
        self.done = rows.len() < FETCH_ROWS;
        let t = Instant::now();
        let mut b = Batch {
            data: Vec::with_capacity(rows.len() * 256),
            rows: Vec::with_capacity(rows.len()),
            keys: Vec::with_capacity(rows.len()),
            digests: Vec::with_capacity(rows.len()),
            ..Batch::default()
        };
        let fields = self.plan.key_count + self.plan.columns;
        for row in &rows {
            let key = b.data.len();
            let mut source = key;
            for i in 0..fields {
                if i == self.plan.key_count {
                    source = b.data.len();
                }
                let v = row
                    .try_get::<_, Raw<'_>>(i)
                    .map_err(|e| Error::Job(format!("reading column {i} of a source row: {e}")))?;
                push_field(&mut b.data, v.0);
            }
            let end = b.data.len();
            b.add(self.plan, key, source, end);
        }
        b.fetch_ms = fetch_ms;
        b.digest_ms = t.elapsed().as_millis() as u64;
        Ok((!b.is_empty()).then_some(b))
    }
}

/// A binary `COPY (extraction) TO STDOUT`, parsed in place into batches.
pub struct CopyRows<'t> {
    reader: CopyOutReader<'t>,
    plan: &'t Plan,
    /// bytes read but not yet handed out: complete rows up to `parsed`, then a partial one
    pending: Batch,
    parsed: usize,
    header: bool,
    /// the trailer was seen
    done: bool,
    eof: bool,
}

impl<'t> CopyRows<'t> {
    pub fn start(m: &'t mut Transaction<'_>, copy_sql: &str, plan: &'t Plan) -> Result<Self> {
        let reader = m
            .copy_out(copy_sql)
            .map_err(pg(Db::Master, "reading rows of SELECT_SOURCE_SQL"))?;
        Ok(CopyRows {
            reader,
            plan,
            pending: Batch::default(),
            parsed: 0,
            header: true,
            done: false,
            eof: false,
        })
    }

    /// Parses what `pending` holds past `parsed` into rows.
    fn parse(&mut self) -> Result<()> {
        let b = &mut self.pending;
        if self.header {
            match header_len(&b.data)? {
                Some(len) => {
                    self.parsed = len;
                    self.header = false;
                }
                None => return Ok(()),
            }
        }
        let fields = (self.plan.key_count + self.plan.columns) as i16;
        while let Some(tuple) = next_tuple(&b.data[self.parsed..], fields, self.plan.key_count)? {
            match tuple {
                Tuple::End => {
                    self.done = true;
                    return Ok(());
                }
                Tuple::Row { key, source, len } => {
                    let (p, end) = (self.parsed, self.parsed + len);
                    b.add(self.plan, p + key, p + source, end);
                    self.parsed = end;
                }
            }
        }
        Ok(())
    }

    /// Hands out the complete rows, keeping the partial one for the next batch.
    fn take(&mut self) -> Batch {
        let mut rest = Vec::with_capacity(self.pending.data.capacity());
        rest.extend_from_slice(&self.pending.data[self.parsed..]);
        self.pending.data.truncate(self.parsed);
        self.parsed = 0;
        std::mem::replace(
            &mut self.pending,
            Batch {
                data: rest,
                ..Batch::default()
            },
        )
    }
}

/// Bytes read from M before they are parsed: the COPY arrives one message per row, and
/// parsing (and timing) them a few at a time would cost more than the rows.
const PARSE_BYTES: usize = 64 << 10;

impl Rows for CopyRows<'_> {
    fn next_batch(&mut self) -> Result<Option<Batch>> {
        let started = Instant::now();
        let mut parsing = std::time::Duration::ZERO;
        let mut unparsed = 0;
        while !self.eof && self.pending.len() < FETCH_ROWS {
            let chunk = self
                .reader
                .fill_buf()
                .map_err(pg_io(Db::Master, "reading rows of SELECT_SOURCE_SQL"))?;
            if chunk.is_empty() {
                self.eof = true;
            }
            let n = chunk.len();
            self.pending.data.extend_from_slice(chunk);
            self.reader.consume(n);
            unparsed += n;
            if !self.done && (unparsed >= PARSE_BYTES || self.eof) {
                let t = Instant::now();
                self.parse()?;
                parsing += t.elapsed();
                unparsed = 0;
            }
        }
        self.pending.digest_ms += parsing.as_millis() as u64;
        self.pending.fetch_ms += (started.elapsed() - parsing).as_millis() as u64;
        if self.eof && !self.done {
            return Err(Error::Job(
                "the binary COPY from M ended without its trailer".into(),
            ));
        }
        let batch = self.take();
        Ok((!batch.is_empty()).then_some(batch))
    }
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
