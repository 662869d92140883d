//! `elt status`: per job, what Redis remembers (last success, watermark, rows, last error), as
//! a table or one JSON document; flags job files changed since their last successful run and
//! orphans (state in Redis without a job file).

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::jobfile;
use crate::lock;
use crate::settings::Settings;
use crate::state::{Meta, StateStore, now_ms};

#[derive(Debug, Serialize)]
pub struct JobStatus {
    pub job: String,
    /// `ok`, `failing` (the last run failed), `never run`, or `orphan` (state without a file)
    pub state: String,
    pub last_success: Option<String>,
    pub last_success_age_s: Option<u64>,
    pub watermark: Option<String>,
    /// Rows in A after the last successful run, as recorded in the state.
    pub rows_tracked: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Failed runs recorded since the state was last reset.
    pub failures: u64,
    /// The job file's SHA-256 differs from the one of its last successful run.
    pub file_changed_since_last_run: bool,
    /// The job's definition (statements, TARGET_TABLE, KEY_COLUMNS) differs from the one of
    /// its last successful run: the next run re-synchronises it in full.
    pub definition_changed_since_last_run: bool,
    pub has_file: bool,
    /// State in Redis but no job file: `elt reset-state --orphans` removes it.
    pub orphan: bool,
    /// Who is running the job now (holds its lock): `pid P on host H, since T`.
    pub running: Option<String>,
}

/// The JSON document of `status --json`.
#[derive(Serialize)]
struct Report<'a> {
    jobs: &'a [JobStatus],
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// A short age for a table cell: `45s`, `12m05s`, `3h07m`, `2d04h`.
pub fn short_age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// What the job file says now, for comparing with the state.
#[derive(Debug, Clone, Default)]
pub struct FileFacts {
    pub sha256: Option<String>,
    /// the definition fingerprint, when the file is a valid job
    pub definition: Option<String>,
}

impl FileFacts {
    fn read(path: &std::path::Path) -> FileFacts {
        use sha2::Digest;
        let sha256 = std::fs::read(path)
            .ok()
            .map(|b| jobfile::hex(&sha2::Sha256::digest(&b)));
        FileFacts {
            sha256,
            definition: jobfile::load(path).ok().map(|j| j.definition),
        }
    }
}

/// The state of one job, from its file (if any), its meta (if any) and the clock.
pub fn job_status(
    name: &str,
    file: Option<&FileFacts>,
    meta: Option<&Meta>,
    now: u64,
) -> JobStatus {
    let has_file = file.is_some();
    let file_sha256 = file.and_then(|f| f.sha256.as_deref());
    let m = meta.cloned().unwrap_or_default();
    let failing = match (m.last_error_ms, m.last_success_ms) {
        (Some(e), Some(s)) => e > s,
        (Some(_), None) => true,
        _ => false,
    };
    let orphan = !has_file && meta.is_some();
    let state = if orphan {
        "orphan"
    } else if failing {
        "failing"
    } else if m.last_success_ms.is_some() {
        "ok"
    } else {
        "never run"
    };
    JobStatus {
        job: name.to_string(),
        state: state.into(),
        last_success: m.last_success_ms.map(rfc3339),
        last_success_age_s: m.last_success_ms.map(|t| now.saturating_sub(t) / 1000),
        watermark: m.watermark.clone(),
        rows_tracked: m.rows(),
        last_error: m.last_error.clone(),
        last_error_at: m.last_error_ms.map(rfc3339),
        failures: m.failures,
        file_changed_since_last_run: matches!(
            (file_sha256, m.file_sha256.as_deref()),
            (Some(d), Some(s)) if d != s
        ),
        // as the run decides (`FullSync::reason`): state from before definitions were
        // recorded goes by the file's digest
        definition_changed_since_last_run: match (file, &m.definition) {
            (None, _) => false,
            _ if m.last_success_ms.is_none() => false,
            (Some(f), Some(d)) => f.definition.as_deref().is_some_and(|x| x != d),
            (Some(f), None) => f.sha256.is_some() && f.sha256 != m.file_sha256,
        },
        has_file,
        orphan,
        running: None,
    }
}

/// Every job that has a file or state, in name order: (name, file).
pub fn known_jobs(
    settings: &Settings,
    store: &mut StateStore,
) -> Result<Vec<(String, Option<PathBuf>)>> {
    // Without the folder every job with state would look orphaned: refuse instead.
    let files = jobfile::discover(&settings.jobs_dir)?;
    let mut names: Vec<(String, Option<PathBuf>)> = files
        .iter()
        .map(|p| (jobfile::job_name(p), Some(p.clone())))
        .collect();
    for n in store.jobs_with_state()? {
        if !names.iter().any(|(name, _)| *name == n) {
            names.push((n, None));
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

pub fn status(settings: &Settings, json: bool) -> Result<i32> {
    let mut store = StateStore::open(settings.redis_url(), &settings.redis_prefix)?;
    let now = now_ms();
    let mut out = Vec::new();
    let keys = store.keys().clone();
    for (name, path) in known_jobs(settings, &mut store)? {
        let meta = store.meta(&name)?;
        let file = path.as_deref().map(FileFacts::read);
        let mut s = job_status(&name, file.as_ref(), meta.as_ref(), now);
        s.running = lock::holder(store.conn(), &keys, &name)?.map(|h| h.to_string());
        out.push(s);
    }
    if json {
        let doc = serde_json::to_string(&Report { jobs: &out })
            .map_err(|e| Error::Job(format!("writing the status document: {e}")))?;
        println!("{doc}");
    } else {
        print!("{}", table(&out));
    }
    Ok(0)
}

/// One line of an error for a table cell: first line only, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

const HEADER: [&str; 9] = [
    "JOB",
    "STATE",
    "LAST SUCCESS",
    "AGE",
    "WATERMARK",
    "ROWS",
    "FILE",
    "NEXT RUN",
    "LAST ERROR",
];
/// The column of numbers, right-aligned.
const ROWS_COLUMN: usize = 5;

/// One job's cells, in `HEADER` order.
fn cells(s: &JobStatus) -> [String; 9] {
    let dash = || "-".to_string();
    [
        s.job.clone(),
        match s.running {
            Some(_) => format!("{}, running", s.state),
            None => s.state.clone(),
        },
        s.last_success.clone().unwrap_or_else(dash),
        s.last_success_age_s.map(short_age).unwrap_or_else(dash),
        s.watermark.clone().unwrap_or_else(dash),
        s.rows_tracked.map(|r| r.to_string()).unwrap_or_else(dash),
        match (s.has_file, s.file_changed_since_last_run) {
            (false, _) => "missing".into(),
            (true, true) => "changed".into(),
            (true, false) => dash(),
        },
        match s.definition_changed_since_last_run {
            true => "re-sync".into(),
            false => dash(),
        },
        s.last_error
            .as_deref()
            .map(|e| one_line(e, 100))
            .unwrap_or_else(dash),
    ]
}

/// What the marks of the table mean, for those that appear in it.
fn notes(jobs: &[JobStatus]) -> Vec<&'static str> {
    let mut notes = Vec::new();
    if jobs.iter().any(|j| j.file_changed_since_last_run) {
        notes.push("changed: the job file changed since its last successful run");
    }
    if jobs.iter().any(|j| j.definition_changed_since_last_run) {
        notes.push(
            "re-sync: the job's statements, TARGET_TABLE or KEY_COLUMNS changed since its last \
             successful run; the next run re-synchronises it in full (a change of white space \
             or comments alone does not count)",
        );
    }
    if jobs.iter().any(|j| j.orphan) {
        notes
            .push("orphan: state in Redis but no job file; `elt reset-state --orphans` removes it");
    }
    notes
}

/// The human table: columns sized to their content, notes explaining the marks below it.
pub fn table(jobs: &[JobStatus]) -> String {
    if jobs.is_empty() {
        return "no jobs: no job files and no state in Redis\n".into();
    }
    let rows: Vec<[String; 9]> = jobs.iter().map(cells).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = " ".repeat(widths[i].saturating_sub(cell.chars().count()));
            match i {
                _ if i == cells.len() - 1 => l.push_str(cell),
                ROWS_COLUMN => l.push_str(&format!("{pad}{cell}  ")),
                _ => l.push_str(&format!("{cell}{pad}  ")),
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(&HEADER.map(String::from));
    for r in &rows {
        out.push_str(&line(r));
    }
    let notes = notes(jobs);
    let running: Vec<String> = jobs
        .iter()
        .filter_map(|j| Some(format!("running: {} ({})", j.job, j.running.as_ref()?)))
        .collect();
    if !notes.is_empty() || !running.is_empty() {
        out.push('\n');
        for n in notes
            .iter()
            .copied()
            .chain(running.iter().map(String::as_str))
        {
            out.push_str(n);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elt_tracked(n: i64) -> crate::state::Tracked {
        crate::state::Tracked::Rows(n)
    }

    fn meta(success: Option<u64>, error: Option<(u64, &str)>, sha: &str) -> Meta {
        Meta {
            watermark: success.map(|_| "2024-05-01 12:00:00+00".into()),
            tracked: success.map(|_| elt_tracked(42)),
            last_success_ms: success,
            last_error: error.map(|e| e.1.to_string()),
            last_error_ms: error.map(|e| e.0),
            file_sha256: Some(sha.into()),
            definition: Some(format!("def-{sha}")),
            failures: u64::from(error.is_some()),
            ..Meta::default()
        }
    }

    #[test]
    fn states_and_marks() {
        let now = 10_000_000;
        let file = |sha: &str| FileFacts {
            sha256: Some(sha.into()),
            definition: Some(format!("def-{sha}")),
        };
        let ok = job_status(
            "a",
            Some(&file("s1")),
            Some(&meta(Some(now - 65_000), None, "s1")),
            now,
        );
        assert_eq!(ok.state, "ok");
        assert_eq!(ok.last_success_age_s, Some(65));
        assert!(!ok.file_changed_since_last_run && !ok.orphan);

        let changed = job_status(
            "b",
            Some(&file("s2")),
            Some(&meta(Some(1), None, "s1")),
            now,
        );
        assert!(changed.file_changed_since_last_run && changed.definition_changed_since_last_run);

        let failing = job_status(
            "c",
            Some(&file("s1")),
            Some(&meta(Some(1), Some((2, "boom\ndetail")), "s1")),
            now,
        );
        assert_eq!(failing.state, "failing");
        assert_eq!(failing.failures, 1);

        let orphan = job_status("d", None, Some(&meta(Some(1), None, "s1")), now);
        assert_eq!(orphan.state, "orphan");
        assert!(orphan.orphan);

        let new = job_status("e", Some(&file("s1")), None, now);
        assert_eq!(new.state, "never run");

        let t = table(&[ok, changed, failing, orphan, new]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("JOB  STATE"), "{t}");
        assert!(lines[1].contains(" 1m05s "), "{t}");
        assert!(lines[2].contains(" changed "), "{t}");
        assert!(lines[3].ends_with("boom…"), "{t}");
        assert!(
            lines[4].contains(" orphan ") && lines[4].contains(" missing "),
            "{t}"
        );
        assert!(lines[5].contains(" never run "), "{t}");
        assert!(t.contains("reset-state --orphans"), "{t}");
        // columns line up: STATE starts at the same offset on every row
        let col = lines[0].find("STATE").unwrap();
        for l in &lines[1..6] {
            assert_eq!(&l[col - 2..col], "  ", "{t}");
            assert_ne!(l.as_bytes()[col], b' ', "{t}");
        }
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(short_age(5), "5s");
        assert_eq!(short_age(125), "2m05s");
        assert_eq!(short_age(3 * 3600 + 7 * 60), "3h07m");
        assert_eq!(short_age(2 * 86_400 + 4 * 3600), "2d04h");
    }
}
