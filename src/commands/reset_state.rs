//! `elt reset-state`: forget jobs' Redis state so their next run re-synchronises in full;
//! `--orphans` forgets the state of jobs whose file is gone.

use crate::error::{Error, Result};
use crate::jobfile;
use crate::lock::{self, Acquired};
use crate::settings::Settings;
use crate::state::StateStore;

/// Which jobs to reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The jobs named on the command line.
    Named,
    /// Every job with state or a file.
    All,
    /// Jobs with state in Redis but no job file.
    Orphans,
}

/// Jobs that have state but no file. Refuses when the jobs folder cannot be read or holds no
/// job file at all: a wrong `--jobs-dir` would otherwise make every job an orphan and wipe
/// all state.
fn orphans(settings: &Settings, store: &mut StateStore) -> Result<Vec<String>> {
    let files = jobfile::discover(&settings.jobs_dir).map_err(|e| {
        Error::Config(format!(
            "cannot tell orphans without the jobs folder: {}",
            crate::error::chain(&e)
        ))
    })?;
    if files.is_empty() {
        return Err(Error::Config(format!(
            "the jobs folder {} has no job files, so every job would count as an orphan; \
             check --jobs-dir, or use --all to forget every job's state",
            settings.jobs_dir.display()
        )));
    }
    let names: Vec<String> = files.iter().map(|p| jobfile::job_name(p)).collect();
    Ok(store
        .jobs_with_state()?
        .into_iter()
        .filter(|n| !names.contains(n))
        .collect())
}

/// Every named job has a file or state: a mistyped name is an error (nothing is reset), not
/// a quiet "0 keys removed".
fn check_named(settings: &Settings, store: &mut StateStore, jobs: &[String]) -> Result<()> {
    let files: Vec<String> = jobfile::discover(&settings.jobs_dir)
        .map(|f| f.iter().map(|p| jobfile::job_name(p)).collect())
        .unwrap_or_default();
    let mut with_state = None;
    for name in jobs {
        if files.contains(name) {
            continue;
        }
        let known = match &mut with_state {
            Some(known) => known,
            None => with_state.insert(store.jobs_with_state()?),
        };
        if !known.contains(name) {
            let candidates = files.iter().chain(known.iter()).cloned();
            return Err(jobfile::unknown_job(&settings.jobs_dir, name, candidates));
        }
    }
    Ok(())
}

pub fn reset(settings: &Settings, jobs: &[String], selection: Selection) -> Result<i32> {
    let mut store = StateStore::open(settings.redis_url(), &settings.redis_prefix)?;
    let mut names: Vec<String> = jobs.to_vec();
    match selection {
        Selection::Named => check_named(settings, &mut store, jobs)?,
        Selection::All => {
            names.extend(store.jobs_with_state()?);
            if let Ok(files) = jobfile::discover(&settings.jobs_dir) {
                names.extend(files.iter().map(|p| jobfile::job_name(p)));
            }
        }
        Selection::Orphans => {
            names.extend(orphans(settings, &mut store)?);
            if names.is_empty() {
                println!("no orphaned state: every job with state has a job file");
            }
        }
    }
    names.sort();
    names.dedup();
    let mut busy = Vec::new();
    for name in &names {
        // Hold the job's lock so a running job cannot write state back after the reset.
        let keys = store.keys().clone();
        match lock::acquire(store.conn(), &keys, name, settings.lock_ttl)? {
            Acquired::Held(held) => {
                let n = store.reset(name);
                lock::release(store.conn(), held);
                let n = n?;
                let what = if selection == Selection::Orphans {
                    "orphaned state removed"
                } else {
                    "state reset"
                };
                log::info!("{what}: job {name} ({n} key(s) removed)");
                println!("{name}: {what} ({n} key(s) removed)");
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
