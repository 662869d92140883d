//! `%XX` escapes: the one decoder for URL parts (user, password, host, query values) and the
//! percent-encoded job names inside Redis keys.

/// `s` with its `%XX` escapes decoded (invalid UTF-8 replaced, never an error).
pub fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
