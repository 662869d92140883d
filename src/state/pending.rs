//! A run's pending state changes (row digests to set, keys to forget), applied to Redis only
//! after A commits. Small runs keep them in memory; past `IN_MEMORY` records they spill to
//! temporary files split by the top bits of the key digest, so memory stays flat however
//! many rows change and each part can be sorted on its own when Redis is written.

use std::io::{BufReader, BufWriter, Read, Seek, Write};

use super::digests::{KEY_DIGEST_LEN, KeyDigest, ROW_DIGEST_LEN, RowDigest};
use crate::error::{Error, Result, io};

/// Records kept in memory before spilling (1.6 MiB): a small job needs no file.
const IN_MEMORY: usize = 65_536;
/// Spill files; each is sorted in memory when Redis is written (a 128th of the changes).
pub(super) const PARTS: usize = 128;
const RECORD_LEN: usize = 1 + KEY_DIGEST_LEN + ROW_DIGEST_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Set,
    Delete,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Record {
    pub op: Op,
    pub key: KeyDigest,
    pub row: RowDigest,
}

impl Record {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut rec = [0u8; RECORD_LEN];
        rec[0] = match self.op {
            Op::Set => 1,
            Op::Delete => 2,
        };
        rec[1..1 + KEY_DIGEST_LEN].copy_from_slice(&self.key);
        rec[1 + KEY_DIGEST_LEN..].copy_from_slice(&self.row);
        rec
    }

    fn decode(rec: &[u8; RECORD_LEN]) -> Record {
        let mut key = [0u8; KEY_DIGEST_LEN];
        key.copy_from_slice(&rec[1..1 + KEY_DIGEST_LEN]);
        let mut row = [0u8; ROW_DIGEST_LEN];
        row.copy_from_slice(&rec[1 + KEY_DIGEST_LEN..]);
        Record {
            op: if rec[0] == 1 { Op::Set } else { Op::Delete },
            key,
            row,
        }
    }
}

/// Pending state changes of one run.
#[derive(Default)]
pub struct PendingState {
    memory: Vec<Record>,
    spilled: Vec<BufWriter<std::fs::File>>,
    pub upserts: u64,
    pub deletes: u64,
}

impl PendingState {
    pub fn new() -> Self {
        PendingState::default()
    }

    pub fn set(&mut self, key: &KeyDigest, row: &RowDigest) -> Result<()> {
        self.upserts += 1;
        self.push(Record {
            op: Op::Set,
            key: *key,
            row: *row,
        })
    }

    pub fn delete(&mut self, key: &KeyDigest) -> Result<()> {
        self.deletes += 1;
        self.push(Record {
            op: Op::Delete,
            key: *key,
            row: [0; ROW_DIGEST_LEN],
        })
    }

    fn push(&mut self, r: Record) -> Result<()> {
        if self.spilled.is_empty() {
            self.memory.push(r);
            if self.memory.len() < IN_MEMORY {
                return Ok(());
            }
            self.spill()?;
            return Ok(());
        }
        let part = (r.key[0] as usize * PARTS) >> 8;
        self.spilled[part]
            .write_all(&r.encode())
            .map_err(io("writing pending state to a temporary file"))
    }

    fn spill(&mut self) -> Result<()> {
        for _ in 0..PARTS {
            let f =
                tempfile::tempfile().map_err(io("creating a temporary file for pending state"))?;
            self.spilled.push(BufWriter::with_capacity(1 << 13, f));
        }
        for r in std::mem::take(&mut self.memory) {
            let part = (r.key[0] as usize * PARTS) >> 8;
            self.spilled[part]
                .write_all(&r.encode())
                .map_err(io("writing pending state to a temporary file"))?;
        }
        Ok(())
    }

    /// Calls `f` with the records sorted by key digest, the last operation on each key
    /// winning: once, or once per spill file (each covering a range of digests).
    pub(super) fn replay(self, mut f: impl FnMut(&[Record]) -> Result<()>) -> Result<()> {
        if self.spilled.is_empty() {
            let mut records = self.memory;
            latest_per_key(&mut records);
            return f(&records);
        }
        let mut records = Vec::new();
        for part in self.spilled {
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
                    Ok(()) => records.push(Record::decode(&rec)),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(io("reading pending state")(e)),
                }
            }
            latest_per_key(&mut records);
            f(&records)?;
        }
        Ok(())
    }
}

/// Sorts by key and keeps each key's last record. A stable sort keeps equal keys in write
/// order; reversed, the latest comes first and dedup keeps it. In place: no second copy.
fn latest_per_key(records: &mut Vec<Record>) {
    records.sort_by_key(|r| r.key);
    records.reverse();
    records.dedup_by_key(|r| r.key);
    records.reverse();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(p: PendingState) -> Vec<(u8, Op, u8)> {
        let mut out = Vec::new();
        p.replay(|rs| {
            out.extend(rs.iter().map(|r| (r.key[0], r.op, r.row[0])));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn the_last_write_of_a_key_wins_in_memory_and_spilled() {
        for n in [10usize, IN_MEMORY + 10] {
            let mut p = PendingState::new();
            for i in 0..n {
                let mut k = [0u8; KEY_DIGEST_LEN];
                k[..8].copy_from_slice(&(i as u64 % 300).to_be_bytes());
                k.rotate_left(7);
                p.set(&k, &[(i % 251) as u8; ROW_DIGEST_LEN]).unwrap();
            }
            p.delete(&[0; KEY_DIGEST_LEN]).unwrap();
            let got = keys(p);
            assert_eq!(got.len(), 300.min(n), "n={n}");
            assert!(got.iter().any(|(_, op, _)| *op == Op::Delete));
        }
    }
}
