//! `elt verify [JOB…]`: compares each job's target in A with what its source gives on M, by
//! digests computed in the databases, and says per job `equal` or `differ` with the counts
//! (or one JSON document). Changes nothing; does not read Redis.

use serde::Serialize;

use crate::db::Conn;
use crate::error::{Db, Result};
use crate::jobfile;
use crate::settings::Settings;
use crate::verify::{JobVerification, Verdict, verify_job};

#[derive(Serialize)]
struct Report {
    jobs: Vec<JobVerification>,
}

pub fn verify(settings: &Settings, names: &[String], json: bool) -> Result<i32> {
    let files = if names.is_empty() {
        jobfile::discover(&settings.jobs_dir)?
    } else {
        names
            .iter()
            .map(|n| jobfile::resolve(&settings.jobs_dir, n))
            .collect::<Result<Vec<_>>>()?
    };
    let (m_url, a_url) = (settings.master_url()?, settings.analytics_url()?);
    let mut conns = Conn::connect(m_url, Db::Master)
        .and_then(|m| Ok((m, Conn::connect(a_url, Db::Analytics)?)));
    let seed = crate::state::new_seed();
    let mut jobs = Vec::with_capacity(files.len());
    for path in &files {
        let name = jobfile::job_name(path);
        let verdict = match (jobfile::load(path), &mut conns) {
            (Err(problems), _) => {
                let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                JobVerification::failed(&name, format!("invalid job file: {}", text.join("; ")))
            }
            (Ok(_), Err(e)) => JobVerification::failed(&name, crate::error::chain(e)),
            (Ok(j), Ok((m, a))) => verify_job(m, a, &j, seed),
        };
        jobs.push(verdict);
    }
    let equal = jobs.iter().all(|j| j.status == Verdict::Equal);
    let report = Report { jobs };
    if json {
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("elt: cannot encode the report: {e}"),
        }
    } else {
        for j in &report.jobs {
            println!("{}", line(j));
        }
        if report.jobs.is_empty() {
            println!("no job files found");
        }
    }
    Ok(if equal { 0 } else { 1 })
}

/// The human line of one job.
fn line(j: &JobVerification) -> String {
    match j.status {
        Verdict::Equal => format!("{}: equal: {} row(s) in M and in A", j.job, j.rows_m),
        Verdict::Failed => format!(
            "{}: failed: {}",
            j.job,
            j.error.as_deref().unwrap_or("unknown error")
        ),
        Verdict::Different => {
            let mut out = format!(
                "{}: differ: {} row(s) differ, {} missing in A, {} extra in A ({} row(s) in M, {} in A)",
                j.job, j.differ, j.missing, j.extra, j.rows_m, j.rows_a
            );
            let s = &j.sample_keys;
            for (what, keys) in [
                ("differ", &s.differ),
                ("missing", &s.missing),
                ("extra", &s.extra),
            ] {
                if !keys.is_empty() {
                    let shown: Vec<String> = keys.iter().map(|k| key(k)).collect();
                    out.push_str(&format!("; {what}: {}", shown.join(", ")));
                }
            }
            out
        }
    }
}

fn key(parts: &[Option<String>]) -> String {
    let shown: Vec<&str> = parts
        .iter()
        .map(|p| p.as_deref().unwrap_or("NULL"))
        .collect();
    match shown.as_slice() {
        [one] => one.to_string(),
        _ => format!("({})", shown.join(", ")),
    }
}
