//! The sizes of what the row state stores per row: a key's digest and its row's digest.

/// Bytes of a key's digest (a bucket entry's first part, and its place in the bucket).
pub const KEY_DIGEST_LEN: usize = 8;
/// Bytes of a row's digest (what says whether a row changed).
pub const ROW_DIGEST_LEN: usize = 16;
pub type KeyDigest = [u8; KEY_DIGEST_LEN];
pub type RowDigest = [u8; ROW_DIGEST_LEN];
