//! Job files: finding them in the jobs folder and reading one into a checked `Job`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io};
use crate::validate::{self, Problem};

pub const CREATE_TABLE_SQL: &str = "CREATE_TABLE_SQL";
pub const SELECT_SOURCE_SQL: &str = "SELECT_SOURCE_SQL";
pub const UPSERT_TARGET_SQL: &str = "UPSERT_TARGET_SQL";
pub const SELECT_KEYS_SQL: &str = "SELECT_KEYS_SQL";
pub const TARGET_TABLE: &str = "TARGET_TABLE";
pub const KEY_COLUMNS: &str = "KEY_COLUMNS";
/// Optional: the largest share of the target's rows one run may delete (0 < f ≤ 1).
pub const MAX_DELETE_FRACTION: &str = "MAX_DELETE_FRACTION";
pub const DEFAULT_MAX_DELETE_FRACTION: f64 = 0.5;

/// The keys every job file must have, in the order problems are reported.
pub const REQUIRED_KEYS: [&str; 6] = [
    CREATE_TABLE_SQL,
    SELECT_SOURCE_SQL,
    UPSERT_TARGET_SQL,
    SELECT_KEYS_SQL,
    TARGET_TABLE,
    KEY_COLUMNS,
];

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
    let entries = std::fs::read_dir(dir)
        .map_err(io(format!("cannot read the jobs folder {}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(format!("cannot read the jobs folder {}", dir.display())))?;
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
    let found: Vec<PathBuf> = discover(jobs_dir)?
        .into_iter()
        .filter(|p| job_name(p) == name_or_path)
        .collect();
    match found.len() {
        1 => Ok(found.into_iter().next().unwrap_or_default()),
        0 => Err(Error::UnknownJob(name_or_path.to_string())),
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

/// Reads and checks one job file. All problems come back at once.
pub fn load(path: &Path) -> std::result::Result<Job, Vec<Problem>> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        vec![Problem::new(
            &file,
            "FILE",
            format!("cannot read the file: {e}"),
        )]
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| vec![Problem::new(&file, "FILE", "the file is not valid UTF-8")])?;
    let (fields, mut problems) = validate::parse_fields(&file, &text);
    problems.extend(validate::check_rules(&file, &fields));
    // warnings, notes and cross-statement findings are for `validate` to show; only errors
    // in a statement or the file itself stop a job (see `Problem::blocks_run`)
    if problems.iter().any(|p| p.is_error() && p.blocks_run) {
        return Err(problems);
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let definition = definition_digest(
        [
            fields.create_table_sql.as_deref().unwrap_or_default(),
            fields.select_source_sql.as_deref().unwrap_or_default(),
            fields.upsert_target_sql.as_deref().unwrap_or_default(),
            fields.select_keys_sql.as_deref().unwrap_or_default(),
        ],
        fields.target_table.as_deref().unwrap_or_default(),
        fields.key_columns.as_deref().unwrap_or_default(),
    );
    Ok(Job {
        name: job_name(path),
        path: path.to_path_buf(),
        create_table_sql: fields.create_table_sql.unwrap_or_default(),
        select_source_sql: fields.select_source_sql.unwrap_or_default(),
        upsert_target_sql: fields.upsert_target_sql.unwrap_or_default(),
        select_keys_sql: fields.select_keys_sql.unwrap_or_default(),
        target_table: fields.target_table.unwrap_or_default(),
        key_columns: fields.key_columns.unwrap_or_default(),
        max_delete_fraction: fields
            .max_delete_fraction
            .unwrap_or(DEFAULT_MAX_DELETE_FRACTION),
        file_digest: hex(&digest),
        definition,
    })
}

/// Lower-case hexadecimal of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
