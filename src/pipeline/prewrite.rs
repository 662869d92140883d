//! A full run's new state generation, written to Redis on a thread of its own while the run
//! finishes (the last rows reach A, M's keys are checked, A commits). The generation stays
//! inactive until `StateStore::commit` switches to it after A committed, so state still
//! never leads A.

use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::state::{Generation, PendingState, StateStore};

pub struct Prewrite {
    generation: Generation,
    handle: Option<JoinHandle<Result<()>>>,
    redis_url: String,
    prefix: String,
    job: String,
}

impl Prewrite {
    /// Starts writing `pending` as generation `generation` of `job`.
    pub fn start(
        redis_url: &str,
        prefix: &str,
        job: &str,
        generation: Generation,
        pending: PendingState,
    ) -> Self {
        let (url, pre, name) = (redis_url.to_string(), prefix.to_string(), job.to_string());
        let handle = std::thread::spawn(move || {
            StateStore::open(&url, &pre)?.write_generation(&name, generation, pending)
        });
        Prewrite {
            generation,
            handle: Some(handle),
            redis_url: redis_url.to_string(),
            prefix: prefix.to_string(),
            job: job.to_string(),
        }
    }

    /// Waits for the write; the generation to switch to.
    pub fn finish(mut self) -> Result<Generation> {
        let handle = self.handle.take();
        match handle.map(JoinHandle::join) {
            Some(Ok(Ok(()))) => Ok(self.generation),
            Some(Ok(Err(e))) => Err(e),
            _ => Err(Error::Job("the thread writing row state panicked".into())),
        }
    }
}

impl Drop for Prewrite {
    /// Unused (the run failed or fell back to the upsert): waits for the write and removes
    /// the generation, best effort, so a failed run leaves no rows in Redis. One a killed
    /// run leaves is removed when a later full run switches generations.
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let _ = handle.join();
        if let Ok(mut st) = StateStore::open(&self.redis_url, &self.prefix) {
            if let Err(e) = st.delete_generation(&self.job, self.generation) {
                log::warn!(
                    "could not remove the unused state generation: {}",
                    crate::error::chain(&e)
                );
            }
        }
    }
}
