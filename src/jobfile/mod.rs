//! Job files: finding them in the jobs folder, and the one loader that reads a file into a
//! `Job`, its problems and where they are. `run` starts a job unless a problem blocks it
//! (`Problem::stops_run`); `validate` reports every problem. See docs/jobfile.md for the
//! layout of this module and where a new rule goes.

pub mod keys;
mod parse;
mod problem;
mod rules;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::paths::absolute;

pub use keys::Key;
pub use parse::{Fields, Positions, parse_fields};
pub use problem::{LineCol, Problem, Severity};
pub use rules::check_rules;

pub const DEFAULT_MAX_DELETE_FRACTION: f64 = 0.5;

/// One ELT process, as written by an analyst and checked against every rule.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub path: PathBuf,
    pub create_table_sql: String,
    pub select_source_sql: String,
    pub upsert_target_sql: String,
    pub select_keys_sql: String,
    pub target_table: String,
    pub key_columns: Vec<String>,
    /// Optional `MAX_DELETE_FRACTION`: the largest share of the target one run may delete.
    pub max_delete_fraction: f64,
    /// SHA-256 of the file's bytes, so `status` can tell when a file changed since its run.
    pub file_digest: String,
    /// SHA-256 of what the job does (see [`definition_digest`]): a run that finds another
    /// one in Redis re-synchronises the job in full.
    pub definition: String,
}

impl Job {
    /// The SQL text of one of the four statement keys.
    pub fn statement(&self, key: Key) -> &str {
        match key {
            Key::CreateTableSql => &self.create_table_sql,
            Key::SelectSourceSql => &self.select_source_sql,
            Key::UpsertTargetSql => &self.upsert_target_sql,
            Key::SelectKeysSql => &self.select_keys_sql,
            _ => "",
        }
    }
}

/// What the loader found in one file: the job unless a problem stops it from running,
/// every problem, and where things are in the file (for problems found later, against the
/// databases).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub job: Option<Job>,
    pub problems: Vec<Problem>,
    pub positions: Positions,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }
}

/// Reads and checks one job file; all problems come back at once.
pub fn check(path: &Path) -> Loaded {
    let file = path.display().to_string();
    let failed = |message: String| Loaded {
        job: None,
        problems: vec![Problem::new(&file, "FILE", message)],
        positions: Positions::default(),
    };
    let text = match std::fs::read(path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => return failed("the file is not valid UTF-8".into()),
        Err(e) => return failed(format!("cannot read the file: {e}")),
    };
    let (fields, mut problems) = parse_fields(&file, &text);
    problems.extend(check_rules(&file, &fields));
    let job = (!problems.iter().any(Problem::stops_run)).then(|| job_of(path, &text, &fields));
    Loaded {
        job,
        problems,
        positions: fields.positions,
    }
}

/// Reads and checks one job file for `run`: the job, or the problems that stop it.
pub fn load(path: &Path) -> std::result::Result<Job, Vec<Problem>> {
    let loaded = check(path);
    loaded.job.ok_or(loaded.problems)
}

fn job_of(path: &Path, text: &str, f: &Fields) -> Job {
    use sha2::Digest;
    let owned = |s: &Option<String>| s.clone().unwrap_or_default();
    let key_columns = f.key_columns.clone().unwrap_or_default();
    let statements = Key::STATEMENTS.map(|k| f.statement(k).unwrap_or_default());
    let target_table = owned(&f.target_table);
    Job {
        name: job_name(path),
        path: path.to_path_buf(),
        create_table_sql: owned(&f.create_table_sql),
        select_source_sql: owned(&f.select_source_sql),
        upsert_target_sql: owned(&f.upsert_target_sql),
        select_keys_sql: owned(&f.select_keys_sql),
        definition: definition_digest(statements, &target_table, &key_columns),
        target_table,
        key_columns,
        max_delete_fraction: f.max_delete_fraction.unwrap_or(DEFAULT_MAX_DELETE_FRACTION),
        file_digest: hex(&sha2::Sha256::digest(text.as_bytes())),
    }
}

/// A fingerprint of a job's definition: its four statements, `TARGET_TABLE` and
/// `KEY_COLUMNS`, with white space and comments outside literals left out and unquoted words
/// in lower case, so rewriting a file with the same statements changes nothing while any
/// other edit re-synchronises the job.
pub fn definition_digest(
    statements: [&str; 4],
    target_table: &str,
    key_columns: &[String],
) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in statements.iter().chain([&target_table]) {
        h.update(crate::sqllex::canonical(part).as_bytes());
        h.update([0]);
    }
    for k in key_columns {
        h.update(k.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

/// True when `path` names a job file: `*.yaml`/`*.yml` (any case), not hidden.
pub fn is_job_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') {
        return false;
    }
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// The job name of a file: its name without the extension.
pub fn job_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every job file directly inside `dir`, sorted by job name (then file name).
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>> {
    let unreadable = |source| Error::JobsFolder {
        folder: absolute(dir).display().to_string(),
        source,
    };
    let entries = std::fs::read_dir(dir).map_err(unreadable)?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(unreadable)?;
        let path = entry.path();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false)
            || (path.is_file() && !path.is_dir());
        if is_file && is_job_file(&path) {
            files.push(path);
        }
    }
    files.sort_by(|a, b| (job_name(a), a.file_name()).cmp(&(job_name(b), b.file_name())));
    Ok(files)
}

/// Finds `name_or_path` for `run-job`: an existing file path, or a job name in `jobs_dir`.
pub fn resolve(jobs_dir: &Path, name_or_path: &str) -> Result<PathBuf> {
    let as_path = Path::new(name_or_path);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let all = discover(jobs_dir)?;
    let mut found: Vec<PathBuf> = all
        .iter()
        .filter(|p| job_name(p) == name_or_path)
        .cloned()
        .collect();
    match found.len() {
        0 => Err(unknown_job(
            jobs_dir,
            name_or_path,
            all.iter().map(|p| job_name(p)),
        )),
        1 => Ok(found.remove(0)),
        _ => Err(Error::Config(format!(
            "job name `{name_or_path}` is ambiguous: {}",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The error for a job name that names nothing, with the closest of `known` as a
/// suggestion.
pub fn unknown_job(jobs_dir: &Path, name: &str, known: impl IntoIterator<Item = String>) -> Error {
    Error::UnknownJob {
        name: name.to_string(),
        folder: absolute(jobs_dir).display().to_string(),
        suggestion: closest(name, known),
    }
}

/// The name in `known` a mistyped `name` most likely meant: at most two edits away (one for
/// short names), the nearest first.
fn closest(name: &str, known: impl IntoIterator<Item = String>) -> Option<String> {
    let limit = if name.chars().count() <= 4 { 1 } else { 2 };
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(name, &k), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// Lower-case hexadecimal of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
