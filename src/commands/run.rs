//! `elt run` and `elt run-job`: load job files, run them one after another over one set of
//! connections, report, and write the metrics file. SIGTERM or SIGINT stops the run between
//! (or inside) jobs: the current job rolls back and later ones are not started.

use std::path::PathBuf;
use std::time::Instant;

use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::jobfile;
use crate::logging::{JobScope, REPORTED};
use crate::paths::absolute;
use crate::pipeline::{RunOptions, Runner};
use crate::progress::{self, JobProgress};
use crate::report::{JobReport, RunReport, Status};
use crate::settings::Settings;

/// Runs `files` in order; a job that cannot be read or fails does not stop the others.
fn run_files(
    runner: &mut Runner<'_>,
    settings: &Settings,
    files: &[PathBuf],
    args: &RunArgs,
) -> RunReport {
    let show_progress = progress::wanted(args.json, settings.quiet);
    let mut jobs = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        if let Some(sig) = crate::stop::requested() {
            log::error!(
                target: REPORTED,
                "stopped by {}: {} job(s) not started",
                sig.name(),
                files.len() - i
            );
            break;
        }
        let name = jobfile::job_name(path);
        let _scope = JobScope::enter(&name);
        log::info!("starting{}", if args.dry_run { " (dry run)" } else { "" });
        let report = match jobfile::load(path) {
            Ok(j) => {
                log::debug!(
                    "job file {} (sha256 {})",
                    absolute(path).display(),
                    j.file_digest
                );
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
                runner.run_job(&j, &opts)
            }
            Err(problems) => {
                let text = problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                log::error!(target: REPORTED, "failed: invalid job file: {text}");
                let mut r = JobReport::new(&name);
                r.status = Status::Failed;
                r.error = Some(format!("invalid job file: {text}"));
                if !args.dry_run {
                    runner.record_failure(&name, r.error.as_deref().unwrap_or_default());
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
        crate::redact::mask(s.redis_url()),
        s.redis_prefix,
        absolute(&s.jobs_dir).display(),
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
    let files = jobfile::discover(&settings.jobs_dir)?;
    log::info!(
        "run started: {} job(s) in {}",
        files.len(),
        absolute(&settings.jobs_dir).display()
    );
    log_settings(settings);
    run(settings, &files, args, true, started)
}

pub fn run_one(settings: &Settings, name: &str, args: &RunArgs) -> Result<i32> {
    let started = Instant::now();
    check_connection_settings(settings)?;
    let path = jobfile::resolve(&settings.jobs_dir, name)?;
    log::info!(
        "run started: job {} from {}",
        jobfile::job_name(&path),
        absolute(&path).display()
    );
    log_settings(settings);
    run(settings, &[path], args, false, started)
}

/// `whole_run`: the report covers every job file (see `metrics::snapshot`).
fn run(
    settings: &Settings,
    files: &[PathBuf],
    args: &RunArgs,
    whole_run: bool,
    started: Instant,
) -> Result<i32> {
    crate::stop::install().map_err(crate::error::io("listening for SIGTERM and SIGINT"))?;
    let mut runner = Runner::new(settings);
    let report = run_files(&mut runner, settings, files, args);
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
    let stopped = crate::stop::requested();
    if let (Some(path), None) = (&args.metrics_file, stopped) {
        if args.dry_run {
            log::info!(
                "dry run: metrics file {} left as it was",
                absolute(path).display()
            );
        } else {
            let state = runner.state().ok();
            if let Err(e) =
                crate::metrics::write_for_run(path, state, &report, whole_run, started.elapsed())
            {
                // the jobs' outcome stands; a stale file shows in node_textfile_mtime_seconds
                log::error!("metrics not written: {}", crate::error::chain(&e));
            }
        }
    }
    report.print(args.json, args.dry_run);
    match stopped {
        Some(sig) => Err(Error::Stopped(sig)),
        None => Ok(report.exit_code()),
    }
}
