//! `elt validate`: every rule of every job file, all problems at once. Loading and the
//! rules are `jobfile`'s, the checks against M and A are `connect`'s, showing them is
//! `render`'s.

mod connect;
mod render;

use std::path::PathBuf;

use crate::cli::ValidateFormat;
use crate::db;
use crate::error::{Db, Result, chain, io};
use crate::jobfile::{self, Problem, Severity};
use crate::settings::Settings;

/// The files named on the command line (folders give their job files), and a problem for
/// each name that is neither.
fn collect_files(settings: &Settings, paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Problem>) {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        vec![settings.jobs_dir.clone()]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for root in roots {
        let name = root.display().to_string();
        if root.is_dir() {
            match jobfile::discover(&root) {
                Ok(f) => files.extend(f),
                Err(e) => problems.push(Problem::new(&name, "FILE", chain(&e))),
            }
        } else if root.is_file() {
            files.push(root);
        } else {
            problems.push(Problem::new(&name, "FILE", "no such file or folder"));
        }
    }
    (files, problems)
}

pub fn validate(
    settings: &Settings,
    paths: &[PathBuf],
    connect: bool,
    format: ValidateFormat,
    verbose: bool,
) -> Result<i32> {
    let (files, mut problems) = collect_files(settings, paths);
    let loaded: Vec<jobfile::Loaded> = files.iter().map(|f| jobfile::check(f)).collect();
    // a file with an error is not asked about: the databases would repeat it
    let ready: Vec<&jobfile::Loaded> = loaded.iter().filter(|l| !l.has_errors()).collect();
    for l in &loaded {
        problems.extend(l.problems.iter().cloned());
    }
    if connect && !ready.is_empty() {
        let mut m = db::Conn::connect(settings.master_url()?, Db::Master)?;
        let mut a = db::Conn::connect(settings.analytics_url()?, Db::Analytics)?;
        for l in ready {
            if let Some(job) = &l.job {
                problems.extend(connect::check(job, &l.positions, &mut m, &mut a));
                // its checks also query by text, where the driver's type lookups go
                // unnoticed: the next job's checks start on new sessions
                m.reconnect_next();
                a.reconnect_next();
            }
        }
    }
    if !verbose {
        problems.retain(|p| p.severity != Severity::Note);
    }
    let report = render::Report {
        files: &files,
        problems: &problems,
        connected: connect,
    };
    render::render(format, &report, &mut std::io::stdout().lock())
        .map_err(io("writing the report"))?;
    if report.errors() == 0 {
        return Ok(0);
    }
    eprintln!(
        "elt: {} problem(s) in {} of {} job file(s)",
        report.errors(),
        report.bad_files(),
        files.len()
    );
    Ok(2)
}
