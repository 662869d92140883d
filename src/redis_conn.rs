//! Redis clients from a URL: `redis://` in the clear, `rediss://` over TLS (rustls, no system
//! library), with a username and password for AUTH/ACL users (`rediss://user:pass@host/0`).
//!
//! TLS checks the server's certificate and name against the operating system's CAs, or
//! against the CAs of `?sslrootcert=PATH` (a PEM file, for a private CA); `#insecure`
//! encrypts without checking, like PostgreSQL's `sslmode=require`.

use std::sync::Once;

use redis::{ErrorKind, RedisError, RedisResult};

/// The query parameter naming a PEM file of trusted CAs (the name PostgreSQL uses).
const ROOT_CERT_PARAM: &str = "sslrootcert";

/// A client for `url` (nothing is connected yet).
pub fn client(url: &str) -> RedisResult<redis::Client> {
    let (url, root_cert) = split_root_cert(url);
    let Some(path) = root_cert else {
        if is_tls(&url) {
            install_crypto_provider();
        }
        return redis::Client::open(url.as_str());
    };
    if !is_tls(&url) {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "sslrootcert needs a rediss:// URL (TLS)",
        )));
    }
    install_crypto_provider();
    let pem = std::fs::read(&path).map_err(|e| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "cannot read sslrootcert",
            format!("{path}: {e}"),
        ))
    })?;
    redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
}

fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("valkeys://")
}

/// rustls needs one process-wide cryptography provider for the Redis crate's TLS; ours is
/// ring, as for PostgreSQL.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means one is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Takes `sslrootcert=PATH` out of the URL's query: (URL without it, PATH).
fn split_root_cert(url: &str) -> (String, Option<String>) {
    let from = url.find('@').map_or(0, |at| at + 1);
    let Some(q) = url[from..].find('?').map(|i| i + from) else {
        return (url.to_string(), None);
    };
    let (query, fragment) = match url[q + 1..].find('#') {
        Some(h) => (&url[q + 1..q + 1 + h], &url[q + 1 + h..]),
        None => (&url[q + 1..], ""),
    };
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((ROOT_CERT_PARAM, v)) => root_cert = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    let mut out = url[..q].to_string();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    out.push_str(fragment);
    (out, root_cert)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cert_is_taken_out_of_the_query() {
        assert_eq!(
            split_root_cert("rediss://u:p@h:6380/0?sslrootcert=/etc/ca%20x.pem"),
            ("rediss://u:p@h:6380/0".into(), Some("/etc/ca x.pem".into()))
        );
        assert_eq!(
            split_root_cert("rediss://h/0?protocol=resp3&sslrootcert=/ca.pem#insecure"),
            (
                "rediss://h/0?protocol=resp3#insecure".into(),
                Some("/ca.pem".into())
            )
        );
        assert_eq!(
            split_root_cert("redis://:pa?ss@h/0"),
            ("redis://:pa?ss@h/0".into(), None)
        );
        assert_eq!(
            split_root_cert("redis://h:1/2"),
            ("redis://h:1/2".into(), None)
        );
    }

    #[test]
    fn plain_and_tls_urls_make_clients() {
        assert!(client("redis://127.0.0.1:1/0").is_ok());
        assert!(client("rediss://127.0.0.1:1/0").is_ok());
        assert!(client("rediss://127.0.0.1:1/0#insecure").is_ok());
        let e = client("redis://127.0.0.1:1/0?sslrootcert=/x.pem").unwrap_err();
        assert!(e.to_string().contains("rediss://"), "{e}");
        let e = client("rediss://127.0.0.1:1/0?sslrootcert=/nonexistent/ca.pem").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
