//! Log files: `elt.log` (info and up) and `error.log` (errors), every job line tagged.

use std::path::Path;
use std::sync::RwLock;

use crate::error::{Error, Result};

static CURRENT_JOB: RwLock<Option<String>> = RwLock::new(None);

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

/// Sets up the two files in `dir` (created if missing) and warnings on standard error.
pub fn init_files(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Config(format!(
            "cannot create the log folder {}: {e}",
            dir.display()
        ))
    })?;
    let open = |name: &str| {
        fern::log_file(dir.join(name))
            .map_err(|e| Error::Config(format!("cannot open {}: {e}", dir.join(name).display())))
    };
    let file_format = |out: fern::FormatCallback, msg: &std::fmt::Arguments, rec: &log::Record| {
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let text = crate::redact::scrub(&msg.to_string());
        match current_job() {
            Some(job) => out.finish(format_args!("{ts} {:<5} [{job}] {text}", rec.level())),
            None => out.finish(format_args!("{ts} {:<5} {text}", rec.level())),
        }
    };
    fern::Dispatch::new()
        .level(log::LevelFilter::Info)
        .level_for("tokio_postgres", log::LevelFilter::Warn)
        .level_for("postgres", log::LevelFilter::Warn)
        .level_for("rustls", log::LevelFilter::Warn)
        .chain(
            fern::Dispatch::new()
                .format(file_format)
                .chain(
                    fern::Dispatch::new()
                        .level(log::LevelFilter::Info)
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
                .level(log::LevelFilter::Warn)
                .format(|out, msg, rec| {
                    let text = crate::redact::scrub(&msg.to_string());
                    match current_job() {
                        Some(job) => out.finish(format_args!(
                            "elt: {}: [{job}] {text}",
                            rec.level().as_str().to_lowercase()
                        )),
                        None => out.finish(format_args!(
                            "elt: {}: {text}",
                            rec.level().as_str().to_lowercase()
                        )),
                    }
                })
                .chain(std::io::stderr()),
        )
        .apply()
        .map_err(|e| Error::Config(format!("cannot set up logging: {e}")))
}
