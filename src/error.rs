//! The one error type: each variant says what we were doing, the source says why.

use std::fmt;

/// Which PostgreSQL database an operation talked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Master,
    Analytics,
}

impl fmt::Display for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Db::Master => "master database (M)",
            Db::Analytics => "analytics database (A)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A missing or malformed setting: exit status 2.
    #[error("configuration: {0}")]
    Config(String),

    /// A job named on the command line has no file (and, for `reset-state`, no state).
    #[error("unknown job `{name}`: no job file for it in {folder}{}", did_you_mean(.suggestion))]
    UnknownJob {
        name: String,
        /// the jobs folder, absolute
        folder: String,
        suggestion: Option<String>,
    },

    /// `--jobs-dir` names no readable folder.
    #[error("cannot read the jobs folder {folder}")]
    JobsFolder {
        folder: String,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid job file:\n{0}")]
    InvalidJob(String),

    #[error("cannot connect to the {db} at {url}")]
    Connect {
        db: Db,
        url: String,
        #[source]
        source: postgres::Error,
    },

    #[error("cannot connect to Redis at {url}")]
    RedisConnect {
        url: String,
        #[source]
        source: redis::RedisError,
    },

    #[error("{db}: {what}")]
    Pg {
        db: Db,
        what: String,
        #[source]
        source: postgres::Error,
    },

    #[error("Redis: {what}")]
    Redis {
        what: String,
        #[source]
        source: redis::RedisError,
    },

    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A job-level failure that is not a driver error (lock lost, unsupported watermark type).
    #[error("{0}")]
    Job(String),

    /// SIGTERM or SIGINT asked the run to stop.
    #[error("stopped by {}", .0.name())]
    Stopped(crate::stop::Signal),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// A stop request ends the job as an error (`stop::check()?`).
impl From<crate::stop::Signal> for Error {
    fn from(sig: crate::stop::Signal) -> Self {
        Error::Stopped(sig)
    }
}

impl Error {
    /// The documented exit status for an error that ends the whole process.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_)
            | Error::UnknownJob { .. }
            | Error::JobsFolder { .. }
            | Error::InvalidJob(_) => 2,
            Error::Stopped(sig) => sig.exit_code(),
            _ => 1,
        }
    }

    /// SQLSTATE of the underlying PostgreSQL error, if any.
    pub fn sqlstate(&self) -> Option<&postgres::error::SqlState> {
        match self {
            Error::Pg { source, .. } | Error::Connect { source, .. } => source.code(),
            _ => None,
        }
    }
}

/// Builds a closure that wraps a `postgres::Error` with what we were doing on `db`.
pub fn pg(db: Db, what: impl Into<String>) -> impl FnOnce(postgres::Error) -> Error {
    let what = what.into();
    move |source| Error::Pg { db, what, source }
}

/// Builds a closure that wraps a `redis::RedisError` with what we were doing.
pub fn rd(what: impl Into<String>) -> impl FnOnce(redis::RedisError) -> Error {
    let what = what.into();
    move |source| Error::Redis { what, source }
}

/// Builds a closure that wraps an I/O error with what we were doing.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Builds a closure for the I/O error of a database stream (a `COPY` read): the driver's
/// error inside it, when there is one, named by its database like every other.
pub fn pg_io(db: Db, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| {
        if !source.get_ref().is_some_and(|e| e.is::<postgres::Error>()) {
            let what = format!("{db}: {what}");
            return Error::Io { what, source };
        }
        match source.into_inner().map(|e| e.downcast::<postgres::Error>()) {
            Some(Ok(e)) => Error::Pg {
                db,
                what,
                source: *e,
            },
            _ => Error::Job(format!("{db}: {what}")),
        }
    }
}

/// The error and its causes on one line, `what: why: deeper why`, skipping a cause whose
/// text the previous message already contains (the postgres driver repeats its cause).
/// A PostgreSQL error reads as [`db_message`] says.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = one_line(&err.to_string());
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = match e.downcast_ref::<postgres::error::DbError>() {
            Some(db) => format!("{}: {}", db.severity(), db_message(db)),
            None => one_line(&e.to_string()),
        };
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = e.source();
    }
    crate::redact::scrub(&out)
}

/// What PostgreSQL said, on one line: its message, then `DETAIL: …` and `HINT: …` when it
/// gave them. The driver's own Display puts them on lines of their own, and a message that
/// already quotes one does not get it twice.
pub fn db_message(db: &postgres::error::DbError) -> String {
    let mut out = one_line(db.message());
    for (label, part) in [("DETAIL", db.detail()), ("HINT", db.hint())] {
        if let Some(part) = part.map(one_line).filter(|p| !out.contains(p.as_str())) {
            out.push_str(&format!("; {label}: {part}"));
        }
    }
    out
}

/// The part of a driver error worth showing a user: PostgreSQL's [`db_message`] for a
/// database error, else the whole [`chain`].
pub fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => crate::redact::scrub(&db_message(db)),
        None => chain(e),
    }
}

/// Line breaks become spaces, so a message stays one line in logs and output.
fn one_line(s: &str) -> String {
    if s.contains('\n') {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s.to_string()
    }
}
