//! One job's run, as stages: extract from M, diff against Redis, load into A, reconcile
//! deletions, and, only after A commits, write the state.

pub mod deletes;
pub mod digest;
pub mod extract;
pub mod keymerge;
pub mod load;
pub mod plan;
pub mod prewrite;
pub mod watermark;

use std::sync::mpsc;
use std::time::Instant;

use postgres::IsolationLevel;

use crate::db::{self, Conn, TextParam};
use crate::error::{Db, Error, Result, pg};
use crate::fault::FaultPoint;
use crate::job::Job;
use crate::lock::{Acquired, JobLock};
use crate::progress::Stage;
use crate::report::{JobReport, Status, Timings};
use crate::settings::Settings;
use crate::state::{Commit, Generation, Meta, PendingState, StateStore};

use keymerge::KeySum;
use load::{DirectCopy, Loader};
use plan::Plan;
use prewrite::Prewrite;
use watermark::Bound;

pub struct RunOptions {
    pub dry_run: bool,
    /// Overrides the delete guards for this run.
    pub force_deletes: bool,
    /// Told the stage and row counts as the job advances (the terminal progress display).
    pub progress: crate::progress::Observer,
}

/// `rows` stored when the next run must re-synchronise in full (see `MAX_REPAIR`).
const RESYNC_NEXT: i64 = -1;

/// Why a run copies everything instead of what changed since the watermark. Partial
/// losses in a non-empty target are found by the key comparison and repaired instead.
fn full_sync_reason(meta: Option<&Meta>, target_empty: bool) -> Option<String> {
    let Some(meta) = meta.filter(|m| m.has_sync_state()) else {
        return Some("no state in Redis (first run, reset, or Redis lost its data)".into());
    };
    if !meta.is_current_format() {
        return Some("the state in Redis was written by an older version of elt".into());
    }
    match meta.rows {
        Some(RESYNC_NEXT) => {
            Some("the previous run found more rows missing in A than one repair copies".into())
        }
        Some(tracked) if tracked > 0 && target_empty => Some(format!(
            "the target is empty but the state tracks {tracked} rows (table dropped or truncated)"
        )),
        _ => None,
    }
}

/// Runs one job and reports how it went; never panics the run, never returns an error:
/// a failure is reported in the `JobReport`.
pub fn run_job(settings: &Settings, job: &Job, opts: &RunOptions) -> JobReport {
    let started = Instant::now();
    let mut report = JobReport::new(&job.name);
    let mut state = match StateStore::connect(&settings.redis_url, &settings.redis_prefix) {
        Ok(s) => s,
        Err(e) => return failed(report, None, e, started),
    };
    let lock = match JobLock::acquire(
        &settings.redis_url,
        &settings.redis_prefix,
        &job.name,
        settings.lock_ttl,
    ) {
        Ok(Acquired::Held(l)) => l,
        Ok(Acquired::Busy(holder)) => {
            log::warn!("skipped: another runner holds this job's lock ({holder})");
            report.status = Status::Skipped;
            report.error = Some(format!("another runner holds the job's lock ({holder})"));
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }
        Err(e) => return failed(report, Some(&mut state), e, started),
    };
    // Runners that start on the same tick each take the job in turn; the later ones find
    // it already done since they started and leave it, so one tick processes it once.
    match state.meta(&job.name) {
        Ok(Some(m)) if m.last_success_ms.is_some_and(|t| t > settings.started_ms) => {
            log::info!("skipped: another runner completed this job after this run started");
            report.status = Status::Skipped;
            report.error = Some("another runner completed this job during this tick".into());
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }
        Ok(_) => {}
        Err(e) => return failed(report, Some(&mut state), e, started),
    }
    let outcome = sync(settings, job, opts, &mut state, &lock, &mut report);
    drop(lock);
    match outcome {
        Ok(()) => {
            report.duration_ms = started.elapsed().as_millis() as u64;
            log::info!(
                "ok{}: read {}, upserted {}, unchanged {}, deleted {} in {} ms",
                if opts.dry_run { " (dry run)" } else { "" },
                report.rows_read,
                report.rows_upserted,
                report.rows_unchanged,
                report.rows_deleted,
                report.duration_ms
            );
            report
        }
        Err(e) => {
            let st = (!opts.dry_run).then_some(&mut state);
            failed(report, st, e, started)
        }
    }
}

fn failed(
    mut report: JobReport,
    state: Option<&mut StateStore>,
    e: Error,
    started: Instant,
) -> JobReport {
    let message = crate::error::chain(&e);
    log::error!("failed: {message}");
    if let Some(st) = state {
        if let Err(re) = st.record_failure(&report.job, &message) {
            log::warn!(
                "could not record the failure in Redis: {}",
                crate::error::chain(&re)
            );
        }
    }
    report.status = Status::Failed;
    report.error = Some(message);
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

fn sync(
    settings: &Settings,
    job: &Job,
    opts: &RunOptions,
    state: &mut StateStore,
    lock: &JobLock,
    report: &mut JobReport,
) -> Result<()> {
    let mut timings = Timings::default();
    let mut m: Conn = db::connect(settings.master_url()?, Db::Master)?;
    let mut a: Conn = db::connect(settings.analytics_url()?, Db::Analytics)?;
    let m_tz = m.server_time_zone.clone();

    // Everything on A happens in one transaction: a failure leaves the target as it was,
    // including a table CREATE_TABLE_SQL would have created.
    let mut a_tx = a
        .client
        .transaction()
        .map_err(pg(Db::Analytics, "starting a transaction"))?;
    a_tx.batch_execute(&job.create_table_sql)
        .map_err(pg(Db::Analytics, "running CREATE_TABLE_SQL"))?;
    let target_empty = is_empty(&mut a_tx, &job.target_table)?;
    let meta = state.meta(&job.name)?;
    let full = full_sync_reason(meta.as_ref(), target_empty);
    if let Some(reason) = &full {
        if meta.as_ref().is_some_and(Meta::has_sync_state) {
            log::warn!("re-synchronising in full: {reason}");
        } else {
            log::info!("full synchronisation: {reason}");
        }
    }

    // One snapshot of M for the rows, the watermark and the keys, so they agree.
    let mut m_tx = m
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg(Db::Master, "starting a snapshot"))?;
    let plan = Plan::build(job, &mut m_tx, &mut a_tx)?;
    let new_watermark = watermark::read_new(&mut m_tx)?;
    let stored = if full.is_none() {
        meta.as_ref().and_then(|m| m.watermark.as_deref())
    } else {
        None
    };
    let bound = watermark::bound(
        &mut m_tx,
        &plan.watermark_type,
        stored,
        settings.overlap,
        &m_tz,
    )?;
    match &bound {
        Bound::Earliest(v) => log::info!("extracting all rows (placeholder bound to {v:?})"),
        Bound::Since(v) => log::info!("extracting rows changed since {v}"),
    }

    let lookup_meta = if full.is_none() { meta.clone() } else { None };
    let how = if full.is_some() {
        Read::Copy(bound.text())
    } else {
        Read::Portal(bound.text())
    };
    let x = Extraction {
        settings,
        job,
        plan: &plan,
        how,
        lookup: lookup_meta.as_ref(),
        opts,
    };
    let mut pending = PendingState::new()?;
    // The keys loaded straight into an empty target, which is then all A holds.
    let mut loaded_keys: Option<KeySum> = None;
    let mut prewritten: Option<Prewrite> = None;
    if let (true, Some(sql)) = (target_empty, &plan.direct_copy_sql) {
        // An empty target takes one COPY straight into it. A key the source repeats makes
        // it fail; the rows then go through staging and the upsert, which applies repeats
        // in order as UPSERT_TARGET_SQL would.
        let mut sp = a_tx
            .savepoint("elt_direct")
            .map_err(pg(Db::Analytics, "starting the load"))?;
        let mut copy = DirectCopy::start(&mut sp, sql, plan.columns)?;
        let sum = x.run(
            &mut m_tx,
            state,
            &mut pending,
            &mut timings,
            report,
            |fields| {
                if copy.push(fields)? {
                    settings.faults.reach(FaultPoint::Load);
                }
                Ok(())
            },
        )?;
        // Every row is known now: a full run writes its new state generation while A
        // takes the last rows and the keys are checked.
        if full.is_some() && !opts.dry_run {
            let rows = std::mem::replace(&mut pending, PendingState::new()?);
            prewritten = Some(Prewrite::start(
                &settings.redis_url,
                &settings.redis_prefix,
                &job.name,
                Generation::new(meta.as_ref(), rows.upserts),
                rows,
            ));
        }
        let t = Instant::now();
        let finished = copy.finish()?;
        timings.load += ms(t);
        match finished {
            Ok(n) => {
                sp.commit()
                    .map_err(pg(Db::Analytics, "finishing the load"))?;
                report.rows_upserted = n;
                loaded_keys = Some(sum);
            }
            Err(e) if load::is_repeated_key(&e) => {
                sp.rollback()
                    .map_err(pg(Db::Analytics, "undoing the failed COPY"))?;
                log::info!("the source repeats a key; loading again through the upsert");
                // dropping it removes what it wrote
                prewritten = None;
                pending = PendingState::new()?;
                report.rows_read = 0;
            }
            Err(e) => return Err(pg(Db::Analytics, "copying rows into the target")(e)),
        }
    }
    let mut loader = Loader::new(&plan, full.is_some() && !target_empty);
    if loaded_keys.is_none() {
        let a_ref = &mut a_tx;
        let loader_ref = &mut loader;
        x.run(
            &mut m_tx,
            state,
            &mut pending,
            &mut timings,
            report,
            |fields| {
                loader_ref.push(fields);
                if loader_ref.should_flush() {
                    loader_ref.flush(a_ref)?;
                    settings.faults.reach(FaultPoint::Load);
                }
                Ok(())
            },
        )?;
        let t = Instant::now();
        loader.flush(&mut a_tx)?;
        timings.load += ms(t);
        report.rows_upserted = loader.upserted;
    }
    opts.progress
        .tell(Stage::Load, report.rows_read, report.rows_upserted);
    // rows counted as changed but skipped by a `DO UPDATE ... WHERE` are unchanged in A
    report.rows_unchanged = report.rows_read - report.rows_upserted.min(report.rows_read);

    opts.progress
        .tell(Stage::Delete, report.rows_read, report.rows_upserted);
    settings.faults.reach(FaultPoint::Delete);
    let t = Instant::now();
    let reconciled = deletes::reconcile(
        &mut m_tx,
        &mut a_tx,
        job,
        meta.as_ref()
            .and_then(|m| m.rows)
            .unwrap_or(0)
            .max(report.rows_read as i64),
        &deletes::Guard {
            max_fraction: job.max_delete_fraction,
            force: opts.force_deletes,
        },
        loaded_keys.as_ref(),
        &mut pending,
    )?;
    report.rows_deleted = reconciled.deleted;
    timings.delete = ms(t);
    if !reconciled.missing.is_empty() {
        let t = Instant::now();
        report.rows_repaired = repair(
            &mut m_tx,
            &mut a_tx,
            &plan,
            &reconciled.missing,
            &mut loader,
            &mut pending,
        )?;
        timings.load += ms(t);
    }
    // Rows in A after this run, from the key comparison's totals (no extra count).
    let rows_after = if reconciled.missing.len() >= deletes::MAX_REPAIR as usize {
        log::warn!("more keys missing in A than one repair copies: the next run re-syncs in full");
        RESYNC_NEXT
    } else {
        reconciled.target_rows - reconciled.deleted as i64 + report.rows_repaired as i64
    };
    m_tx.commit()
        .map_err(pg(Db::Master, "ending the snapshot"))?;

    if opts.dry_run {
        a_tx.rollback()
            .map_err(pg(Db::Analytics, "rolling back the dry run"))?;
        report.timings_ms = timings;
        return Ok(());
    }
    settings.faults.reach(FaultPoint::BeforeCommit);
    if !lock.still_held() {
        return Err(Error::Job(
            "the job lock was lost during the run; nothing was committed".into(),
        ));
    }
    a_tx.commit()
        .map_err(pg(Db::Analytics, "committing the changes"))?;
    settings.faults.reach(FaultPoint::AfterCommit);

    // State follows A, never leads it.
    opts.progress
        .tell(Stage::State, report.rows_read, report.rows_upserted);
    let t = Instant::now();
    let prewritten = prewritten.map(Prewrite::finish).transpose()?;
    state.commit(
        &job.name,
        meta.as_ref(),
        pending,
        &Commit {
            watermark: new_watermark,
            rows_in_target: rows_after,
            file_sha256: job.file_digest.clone(),
            full: full.is_some(),
            prewritten,
            faults: settings.faults.clone(),
        },
    )?;
    timings.state = ms(t);
    report.timings_ms = timings;
    Ok(())
}

/// Drift repair: copies the rows of `missing` keys from M whatever their watermark column
/// says, bypassing the hashes (Redis may believe they were delivered). Returns rows written.
fn repair(
    m: &mut postgres::Transaction<'_>,
    a: &mut postgres::Transaction<'_>,
    plan: &Plan,
    missing: &[String],
    loader: &mut Loader<'_>,
    pending: &mut PendingState,
) -> Result<u64> {
    let Some(sql) = &plan.repair_sql else {
        log::warn!(
            "{} key(s) of M are missing in A, but the watermark condition of SELECT_SOURCE_SQL \
             could not be isolated to fetch them",
            missing.len()
        );
        return Ok(0);
    };
    let before = loader.upserted;
    let stmt = m
        .prepare(sql)
        .map_err(pg(Db::Master, "preparing the drift repair query"))?;
    let portal = m
        .bind(&stmt, &[&missing])
        .map_err(pg(Db::Master, "fetching rows missing in A"))?;
    loop {
        let batch = extract::read_batch(m, &portal, plan)?;
        for i in 0..batch.len() {
            loader.push(batch.fields(i));
            pending.set(&batch.keys[i], &batch.digests[i])?;
            if loader.should_flush() {
                loader.flush(a)?;
            }
        }
        if batch.len() < extract::FETCH_ROWS as usize {
            break;
        }
    }
    loader.flush(a)?;
    let repaired = loader.upserted - before;
    if repaired > 0 {
        log::warn!(
            "drift repair: copied {repaired} row(s) that M has and A lacked ({} key(s) missing)",
            missing.len()
        );
    }
    Ok(repaired)
}

/// How the extraction reads M; both carry the watermark's text.
enum Read<'b> {
    /// binary COPY (a full synchronisation: every row, no index to choose)
    Copy(&'b str),
    /// a portal read in batches (the planner sees the watermark and can use an index)
    Portal(&'b str),
}

/// One pass over the extraction: rows read, digested, compared with Redis; each changed
/// row's source fields go to `changed`, its digests to the pending state.
struct Extraction<'r> {
    settings: &'r Settings,
    job: &'r Job,
    plan: &'r Plan,
    how: Read<'r>,
    lookup: Option<&'r Meta>,
    opts: &'r RunOptions,
}

impl Extraction<'_> {
    fn run(
        &self,
        m_tx: &mut postgres::Transaction<'_>,
        state: &mut StateStore,
        pending: &mut PendingState,
        timings: &mut Timings,
        report: &mut JobReport,
        mut changed: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<KeySum> {
        let mut key_sum = KeySum::default();
        // rows handed to the load so far (the staging path writes them at its next flush)
        let mut queued = 0u64;
        let (send, recv) = mpsc::sync_channel(extract::IN_FLIGHT);
        let portal = match self.how {
            Read::Copy(wm) => {
                m_tx.execute(SET_WATERMARK, &[&plan::WATERMARK_SETTING, &wm])
                    .map_err(pg(Db::Master, "binding the watermark"))?;
                None
            }
            Read::Portal(wm) => {
                let stmt = m_tx
                    .prepare(&self.plan.extract_sql)
                    .map_err(pg(Db::Master, "preparing the extraction"))?;
                let param = TextParam(wm.to_string());
                Some(
                    m_tx.bind(&stmt, &[&param])
                        .map_err(pg(Db::Master, "running SELECT_SOURCE_SQL"))?,
                )
            }
        };
        let plan = self.plan;
        std::thread::scope(|scope| -> Result<()> {
            let m_ref = &mut *m_tx;
            let reader = scope.spawn(move || match &portal {
                Some(p) => extract::produce(m_ref, p, plan, send),
                None => extract::produce_copy(m_ref, &plan.copy_out_sql, plan, &send),
            });
            let consumed = (|| -> Result<()> {
                for batch in &recv {
                    let batch = batch?;
                    key_sum.merge(&batch.key_sum);
                    timings.extract += batch.fetch_ms;
                    let t = Instant::now();
                    let stored = match self.lookup {
                        Some(meta) => state.lookup(&self.job.name, meta, &batch.keys)?,
                        None => vec![None; batch.len()],
                    };
                    timings.diff += batch.digest_ms + ms(t);
                    let t = Instant::now();
                    for (i, old) in stored.iter().enumerate() {
                        report.rows_read += 1;
                        if *old == Some(batch.digests[i]) {
                            continue;
                        }
                        changed(batch.fields(i))?;
                        queued += 1;
                        pending.set(&batch.keys[i], &batch.digests[i])?;
                    }
                    self.settings.faults.reach(FaultPoint::Extract);
                    timings.load += ms(t);
                    self.opts
                        .progress
                        .tell(Stage::Extract, report.rows_read, queued);
                }
                Ok(())
            })();
            // Hanging up stops the reader if we stopped early.
            drop(recv);
            reader
                .join()
                .map_err(|_| Error::Job("the extraction thread panicked".into()))?;
            consumed
        })?;
        Ok(key_sum)
    }
}

/// Binds the watermark for a COPY extraction, which cannot take parameters itself.
const SET_WATERMARK: &str = "SELECT pg_catalog.set_config($1, $2, true)";

fn is_empty(a: &mut postgres::Transaction<'_>, target: &str) -> Result<bool> {
    let row = a
        .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {target})"), &[])
        .map_err(pg(Db::Analytics, format!("looking into {target}")))?;
    Ok(row.get(0))
}
