//! `--metrics-file`: the Prometheus text file (for node_exporter's textfile collector) written
//! atomically after each run, with per-job and run-level series.
//!
//! The file always describes every job elt knows: `run-job` replaces only its own job's series
//! and keeps the others from the previous file, so a manual run never makes an alert go quiet
//! because a series disappeared. A failed job keeps its last success time (from Redis, or from
//! the previous file when Redis is unreachable).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result, io};
use crate::report::{JobReport, RunReport, Status};
use crate::state::{StateStore, now_ms};

/// What the file says about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMetrics {
    pub status: Status,
    pub rows_read: u64,
    pub rows_upserted: u64,
    pub rows_unchanged: u64,
    pub rows_deleted: u64,
    /// Rows M has and A lacked although the watermark said they were delivered, copied by
    /// drift repair.
    pub rows_repaired: u64,
    pub duration_seconds: f64,
    /// When the job last ran (any outcome), Unix seconds.
    pub last_run_seconds: f64,
    /// When the job last succeeded, Unix seconds; `None` if never (written as 0, so an alert on
    /// its age fires for a job that has never succeeded).
    pub last_success_seconds: Option<f64>,
    /// Failed runs recorded for the job since its state was last reset.
    pub failures_total: u64,
}

/// Facts about a job that outlive one run; the caller reads them from Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Remembered {
    pub last_success_seconds: Option<f64>,
    pub failures_total: Option<u64>,
}

/// Run-level totals of the invocation that wrote the file.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    pub finished_seconds: f64,
    pub duration_seconds: f64,
    pub jobs_ok: u64,
    pub jobs_failed: u64,
    pub jobs_skipped: u64,
    pub rows_read: u64,
    pub rows_upserted: u64,
    pub rows_unchanged: u64,
    pub rows_deleted: u64,
    pub rows_repaired: u64,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub jobs: BTreeMap<String, JobMetrics>,
    pub run: Option<RunMetrics>,
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
    }
}

fn parse_status(s: &str) -> Option<Status> {
    match s {
        "ok" => Some(Status::Ok),
        "failed" => Some(Status::Failed),
        "skipped" => Some(Status::Skipped),
        _ => None,
    }
}

const STATUSES: [Status; 3] = [Status::Ok, Status::Failed, Status::Skipped];

/// Builds the new file's content from this run's report, what Redis remembers of each job
/// (`remembered(job)`), and the previous file (`previous`, if any).
///
/// `whole_run`: the report covers every job file (`elt run`), so jobs missing from it (files
/// removed) are dropped; otherwise (`run-job`) other jobs are kept from `previous`.
pub fn snapshot(
    report: &RunReport,
    now_seconds: f64,
    run_duration_seconds: f64,
    previous: Option<&Snapshot>,
    whole_run: bool,
    mut remembered: impl FnMut(&str) -> Remembered,
) -> Snapshot {
    let mut jobs = BTreeMap::new();
    if !whole_run {
        if let Some(p) = previous {
            jobs.extend(p.jobs.clone());
        }
    }
    for j in &report.jobs {
        let before = previous.and_then(|p| p.jobs.get(&j.job));
        let facts = remembered(&j.job);
        jobs.insert(j.job.clone(), job_metrics(j, now_seconds, before, facts));
    }
    let count = |s: Status| report.jobs.iter().filter(|j| j.status == s).count() as u64;
    let sum = |f: fn(&JobReport) -> u64| report.jobs.iter().map(f).sum::<u64>();
    Snapshot {
        jobs,
        run: Some(RunMetrics {
            finished_seconds: now_seconds,
            duration_seconds: run_duration_seconds,
            jobs_ok: count(Status::Ok),
            jobs_failed: count(Status::Failed),
            jobs_skipped: count(Status::Skipped),
            rows_read: sum(|j| j.rows_read),
            rows_upserted: sum(|j| j.rows_upserted),
            rows_unchanged: sum(|j| j.rows_unchanged),
            rows_deleted: sum(|j| j.rows_deleted),
            rows_repaired: sum(|j| j.rows_repaired),
        }),
    }
}

fn job_metrics(
    j: &JobReport,
    now_seconds: f64,
    before: Option<&JobMetrics>,
    facts: Remembered,
) -> JobMetrics {
    let last_success_seconds = match j.status {
        Status::Ok => facts.last_success_seconds.or(Some(now_seconds)),
        // keep the previous success: Redis first, then the previous file
        Status::Failed | Status::Skipped => facts
            .last_success_seconds
            .or(before.and_then(|b| b.last_success_seconds)),
    };
    let failed_now = u64::from(j.status == Status::Failed);
    let failures_total = match facts.failures_total {
        Some(n) => n,
        // Redis unreachable: count on from the previous file
        None => before.map_or(0, |b| b.failures_total) + failed_now,
    };
    JobMetrics {
        status: j.status,
        rows_read: j.rows_read,
        rows_upserted: j.rows_upserted,
        rows_unchanged: j.rows_unchanged,
        rows_deleted: j.rows_deleted,
        rows_repaired: j.rows_repaired,
        duration_seconds: j.duration_ms as f64 / 1000.0,
        last_run_seconds: now_seconds,
        last_success_seconds,
        failures_total,
    }
}

/// Escapes a label value as the text format requires: `\`, `"` and line feeds.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn unescape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A number as the text format writes it (Rust's `Display` for `f64` never uses exponents).
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".into()
    }
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        self.out.push_str(&format!("# HELP {name} {help}\n"));
        self.out.push_str(&format!("# TYPE {name} {kind}\n"));
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            self.out.push('{');
            self.out.push_str(&parts.join(","));
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&num(value));
        self.out.push('\n');
    }
}

type JobValue = fn(&JobMetrics) -> f64;

/// Per-job families: name, type, help, value.
const JOB_FAMILIES: &[(&str, &str, &str, JobValue)] = &[
    (
        "elt_job_up",
        "gauge",
        "1 if the job's last run succeeded or was skipped because another runner held it, 0 if it failed.",
        |m| f64::from(u8::from(m.status != Status::Failed)),
    ),
    (
        "elt_job_rows_read",
        "gauge",
        "Rows returned by SELECT_SOURCE_SQL in the job's last run.",
        |m| m.rows_read as f64,
    ),
    (
        "elt_job_rows_upserted",
        "gauge",
        "Rows written to A by the job's last run.",
        |m| m.rows_upserted as f64,
    ),
    (
        "elt_job_rows_unchanged",
        "gauge",
        "Rows read but left alone because their hash was unchanged, in the job's last run.",
        |m| m.rows_unchanged as f64,
    ),
    (
        "elt_job_rows_deleted",
        "gauge",
        "Rows deleted from A because M no longer has them, in the job's last run.",
        |m| m.rows_deleted as f64,
    ),
    (
        "elt_job_rows_repaired",
        "gauge",
        "Rows M has and A lacked although the watermark said they were delivered, copied by drift repair in the job's last run.",
        |m| m.rows_repaired as f64,
    ),
    (
        "elt_job_duration_seconds",
        "gauge",
        "Wall time of the job's last run.",
        |m| m.duration_seconds,
    ),
    (
        "elt_job_last_run_timestamp_seconds",
        "gauge",
        "Unix time at which the job last ran (end of that invocation), whatever its outcome.",
        |m| m.last_run_seconds,
    ),
    (
        "elt_job_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the job's last successful run; 0 if it never succeeded.",
        |m| m.last_success_seconds.unwrap_or(0.0),
    ),
    (
        "elt_job_failures_total",
        "counter",
        "Failed runs of the job since its state was last reset.",
        |m| m.failures_total as f64,
    ),
];

type RunValue = fn(&RunMetrics) -> f64;

const RUN_FAMILIES: &[(&str, &str, &str, RunValue)] = &[
    (
        "elt_run_timestamp_seconds",
        "gauge",
        "Unix time at which the last elt run or run-job invocation finished.",
        |r| r.finished_seconds,
    ),
    (
        "elt_run_duration_seconds",
        "gauge",
        "Wall time of the last invocation.",
        |r| r.duration_seconds,
    ),
    (
        "elt_run_rows_read",
        "gauge",
        "Rows read by all jobs of the last invocation.",
        |r| r.rows_read as f64,
    ),
    (
        "elt_run_rows_upserted",
        "gauge",
        "Rows written to A by all jobs of the last invocation.",
        |r| r.rows_upserted as f64,
    ),
    (
        "elt_run_rows_unchanged",
        "gauge",
        "Rows left alone by all jobs of the last invocation.",
        |r| r.rows_unchanged as f64,
    ),
    (
        "elt_run_rows_deleted",
        "gauge",
        "Rows deleted from A by all jobs of the last invocation.",
        |r| r.rows_deleted as f64,
    ),
    (
        "elt_run_rows_repaired",
        "gauge",
        "Rows repaired by all jobs of the last invocation.",
        |r| r.rows_repaired as f64,
    ),
];

/// The Prometheus text exposition of a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    for (name, kind, help, value) in JOB_FAMILIES {
        f.head(name, kind, help);
        for (job, m) in &s.jobs {
            f.sample(name, &[("job", job)], value(m));
        }
    }
    f.head(
        "elt_job_status",
        "gauge",
        "Outcome of the job's last run: 1 for the status label that applies, 0 for the others.",
    );
    for (job, m) in &s.jobs {
        for st in STATUSES {
            f.sample(
                "elt_job_status",
                &[("job", job), ("status", status_name(st))],
                f64::from(u8::from(m.status == st)),
            );
        }
    }
    if let Some(r) = &s.run {
        f.head(
            "elt_run_jobs",
            "gauge",
            "Jobs of the last invocation, by outcome.",
        );
        for (st, n) in [
            (Status::Ok, r.jobs_ok),
            (Status::Failed, r.jobs_failed),
            (Status::Skipped, r.jobs_skipped),
        ] {
            f.sample("elt_run_jobs", &[("status", status_name(st))], n as f64);
        }
        for (name, kind, help, value) in RUN_FAMILIES {
            f.head(name, kind, help);
            f.sample(name, &[], value(r));
        }
    }
    out
}

type Labels = Vec<(String, String)>;

/// Splits `name{k="v",...} value` into its parts, undoing label escapes.
fn parse_sample(line: &str) -> Option<(&str, Labels, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.trim(), Vec::new(), value));
    };
    let mut body = rest.trim_end().strip_suffix('}')?;
    let mut labels = Vec::new();
    loop {
        body = body.trim_start_matches([',', ' ']);
        if body.is_empty() {
            return Some((name, labels, value));
        }
        let (key, after) = body.split_once("=\"")?;
        // the closing quote is the first one not escaped by a backslash
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            }
        }
        let end = end?;
        labels.push((key.trim().to_string(), unescape_label(&after[..end])));
        body = &after[end + 1..];
    }
}

/// Reads back a file this module wrote, leniently: lines it does not understand are skipped,
/// so a damaged or foreign file never stops a run.
pub fn parse(text: &str) -> Snapshot {
    let mut jobs: BTreeMap<String, JobMetrics> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let Some(job) = label("job") else { continue };
        let m = jobs.entry(job.to_string()).or_insert(JobMetrics {
            status: Status::Ok,
            rows_read: 0,
            rows_upserted: 0,
            rows_unchanged: 0,
            rows_deleted: 0,
            rows_repaired: 0,
            duration_seconds: 0.0,
            last_run_seconds: 0.0,
            last_success_seconds: None,
            failures_total: 0,
        });
        let count = value.max(0.0) as u64;
        match name {
            "elt_job_status" if value == 1.0 => {
                if let Some(s) = label("status").and_then(parse_status) {
                    m.status = s;
                }
            }
            "elt_job_rows_read" => m.rows_read = count,
            "elt_job_rows_upserted" => m.rows_upserted = count,
            "elt_job_rows_unchanged" => m.rows_unchanged = count,
            "elt_job_rows_deleted" => m.rows_deleted = count,
            "elt_job_rows_repaired" => m.rows_repaired = count,
            "elt_job_duration_seconds" => m.duration_seconds = value,
            "elt_job_last_run_timestamp_seconds" => m.last_run_seconds = value,
            "elt_job_last_success_timestamp_seconds" => {
                m.last_success_seconds = (value > 0.0).then_some(value)
            }
            "elt_job_failures_total" => m.failures_total = count,
            _ => {}
        }
    }
    Snapshot { jobs, run: None }
}

/// The previous file, if there is a readable one.
pub fn read_previous(path: &Path) -> Option<Snapshot> {
    std::fs::read_to_string(path).ok().map(|t| parse(&t))
}

/// Replaces `path` with `content` atomically: a temporary file in the same folder (so the
/// rename cannot cross file systems), made readable by node_exporter, then renamed over it.
/// The collector only reads `*.prom`, so it never sees the half-written temporary file.
pub fn write_atomically(path: &Path, content: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let what = |w: &str| format!("{w} the metrics file {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".elt-metrics-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io(what("creating a temporary file beside")))?;
    tmp.write_all(content.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(io(what("writing")))?;
    // tempfile creates 0600; the collector usually runs as another user
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(io(what("setting the permissions of")))?;
    }
    tmp.persist(path).map_err(|e| Error::Io {
        what: what("renaming into place"),
        source: e.error,
    })?;
    Ok(())
}

/// Writes the metrics file after a run: this run's report, each job's last success and failure
/// count from Redis (or, if Redis is unreachable, from the previous file), other jobs kept
/// from the previous file for `run-job`.
pub fn write_for_run(
    path: &Path,
    mut store: Option<&mut StateStore>,
    report: &RunReport,
    whole_run: bool,
    duration: std::time::Duration,
) -> Result<()> {
    let previous = read_previous(path);
    let now = now_ms() as f64 / 1000.0;
    let snap = snapshot(
        report,
        now,
        duration.as_secs_f64(),
        previous.as_ref(),
        whole_run,
        |job| match store.as_mut().map(|s| s.meta(job)) {
            Some(Ok(Some(m))) => Remembered {
                last_success_seconds: m.last_success_ms.map(|ms| ms as f64 / 1000.0),
                failures_total: Some(m.failures),
            },
            _ => Remembered::default(),
        },
    );
    write_atomically(path, &render(&snap))?;
    log::debug!("metrics written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(job: &str, status: Status, read: u64) -> JobReport {
        let mut r = JobReport::new(job);
        r.status = status;
        r.rows_read = read;
        r.rows_upserted = read / 2;
        r.rows_unchanged = read - read / 2;
        r.duration_ms = 1500;
        r
    }

    #[test]
    fn label_values_are_escaped_and_read_back() {
        let odd = "we\"ird\\na\nme";
        assert_eq!(escape_label(odd), "we\\\"ird\\\\na\\nme");
        assert_eq!(unescape_label(&escape_label(odd)), odd);
        let line = format!(
            "elt_job_status{{job=\"{}\",status=\"ok\"}} 1",
            escape_label(odd)
        );
        let (name, labels, v) = parse_sample(&line).unwrap();
        assert_eq!(name, "elt_job_status");
        assert_eq!(labels[0], ("job".into(), odd.into()));
        assert_eq!(labels[1], ("status".into(), "ok".into()));
        assert_eq!(v, 1.0);
    }

    #[test]
    fn render_then_parse_round_trips_job_series() {
        let run = RunReport {
            jobs: vec![
                report("a", Status::Ok, 10),
                report("b,\"x\"", Status::Failed, 0),
            ],
        };
        let s = snapshot(&run, 1000.5, 2.0, None, true, |job| Remembered {
            last_success_seconds: (job == "a").then_some(999.0),
            failures_total: Some(u64::from(job != "a") * 3),
        });
        let back = parse(&render(&s));
        assert_eq!(back.jobs, s.jobs);
        assert_eq!(back.jobs["b,\"x\""].status, Status::Failed);
        assert_eq!(back.jobs["b,\"x\""].failures_total, 3);
        assert_eq!(back.jobs["b,\"x\""].last_success_seconds, None);
    }

    #[test]
    fn run_job_keeps_other_jobs_and_failed_job_keeps_last_success() {
        let first = RunReport {
            jobs: vec![report("a", Status::Ok, 1), report("b", Status::Ok, 2)],
        };
        let prev = snapshot(&first, 100.0, 1.0, None, true, |_| Remembered::default());
        assert_eq!(prev.jobs["a"].last_success_seconds, Some(100.0));
        // Redis is unreachable now: the failed job keeps its success time from the file
        let second = RunReport {
            jobs: vec![report("a", Status::Failed, 0)],
        };
        let next = snapshot(&second, 200.0, 1.0, Some(&prev), false, |_| {
            Remembered::default()
        });
        assert_eq!(next.jobs.len(), 2, "run-job keeps b");
        assert_eq!(next.jobs["a"].last_success_seconds, Some(100.0));
        assert_eq!(next.jobs["a"].failures_total, 1);
        assert_eq!(next.jobs["b"], prev.jobs["b"]);
        // a whole run drops jobs whose files are gone
        let third = snapshot(&second, 300.0, 1.0, Some(&next), true, |_| {
            Remembered::default()
        });
        assert_eq!(third.jobs.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(third.jobs["a"].failures_total, 2);
    }

    #[test]
    fn written_atomically_and_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("elt.prom");
        write_atomically(&path, "x 1\n").unwrap();
        write_atomically(&path, "x 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x 2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["elt.prom"], "no temporary file left behind");
    }
}
