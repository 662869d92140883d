//! Row and key digests: SHA-256 over the COPY binary encoding of raw column bytes.
//!
//! A row is encoded exactly as binary COPY sends it: a 2-byte big-endian field count, then
//! per field a 4-byte big-endian length (`-1` for NULL) and the bytes. NULL differs from an
//! empty string and column boundaries cannot shift, and the bytes hashed are the very bytes
//! written to A, so hashing needs no second encoding of the row.
//! SHA-256 is the `sha2` crate's, which uses the CPU's SHA instructions where there are
//! some (`examples/digests.rs` compares it with ring's on the row path: `make bench`).

use sha2::{Digest, Sha256};

use crate::state::{KEY_DIGEST_LEN, KeyDigest, ROW_DIGEST_LEN, RowDigest};

/// Appends one field in COPY binary form.
pub fn push_field(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// Digest of a row given its field count and its fields in COPY binary form.
pub fn row_digest(columns: usize, fields: &[u8]) -> RowDigest {
    let mut h = Sha256::new();
    h.update((columns as u16).to_be_bytes());
    h.update(fields);
    let full = h.finalize();
    let mut d = [0u8; ROW_DIGEST_LEN];
    d.copy_from_slice(&full[..ROW_DIGEST_LEN]);
    d
}

/// Digest of a key given its parts' texts as fields in COPY binary form (the same on M
/// and on A).
pub fn key_digest(fields: &[u8]) -> KeyDigest {
    let full = Sha256::digest(fields);
    let mut d = [0u8; KEY_DIGEST_LEN];
    d.copy_from_slice(&full[..KEY_DIGEST_LEN]);
    d
}

/// Digest of a key given as the texts of its parts.
pub fn key_digest_of<'a>(
    parts: impl Iterator<Item = Option<&'a [u8]>>,
    buf: &mut Vec<u8>,
) -> KeyDigest {
    buf.clear();
    for p in parts {
        push_field(buf, p);
    }
    key_digest(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_empty_differ_and_boundaries_cannot_shift() {
        let mut buf = Vec::new();
        let a = key_digest_of([None].into_iter(), &mut buf);
        let b = key_digest_of([Some(&b""[..])].into_iter(), &mut buf);
        assert_ne!(a, b);
        let c = key_digest_of([Some(&b"ab"[..]), Some(&b"c"[..])].into_iter(), &mut buf);
        let d = key_digest_of([Some(&b"a"[..]), Some(&b"bc"[..])].into_iter(), &mut buf);
        assert_ne!(c, d);
    }

    #[test]
    fn a_row_digest_covers_its_field_count() {
        let mut f = Vec::new();
        push_field(&mut f, Some(b"x"));
        assert_ne!(row_digest(1, &f), row_digest(2, &f));
    }
}
