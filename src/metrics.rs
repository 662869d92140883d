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
use crate::report::{Counts, JobReport, RunReport, Status};
use crate::state::{StateStore, now_ms};

/// What the file says about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMetrics {
    pub status: Status,
    pub rows: Counts,
    pub duration_seconds: f64,
    /// When the job last ran (any outcome), Unix seconds.
    pub last_run_seconds: f64,
    /// When the job last succeeded, Unix seconds; `None` if never (written as 0, so an alert on
    /// its age fires for a job that has never succeeded).
    pub last_success_seconds: Option<f64>,
    /// Failed runs recorded for the job since its state was last reset.
    pub failures_total: u64,
}

impl Default for JobMetrics {
    fn default() -> Self {
        JobMetrics {
            status: Status::Ok,
            rows: Counts::default(),
            duration_seconds: 0.0,
            last_run_seconds: 0.0,
            last_success_seconds: None,
            failures_total: 0,
        }
    }
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
    pub rows: Counts,
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
    STATUSES.into_iter().find(|st| status_name(*st) == s)
}

const STATUSES: [Status; 3] = [Status::Ok, Status::Failed, Status::Skipped];

/// The invocation a snapshot is made for.
pub struct Invocation {
    pub now_seconds: f64,
    pub duration_seconds: f64,
    /// the report covers every job file (`elt run`): jobs missing from it (files removed)
    /// are dropped; otherwise (`run-job`) other jobs are kept from the previous file
    pub whole_run: bool,
}

/// Builds the new file's content from this run's report, what Redis remembers of each job
/// (`remembered(job)`), and the previous file (`previous`, if any).
pub fn snapshot(
    report: &RunReport,
    run: &Invocation,
    previous: Option<&Snapshot>,
    mut remembered: impl FnMut(&str) -> Remembered,
) -> Snapshot {
    let mut jobs = BTreeMap::new();
    if let (false, Some(p)) = (run.whole_run, previous) {
        jobs.extend(p.jobs.clone());
    }
    for j in &report.jobs {
        let before = previous.and_then(|p| p.jobs.get(&j.job));
        let facts = remembered(&j.job);
        jobs.insert(
            j.job.clone(),
            job_metrics(j, run.now_seconds, before, facts),
        );
    }
    let count = |s: Status| report.jobs.iter().filter(|j| j.status == s).count() as u64;
    let mut rows = Counts::default();
    for j in &report.jobs {
        rows.add(&j.rows);
    }
    Snapshot {
        jobs,
        run: Some(RunMetrics {
            finished_seconds: run.now_seconds,
            duration_seconds: run.duration_seconds,
            jobs_ok: count(Status::Ok),
            jobs_failed: count(Status::Failed),
            jobs_skipped: count(Status::Skipped),
            rows,
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
        rows: j.rows,
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

/// One per-job series of the file: written with `get`, read back with `set` (`None`: derived
/// from another series when read).
struct JobFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    get: fn(&JobMetrics) -> f64,
    set: Option<fn(&mut JobMetrics, f64)>,
}

fn count(v: f64) -> u64 {
    v.max(0.0) as u64
}

/// Per-job series, in the order written.
const JOB_FAMILIES: &[JobFamily] = &[
    JobFamily {
        name: "elt_job_up",
        kind: "gauge",
        help: "1 if the job's last run succeeded or was skipped because another runner held it, 0 if it failed.",
        get: |m| f64::from(u8::from(m.status != Status::Failed)),
        set: None,
    },
    JobFamily {
        name: "elt_job_rows_read",
        kind: "gauge",
        help: "Rows returned by SELECT_SOURCE_SQL in the job's last run.",
        get: |m| m.rows.read as f64,
        set: Some(|m, v| m.rows.read = count(v)),
    },
    JobFamily {
        name: "elt_job_rows_upserted",
        kind: "gauge",
        help: "Rows written to A by the job's last run.",
        get: |m| m.rows.upserted as f64,
        set: Some(|m, v| m.rows.upserted = count(v)),
    },
    JobFamily {
        name: "elt_job_rows_unchanged",
        kind: "gauge",
        help: "Rows read but left alone because their hash was unchanged, in the job's last run.",
        get: |m| m.rows.unchanged as f64,
        set: Some(|m, v| m.rows.unchanged = count(v)),
    },
    JobFamily {
        name: "elt_job_rows_deleted",
        kind: "gauge",
        help: "Rows deleted from A because M no longer has them, in the job's last run.",
        get: |m| m.rows.deleted as f64,
        set: Some(|m, v| m.rows.deleted = count(v)),
    },
    JobFamily {
        name: "elt_job_rows_repaired",
        kind: "gauge",
        help: "Rows M has and A lacked although the watermark said they were delivered, copied by drift repair in the job's last run.",
        get: |m| m.rows.repaired as f64,
        set: Some(|m, v| m.rows.repaired = count(v)),
    },
    JobFamily {
        name: "elt_job_duration_seconds",
        kind: "gauge",
        help: "Wall time of the job's last run.",
        get: |m| m.duration_seconds,
        set: Some(|m, v| m.duration_seconds = v),
    },
    JobFamily {
        name: "elt_job_last_run_timestamp_seconds",
        kind: "gauge",
        help: "Unix time at which the job last ran (end of that invocation), whatever its outcome.",
        get: |m| m.last_run_seconds,
        set: Some(|m, v| m.last_run_seconds = v),
    },
    JobFamily {
        name: "elt_job_last_success_timestamp_seconds",
        kind: "gauge",
        help: "Unix time of the job's last successful run; 0 if it never succeeded.",
        get: |m| m.last_success_seconds.unwrap_or(0.0),
        set: Some(|m, v| m.last_success_seconds = (v > 0.0).then_some(v)),
    },
    JobFamily {
        name: "elt_job_failures_total",
        kind: "counter",
        help: "Failed runs of the job since its state was last reset.",
        get: |m| m.failures_total as f64,
        set: Some(|m, v| m.failures_total = count(v)),
    },
];

/// The outcome series: one sample per status, 1 for the job's.
const JOB_STATUS: &str = "elt_job_status";

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
        |r| r.rows.read as f64,
    ),
    (
        "elt_run_rows_upserted",
        "gauge",
        "Rows written to A by all jobs of the last invocation.",
        |r| r.rows.upserted as f64,
    ),
    (
        "elt_run_rows_unchanged",
        "gauge",
        "Rows left alone by all jobs of the last invocation.",
        |r| r.rows.unchanged as f64,
    ),
    (
        "elt_run_rows_deleted",
        "gauge",
        "Rows deleted from A by all jobs of the last invocation.",
        |r| r.rows.deleted as f64,
    ),
    (
        "elt_run_rows_repaired",
        "gauge",
        "Rows repaired by all jobs of the last invocation.",
        |r| r.rows.repaired as f64,
    ),
];

/// The Prometheus text exposition of a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    for fam in JOB_FAMILIES {
        f.head(fam.name, fam.kind, fam.help);
        for (job, m) in &s.jobs {
            f.sample(fam.name, &[("job", job)], (fam.get)(m));
        }
    }
    f.head(
        JOB_STATUS,
        "gauge",
        "Outcome of the job's last run: 1 for the status label that applies, 0 for the others.",
    );
    for (job, m) in &s.jobs {
        for st in STATUSES {
            f.sample(
                JOB_STATUS,
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
        let m = jobs.entry(job.to_string()).or_default();
        if name == JOB_STATUS {
            if let Some(st) = label("status")
                .and_then(parse_status)
                .filter(|_| value == 1.0)
            {
                m.status = st;
            }
            continue;
        }
        let family = JOB_FAMILIES.iter().find(|f| f.name == name);
        if let Some(set) = family.and_then(|f| f.set) {
            set(m, value);
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
    let what = |w: &str| {
        format!(
            "{w} the metrics file {}",
            crate::paths::absolute(path).display()
        )
    };
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
    let run = Invocation {
        now_seconds: now_ms() as f64 / 1000.0,
        duration_seconds: duration.as_secs_f64(),
        whole_run,
    };
    let snap = snapshot(report, &run, previous.as_ref(), |job| {
        match store.as_mut().map(|s| s.meta(job)) {
            Some(Ok(Some(m))) => Remembered {
                last_success_seconds: m.last_success_ms.map(|ms| ms as f64 / 1000.0),
                failures_total: Some(m.failures),
            },
            _ => Remembered::default(),
        }
    });
    write_atomically(path, &render(&snap))?;
    log::debug!(
        "metrics written to {}",
        crate::paths::absolute(path).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(job: &str, status: Status, read: u64) -> JobReport {
        let mut r = JobReport::new(job);
        r.status = status;
        r.rows.read = read;
        r.rows.upserted = read / 2;
        r.rows.unchanged = read - read / 2;
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
        let inv = |now: f64, whole_run: bool| Invocation {
            now_seconds: now,
            duration_seconds: 1.0,
            whole_run,
        };
        let s = snapshot(&run, &inv(1000.5, true), None, |job| Remembered {
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
        let inv = |now: f64, whole_run: bool| Invocation {
            now_seconds: now,
            duration_seconds: 1.0,
            whole_run,
        };
        let prev = snapshot(&first, &inv(100.0, true), None, |_| Remembered::default());
        assert_eq!(prev.jobs["a"].last_success_seconds, Some(100.0));
        // Redis is unreachable now: the failed job keeps its success time from the file
        let second = RunReport {
            jobs: vec![report("a", Status::Failed, 0)],
        };
        let next = snapshot(&second, &inv(200.0, false), Some(&prev), |_| {
            Remembered::default()
        });
        assert_eq!(next.jobs.len(), 2, "run-job keeps b");
        assert_eq!(next.jobs["a"].last_success_seconds, Some(100.0));
        assert_eq!(next.jobs["a"].failures_total, 1);
        assert_eq!(next.jobs["b"], prev.jobs["b"]);
        // a whole run drops jobs whose files are gone
        let third = snapshot(&second, &inv(300.0, true), Some(&next), |_| {
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
