//! The jobs of one run: a [`Runner`] holds the run's connections to M, A and Redis (opened
//! once, reused by every job, each job in fresh transactions) and its lock keeper, and runs
//! one job at a time as a [`job_run::JobRun`]: extract from M, diff against Redis, load into
//! A, reconcile deletions, and, only after A commits, write the state.

pub mod digest;
pub mod extract;
mod job_run;
pub mod load;
pub mod plan;
pub mod prewrite;
pub mod reconcile;
pub mod watermark;

use std::time::Instant;

use crate::db::Conn;
use crate::error::{Db, Error, Result};
use crate::jobfile::Job;
use crate::lock::{self, Acquired, LockKeeper};
use crate::logging::REPORTED;
use crate::redis_conn::RedisTarget;
use crate::report::{JobReport, Status};
use crate::settings::Settings;
use crate::state::StateStore;

pub use job_run::{FullSync, RunOptions};

/// One invocation's jobs, run one after another over shared connections.
pub struct Runner<'s> {
    settings: &'s Settings,
    redis: Option<RedisTarget>,
    state: Option<StateStore>,
    m: Option<Conn>,
    a: Option<Conn>,
    keeper: LockKeeper,
}

/// How a job ended when it did not fail.
enum Done {
    Synced(Box<JobReport>),
    Skipped(String),
}

impl<'s> Runner<'s> {
    pub fn new(settings: &'s Settings) -> Runner<'s> {
        Runner {
            settings,
            redis: None,
            state: None,
            m: None,
            a: None,
            keeper: LockKeeper::start(settings.redis_url()),
        }
    }

    /// The run's Redis connection, connecting (again) when there is none.
    pub fn state(&mut self) -> Result<&mut StateStore> {
        let s = self.settings;
        if self.state.is_none() {
            let target = match &mut self.redis {
                Some(t) => t,
                None => self
                    .redis
                    .insert(RedisTarget::parse(s.redis_url()).map_err(|source| {
                        Error::RedisConnect {
                            url: crate::redact::mask(s.redis_url()),
                            source,
                        }
                    })?),
            };
            self.state = Some(StateStore::connect(target, s.redis_url(), &s.redis_prefix)?);
        }
        self.state
            .as_mut()
            .ok_or_else(|| Error::Job("no Redis connection".into()))
    }

    fn databases(&mut self) -> Result<()> {
        if self.m.as_ref().is_none_or(Conn::is_closed) {
            self.m = Some(Conn::connect(self.settings.master_url()?, Db::Master)?);
        }
        if self.a.as_ref().is_none_or(Conn::is_closed) {
            self.a = Some(Conn::connect(
                self.settings.analytics_url()?,
                Db::Analytics,
            )?);
        }
        Ok(())
    }

    /// Runs one job and reports how it went; never returns an error: a failure is reported
    /// in the `JobReport`, and leaves the target as it was.
    pub fn run_job(&mut self, job: &Job, opts: &RunOptions) -> JobReport {
        let started = Instant::now();
        let outcome = self.locked(job, opts);
        let mut report = match outcome {
            Ok(Done::Synced(r)) => *r,
            Ok(Done::Skipped(why)) => {
                log::warn!(target: REPORTED, "skipped: {why}");
                let mut r = JobReport::new(&job.name);
                r.status = Status::Skipped;
                r.error = Some(why);
                r
            }
            Err(e) => self.failed(&job.name, e, !opts.dry_run),
        };
        report.duration_ms = started.elapsed().as_millis() as u64;
        if report.status == Status::Ok {
            log::info!(target: REPORTED, "{}", report.line(opts.dry_run));
        }
        report
    }

    /// Takes the job's lock, syncs, releases the lock.
    fn locked(&mut self, job: &Job, opts: &RunOptions) -> Result<Done> {
        let ttl = self.settings.lock_ttl;
        let state = self.state()?;
        let keys = state.keys().clone();
        let held = match lock::acquire(state.conn(), &keys, &job.name, ttl)? {
            Acquired::Held(l) => l,
            Acquired::Busy(holder) => {
                return Ok(Done::Skipped(format!(
                    "another runner holds the job's lock ({holder})"
                )));
            }
        };
        self.keeper.watch(&held);
        let outcome = self.sync(job, opts, &held);
        self.keeper.unwatch();
        if let Ok(state) = self.state() {
            lock::release(state.conn(), held);
        }
        outcome
    }

    fn sync(&mut self, job: &Job, opts: &RunOptions, held: &lock::JobLock) -> Result<Done> {
        let settings = self.settings;
        // Runners that start on the same tick each take the job in turn; the later ones find
        // it already done since they started and leave it, so one tick processes it once.
        let meta = self.state()?.meta(&job.name)?;
        if meta
            .as_ref()
            .is_some_and(|m| m.last_success_ms.is_some_and(|t| t > settings.started_ms))
        {
            return Ok(Done::Skipped(
                "another runner completed this job during this tick".into(),
            ));
        }
        self.databases()?;
        let (Some(m), Some(a), Some(state)) = (&mut self.m, &mut self.a, &mut self.state) else {
            return Err(Error::Job("a connection is missing".into()));
        };
        let ctx = job_run::Context {
            settings,
            job,
            opts,
            lock: held,
            meta,
        };
        job_run::JobRun::run(ctx, m, a, state).map(|r| Done::Synced(Box::new(r)))
    }

    /// Reports `e`, remembers it in Redis (best effort) and drops connections it broke, so
    /// the next job reconnects.
    fn failed(&mut self, job: &str, e: Error, record: bool) -> JobReport {
        let stopped = crate::stop::requested();
        let message = match stopped {
            Some(sig) => format!(
                "interrupted by {}: its changes to A were rolled back and nothing was written \
                 to Redis",
                sig.name()
            ),
            None => crate::error::chain(&e),
        };
        log::error!(target: REPORTED, "failed: {message}");
        self.drop_broken(&e);
        if record && stopped.is_none() {
            self.record_failure(job, &message);
        }
        let mut r = JobReport::new(job);
        r.status = Status::Failed;
        r.error = Some(message);
        r
    }

    fn drop_broken(&mut self, e: &Error) {
        let lost = |db: Db| matches!(e, Error::Connect { db: d, .. } | Error::Pg { db: d, .. } if *d == db && crate::db::is_connection_error(e));
        if self.m.as_ref().is_some_and(Conn::is_closed) || lost(Db::Master) {
            self.m = None;
        }
        if self.a.as_ref().is_some_and(Conn::is_closed) || lost(Db::Analytics) {
            self.a = None;
        }
        let redis_error = matches!(e, Error::Redis { .. } | Error::RedisConnect { .. });
        if redis_error || self.state.as_ref().is_some_and(StateStore::is_broken) {
            self.state = None;
        }
    }

    /// Remembers a failure in Redis, so `status` and the metrics show it. Best effort: the
    /// run goes on without Redis.
    pub fn record_failure(&mut self, job: &str, message: &str) {
        let recorded = self.state().and_then(|s| s.record_failure(job, message));
        if let Err(e) = recorded {
            log::warn!(
                "could not record the failure in Redis: {}",
                crate::error::chain(&e)
            );
            self.state = None;
        }
    }
}
