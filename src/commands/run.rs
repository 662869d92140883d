//! `elt run` and `elt run-job`: load job files, run them one after another, report.

use std::path::PathBuf;

use crate::error::Result;
use crate::job;
use crate::logging::JobScope;
use crate::pipeline::{RunOptions, run_job};
use crate::report::{JobReport, RunReport, Status};
use crate::settings::Settings;

/// Runs `files` in order; a job that cannot be read or fails does not stop the others.
fn run_files(settings: &Settings, files: &[PathBuf], opts: &RunOptions) -> RunReport {
    let mut jobs = Vec::with_capacity(files.len());
    for path in files {
        let name = job::job_name(path);
        let _scope = JobScope::enter(&name);
        log::info!("starting{}", if opts.dry_run { " (dry run)" } else { "" });
        let report = match job::load(path) {
            Ok(j) => run_job(settings, &j, opts),
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
                r
            }
        };
        jobs.push(report);
    }
    RunReport { jobs }
}

fn check_connection_settings(settings: &Settings) -> Result<()> {
    settings.master_url()?;
    settings.analytics_url()?;
    Ok(())
}

pub fn run_all(settings: &Settings, dry_run: bool, json: bool) -> Result<i32> {
    check_connection_settings(settings)?;
    let files = job::discover(&settings.jobs_dir)
        .map_err(|e| crate::error::Error::Config(crate::error::chain(&e)))?;
    log::info!(
        "run started: {} job(s) in {}",
        files.len(),
        settings.jobs_dir.display()
    );
    let report = run_files(settings, &files, &RunOptions { dry_run });
    finish(report, json, dry_run)
}

pub fn run_one(settings: &Settings, name: &str, dry_run: bool, json: bool) -> Result<i32> {
    check_connection_settings(settings)?;
    let path = job::resolve(&settings.jobs_dir, name)?;
    let report = run_files(settings, &[path], &RunOptions { dry_run });
    finish(report, json, dry_run)
}

fn finish(report: RunReport, json: bool, dry_run: bool) -> Result<i32> {
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
    report.print(json, dry_run);
    Ok(report.exit_code())
}
