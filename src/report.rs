//! What a run tells its user: one summary line per job, or one JSON document.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

/// Milliseconds spent per stage of a job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub extract: u64,
    pub diff: u64,
    pub load: u64,
    pub delete: u64,
    pub state: u64,
}

/// What a run did to the rows of one job (or of all jobs, summed), as `--json`, the summary
/// line and the metrics file give them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// rows returned by SELECT_SOURCE_SQL
    #[serde(rename = "rows_read")]
    pub read: u64,
    /// rows the upsert wrote
    #[serde(rename = "rows_upserted")]
    pub upserted: u64,
    /// rows read but left alone (hash unchanged, or skipped by the upsert)
    #[serde(rename = "rows_unchanged")]
    pub unchanged: u64,
    /// rows deleted from A because M no longer has them
    #[serde(rename = "rows_deleted")]
    pub deleted: u64,
    /// rows M has and A lacked although their watermark column said they were delivered
    /// (NULL or never-bumped `updated_at`, rows lost in A), copied by drift repair
    #[serde(rename = "rows_repaired")]
    pub repaired: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.read += o.read;
        self.upserted += o.upserted;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
        self.repaired += o.repaired;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub status: Status,
    #[serde(flatten)]
    pub rows: Counts,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// Why the run read everything (first run, definition changed, target emptied, …);
    /// `null` for an incremental run.
    pub full_sync: Option<String>,
    /// The run re-synchronised a job that had state: the summary line says why.
    #[serde(skip)]
    pub resync: bool,
    pub timings_ms: Timings,
}

impl JobReport {
    pub fn new(job: &str) -> Self {
        JobReport {
            job: job.to_string(),
            status: Status::Ok,
            rows: Counts::default(),
            duration_ms: 0,
            error: None,
            full_sync: None,
            resync: false,
            timings_ms: Timings::default(),
        }
    }

    /// The human summary line.
    pub fn line(&self, dry_run: bool) -> String {
        let would = if dry_run { " (dry run)" } else { "" };
        match self.status {
            Status::Ok => format!(
                "{}: ok{would}: read {}, upserted {}, unchanged {}, deleted {}{} in {} ms{}",
                self.job,
                self.rows.read,
                self.rows.upserted,
                self.rows.unchanged,
                self.rows.deleted,
                if self.rows.repaired > 0 {
                    format!(", repaired {}", self.rows.repaired)
                } else {
                    String::new()
                },
                self.duration_ms,
                match (&self.full_sync, self.resync) {
                    (Some(why), true) => format!(" (full re-sync: {why})"),
                    _ => String::new(),
                }
            ),
            Status::Skipped => format!(
                "{}: skipped: {}",
                self.job,
                self.error.as_deref().unwrap_or("held by another runner")
            ),
            Status::Failed => format!(
                "{}: failed after {} ms: {}",
                self.job,
                self.duration_ms,
                one_line(self.error.as_deref().unwrap_or("unknown error"))
            ),
        }
    }
}

/// A message on one line: the summary says one line per job.
fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub jobs: Vec<JobReport>,
}

impl RunReport {
    pub fn exit_code(&self) -> i32 {
        if self.jobs.iter().any(|j| j.status == Status::Failed) {
            1
        } else {
            0
        }
    }

    pub fn print(&self, json: bool, dry_run: bool) {
        if json {
            match serde_json::to_string(self) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("elt: cannot encode the report: {e}"),
            }
        } else {
            for j in &self.jobs {
                println!("{}", j.line(dry_run));
            }
            if self.jobs.is_empty() {
                println!("no job files found");
            }
        }
    }
}
