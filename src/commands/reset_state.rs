//! `elt reset-state`: forget jobs' Redis state so their next run re-synchronises in full.

use crate::error::{Error, Result};
use crate::job;
use crate::lock::{Acquired, JobLock};
use crate::settings::Settings;
use crate::state::StateStore;

pub fn reset(settings: &Settings, jobs: &[String], all: bool) -> Result<i32> {
    let mut store = StateStore::connect(&settings.redis_url, &settings.redis_prefix)?;
    let mut names: Vec<String> = jobs.to_vec();
    if all {
        names.extend(store.jobs_with_state()?);
        if let Ok(files) = job::discover(&settings.jobs_dir) {
            names.extend(files.iter().map(|p| job::job_name(p)));
        }
        names.sort();
        names.dedup();
    }
    let mut busy = Vec::new();
    for name in &names {
        // Hold the job's lock so a running job cannot write state back after the reset.
        match JobLock::acquire(
            &settings.redis_url,
            &settings.redis_prefix,
            name,
            settings.lock_ttl,
        )? {
            Acquired::Held(_lock) => {
                let n = store.reset(name)?;
                log::info!("reset state of job {name} ({n} key(s) removed)");
                println!("{name}: state reset ({n} key(s) removed)");
            }
            Acquired::Busy(holder) => {
                log::warn!("job {name} is running ({holder}); its state was not reset");
                busy.push(name.clone());
            }
        }
    }
    if busy.is_empty() {
        Ok(0)
    } else {
        Err(Error::Job(format!(
            "job(s) {} are running now; try again when they finish",
            busy.join(", ")
        )))
    }
}
