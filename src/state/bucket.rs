//! The value of one bucket of row state: its entries sorted by key digest, each a key
//! digest and its row digest; which bucket a key falls in, how many buckets a generation
//! has, a lookup and the merge of a run's changes.

use super::digests::{KEY_DIGEST_LEN, KeyDigest, ROW_DIGEST_LEN, RowDigest};
use super::pending::{Op, Record};

/// Entries per bucket aimed at: a lookup reads the whole bucket (16 entries: 384 bytes),
/// and each bucket key costs Redis about 60 bytes (4 bytes a row at 16).
const ENTRIES_PER_BUCKET: u64 = 16;
const ENTRY_LEN: usize = KEY_DIGEST_LEN + ROW_DIGEST_LEN;

/// Buckets are a power of two and take the top bits of the key digest, so records sorted by
/// digest come out grouped by bucket whatever the bucket count.
pub(super) fn bucket_of(key: &KeyDigest, buckets: u32) -> u32 {
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

/// The row digest stored for `key` in a bucket's value.
pub(super) fn find(bucket: &[u8], key: &KeyDigest) -> Option<RowDigest> {
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
pub(super) fn merge_bucket(old: &[u8], changes: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(old.len() + changes.len() * ENTRY_LEN);
    let mut entries = old.chunks_exact(ENTRY_LEN).peekable();
    for c in changes {
        while let Some(e) = entries.next_if(|e| e[..KEY_DIGEST_LEN] < c.key[..]) {
            out.extend_from_slice(e);
        }
        entries.next_if(|e| e[..KEY_DIGEST_LEN] == c.key[..]);
        if c.op == Op::Set {
            out.extend_from_slice(&c.key);
            out.extend_from_slice(&c.row);
        }
    }
    for e in entries {
        out.extend_from_slice(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_with_rows() {
        assert_eq!(buckets_for(0), 1);
        assert_eq!(buckets_for(1_000_000), 65536);
    }

    fn rec(op: Op, k: u8, r: u8) -> Record {
        Record {
            op,
            key: [k; KEY_DIGEST_LEN],
            row: [r; ROW_DIGEST_LEN],
        }
    }

    #[test]
    fn buckets_merge_changes_in_key_order() {
        let old = merge_bucket(&[], &[rec(Op::Set, 2, 20), rec(Op::Set, 4, 40)]);
        assert_eq!(find(&old, &[4; KEY_DIGEST_LEN]), Some([40; ROW_DIGEST_LEN]));
        assert_eq!(find(&old, &[3; KEY_DIGEST_LEN]), None);
        let new = merge_bucket(
            &old,
            &[
                rec(Op::Set, 1, 10),
                rec(Op::Delete, 2, 0),
                rec(Op::Set, 4, 41),
                rec(Op::Set, 5, 50),
            ],
        );
        assert_eq!(new.len(), 3 * ENTRY_LEN);
        assert_eq!(find(&new, &[1; KEY_DIGEST_LEN]), Some([10; ROW_DIGEST_LEN]));
        assert_eq!(find(&new, &[2; KEY_DIGEST_LEN]), None);
        assert_eq!(find(&new, &[4; KEY_DIGEST_LEN]), Some([41; ROW_DIGEST_LEN]));
        assert!(
            merge_bucket(
                &new,
                &[
                    rec(Op::Delete, 1, 0),
                    rec(Op::Delete, 4, 0),
                    rec(Op::Delete, 5, 0)
                ]
            )
            .is_empty()
        );
    }
}
