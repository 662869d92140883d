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

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub status: Status,
    pub rows_read: u64,
    pub rows_upserted: u64,
    pub rows_unchanged: u64,
    pub rows_deleted: u64,
    /// Rows M has and A lacked although their watermark column said they were delivered
    /// (NULL or never-bumped `updated_at`, rows lost in A), copied by drift repair.
    pub rows_repaired: u64,
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
            rows_read: 0,
            rows_upserted: 0,
            rows_unchanged: 0,
            rows_deleted: 0,
            rows_repaired: 0,
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
                self.rows_read,
                self.rows_upserted,
                self.rows_unchanged,
                self.rows_deleted,
                if self.rows_repaired > 0 {
                    format!(", repaired {}", self.rows_repaired)
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
