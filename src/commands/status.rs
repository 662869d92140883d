//! `elt status`: per job, what Redis remembers: last success, watermark, rows, last error.

use serde::Serialize;

use crate::error::Result;
use crate::job;
use crate::settings::Settings;
use crate::state::{StateStore, now_ms};

#[derive(Debug, Serialize)]
struct JobStatus {
    job: String,
    /// `ok`, `failing` (last run failed), `never run`, or `orphan` (state without a file)
    state: String,
    last_success: Option<String>,
    last_success_age_s: Option<u64>,
    watermark: Option<String>,
    rows_tracked: Option<i64>,
    last_error: Option<String>,
    last_error_at: Option<String>,
    file_changed_since_last_run: bool,
    has_file: bool,
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

pub fn status(settings: &Settings, json: bool) -> Result<i32> {
    let mut store = StateStore::connect(&settings.redis_url, &settings.redis_prefix)?;
    let files = job::discover(&settings.jobs_dir).unwrap_or_default();
    let mut names: Vec<(String, Option<std::path::PathBuf>)> = files
        .iter()
        .map(|p| (job::job_name(p), Some(p.clone())))
        .collect();
    for n in store.jobs_with_state()? {
        if !names.iter().any(|(name, _)| *name == n) {
            names.push((n, None));
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (name, path) in names {
        let meta = store.meta(&name)?;
        let digest = path.as_ref().and_then(|p| std::fs::read(p).ok()).map(|b| {
            use sha2::Digest;
            job::hex(&sha2::Sha256::digest(&b))
        });
        let m = meta.unwrap_or_default();
        let failing = match (m.last_error_ms, m.last_success_ms) {
            (Some(e), Some(s)) => e > s,
            (Some(_), None) => true,
            _ => false,
        };
        let state = if path.is_none() {
            "orphan"
        } else if failing {
            "failing"
        } else if m.last_success_ms.is_some() {
            "ok"
        } else {
            "never run"
        };
        out.push(JobStatus {
            job: name,
            state: state.into(),
            last_success: m.last_success_ms.map(rfc3339),
            last_success_age_s: m.last_success_ms.map(|t| now_ms().saturating_sub(t) / 1000),
            watermark: m.watermark.clone(),
            rows_tracked: m.rows,
            last_error: m.last_error.clone(),
            last_error_at: m.last_error_ms.map(rfc3339),
            file_changed_since_last_run: matches!((&digest, &m.file_sha256), (Some(d), Some(s)) if d != s),
            has_file: path.is_some(),
        });
    }
    if json {
        println!("{}", serde_json::json!({ "jobs": out }));
        return Ok(0);
    }
    println!(
        "{:<24} {:<10} {:<22} {:>8} {:<32} {:>10}  last error",
        "JOB", "STATE", "LAST SUCCESS", "AGE", "WATERMARK", "ROWS"
    );
    for s in &out {
        println!(
            "{:<24} {:<10} {:<22} {:>8} {:<32} {:>10}  {}{}",
            s.job,
            s.state,
            s.last_success.as_deref().unwrap_or("-"),
            s.last_success_age_s
                .map(|a| format!("{a}s"))
                .unwrap_or("-".into()),
            s.watermark.as_deref().unwrap_or("-"),
            s.rows_tracked.map(|r| r.to_string()).unwrap_or("-".into()),
            s.last_error.as_deref().unwrap_or(""),
            if s.file_changed_since_last_run {
                " (file changed since last run)"
            } else {
                ""
            }
        );
    }
    Ok(0)
}
