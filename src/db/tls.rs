//! TLS to PostgreSQL through rustls (no system library), with libpq's `sslmode` and
//! `sslrootcert` read out of the connection string: the driver knows `disable`, `prefer` and
//! `require`; the certificate checks of `verify-ca` and `verify-full` are ours.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Db, Error, Result};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> std::result::Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, allow, prefer, require, \
                     verify-ca, verify-full"
                ));
            }
        })
    }

    /// What the driver is told: it knows disable, prefer and require; certificate checks
    /// are ours. `allow` (plain first, TLS if refused) becomes `prefer`.
    fn driver_value(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow | SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// The TLS part of a connection string, as libpq reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// `sslmode`; libpq's default is `prefer`.
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted CA certificates, or `system` for the operating
    /// system's store.
    pub root_cert: Option<String>,
}

impl TlsOptions {
    /// The certificate check in force: as in libpq, `require` with an explicit
    /// `sslrootcert` verifies the chain like `verify-ca`.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }
}

/// Takes libpq's TLS options out of a connection string (URL or key=value): returns the
/// string for the driver, with `sslmode` narrowed to what it knows and `sslrootcert`
/// removed, and the options. A string this cannot parse is returned as it is, for the
/// driver to report.
pub fn split_tls_options(conn: &str) -> std::result::Result<(String, TlsOptions), String> {
    let mut tls = TlsOptions {
        mode: SslMode::Prefer,
        root_cert: None,
    };
    let mut mode_given = false;
    // true when `key` is one of ours (then it is not passed on)
    let mut take = |key: &str, value: &str| -> std::result::Result<bool, String> {
        match key {
            "sslmode" => {
                tls.mode = SslMode::parse(value)?;
                mode_given = true;
                Ok(true)
            }
            "sslrootcert" => {
                tls.root_cert = Some(value.to_string());
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let (mut out, sep) = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        // the query starts at the first `?` after the user info (the driver reads up to
        // the first `@` as user info)
        let from = conn.find('@').map_or(0, |at| at + 1);
        let Some(q) = conn[from..].find('?').map(|i| i + from) else {
            return Ok((conn.to_string(), tls));
        };
        let mut kept = Vec::new();
        for pair in conn[q + 1..].split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(&crate::percent::decode(k), &crate::percent::decode(v))? {
                kept.push(pair);
            }
        }
        let mut out = conn[..q].to_string();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        let sep = if kept.is_empty() { '?' } else { '&' };
        (out, sep)
    } else {
        let Some(pairs) = key_value_pairs(conn) else {
            return Ok((conn.to_string(), tls));
        };
        let mut kept = Vec::new();
        for (key, value, span) in pairs {
            if !take(key, &value)? {
                kept.push(&conn[span]);
            }
        }
        let sep = if kept.is_empty() { '\0' } else { ' ' };
        (kept.join(" "), sep)
    };
    if mode_given {
        if sep != '\0' {
            out.push(sep);
        }
        out.push_str("sslmode=");
        out.push_str(tls.mode.driver_value());
    }
    Ok((out, tls))
}

/// libpq key=value pairs with their spans, as the driver parses them (values quoted with
/// `'…'`, backslash escapes); `None` when the string is malformed.
fn key_value_pairs(s: &str) -> Option<Vec<(&str, String, std::ops::Range<usize>)>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return Some(out);
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        let key = &s[start..i];
        skip_ws(&mut i);
        if key.is_empty() || i >= b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    value.push(b[i + 1]);
                    i += 2;
                } else {
                    value.push(b[i]);
                    i += 1;
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        out.push((key, String::from_utf8(value).ok()?, start..i));
    }
}

/// The rustls configuration for `tls`: `disable`, `allow`, `prefer` and `require` encrypt
/// (when TLS is used at all) without checking the certificate, as libpq does; `verify-ca`
/// checks that a CA of `sslrootcert` signed it; `verify-full` also checks that it names
/// the host connected to.
pub fn tls_connector(db: Db, tls: &TlsOptions) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_error = |e: &dyn std::fmt::Display| Error::Job(format!("{db}: cannot set up TLS: {e}"));
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&e))?
        .dangerous();
    let mode = tls.effective_mode();
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let (roots, from) = root_store(db, tls.root_cert.as_deref())?;
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(&e))?;
            Arc::new(Verify {
                inner,
                check_name: mode == SslMode::VerifyFull,
                roots: from,
            })
        }
        _ => Arc::new(NoVerify(provider)),
    };
    let config = builder
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The CAs `verify-ca` / `verify-full` trust: `sslrootcert`, `system` for the operating
/// system's store, or (as libpq) `~/.postgresql/root.crt` when it is not given.
/// Returns the store and where it came from.
fn root_store(db: Db, root_cert: Option<&str>) -> Result<(rustls::RootCertStore, String)> {
    let mut roots = rustls::RootCertStore::empty();
    if root_cert == Some("system") {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // certificates the parser rejects are skipped, as other TLS clients do
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(Error::Job(format!(
                "{db}: sslrootcert=system: the operating system's certificate store is empty"
            )));
        }
        return Ok((roots, "the operating system's store".into()));
    }
    let path = match root_cert {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            match home.map(|h| h.join(".postgresql/root.crt")) {
                Some(p) if p.exists() => p,
                _ => {
                    return Err(Error::Job(format!(
                        "{db}: sslmode verify-ca/verify-full needs sslrootcert=PATH (a PEM file \
                         of the CA certificates to trust) or ~/.postgresql/root.crt"
                    )));
                }
            }
        }
    };
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::Job(format!(
                "{db}: cannot read sslrootcert {}: {e}",
                path.display()
            ))
        })?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::Job(format!(
            "{db}: sslrootcert {} holds no usable CA certificate",
            path.display()
        )));
    }
    Ok((roots, path.display().to_string()))
}

/// `verify-ca` and `verify-full`: the chain must lead to a CA of `roots`; `check_name`
/// (verify-full) also compares the certificate's names with the host. An unknown issuer is
/// reported with the file of trusted CAs, so the fix is obvious.
#[derive(Debug)]
struct Verify {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
    roots: String,
}

#[derive(Debug)]
struct NotTrusted(String);

impl std::fmt::Display for NotTrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid peer certificate: UnknownIssuer (the server's certificate was not issued \
             by a CA in {})",
            self.0
        )
    }
}

impl std::error::Error for NotTrusted {}

// The methods' parameter lists are rustls's `ServerCertVerifier` trait.
impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last, so a name error means the
        // chain was good
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => Err(
                rustls::Error::Other(rustls::OtherError(Arc::new(NotTrusted(self.roots.clone())))),
            ),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Certificate checks as libpq's `sslmode=require`: encryption without verification.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

// The methods' parameter lists are rustls's `ServerCertVerifier` trait.
impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tls_option_tests {
    use super::*;

    fn split(s: &str) -> (String, SslMode, Option<String>) {
        let (out, tls) = split_tls_options(s).unwrap();
        (out, tls.effective_mode(), tls.root_cert)
    }

    #[test]
    fn url_options_are_narrowed_for_the_driver() {
        assert_eq!(
            split("postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=/etc/ca.pem"),
            (
                "postgres://u:p@h:5432/db?sslmode=require".into(),
                SslMode::VerifyFull,
                Some("/etc/ca.pem".into())
            )
        );
        assert_eq!(
            split(
                "postgresql://h/db?application_name=x&sslmode=verify-ca&sslrootcert=%2Fca%20dir%2Fr.crt&connect_timeout=3"
            ),
            (
                "postgresql://h/db?application_name=x&connect_timeout=3&sslmode=require".into(),
                SslMode::VerifyCa,
                Some("/ca dir/r.crt".into())
            )
        );
        assert_eq!(
            split("postgres://h/db?sslmode=disable"),
            (
                "postgres://h/db?sslmode=disable".into(),
                SslMode::Disable,
                None
            )
        );
        assert_eq!(
            split("postgres://u:p?x@h/db"),
            ("postgres://u:p?x@h/db".into(), SslMode::Prefer, None)
        );
        // as libpq: require with a root certificate checks the chain
        assert_eq!(
            split("postgres://h/db?sslmode=require&sslrootcert=/ca.pem").1,
            SslMode::VerifyCa
        );
        assert_eq!(
            split("postgres://h/db?sslmode=allow").0,
            "postgres://h/db?sslmode=prefer"
        );
    }

    #[test]
    fn key_value_options_are_narrowed_for_the_driver() {
        assert_eq!(
            split(
                "host=h user=u password='a b\\'c' sslmode=verify-full sslrootcert='/x y/ca.pem' dbname=d"
            ),
            (
                "host=h user=u password='a b\\'c' dbname=d sslmode=require".into(),
                SslMode::VerifyFull,
                Some("/x y/ca.pem".into())
            )
        );
        assert_eq!(
            split("sslmode = verify-ca"),
            ("sslmode=require".into(), SslMode::VerifyCa, None)
        );
        assert_eq!(
            split("host=h dbname=d"),
            ("host=h dbname=d".into(), SslMode::Prefer, None)
        );
    }

    #[test]
    fn bad_sslmode_is_an_error_and_malformed_strings_pass_through() {
        let e = split_tls_options("postgres://h/db?sslmode=verify_full").unwrap_err();
        assert!(
            e.contains("verify_full") && e.contains("verify-full"),
            "{e}"
        );
        assert!(split_tls_options("host=h sslmode=bogus").is_err());
        assert_eq!(split("host=h dbname").0, "host=h dbname");
    }

    #[test]
    fn verify_modes_need_readable_roots() {
        let tls = TlsOptions {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.pem".into()),
        };
        let e = tls_connector(Db::Master, &tls).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let tls = TlsOptions {
            mode: SslMode::VerifyCa,
            root_cert: Some(empty.path().display().to_string()),
        };
        let e = tls_connector(Db::Master, &tls).err().unwrap().to_string();
        assert!(e.contains("no usable CA certificate"), "{e}");
    }
}
