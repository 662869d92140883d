//! Job state in Redis: each job's watermark and run facts (`meta`, see [`Field`]) and the
//! row digests of its current generation, in buckets (see `keys` for the names).
//!
//! A bucket is one string: its entries sorted by key digest, each an 8-byte key digest and
//! its 16-byte row digest. One string per bucket, not a hash: Redis does one allocation per
//! bucket instead of work per row. A full re-sync writes a new generation and switches `gen`
//! only once A has committed and the generation is complete.

mod bucket;
mod digests;
mod keys;
mod meta;
mod pending;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use bucket::{bucket_of, find, merge_bucket};
pub use digests::{KEY_DIGEST_LEN, KeyDigest, ROW_DIGEST_LEN, RowDigest};
pub use keys::{Keys, encode_job};
pub use meta::{Field, Generation, Meta, STATE_FORMAT, Tracked, now_ms};
pub use pending::PendingState;
use pending::Record;

use crate::error::{Error, Result, rd};
use crate::redis_conn::{RedisConn, RedisTarget};

/// Bucket values per pipelined round trip when writing state.
const WRITE_BATCH: usize = 2_000;

/// What a successful run tells Redis after A committed.
pub struct Commit {
    pub watermark: String,
    pub tracked: Tracked,
    pub file_sha256: String,
    pub definition: String,
    /// A full run: the row state goes to a new generation.
    pub full: bool,
    /// The new generation, already written by `write_generation` during the run.
    pub prewritten: Option<Generation>,
    pub seed: i64,
    /// The fault suite's hook between the row hashes and the watermark.
    pub faults: crate::fault::Faults,
}

/// A new secret seed for a job's key summaries, from the operating system's randomness
/// (the standard library's hasher keys).
pub fn new_seed() -> i64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish() as i64
}

/// The Redis side of the state, behind named methods.
pub struct StateStore {
    conn: RedisConn,
    keys: Keys,
}

impl StateStore {
    /// Connects to `url` for one command (`status`, `reset-state`).
    pub fn open(url: &str, prefix: &str) -> Result<Self> {
        let mut target = RedisTarget::parse(url).map_err(|source| Error::RedisConnect {
            url: crate::redact::mask(url),
            source,
        })?;
        StateStore::connect(&mut target, url, prefix)
    }

    /// A new connection through `target` (`url` names it in errors, masked).
    pub fn connect(target: &mut RedisTarget, url: &str, prefix: &str) -> Result<Self> {
        let conn = target.connect().map_err(|source| Error::RedisConnect {
            url: crate::redact::mask(url),
            source,
        })?;
        Ok(StateStore {
            conn,
            keys: Keys::new(prefix, target.is_cluster()),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The connection, for the job locks (which share it).
    pub fn conn(&mut self) -> &mut RedisConn {
        &mut self.conn
    }

    /// The connection is gone: a later job reconnects.
    pub fn is_broken(&self) -> bool {
        !redis::ConnectionLike::is_open(&self.conn)
    }

    pub fn meta(&mut self, job: &str) -> Result<Option<Meta>> {
        let m: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.meta(job))
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
            cmd.arg(self.keys.bucket(job, meta.generation, *b));
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
        let g = match (c.prewritten, old) {
            (Some(g), _) => g,
            (None, Some(m)) if !c.full => Generation {
                generation: m.generation,
                buckets: m.buckets,
            },
            _ => Generation::new(old, c.tracked.rows().unwrap_or(0).max(0) as u64),
        };
        let new_generation = old.is_none_or(|m| m.generation != g.generation);
        // A prewritten generation already holds rows: later changes merge into it.
        let empty = new_generation && c.prewritten.is_none();
        if empty {
            self.begin_generation(job, g)?;
        }
        self.write_records(job, g, empty, pending)?;
        c.faults.reach(crate::fault::FaultPoint::State);
        let fields: [(Field, String); 9] = [
            (Field::Watermark, c.watermark.clone()),
            (Field::Generation, g.generation.to_string()),
            (Field::Buckets, g.buckets.to_string()),
            (Field::Rows, c.tracked.stored().to_string()),
            (Field::LastSuccessMs, now_ms().to_string()),
            (Field::FileSha256, c.file_sha256.clone()),
            (Field::Definition, c.definition.clone()),
            (Field::Format, STATE_FORMAT.to_string()),
            (Field::Seed, c.seed.to_string()),
        ];
        let mut hset = redis::cmd("HSET");
        hset.arg(self.keys.meta(job));
        for (f, v) in &fields {
            hset.arg(f.name()).arg(v);
        }
        // A plain pipeline, not MULTI/EXEC: the Redis ACL then needs no transaction commands.
        redis::pipe()
            .add_command(hset)
            .ignore()
            .cmd("HDEL")
            .arg(self.keys.meta(job))
            .arg(Field::LastError.name())
            .arg(Field::LastErrorMs.name())
            .arg(Field::Attempt.name())
            .ignore()
            .query::<()>(&mut self.conn)
            .map_err(rd("writing the watermark"))?;
        if new_generation {
            self.delete_replaced(job, old, g)?;
        }
        Ok(())
    }

    /// Records that `g` is being written, after removing what an earlier attempt that never
    /// became current left behind (so at most one can exist, and it is known by name).
    fn begin_generation(&mut self, job: &str, g: Generation) -> Result<()> {
        let meta = self.keys.meta(job);
        // HGETALL, not HGET: the documented ACL grants the commands elt already uses
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&meta)
            .query(&mut self.conn)
            .map_err(rd("reading the job's state"))?;
        if let Some(old) = fields
            .get(Field::Attempt.name())
            .and_then(|v| Generation::parse(v))
        {
            if old.generation != g.generation {
                self.delete_generation(job, old)?;
            }
        }
        redis::cmd("HSET")
            .arg(&meta)
            .arg(Field::Attempt.name())
            .arg(g.stored())
            .query::<()>(&mut self.conn)
            .map_err(rd("writing the job's state"))
    }

    /// Removes the generation `kept` replaced, by name: the cost follows this job's state,
    /// not everything Redis holds. State of an older layout is found by a scan, once.
    fn delete_replaced(&mut self, job: &str, old: Option<&Meta>, kept: Generation) -> Result<()> {
        let Some(old) = old else {
            return Ok(());
        };
        if old.format.is_some_and(|f| f != STATE_FORMAT) {
            return self
                .delete_other_generations(job, kept.generation)
                .map(|_| ());
        }
        for g in [old.current(), old.attempt].into_iter().flatten() {
            if g.generation != kept.generation {
                self.delete_generation(job, g)?;
            }
        }
        Ok(())
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
        self.begin_generation(job, g)?;
        self.write_records(job, g, true, pending)
    }

    /// Unlinks every bucket of generation `g` of `job` by name; returns how many existed.
    pub fn delete_generation(&mut self, job: &str, g: Generation) -> Result<u64> {
        let all: Vec<u32> = (0..g.buckets).collect();
        let mut n = 0;
        for chunk in all.chunks(10_000) {
            let mut cmd = redis::cmd("UNLINK");
            for b in chunk {
                cmd.arg(self.keys.bucket(job, g.generation, *b));
            }
            n += cmd
                .query::<u64>(&mut self.conn)
                .map_err(rd("deleting unused state"))?;
        }
        Ok(n)
    }

    /// Applies `pending` to the buckets of `g`; `empty`: the generation has no buckets yet,
    /// so none need reading first.
    fn write_records(
        &mut self,
        job: &str,
        g: Generation,
        empty: bool,
        pending: PendingState,
    ) -> Result<()> {
        let keys = self.keys.clone();
        let conn = &mut self.conn;
        let key = |bucket: u32| keys.bucket(job, g.generation, bucket);
        pending.replay(|records| {
            let groups: Vec<&[Record]> = records
                .chunk_by(|a, b| bucket_of(&a.key, g.buckets) == bucket_of(&b.key, g.buckets))
                .collect();
            for chunk in groups.chunks(WRITE_BATCH) {
                // An existing generation is updated bucket by bucket (the job lock makes
                // this read-modify-write safe), as is a small new one whose buckets may span
                // several spill files.
                let stored: Vec<Option<Vec<u8>>> = if empty && g.buckets as usize >= pending::PARTS
                {
                    vec![None; chunk.len()]
                } else {
                    let mut get = redis::cmd("MGET");
                    for r in chunk {
                        get.arg(key(bucket_of(&r[0].key, g.buckets)));
                    }
                    get.query(conn).map_err(rd("reading row hashes"))?
                };
                let mut pipe = redis::pipe();
                for (r, old) in chunk.iter().zip(stored) {
                    let k = key(bucket_of(&r[0].key, g.buckets));
                    let value = merge_bucket(old.as_deref().unwrap_or_default(), r);
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
        let key = self.keys.meta(job);
        // A plain pipeline, not MULTI/EXEC: the two fields need no atomicity, and the
        // Redis ACL then needs no transaction commands.
        redis::pipe()
            .cmd("HSET")
            .arg(&key)
            .arg(Field::LastError.name())
            .arg(message)
            .arg(Field::LastErrorMs.name())
            .arg(now_ms())
            .ignore()
            // a counter for the metrics file, which cannot keep one itself
            .cmd("HINCRBY")
            .arg(&key)
            .arg(Field::Failures.name())
            .arg(1)
            .ignore()
            .query::<()>(&mut self.conn)
            .map_err(rd("recording the job's failure"))
    }

    /// Forgets everything about `job` but its lock; returns how many keys went. The
    /// buckets go by name (the meta names the current generation and any unfinished
    /// attempt), so a reset costs what the job holds, not what the whole Redis holds; only
    /// state of an older layout is found by a scan.
    pub fn reset(&mut self, job: &str) -> Result<u64> {
        let meta = self.keys.meta(job);
        let mut n = match self.meta(job)? {
            Some(m) if !m.is_current_format() => {
                self.unlink_matching(&self.keys.buckets_pattern(job), Some(&meta), |_| true)?
            }
            Some(m) => {
                let mut n = 0;
                for g in [m.current(), m.attempt].into_iter().flatten() {
                    n += self.delete_generation(job, g)?;
                }
                n
            }
            None => 0,
        };
        n += redis::cmd("DEL")
            .arg(&meta)
            .query::<u64>(&mut self.conn)
            .map_err(rd("deleting job state"))?;
        Ok(n)
    }

    /// Names of jobs that have state under the prefix.
    pub fn jobs_with_state(&mut self) -> Result<Vec<String>> {
        let keys = self.keys.clone();
        let mut names = Vec::new();
        self.scan_pages(&keys.metas_pattern(), None, |_, page| {
            names.extend(page.iter().filter_map(|k| keys.job_of_meta(k)));
            Ok(())
        })?;
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Unlinks the buckets of every generation of `job` but `keep`.
    fn delete_other_generations(&mut self, job: &str, keep: u64) -> Result<u64> {
        let kept = self.keys.generation_prefix(job, keep);
        let meta = self.keys.meta(job);
        self.unlink_matching(&self.keys.buckets_pattern(job), Some(&meta), |k| {
            !k.starts_with(&kept)
        })
    }

    /// Unlinks the keys matching `pattern` (and `which`) page by page, so memory stays
    /// flat however many buckets an old generation had. `slot_of`: a key in the same
    /// cluster slot as those keys.
    fn unlink_matching(
        &mut self,
        pattern: &str,
        slot_of: Option<&str>,
        which: impl Fn(&str) -> bool,
    ) -> Result<u64> {
        let mut n = 0;
        self.scan_pages(pattern, slot_of, |conn, page| {
            let old: Vec<&String> = page.iter().filter(|k| which(k)).collect();
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

    /// Calls `page` with each page of keys matching `pattern` (SCAN may repeat a key), on
    /// every node that can hold them.
    fn scan_pages(
        &mut self,
        pattern: &str,
        slot_of: Option<&str>,
        mut page: impl FnMut(&mut RedisConn, Vec<String>) -> Result<()>,
    ) -> Result<()> {
        // one cursor per node: a cluster answers a multi-node SCAN once per master
        let mut cursors: Vec<Option<u64>> = vec![Some(0)];
        let mut first = true;
        while cursors.iter().any(Option::is_some) {
            let cursor = cursors.iter().flatten().next().copied().unwrap_or(0);
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let replies = if first || slot_of.is_some() || cursors.len() == 1 {
                self.conn.scan_query(&cmd, slot_of)
            } else {
                // a cluster scanned on every master: continue node by node
                self.conn.scan_query(&cmd, None)
            }
            .map_err(rd("listing keys"))?;
            first = false;
            let mut next = Vec::with_capacity(replies.len());
            for reply in replies {
                let (c, keys): (u64, Vec<String>) = redis::from_redis_value(reply)
                    .map_err(|e| Error::Job(format!("Redis: listing keys: {e}")))?;
                if !keys.is_empty() {
                    page(&mut self.conn, keys)?;
                }
                next.push((c != 0).then_some(c));
            }
            cursors = next;
        }
        Ok(())
    }
}
