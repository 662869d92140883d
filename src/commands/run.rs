//! `elt run` and `elt run-job`: load job files, run them one after another, report, and write
//! the metrics file.

use std::path::PathBuf;
use std::time::Instant;

use crate::cli::RunArgs;
use crate::error::Result;
use crate::job;
use crate::logging::JobScope;
use crate::pipeline::{RunOptions, run_job};
use crate::progress::{self, JobProgress};
use crate::report::{JobReport, RunReport, Status};
use crate::settings::Settings;
use crate::state::StateStore;

/// Remembers an invalid job file's failure in Redis, so `status` and the metrics show it like
/// any other failure. Best effort: the run goes on without Redis.
fn record_invalid_file(settings: &Settings, job: &str, message: &str) {
    let recorded = StateStore::connect(&settings.redis_url, &settings.redis_prefix)
        .and_then(|mut s| s.record_failure(job, message));
    if let Err(e) = recorded {
        log::warn!(
            "could not record the failure in Redis: {}",
            crate::error::chain(&e)
        );
    }
}

/// Runs `files` in order; a job that cannot be read or fails does not stop the others.
fn run_files(settings: &Settings, files: &[PathBuf], args: &RunArgs) -> RunReport {
    let show_progress = progress::wanted(args.json, settings.quiet);
    let mut jobs = Vec::with_capacity(files.len());
    for path in files {
        let name = job::job_name(path);
        let _scope = JobScope::enter(&name);
        log::info!("starting{}", if args.dry_run { " (dry run)" } else { "" });
        let report = match job::load(path) {
            Ok(j) => {
                log::debug!("job file {} (sha256 {})", path.display(), j.file_digest);
                // dropped at the end of this arm: the line is cleared before the next job
                let display = show_progress.then(|| JobProgress::start(&name));
                let opts = RunOptions {
                    dry_run: args.dry_run,
                    force_deletes: args.force_deletes,
                    progress: display
                        .as_ref()
                        .map(JobProgress::observer)
                        .unwrap_or_default(),
                };
                run_job(settings, &j, &opts)
            }
            Err(problems) => {
                let text = problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                log::error!("failed: invalid job file: {text}");
                let mut r = JobReport::new(&name);
                r.status = Status::Failed;
                r.error = Some(format!("invalid job file: {text}"));
                if !args.dry_run {
                    record_invalid_file(settings, &name, r.error.as_deref().unwrap_or_default());
                }
                r
            }
        };
        jobs.push(report);
    }
    RunReport { jobs }
}

/// With `-v`: the settings in force, passwords masked, for "why did it do that" questions.
fn log_settings(s: &Settings) {
    log::debug!(
        "settings: master {}, analytics {}, redis {} (prefix {}), jobs {}, overlap {:?}, \
         lock ttl {:?}, log retention {} day(s), version {}",
        crate::redact::mask(s.master_url().unwrap_or("-")),
        crate::redact::mask(s.analytics_url().unwrap_or("-")),
        crate::redact::mask(&s.redis_url),
        s.redis_prefix,
        s.jobs_dir.display(),
        s.overlap,
        s.lock_ttl,
        s.log_retention_days,
        crate::VERSION
    );
}

fn check_connection_settings(settings: &Settings) -> Result<()> {
    settings.master_url()?;
    settings.analytics_url()?;
    Ok(())
}

pub fn run_all(settings: &Settings, args: &RunArgs) -> Result<i32> {
    let started = Instant::now();
    check_connection_settings(settings)?;
    let files = job::discover(&settings.jobs_dir)
        .map_err(|e| crate::error::Error::Config(crate::error::chain(&e)))?;
    log::info!(
        "run started: {} job(s) in {}",
        files.len(),
        settings.jobs_dir.display()
    );
    log_settings(settings);
    let report = run_files(settings, &files, args);
    finish(settings, report, args, true, started)
}

pub fn run_one(settings: &Settings, name: &str, args: &RunArgs) -> Result<i32> {
    let started = Instant::now();
    check_connection_settings(settings)?;
    let path = job::resolve(&settings.jobs_dir, name)?;
    log_settings(settings);
    let report = run_files(settings, &[path], args);
    finish(settings, report, args, false, started)
}

/// `whole_run`: the report covers every job file (see `metrics::snapshot`).
fn finish(
    settings: &Settings,
    report: RunReport,
    args: &RunArgs,
    whole_run: bool,
    started: Instant,
) -> Result<i32> {
    let failed = report
        .jobs
        .iter()
        .filter(|j| j.status == Status::Failed)
        .count();
    log::info!(
        "run finished: {} job(s), {} failed",
        report.jobs.len(),
        failed
    );
    if let Some(path) = &args.metrics_file {
        if args.dry_run {
            log::info!("dry run: metrics file {} left as it was", path.display());
        } else if let Err(e) =
            crate::metrics::write_for_run(path, settings, &report, whole_run, started.elapsed())
        {
            // the jobs' outcome stands; a stale file shows in node_textfile_mtime_seconds
            log::error!("metrics not written: {}", crate::error::chain(&e));
        }
    }
    report.print(args.json, args.dry_run);
    Ok(report.exit_code())
}
