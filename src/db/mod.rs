//! PostgreSQL sessions on M and A. All work is done in explicit transactions, each of which
//! first sets the session settings elt relies on (`SET LOCAL`), so a pooler in transaction
//! mode (PgBouncer), which may hand every transaction another server session with other
//! defaults, changes nothing; no prepared statement outlives its transaction. Also raw
//! access to column bytes and text parameters.

pub mod tls;

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, IsolationLevel, SimpleQueryMessage, Statement, Transaction};

use crate::error::{Db, Error, Result, pg};
use crate::redact;

/// Run at the start of every transaction, in one round trip: drops prepared statements a
/// pooled server session may still hold (ours from a type lookup, or another client's), reads
/// the server's own time zone and whether it is a standby, then fixes every setting that
/// changes a value's text form, so it is the same on M and A whatever the server defaults.
/// JIT is off: elt's statements are scans, joins and aggregates whose compile time exceeded
/// their run time.
const TRANSACTION_SETUP: &str = "DEALLOCATE ALL; \
     SELECT current_setting('TimeZone'), pg_catalog.pg_is_in_recovery()::text; \
     SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; \
     SET LOCAL extra_float_digits = 3; SET LOCAL TimeZone = 'UTC'; \
     SET LOCAL bytea_output = 'hex'; SET LOCAL jit = off";

/// How a transaction may use its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// repeatable read, read only: one snapshot of M for its rows, keys and watermark
    Snapshot,
    /// read committed, read only
    ReadOnly,
    /// read committed, read write
    ReadWrite,
}

/// What a transaction learnt about its server session before fixing its settings.
#[derive(Debug, Clone, Default)]
pub struct SessionFacts {
    /// The server's own time zone: what `timestamp without time zone` values mean there.
    pub time_zone: String,
    /// The server is a hot standby (in recovery).
    pub in_recovery: bool,
}

/// A session on M or A.
pub struct Conn {
    client: Client,
    db: Db,
    url: String,
    /// The driver looked up a user-defined type (enum, domain, composite) in the last
    /// transaction and keeps the statement it prepared for that in its cache, which a pooler
    /// may have left on another server session: the next transaction reconnects.
    custom_types: AtomicBool,
    _cancel: crate::stop::CancelGuard,
}

impl Conn {
    /// Connects to `url` (URL or key=value form) with TLS as its `sslmode` asks.
    pub fn connect(url: &str, db: Db) -> Result<Conn> {
        let masked = redact::mask(url);
        let (pg_url, tls) = tls::split_tls_options(url)
            .map_err(|e| Error::Job(format!("{db}: connection string {masked}: {e}")))?;
        let mut config: Config = pg_url.parse().map_err(|source| Error::Connect {
            db,
            url: masked.clone(),
            source,
        })?;
        if config.get_application_name().is_none() {
            config.application_name("elt");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let connector = tls::tls_connector(db, &tls)?;
        let client = config
            .connect(connector.clone())
            .map_err(|source| Error::Connect {
                db,
                url: masked,
                source,
            })?;
        let token = client.cancel_token();
        let cancel = crate::stop::on_stop(Box::new(move || {
            let _ = token.cancel_query(connector.clone());
        }));
        Ok(Conn {
            client,
            db,
            url: url.to_string(),
            custom_types: AtomicBool::new(false),
            _cancel: cancel,
        })
    }

    pub fn db(&self) -> Db {
        self.db
    }

    /// Makes the next transaction start on a new session, after work outside [`Tx::prepare`]
    /// (a savepoint's statements, queries by text) in which the driver may have looked up a
    /// user-defined type unnoticed.
    pub fn reconnect_next(&self) {
        self.custom_types.store(true, Ordering::SeqCst);
    }

    /// The connection is gone (the server ended it, the network broke).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Starts a transaction with elt's settings in force.
    pub fn begin(&mut self, access: Access) -> Result<Tx<'_>> {
        if self.custom_types.swap(false, Ordering::SeqCst) {
            *self = Conn::connect(&self.url, self.db)?;
        }
        let db = self.db;
        let mut builder = self.client.build_transaction();
        builder = match access {
            Access::Snapshot => builder
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true),
            Access::ReadOnly => builder.read_only(true),
            Access::ReadWrite => builder,
        };
        let mut inner = builder.start().map_err(pg(db, "starting a transaction"))?;
        let messages = inner
            .simple_query(TRANSACTION_SETUP)
            .map_err(pg(db, "setting up the transaction"))?;
        let mut facts = SessionFacts::default();
        for m in &messages {
            if let SimpleQueryMessage::Row(row) = m {
                facts.time_zone = row.get(0).unwrap_or("UTC").to_string();
                facts.in_recovery = row.get(1) == Some("true");
            }
        }
        Ok(Tx {
            inner,
            db,
            custom_types: &self.custom_types,
            facts,
        })
    }
}

/// A transaction on M or A: a `postgres::Transaction` that knows its database and prepares
/// the job's own statements so that a type looked up for them never outlives it.
pub struct Tx<'c> {
    inner: Transaction<'c>,
    db: Db,
    custom_types: &'c AtomicBool,
    pub facts: SessionFacts,
}

impl<'c> Tx<'c> {
    pub fn db(&self) -> Db {
        self.db
    }

    /// Prepares a statement; notes when the driver had to look up a user-defined type.
    pub fn prepare(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        self.prepare_typed(sql, &[])
    }

    /// `prepare` with the types of (some of) the parameters given.
    pub fn prepare_typed(
        &mut self,
        sql: &str,
        types: &[Type],
    ) -> std::result::Result<Statement, postgres::Error> {
        let stmt = self.inner.prepare_typed(sql, types)?;
        let custom = |t: &Type| Type::from_oid(t.oid()).is_none();
        if stmt.params().iter().any(custom) || stmt.columns().iter().any(|c| custom(c.type_())) {
            self.custom_types.store(true, Ordering::SeqCst);
        }
        Ok(stmt)
    }

    /// A savepoint as a transaction of its own: what the server rejects inside it is undone
    /// by its `rollback` (or by dropping it) and leaves this transaction usable, so one
    /// failed check does not make the next ones fail with "current transaction is aborted".
    pub fn nested(&mut self, name: &str) -> Result<Tx<'_>> {
        let db = self.db;
        let inner = self
            .inner
            .savepoint(name)
            .map_err(pg(db, "setting a savepoint"))?;
        Ok(Tx {
            inner,
            db,
            custom_types: self.custom_types,
            facts: self.facts.clone(),
        })
    }

    /// Commits. After a type lookup, its cached statement is dropped first, so the pooled
    /// server session is left clean for whoever gets it next.
    pub fn commit(mut self) -> Result<()> {
        if self.custom_types.load(Ordering::SeqCst) {
            self.inner
                .batch_execute("DEALLOCATE ALL")
                .map_err(pg(self.db, "committing"))?;
        }
        let db = self.db;
        self.inner
            .commit()
            .map_err(pg(db, "committing the transaction"))
    }

    pub fn rollback(self) -> Result<()> {
        let db = self.db;
        self.inner
            .rollback()
            .map_err(pg(db, "rolling back the transaction"))
    }
}

impl<'c> Deref for Tx<'c> {
    type Target = Transaction<'c>;

    fn deref(&self) -> &Transaction<'c> {
        &self.inner
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
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
