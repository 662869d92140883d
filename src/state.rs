//! Job state in Redis: row hashes per key bucket, the watermark and run facts.
//!
//! Layout, for a job named `J` (with `:` and `%` in the name percent-encoded):
//! - `<prefix>:job:J:meta` hash: `wm` (M's clock at the last extraction), `gen`, `buckets`,
//!   `rows` (rows in A when the state was written), `last_success_ms`, `last_error`,
//!   `last_error_ms`, `file_sha256`;
//! - `<prefix>:job:J:h:<gen>:<bucket>` strings: the bucket's entries, each an 8-byte key
//!   digest and its 16-byte row digest, sorted by key digest. A string per bucket, not a
//!   hash: Redis then does one allocation per bucket instead of work per row, and stores
//!   24 bytes per row plus a share of the key;
//! - `<prefix>:job:J:lock`: the run lock (see `lock`).
//!
//! A full re-sync writes a new generation and switches `gen` only once it is complete.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

use redis::Connection;

use crate::error::{Error, Result, io, rd};

/// Version of the row state's layout and digests, stored as `format` in `meta`: state of
/// another version is not compared against (the next run re-synchronises, rewriting no
/// row A already holds unchanged).
pub const STATE_FORMAT: u64 = 2;
pub const KEY_DIGEST_LEN: usize = 8;
pub const ROW_DIGEST_LEN: usize = 16;
pub type KeyDigest = [u8; KEY_DIGEST_LEN];
pub type RowDigest = [u8; ROW_DIGEST_LEN];

/// Entries per bucket aimed at: a lookup reads the whole bucket (16 entries: 384 bytes),
/// and each bucket key costs Redis about 60 bytes (4 bytes a row at 16).
const ENTRIES_PER_BUCKET: u64 = 16;
const ENTRY_LEN: usize = KEY_DIGEST_LEN + ROW_DIGEST_LEN;
/// Bucket values per pipelined round trip when writing state.
const WRITE_BATCH: usize = 2_000;

/// What Redis remembers of a job.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub watermark: Option<String>,
    pub generation: u64,
    pub buckets: u32,
    pub rows: Option<i64>,
    pub last_success_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    pub file_sha256: Option<String>,
    /// Failed runs recorded since the state was last reset (`elt_job_failures_total`).
    pub failures: u64,
    /// `STATE_FORMAT` of the row state (absent: written before versions were recorded).
    pub format: Option<u64>,
}

impl Meta {
    fn from_map(m: &HashMap<String, String>) -> Meta {
        let num = |k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
        Meta {
            watermark: m.get("wm").cloned(),
            generation: num("gen").unwrap_or(0),
            buckets: num("buckets")
                .map(|b| b.clamp(1, 1 << 24) as u32)
                .unwrap_or(1),
            rows: m.get("rows").and_then(|v| v.parse().ok()),
            last_success_ms: num("last_success_ms"),
            last_error: m.get("last_error").cloned(),
            last_error_ms: num("last_error_ms"),
            file_sha256: m.get("file_sha256").cloned(),
            failures: num("failures").unwrap_or(0),
            format: num("format"),
        }
    }

    /// Sync state exists: a watermark and the row count it was written with.
    pub fn has_sync_state(&self) -> bool {
        self.watermark.is_some() && self.rows.is_some()
    }

    /// The row state was written in this version's layout.
    pub fn is_current_format(&self) -> bool {
        self.format == Some(STATE_FORMAT)
    }
}

/// Percent-encodes `:` and `%` so one job's keys never match another job's pattern.
pub fn encode_job(job: &str) -> String {
    job.replace('%', "%25").replace(':', "%3A")
}

fn decode_job(s: &str) -> String {
    s.replace("%3A", ":").replace("%25", "%")
}

/// Escapes glob characters for SCAN MATCH.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn job_key(prefix: &str, job: &str, suffix: &str) -> String {
    format!("{prefix}:job:{}:{suffix}", encode_job(job))
}

/// Buckets are a power of two and take the top bits of the key digest, so records sorted by
/// digest come out grouped by bucket whatever the bucket count.
fn bucket_of(key: &KeyDigest, buckets: u32) -> u32 {
    let bits = buckets.max(1).trailing_zeros();
    if bits == 0 {
        return 0;
    }
    u32::from_be_bytes([key[0], key[1], key[2], key[3]]) >> (32 - bits)
}

/// Buckets for a generation holding `rows` entries.
pub fn buckets_for(rows: u64) -> u32 {
    (rows / ENTRIES_PER_BUCKET)
        .max(1)
        .next_power_of_two()
        .min(1 << 24) as u32
}

/// Pending state files are split by the top bits of the key digest, so each part can be
/// sorted in memory (a 128th of the changes) and written as one command per bucket.
const PARTS: usize = 128;
const OP_SET: u8 = 1;
const OP_DEL: u8 = 2;
const RECORD_LEN: usize = 1 + KEY_DIGEST_LEN + ROW_DIGEST_LEN;

#[derive(Clone, Copy)]
struct Record {
    op: u8,
    key: KeyDigest,
    row: RowDigest,
}

/// Pending state changes of one run, kept in temporary files so memory stays flat however
/// many rows change; applied to Redis only after A commits.
pub struct PendingState {
    parts: Vec<BufWriter<std::fs::File>>,
    pub upserts: u64,
    pub deletes: u64,
}

impl PendingState {
    pub fn new() -> Result<Self> {
        let mut parts = Vec::with_capacity(PARTS);
        for _ in 0..PARTS {
            let f =
                tempfile::tempfile().map_err(io("creating a temporary file for pending state"))?;
            parts.push(BufWriter::with_capacity(1 << 13, f));
        }
        Ok(PendingState {
            parts,
            upserts: 0,
            deletes: 0,
        })
    }

    pub fn set(&mut self, key: &KeyDigest, row: &RowDigest) -> Result<()> {
        self.upserts += 1;
        self.write(OP_SET, key, row)
    }

    pub fn delete(&mut self, key: &KeyDigest) -> Result<()> {
        self.deletes += 1;
        self.write(OP_DEL, key, &[0; ROW_DIGEST_LEN])
    }

    fn write(&mut self, op: u8, key: &KeyDigest, row: &RowDigest) -> Result<()> {
        let mut rec = [0u8; RECORD_LEN];
        rec[0] = op;
        rec[1..1 + KEY_DIGEST_LEN].copy_from_slice(key);
        rec[1 + KEY_DIGEST_LEN..].copy_from_slice(row);
        let part = (key[0] as usize * PARTS) >> 8;
        self.parts[part]
            .write_all(&rec)
            .map_err(io("writing pending state to a temporary file"))
    }

    /// Calls `f` once per part with its records sorted by key digest, the last operation
    /// on each key winning.
    fn replay(self, mut f: impl FnMut(&[Record]) -> Result<()>) -> Result<()> {
        let mut records = Vec::new();
        for part in self.parts {
            let mut file = part.into_inner().map_err(|e| Error::Io {
                what: "flushing pending state".into(),
                source: e.into_error(),
            })?;
            file.rewind().map_err(io("rewinding pending state"))?;
            let mut r = BufReader::with_capacity(1 << 16, file);
            let mut rec = [0u8; RECORD_LEN];
            records.clear();
            loop {
                match r.read_exact(&mut rec) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(io("reading pending state")(e)),
                }
                let mut key = [0u8; KEY_DIGEST_LEN];
                key.copy_from_slice(&rec[1..1 + KEY_DIGEST_LEN]);
                let mut row = [0u8; ROW_DIGEST_LEN];
                row.copy_from_slice(&rec[1 + KEY_DIGEST_LEN..]);
                records.push(Record {
                    op: rec[0],
                    key,
                    row,
                });
            }
            // Stable sort keeps equal keys in write order; reversed, the latest write of a
            // key comes first and dedup keeps it. Done in place: no second copy.
            records.sort_by_key(|r| r.key);
            records.reverse();
            records.dedup_by_key(|r| r.key);
            records.reverse();
            f(&records)?;
        }
        Ok(())
    }
}

/// A generation of row state: its number and bucket count.
#[derive(Debug, Clone, Copy)]
pub struct Generation {
    pub generation: u64,
    pub buckets: u32,
}

impl Generation {
    /// A new generation for about `rows` rows. Numbered by the clock, so it never meets
    /// the leftovers of an attempt killed before it could switch `gen` (those are removed
    /// when a generation becomes current).
    pub fn new(old: Option<&Meta>, rows: u64) -> Self {
        Generation {
            generation: new_generation_number(old),
            buckets: buckets_for(rows),
        }
    }
}

fn new_generation_number(old: Option<&Meta>) -> u64 {
    now_ms().max(old.map_or(0, |m| m.generation + 1))
}

/// What a successful run tells Redis after A committed.
pub struct Commit {
    pub watermark: String,
    pub rows_in_target: i64,
    pub file_sha256: String,
    /// `Some(old meta)` to switch to a new generation (full sync); `None` to update in place.
    pub full: bool,
    /// The new generation, already written by `write_generation` during the run.
    pub prewritten: Option<Generation>,
    /// The fault suite's hook between the row hashes and the watermark.
    pub faults: crate::fault::Faults,
}

/// The Redis side of the state, behind named methods.
pub struct StateStore {
    conn: Connection,
    prefix: String,
}

impl StateStore {
    pub fn connect(url: &str, prefix: &str) -> Result<Self> {
        let masked = crate::redact::mask(url);
        let client = crate::redis_conn::client(url).map_err(|source| Error::RedisConnect {
            url: masked.clone(),
            source,
        })?;
        let conn = client
            .get_connection_with_timeout(std::time::Duration::from_secs(10))
            .map_err(|source| Error::RedisConnect {
                url: masked,
                source,
            })?;
        Ok(StateStore {
            conn,
            prefix: prefix.to_string(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn meta_key(&self, job: &str) -> String {
        job_key(&self.prefix, job, "meta")
    }

    fn bucket_key(&self, job: &str, generation: u64, bucket: u32) -> String {
        job_key(&self.prefix, job, &format!("h:{generation}:{bucket}"))
    }

    pub fn meta(&mut self, job: &str) -> Result<Option<Meta>> {
        let m: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.meta_key(job))
            .query(&mut self.conn)
            .map_err(rd("reading job state"))?;
        Ok((!m.is_empty()).then(|| Meta::from_map(&m)))
    }

    /// The stored row digests of `keys`: their buckets in one `MGET`, then a binary search.
    pub fn lookup(
        &mut self,
        job: &str,
        meta: &Meta,
        keys: &[KeyDigest],
    ) -> Result<Vec<Option<RowDigest>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut buckets: Vec<u32> = keys.iter().map(|k| bucket_of(k, meta.buckets)).collect();
        buckets.sort_unstable();
        buckets.dedup();
        let mut cmd = redis::cmd("MGET");
        for b in &buckets {
            cmd.arg(self.bucket_key(job, meta.generation, *b));
        }
        let values: Vec<Option<Vec<u8>>> = cmd
            .query(&mut self.conn)
            .map_err(rd("looking up row hashes"))?;
        Ok(keys
            .iter()
            .map(|k| {
                let i = buckets.binary_search(&bucket_of(k, meta.buckets)).ok()?;
                find(values.get(i)?.as_deref()?, k)
            })
            .collect())
    }

    /// Writes a run's pending hashes and then its watermark: the watermark last, so a crash
    /// in between only makes the next run redo work.
    pub fn commit(
        &mut self,
        job: &str,
        old: Option<&Meta>,
        pending: PendingState,
        c: &Commit,
    ) -> Result<()> {
        let (generation, buckets) = match (c.prewritten, old, c.full) {
            (Some(g), _, _) => (g.generation, g.buckets),
            (None, Some(m), false) => (m.generation, m.buckets),
            _ => (
                new_generation_number(old),
                buckets_for(c.rows_in_target.max(0) as u64),
            ),
        };
        let new_generation = old.is_none_or(|m| m.generation != generation);
        // A prewritten generation already holds rows: later changes merge into it.
        let empty = new_generation && c.prewritten.is_none();
        self.write_records(job, generation, buckets, empty, pending)?;
        c.faults.reach(crate::fault::FaultPoint::State);
        let now = now_ms();
        redis::cmd("HSET")
            .arg(self.meta_key(job))
            .arg("wm")
            .arg(&c.watermark)
            .arg("gen")
            .arg(generation)
            .arg("buckets")
            .arg(buckets)
            .arg("rows")
            .arg(c.rows_in_target)
            .arg("last_success_ms")
            .arg(now)
            .arg("file_sha256")
            .arg(&c.file_sha256)
            .arg("format")
            .arg(STATE_FORMAT)
            .query::<()>(&mut self.conn)
            .map_err(rd("writing the watermark"))?;
        redis::cmd("HDEL")
            .arg(self.meta_key(job))
            .arg("last_error")
            .arg("last_error_ms")
            .query::<()>(&mut self.conn)
            .map_err(rd("clearing the last error"))?;
        if new_generation {
            self.delete_other_generations(job, generation)?;
        }
        Ok(())
    }

    /// Unlinks the buckets of every generation of `job` but `keep`.
    fn delete_other_generations(&mut self, job: &str, keep: u64) -> Result<u64> {
        let pattern = format!(
            "{}:job:{}:h:*",
            glob_escape(&self.prefix),
            glob_escape(&encode_job(job))
        );
        let kept = job_key(&self.prefix, job, &format!("h:{keep}:"));
        let mut n = 0;
        self.scan_pages(&pattern, |conn, keys| {
            let old: Vec<&String> = keys.iter().filter(|k| !k.starts_with(&kept)).collect();
            if !old.is_empty() {
                n += redis::cmd("UNLINK")
                    .arg(&old)
                    .query::<u64>(conn)
                    .map_err(rd("deleting old state"))?;
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// Writes a full run's rows as generation `g` of `job`, not yet current: `commit` with
    /// `Commit::prewritten` switches to it once A has committed. Lets the state write
    /// overlap the end of the run.
    pub fn write_generation(
        &mut self,
        job: &str,
        g: Generation,
        pending: PendingState,
    ) -> Result<()> {
        self.write_records(job, g.generation, g.buckets, true, pending)
    }

    /// Unlinks every bucket of generation `g` of `job` by name.
    pub fn delete_generation(&mut self, job: &str, g: Generation) -> Result<()> {
        let all: Vec<u32> = (0..g.buckets).collect();
        for chunk in all.chunks(10_000) {
            let mut cmd = redis::cmd("UNLINK");
            for b in chunk {
                cmd.arg(self.bucket_key(job, g.generation, *b));
            }
            cmd.query::<()>(&mut self.conn)
                .map_err(rd("deleting unused state"))?;
        }
        Ok(())
    }

    /// Applies `pending` to the buckets of `generation`; `empty`: the generation has no
    /// buckets yet, so none need reading first.
    fn write_records(
        &mut self,
        job: &str,
        generation: u64,
        buckets: u32,
        empty: bool,
        pending: PendingState,
    ) -> Result<()> {
        let prefix = self.prefix.clone();
        let conn = &mut self.conn;
        let key = |bucket: u32| job_key(&prefix, job, &format!("h:{generation}:{bucket}"));
        pending.replay(|records| {
            let groups: Vec<&[Record]> = records
                .chunk_by(|a, b| bucket_of(&a.key, buckets) == bucket_of(&b.key, buckets))
                .collect();
            for chunk in groups.chunks(WRITE_BATCH) {
                // An existing generation is updated bucket by bucket (the job lock makes
                // this read-modify-write safe), as is a small new one whose buckets span
                // several parts.
                let stored: Vec<Option<Vec<u8>>> = if empty && buckets as usize >= PARTS {
                    vec![None; chunk.len()]
                } else {
                    let mut get = redis::cmd("MGET");
                    for g in chunk {
                        get.arg(key(bucket_of(&g[0].key, buckets)));
                    }
                    get.query(conn).map_err(rd("reading row hashes"))?
                };
                let mut pipe = redis::pipe();
                for (g, old) in chunk.iter().zip(stored) {
                    let k = key(bucket_of(&g[0].key, buckets));
                    let value = merge_bucket(old.as_deref().unwrap_or_default(), g);
                    if value.is_empty() {
                        pipe.cmd("UNLINK").arg(k).ignore();
                    } else {
                        pipe.cmd("SET").arg(k).arg(value).ignore();
                    }
                }
                pipe.query::<()>(conn).map_err(rd("writing row hashes"))?;
            }
            Ok(())
        })
    }

    /// Remembers a failure for `status`; sync state is left as it was.
    pub fn record_failure(&mut self, job: &str, message: &str) -> Result<()> {
        let key = self.meta_key(job);
        // A plain pipeline, not MULTI/EXEC: the two fields need no atomicity, and the
        // Redis ACL then needs no transaction commands.
        redis::pipe()
            .cmd("HSET")
            .arg(&key)
            .arg("last_error")
            .arg(message)
            .arg("last_error_ms")
            .arg(now_ms())
            .ignore()
            // a counter for the metrics file, which cannot keep one itself
            .cmd("HINCRBY")
            .arg(&key)
            .arg("failures")
            .arg(1)
            .ignore()
            .query::<()>(&mut self.conn)
            .map_err(rd("recording the job's failure"))
    }

    /// Forgets everything about `job` but its lock.
    pub fn reset(&mut self, job: &str) -> Result<u64> {
        let mut n = self.delete_matching(&format!(
            "{}:job:{}:h:*",
            glob_escape(&self.prefix),
            glob_escape(&encode_job(job))
        ))?;
        n += redis::cmd("DEL")
            .arg(self.meta_key(job))
            .query::<u64>(&mut self.conn)
            .map_err(rd("deleting job state"))?;
        Ok(n)
    }

    /// Names of jobs that have state under the prefix.
    pub fn jobs_with_state(&mut self) -> Result<Vec<String>> {
        let pattern = format!("{}:job:*:meta", glob_escape(&self.prefix));
        let head = format!("{}:job:", self.prefix);
        let mut names: Vec<String> = self
            .scan(&pattern)?
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix(&head)
                    .and_then(|r| r.strip_suffix(":meta"))
                    .map(decode_job)
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Calls `page` with each page of keys matching `pattern` (SCAN may repeat a key).
    fn scan_pages(
        &mut self,
        pattern: &str,
        mut page: impl FnMut(&mut Connection, Vec<String>) -> Result<()>,
    ) -> Result<()> {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut self.conn)
                .map_err(rd("listing keys"))?;
            if !keys.is_empty() {
                page(&mut self.conn, keys)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn scan(&mut self, pattern: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.scan_pages(pattern, |_, keys| {
            out.extend(keys);
            Ok(())
        })?;
        Ok(out)
    }

    /// Unlinks the keys matching `pattern` page by page, so memory stays flat however
    /// many buckets an old generation had.
    fn delete_matching(&mut self, pattern: &str) -> Result<u64> {
        let mut n = 0;
        self.scan_pages(pattern, |conn, keys| {
            n += redis::cmd("UNLINK")
                .arg(&keys)
                .query::<u64>(conn)
                .map_err(rd("deleting old state"))?;
            Ok(())
        })?;
        Ok(n)
    }
}

/// The row digest stored for `key` in a bucket's value.
fn find(bucket: &[u8], key: &KeyDigest) -> Option<RowDigest> {
    let entries = bucket.len() / ENTRY_LEN;
    let (mut lo, mut hi) = (0, entries);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let e = &bucket[mid * ENTRY_LEN..(mid + 1) * ENTRY_LEN];
        match e[..KEY_DIGEST_LEN].cmp(&key[..]) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let mut d = [0u8; ROW_DIGEST_LEN];
                d.copy_from_slice(&e[KEY_DIGEST_LEN..]);
                return Some(d);
            }
        }
    }
    None
}

/// A bucket's new value: `old` (sorted entries) with `changes` (sorted by key, one per key)
/// applied.
fn merge_bucket(old: &[u8], changes: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(old.len() + changes.len() * ENTRY_LEN);
    let mut entries = old.chunks_exact(ENTRY_LEN).peekable();
    for c in changes {
        while let Some(e) = entries.next_if(|e| e[..KEY_DIGEST_LEN] < c.key[..]) {
            out.extend_from_slice(e);
        }
        entries.next_if(|e| e[..KEY_DIGEST_LEN] == c.key[..]);
        if c.op == OP_SET {
            out.extend_from_slice(&c.key);
            out.extend_from_slice(&c.row);
        }
    }
    for e in entries {
        out.extend_from_slice(e);
    }
    out
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_cannot_collide_in_patterns() {
        assert_eq!(encode_job("a:b"), "a%3Ab");
        assert_eq!(decode_job(&encode_job("50%:x")), "50%:x");
        assert_eq!(glob_escape("a*b"), "a\\*b");
    }

    #[test]
    fn buckets_grow_with_rows() {
        assert_eq!(buckets_for(0), 1);
        assert_eq!(buckets_for(1_000_000), 65536);
    }

    fn rec(op: u8, k: u8, r: u8) -> Record {
        Record {
            op,
            key: [k; KEY_DIGEST_LEN],
            row: [r; ROW_DIGEST_LEN],
        }
    }

    #[test]
    fn buckets_merge_changes_in_key_order() {
        let old = merge_bucket(&[], &[rec(OP_SET, 2, 20), rec(OP_SET, 4, 40)]);
        assert_eq!(find(&old, &[4; KEY_DIGEST_LEN]), Some([40; ROW_DIGEST_LEN]));
        assert_eq!(find(&old, &[3; KEY_DIGEST_LEN]), None);
        let new = merge_bucket(
            &old,
            &[
                rec(OP_SET, 1, 10),
                rec(OP_DEL, 2, 0),
                rec(OP_SET, 4, 41),
                rec(OP_SET, 5, 50),
            ],
        );
        assert_eq!(new.len(), 3 * ENTRY_LEN);
        assert_eq!(find(&new, &[1; KEY_DIGEST_LEN]), Some([10; ROW_DIGEST_LEN]));
        assert_eq!(find(&new, &[2; KEY_DIGEST_LEN]), None);
        assert_eq!(find(&new, &[4; KEY_DIGEST_LEN]), Some([41; ROW_DIGEST_LEN]));
        assert_eq!(find(&new, &[5; KEY_DIGEST_LEN]), Some([50; ROW_DIGEST_LEN]));
        assert!(
            merge_bucket(
                &new,
                &[rec(OP_DEL, 1, 0), rec(OP_DEL, 4, 0), rec(OP_DEL, 5, 0)]
            )
            .is_empty()
        );
    }
}
