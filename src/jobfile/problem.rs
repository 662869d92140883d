//! A problem found in a job file: what, how bad, for which key and where in the file.

use std::fmt;

/// A 1-based line and a 1-based column counted in characters.
pub type LineCol = (usize, usize);

/// How much a problem matters: only errors make `validate` exit 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    /// information about how a file was checked; shown with `--verbose`
    Note,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One thing wrong with (or worth knowing about) a job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// a key of the file, the name of an unknown key, or `FILE` / `YAML`
    pub key: String,
    pub message: String,
    /// 1-based line in the file, when known
    pub line: Option<usize>,
    /// 1-based column (in characters), when known
    pub column: Option<usize>,
    pub severity: Severity,
    /// False for errors found by comparing statements with each other (a column the upsert
    /// leaves out, a missing unique constraint, …): `validate` reports them, but `run` goes
    /// ahead, since PostgreSQL itself rejects what truly cannot run, and a table altered
    /// outside the job file (an index added by hand) may make the job correct.
    pub blocks_run: bool,
}

impl Problem {
    pub fn new(file: &str, key: &str, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_string(),
            key: key.to_string(),
            message: message.into(),
            line: None,
            column: None,
            severity: Severity::Error,
            blocks_run: true,
        }
    }

    /// The same problem located at `at` (line, column).
    pub fn at(mut self, at: Option<LineCol>) -> Self {
        if let Some((l, c)) = at {
            self.line = Some(l);
            self.column = Some(c);
        }
        self
    }

    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// An error that stops `run` from starting the job (see `blocks_run`).
    pub fn stops_run(&self) -> bool {
        self.is_error() && self.blocks_run
    }
}

/// `FILE: KEY: message` as the spec says, with `line L, column C: ` before the message when
/// the position is known, and `warning: ` / `note: ` in front of what is not an error.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity != Severity::Error {
            write!(f, "{}: ", self.severity.as_str())?;
        }
        write!(f, "{}: {}: ", self.file, self.key)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "line {l}, column {c}: ")?;
        }
        f.write_str(&self.message)
    }
}
