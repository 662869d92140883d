//! One job's run, as stages: extract from M, diff against Redis, load into A, reconcile
//! deletions, and, only after A commits, write the state.

pub mod deletes;
pub mod digest;
pub mod extract;
pub mod load;
pub mod plan;
pub mod watermark;

use std::sync::mpsc;
use std::time::Instant;

use postgres::IsolationLevel;

use crate::db::{self, Conn, TextParam};
use crate::error::{Db, Error, Result, pg};
use crate::job::Job;
use crate::lock::{Acquired, JobLock};
use crate::report::{JobReport, Status, Timings};
use crate::settings::Settings;
use crate::state::{Commit, Meta, PendingState, StateStore};

use load::Loader;
use plan::Plan;
use watermark::Bound;

pub struct RunOptions {
    pub dry_run: bool,
}

/// Why a run copies everything instead of what changed since the watermark.
fn full_sync_reason(meta: Option<&Meta>, rows_in_target: i64) -> Option<String> {
    let Some(meta) = meta.filter(|m| m.has_sync_state()) else {
        return Some("no state in Redis (first run, reset, or Redis lost its data)".into());
    };
    match meta.rows {
        Some(tracked) if tracked != rows_in_target => Some(format!(
            "the target holds {rows_in_target} rows but the state tracks {tracked} \
             (table dropped, truncated or changed outside elt)"
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
    let rows_before = count_rows(&mut a_tx, &job.target_table)?;
    let meta = state.meta(&job.name)?;
    let full = full_sync_reason(meta.as_ref(), rows_before);
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

    let mut pending = PendingState::new()?;
    let mut loader = Loader::new(&plan, rows_before == 0, full.is_some() && rows_before > 0);
    let extract_stmt = m_tx
        .prepare(&plan.extract_sql)
        .map_err(pg(Db::Master, "preparing the extraction"))?;
    let param = TextParam(bound.text().to_string());
    let portal = m_tx
        .bind(&extract_stmt, &[&param])
        .map_err(pg(Db::Master, "running SELECT_SOURCE_SQL"))?;
    let lookup_meta = if full.is_none() { meta.clone() } else { None };
    let (send, recv) = mpsc::sync_channel(extract::IN_FLIGHT);
    std::thread::scope(|scope| -> Result<()> {
        let (m_ref, plan_ref, portal_ref) = (&mut m_tx, &plan, &portal);
        let reader = scope.spawn(move || extract::produce(m_ref, portal_ref, plan_ref, send));
        let consumed = (|| -> Result<()> {
            for batch in &recv {
                let batch = batch?;
                timings.extract += batch.fetch_ms;
                let t = Instant::now();
                let stored = match &lookup_meta {
                    Some(meta) => state.lookup(&job.name, meta, &batch.keys)?,
                    None => vec![None; batch.rows.len()],
                };
                timings.diff += batch.digest_ms + ms(t);
                let t = Instant::now();
                for (i, row) in batch.rows.iter().enumerate() {
                    report.rows_read += 1;
                    if stored[i] == Some(batch.digests[i]) {
                        continue;
                    }
                    loader.push(row)?;
                    pending.set(&batch.keys[i], &batch.digests[i])?;
                    if loader.should_flush() {
                        loader.flush(&mut a_tx)?;
                    }
                }
                timings.load += ms(t);
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
    let t = Instant::now();
    loader.flush(&mut a_tx)?;
    timings.load += ms(t);
    report.rows_upserted = loader.upserted;
    // rows counted as changed but skipped by a `DO UPDATE ... WHERE` are unchanged in A
    report.rows_unchanged = report.rows_read - report.rows_upserted.min(report.rows_read);

    let t = Instant::now();
    report.rows_deleted = deletes::reconcile(
        &mut m_tx,
        &mut a_tx,
        &job.select_keys_sql,
        &plan.target,
        &plan.key_columns,
        rows_before.max(report.rows_read as i64),
        &mut pending,
    )?;
    timings.delete = ms(t);
    let rows_after = count_rows(&mut a_tx, &job.target_table)?;
    m_tx.commit()
        .map_err(pg(Db::Master, "ending the snapshot"))?;

    if opts.dry_run {
        a_tx.rollback()
            .map_err(pg(Db::Analytics, "rolling back the dry run"))?;
        report.timings_ms = timings;
        return Ok(());
    }
    if !lock.still_held() {
        return Err(Error::Job(
            "the job lock was lost during the run; nothing was committed".into(),
        ));
    }
    a_tx.commit()
        .map_err(pg(Db::Analytics, "committing the changes"))?;

    // State follows A, never leads it.
    let t = Instant::now();
    state.commit(
        &job.name,
        meta.as_ref(),
        pending,
        &Commit {
            watermark: new_watermark,
            rows_in_target: rows_after,
            file_sha256: job.file_digest.clone(),
            full: full.is_some(),
        },
    )?;
    timings.state = ms(t);
    report.timings_ms = timings;
    Ok(())
}

fn count_rows(a: &mut postgres::Transaction<'_>, target: &str) -> Result<i64> {
    let row = a
        .query_one(&format!("SELECT count(*) FROM {target}"), &[])
        .map_err(pg(Db::Analytics, format!("counting the rows of {target}")))?;
    Ok(row.get(0))
}
