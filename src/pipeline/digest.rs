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

/// The integer in field `i` of `fields` (COPY binary form: a 4-byte length, then 2, 4 or 8
/// big-endian bytes), `None` for NULL or anything else.
pub fn int_field(fields: &[u8], i: usize) -> Option<i64> {
    let mut at = 0;
    for _ in 0..i {
        let len = i32::from_be_bytes(fields.get(at..at + 4)?.try_into().ok()?);
        at += 4 + len.max(0) as usize;
    }
    let len = i32::from_be_bytes(fields.get(at..at + 4)?.try_into().ok()?);
    let bytes = fields.get(at + 4..at + 4 + len.max(0) as usize)?;
    Some(match *bytes {
        [a, b] => i16::from_be_bytes([a, b]) as i64,
        [a, b, c, d] => i32::from_be_bytes([a, b, c, d]) as i64,
        [a, b, c, d, e, f, g, h] => i64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => return None,
    })
}

/// The key field an integer key's text makes (PostgreSQL's `int8out` is plain decimal), in
/// COPY binary form, written into `buf`: what `key_digest` of `key::text` would hash.
pub fn int_key_field(v: Option<i64>, buf: &mut [u8; 24]) -> &[u8] {
    let Some(v) = v else {
        buf[..4].copy_from_slice(&(-1i32).to_be_bytes());
        return &buf[..4];
    };
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = 0;
    if v < 0 {
        buf[4] = b'-';
        len = 1;
    }
    let d = &digits[i..];
    buf[4 + len..4 + len + d.len()].copy_from_slice(d);
    len += d.len();
    buf[..4].copy_from_slice(&(len as i32).to_be_bytes());
    &buf[..4 + len]
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
    fn integer_keys_digest_as_their_text_would() {
        let mut buf = [0u8; 24];
        for v in [0i64, 7, -42, i64::MAX, i64::MIN, 1_000_000] {
            let mut text = Vec::new();
            push_field(&mut text, Some(v.to_string().as_bytes()));
            assert_eq!(int_key_field(Some(v), &mut buf), &text[..], "{v}");
            let mut fields = Vec::new();
            push_field(&mut fields, Some(b"x"));
            push_field(&mut fields, Some(&v.to_be_bytes()));
            assert_eq!(int_field(&fields, 1), Some(v));
        }
        let mut null = Vec::new();
        push_field(&mut null, None);
        assert_eq!(int_key_field(None, &mut buf), &null[..]);
        assert_eq!(int_field(&null, 0), None);
        let mut small = Vec::new();
        push_field(&mut small, Some(&(-5i16).to_be_bytes()));
        assert_eq!(int_field(&small, 0), Some(-5));
    }

    #[test]
    fn a_row_digest_covers_its_field_count() {
        let mut f = Vec::new();
        push_field(&mut f, Some(b"x"));
        assert_ne!(row_digest(1, &f), row_digest(2, &f));
    }
}
