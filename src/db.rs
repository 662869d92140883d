//! PostgreSQL connections: TLS through rustls (no system library), session settings that
//! make text forms of values identical on M and A, and raw access to column bytes.

use std::sync::Arc;

use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Db, Error, Result, pg};
use crate::redact;

/// Settings every session gets, so that a value's text form is the same on M and A and
/// does not depend on server defaults.
const SESSION_SETUP: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
     SET extra_float_digits = 3; SET TimeZone = 'UTC'; SET bytea_output = 'hex'; \
     SET application_name = 'elt'";

/// A session on M or A, with the server's own time zone remembered before we set UTC.
pub struct Conn {
    pub client: Client,
    pub db: Db,
    /// The session time zone the server gave us: what `timestamp without time zone` values
    /// on this server are taken to mean.
    pub server_time_zone: String,
}

/// Connects to `url` (URL or key=value form) with TLS as its `sslmode` asks.
pub fn connect(url: &str, db: Db) -> Result<Conn> {
    let masked = redact::mask(url);
    let config: Config = url.parse().map_err(|source| Error::Connect {
        db,
        url: masked.clone(),
        source,
    })?;
    let mut config = config;
    if config.get_application_name().is_none() {
        config.application_name("elt");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    let mut client = config
        .connect(tls_connector(db)?)
        .map_err(|source| Error::Connect {
            db,
            url: masked.clone(),
            source,
        })?;
    let tz: String = client
        .query_one("SELECT current_setting('TimeZone')", &[])
        .map_err(pg(db, "reading the session time zone"))?
        .get(0);
    client
        .batch_execute(SESSION_SETUP)
        .map_err(pg(db, "setting up the session"))?;
    if db == Db::Analytics {
        // Our statements on A are simple joins whose cost estimates can look large;
        // JIT compilation then costs more than the statement itself.
        client
            .batch_execute("SET jit = off")
            .map_err(pg(db, "setting up the session"))?;
    }
    Ok(Conn {
        client,
        db,
        server_time_zone: tz,
    })
}

/// `sslmode=require` (and `prefer`) encrypt without checking the certificate, as libpq does.
fn tls_connector(db: Db) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Job(format!("{db}: cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Certificate checks as libpq's `sslmode=require`: encryption without verification.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

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

/// A column's bytes exactly as the server sent them (binary format), never decoded.
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(
        _ty: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// A parameter sent in text format: the server parses it with the parameter type's input
/// function, so one value works for any type whose text form it is.
#[derive(Debug)]
pub struct TextParam(pub String);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> postgres::types::Format {
        postgres::types::Format::Text
    }

    to_sql_checked!();
}

/// Quotes an identifier for SQL text (`"a""b"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQLSTATE class of a wrapped PostgreSQL error, to tell lost connections apart.
pub fn is_connection_error(e: &Error) -> bool {
    match e {
        Error::Pg { source, .. } => {
            source.is_closed() || source.code().is_none_or(|c| c.code().starts_with("08"))
        }
        Error::Connect { .. } => true,
        _ => false,
    }
}
