//! Log files: `elt.log` (info and up; debug with `-v`) and `error.log` (errors), every job line
//! tagged; warnings on standard error (info with `-v`, errors only with `-q`); and daily
//! rotation: at startup a file last written on an earlier day (UTC) becomes
//! `NAME.YYYY-MM-DD`, and rotated files older than the retention are deleted.
//!
//! Rotation happens at startup because elt is a one-shot program started every few minutes:
//! no process lives across midnight for long, so no signal or copy-and-truncate is needed,
//! and the current day's files keep the names the spec gives them.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::settings::Settings;

static CURRENT_JOB: RwLock<Option<String>> = RwLock::new(None);

/// The log target of records that the user is told about elsewhere (a job's summary line on
/// standard output, the fatal error `main` prints): they go to the files only, so nothing is
/// said twice on the terminal or in cron's mail.
pub const REPORTED: &str = "elt::reported";

/// The files that rotate.
pub const LOG_FILES: [&str; 2] = ["elt.log", "error.log"];

/// Tags every log line written until the guard drops with `job`.
pub struct JobScope;

impl JobScope {
    pub fn enter(job: &str) -> JobScope {
        if let Ok(mut g) = CURRENT_JOB.write() {
            *g = Some(job.to_string());
        }
        JobScope
    }
}

impl Drop for JobScope {
    fn drop(&mut self) {
        if let Ok(mut g) = CURRENT_JOB.write() {
            *g = None;
        }
    }
}

fn current_job() -> Option<String> {
    CURRENT_JOB.read().ok().and_then(|g| g.clone())
}

/// How logging is set up.
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub dir: PathBuf,
    /// Rotated files older than this many days are deleted; 0 keeps them all.
    pub retention_days: u32,
    /// `-v` count: 1 adds debug lines to elt.log and info lines to standard error.
    pub verbose: u8,
    /// `-q`: only errors on standard error.
    pub quiet: bool,
}

impl LogOptions {
    pub fn from_settings(s: &Settings) -> LogOptions {
        LogOptions {
            dir: s.log_dir.clone(),
            retention_days: s.log_retention_days,
            verbose: s.verbose,
            quiet: s.quiet,
        }
    }

    /// Level written to elt.log.
    pub fn file_level(&self) -> log::LevelFilter {
        match self.verbose {
            0 => log::LevelFilter::Info,
            1 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }

    /// Level written to standard error.
    pub fn stderr_level(&self) -> log::LevelFilter {
        match (self.quiet, self.verbose) {
            (true, _) => log::LevelFilter::Error,
            (false, 0) => log::LevelFilter::Warn,
            (false, 1) => log::LevelFilter::Info,
            (false, _) => log::LevelFilter::Debug,
        }
    }
}

/// Sets up logging for a command that has settings (`-v`, `-q`, retention, folder).
pub fn init(settings: &Settings) -> Result<()> {
    init_with(&LogOptions::from_settings(settings))
}

/// Sets up the two files in `dir` with the default levels and retention.
pub fn init_files(dir: &Path) -> Result<()> {
    init_with(&LogOptions {
        dir: dir.to_path_buf(),
        retention_days: DEFAULT_RETENTION_DAYS,
        verbose: 0,
        quiet: false,
    })
}

pub const DEFAULT_RETENTION_DAYS: u32 = 14;

/// Rotates, then sets up the two files in `o.dir` (created if missing) and standard error.
pub fn init_with(o: &LogOptions) -> Result<()> {
    let dir = &o.dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Config(format!(
            "cannot create the log folder {}: {e}",
            dir.display()
        ))
    })?;
    let rotation = rotate(dir, SystemTime::now(), o.retention_days);
    let open = |name: &str| {
        fern::log_file(dir.join(name))
            .map_err(|e| Error::Config(format!("cannot open {}: {e}", dir.join(name).display())))
    };
    let file_format = |out: fern::FormatCallback, msg: &std::fmt::Arguments, rec: &log::Record| {
        let ts = humantime::format_rfc3339_millis(SystemTime::now());
        let text = one_line(&crate::redact::scrub(&msg.to_string()));
        match current_job() {
            Some(job) => out.finish(format_args!("{ts} {:<5} [{job}] {text}", rec.level())),
            None => out.finish(format_args!("{ts} {:<5} {text}", rec.level())),
        }
    };
    let (file_level, stderr_level) = (o.file_level(), o.stderr_level());
    fern::Dispatch::new()
        // libraries only from warnings up: drivers log every statement (with row values) and
        // the SQL parser every token at debug; `-v` is about what elt does
        .level(log::LevelFilter::Warn)
        .level_for("elt", file_level.max(stderr_level))
        .chain(
            fern::Dispatch::new()
                .format(file_format)
                .chain(
                    fern::Dispatch::new()
                        .level(file_level)
                        .chain(open("elt.log")?),
                )
                .chain(
                    fern::Dispatch::new()
                        .level(log::LevelFilter::Error)
                        .chain(open("error.log")?),
                ),
        )
        .chain(
            fern::Dispatch::new()
                .level(stderr_level)
                .filter(|meta| meta.target() != REPORTED)
                .format(|out, msg, rec| {
                    let text = crate::redact::scrub(&msg.to_string());
                    let level = match rec.level() {
                        log::Level::Warn => "warning".to_string(),
                        l => l.as_str().to_lowercase(),
                    };
                    match current_job() {
                        Some(job) => out.finish(format_args!("elt: {level}: [{job}] {text}")),
                        None => out.finish(format_args!("elt: {level}: {text}")),
                    }
                })
                // through the progress display, so a warning never lands inside its line
                .chain(fern::Output::call(|rec| {
                    crate::progress::suspend(|| eprintln!("{}", rec.args()));
                })),
        )
        .apply()
        .map_err(|e| Error::Config(format!("cannot set up logging: {e}")))?;
    for note in rotation.rotated.iter().chain(&rotation.removed) {
        log::info!("log rotation: {note}");
    }
    for problem in &rotation.problems {
        log::warn!("log rotation: {problem}");
    }
    Ok(())
}

/// One record, one line: line breaks in a message (SQL, a multi-line error) are written as
/// `\n`, so every line of the file starts with its time, level and job.
fn one_line(text: &str) -> String {
    text.trim_end_matches('\n')
        .replace("\r\n", "\\n")
        .replace('\n', "\\n")
}

/// A path as a log line shows it: absolute, whatever the working directory was.
fn shown(p: &Path) -> String {
    crate::paths::absolute(p).display().to_string()
}

/// What [`rotate`] did.
#[derive(Debug, Default)]
pub struct Rotation {
    pub rotated: Vec<String>,
    pub removed: Vec<String>,
    pub problems: Vec<String>,
}

/// The UTC calendar date of `t` as `YYYY-MM-DD` (times before 1970 count as 1970-01-01).
pub fn utc_date(t: SystemTime) -> String {
    let t = t.max(UNIX_EPOCH);
    let mut stamp = humantime::format_rfc3339_seconds(t).to_string();
    stamp.truncate(10);
    stamp
}

/// `elt.log.2024-05-01` → `2024-05-01` for the files that rotate.
fn rotated_date(file_name: &str) -> Option<&str> {
    LOG_FILES.iter().find_map(|base| {
        let date = file_name.strip_prefix(base)?.strip_prefix('.')?;
        let b = date.as_bytes();
        let ok = b.len() == 10
            && b.iter().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            });
        ok.then_some(date)
    })
}

/// Moves each log file last written before today (UTC) to `NAME.<day of its last write>`, and
/// deletes rotated files older than `retention_days` (0: keep all). Never fails: problems are
/// returned to be logged once logging works.
///
/// Safe with runners starting at the same moment: the file is hard-linked to its new name,
/// which fails if another runner already made it, and only then unlinked; so a rotated file
/// is never overwritten and today's file is never rotated away.
pub fn rotate(dir: &Path, now: SystemTime, retention_days: u32) -> Rotation {
    let mut r = Rotation::default();
    let today = utc_date(now);
    for name in LOG_FILES {
        let path = dir.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let Ok(modified) = meta.modified() else {
            continue;
        };
        let day = utc_date(modified);
        // an empty file holds nothing to keep
        if meta.len() == 0 || day >= today {
            continue;
        }
        let target = dir.join(format!("{name}.{day}"));
        let moved = match std::fs::hard_link(&path, &target) {
            Ok(()) => std::fs::remove_file(&path).map(|_| true),
            // another runner rotated it a moment ago, or a file for that day exists: leave it
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            // a file system without hard links
            Err(_) if !target.exists() => std::fs::rename(&path, &target).map(|_| true),
            Err(e) => Err(e),
        };
        match moved {
            Ok(true) => r
                .rotated
                .push(format!("{name} of {day} moved to {}", shown(&target))),
            Ok(false) => {}
            Err(e) => r
                .problems
                .push(format!("cannot rotate {}: {e}", shown(&path))),
        }
    }
    if retention_days == 0 {
        return r;
    }
    let cutoff = utc_date(
        now.checked_sub(std::time::Duration::from_secs(
            u64::from(retention_days) * 86_400,
        ))
        .unwrap_or(UNIX_EPOCH),
    );
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            r.problems.push(format!("cannot list {}: {e}", shown(dir)));
            return r;
        }
    };
    let mut old: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(rotated_date)
                .is_some_and(|d| d < cutoff.as_str())
        })
        .map(|e| e.path())
        .collect();
    old.sort();
    for p in old {
        match std::fs::remove_file(&p) {
            Ok(()) => r.removed.push(format!(
                "{} removed (older than {retention_days} days)",
                shown(&p)
            )),
            Err(e) => r.problems.push(format!("cannot remove {}: {e}", shown(&p))),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(at(0)), "1970-01-01");
        assert_eq!(utc_date(at(951_782_400)), "2000-02-29");
        assert_eq!(utc_date(at(1_714_564_799)), "2024-05-01");
        assert_eq!(utc_date(at(1_714_564_800)), "2024-05-01");
        assert_eq!(utc_date(at(1_714_608_000)), "2024-05-02");
        assert_eq!(utc_date(UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01");
    }

    #[test]
    fn rotated_names() {
        assert_eq!(rotated_date("elt.log.2024-05-01"), Some("2024-05-01"));
        assert_eq!(rotated_date("error.log.2024-05-01"), Some("2024-05-01"));
        assert_eq!(rotated_date("elt.log"), None);
        assert_eq!(rotated_date("elt.log.2024-05-01.gz"), None);
        assert_eq!(rotated_date("other.log.2024-05-01"), None);
        assert_eq!(rotated_date("elt.log.20x4-05-01"), None);
    }

    fn touch(path: &Path, text: &str, when: SystemTime) {
        std::fs::write(path, text).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(when).unwrap();
    }

    #[test]
    fn rotates_old_files_and_prunes_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let now = at(1_714_608_000 + 3600); // 2024-05-02 01:00 UTC
        touch(&d.join("elt.log"), "yesterday\n", at(1_714_608_000 - 60));
        touch(&d.join("error.log"), "", at(1_714_608_000 - 60));
        touch(&d.join("elt.log.2024-04-01"), "old\n", at(1_711_929_600));
        touch(
            &d.join("error.log.2024-04-25"),
            "recent\n",
            at(1_714_003_200),
        );
        std::fs::write(d.join("unrelated.2000-01-01"), "keep").unwrap();

        let r = rotate(d, now, 14);
        assert!(r.problems.is_empty(), "{r:?}");
        assert_eq!(
            std::fs::read_to_string(d.join("elt.log.2024-05-01")).unwrap(),
            "yesterday\n"
        );
        assert!(!d.join("elt.log").exists());
        assert!(d.join("error.log").exists(), "an empty file is not rotated");
        assert!(!d.join("elt.log.2024-04-01").exists(), "past retention");
        assert!(d.join("error.log.2024-04-25").exists(), "within retention");
        assert!(d.join("unrelated.2000-01-01").exists());
        assert_eq!(r.rotated.len(), 1);
        assert_eq!(r.removed.len(), 1);

        // a second runner at the same moment finds nothing to do
        touch(&d.join("elt.log"), "today\n", now);
        let r2 = rotate(d, now, 14);
        assert!(r2.rotated.is_empty() && r2.removed.is_empty(), "{r2:?}");
        assert_eq!(
            std::fs::read_to_string(d.join("elt.log")).unwrap(),
            "today\n"
        );

        // a rotated file of that day already exists: never overwritten
        touch(&d.join("elt.log"), "late\n", at(1_714_608_000 - 30));
        let r3 = rotate(d, now, 0);
        assert!(r3.rotated.is_empty(), "{r3:?}");
        assert_eq!(
            std::fs::read_to_string(d.join("elt.log.2024-05-01")).unwrap(),
            "yesterday\n"
        );
        assert!(d.join("elt.log").exists());
        // retention 0 keeps every rotated file
        assert!(d.join("error.log.2024-04-25").exists());
    }

    #[test]
    fn multi_line_messages_stay_on_one_line() {
        assert_eq!(one_line("a\nb\r\nc\n"), "a\\nb\\nc");
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn levels_follow_verbosity() {
        let o = |verbose, quiet| LogOptions {
            dir: PathBuf::new(),
            retention_days: 14,
            verbose,
            quiet,
        };
        assert_eq!(o(0, false).file_level(), log::LevelFilter::Info);
        assert_eq!(o(0, false).stderr_level(), log::LevelFilter::Warn);
        assert_eq!(o(1, false).file_level(), log::LevelFilter::Debug);
        assert_eq!(o(1, false).stderr_level(), log::LevelFilter::Info);
        assert_eq!(o(0, true).stderr_level(), log::LevelFilter::Error);
        assert_eq!(o(0, true).file_level(), log::LevelFilter::Info);
    }
}
