//! One job's run: a [`JobRun`] owns the job's two transactions (a repeatable-read snapshot
//! on M, one read-write transaction on A), its plan, its pending state and its report, and
//! goes through the stages as methods: open, extract (and load), reconcile, finish.

use std::fmt;
use std::time::Instant;

use crate::db::{Access, Conn, Tx};
use crate::error::{Db, Error, Result, pg};
use crate::fault::FaultPoint;
use crate::jobfile::Job;
use crate::lock::JobLock;
use crate::pipeline::extract::{self, Batch, CopyRows, PortalRows};
use crate::pipeline::load::{self, DeferredKeys, DirectCopy, Loader};
use crate::pipeline::plan::{self, Plan};
use crate::pipeline::prewrite::Prewrite;
use crate::pipeline::reconcile::summary::KeySummary;
use crate::pipeline::reconcile::{Guard, MAX_REPAIR, Reconciler, integer_key_summary};
use crate::pipeline::watermark::{self, Bound};
use crate::progress::Stage;
use crate::report::JobReport;
use crate::settings::Settings;
use crate::state::{Commit, Generation, Meta, PendingState, StateStore, Tracked};

/// A full run whose rows are known early enough writes their state on a thread while A
/// takes the last rows and commits; below this, writing it after the commit is cheaper.
const PREWRITE_MIN_ROWS: u64 = 50_000;

/// Binds the watermark for a COPY extraction, which cannot take parameters itself.
const SET_WATERMARK: &str = "SELECT pg_catalog.set_config($1, $2, true)";

/// How this invocation runs its jobs (`run`, `run-job` flags).
pub struct RunOptions {
    pub dry_run: bool,
    /// Overrides the delete guards for this run.
    pub force_deletes: bool,
    /// Told the stage and row counts as the job advances (the terminal progress display).
    pub progress: crate::progress::Observer,
}

/// What a job's run needs from the runner.
pub struct Context<'r> {
    pub settings: &'r Settings,
    pub job: &'r Job,
    pub opts: &'r RunOptions,
    pub lock: &'r JobLock,
    /// the job's state in Redis before this run
    pub meta: Option<Meta>,
}

/// Why a run copies everything instead of what changed since the watermark. Partial
/// losses in a non-empty target are found by the key comparison and repaired instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullSync {
    /// first run, `reset-state`, or Redis lost its data
    NoState,
    OldFormat,
    /// the job's statements, target or key changed since its last successful run
    DefinitionChanged,
    /// the previous run found more rows missing in A than one repair copies
    RepairOverflow,
    /// the target is empty but the state tracks rows: dropped or truncated
    TargetEmptied(i64),
}

impl FullSync {
    /// The reason this run is full, if it is.
    pub fn reason(meta: Option<&Meta>, target_empty: bool, job: &Job) -> Option<FullSync> {
        let Some(meta) = meta.filter(|m| m.has_sync_state()) else {
            return Some(FullSync::NoState);
        };
        if !meta.is_current_format() {
            return Some(FullSync::OldFormat);
        }
        // state from before definitions were recorded: the file digest tells
        let changed = match &meta.definition {
            Some(d) => *d != job.definition,
            None => meta.file_sha256.as_deref() != Some(job.file_digest.as_str()),
        };
        if changed {
            return Some(FullSync::DefinitionChanged);
        }
        match meta.tracked {
            Some(Tracked::ResyncNext) => Some(FullSync::RepairOverflow),
            Some(Tracked::Rows(n)) if n > 0 && target_empty => Some(FullSync::TargetEmptied(n)),
            _ => None,
        }
    }

    /// A re-synchronisation of a job that had state (not a first run).
    pub fn is_resync(&self) -> bool {
        *self != FullSync::NoState
    }
}

impl fmt::Display for FullSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FullSync::NoState => {
                f.write_str("no state in Redis (first run, reset, or Redis lost its data)")
            }
            FullSync::OldFormat => {
                f.write_str("the state in Redis was written by an older version of elt")
            }
            FullSync::DefinitionChanged => f.write_str(
                "the job's definition (its statements, TARGET_TABLE or KEY_COLUMNS) changed \
                 since its last successful run",
            ),
            FullSync::RepairOverflow => {
                f.write_str("the previous run found more rows missing in A than one repair copies")
            }
            FullSync::TargetEmptied(n) => write!(
                f,
                "the target is empty but the state tracks {n} rows (table dropped or truncated)"
            ),
        }
    }
}

/// What the extraction reads of M (both by one binary `COPY`, the watermark bound to a
/// transaction-local setting).
#[derive(Clone, Copy)]
enum Read {
    /// every row (a full synchronisation): nothing to look up in the state
    Copy,
    /// the rows after the watermark, each compared with its stored digest
    Since,
}

pub struct JobRun<'r> {
    cx: Context<'r>,
    m: Tx<'r>,
    a: Tx<'r>,
    state: &'r mut StateStore,
    plan: Plan,
    full: Option<FullSync>,
    target_empty: bool,
    /// the target did not exist before this run: nobody else can see it until A commits
    created: bool,
    /// the watermark this run stores
    watermark: String,
    bound: Bound,
    pending: PendingState,
    loader: Loader,
    prewritten: Option<Prewrite>,
    /// the keys loaded straight into an empty target, which then holds nothing else
    loaded: Option<KeySummary>,
    /// M's key summary, asked while A took a first load
    m_summary: Option<KeySummary>,
    report: JobReport,
}

impl<'r> JobRun<'r> {
    /// Runs the job through every stage.
    pub fn run(
        cx: Context<'r>,
        m: &'r mut Conn,
        a: &'r mut Conn,
        state: &'r mut StateStore,
    ) -> Result<JobReport> {
        let mut run = JobRun::open(cx, m, a, state)?;
        run.extract()?;
        let tracked = run.reconcile()?;
        run.finish(tracked)
    }

    /// Starts both transactions, creates the target, decides between a full and an
    /// incremental run, and plans the statements.
    fn open(
        cx: Context<'r>,
        m: &'r mut Conn,
        a: &'r mut Conn,
        state: &'r mut StateStore,
    ) -> Result<JobRun<'r>> {
        let job = cx.job;
        // Everything on A happens in one transaction: a failure leaves the target as it
        // was, including a table CREATE_TABLE_SQL would have created.
        let mut a = a.begin(Access::ReadWrite)?;
        let existed = exists(&mut a, &job.target_table)?;
        a.batch_execute(&job.create_table_sql)
            .map_err(pg(Db::Analytics, "running CREATE_TABLE_SQL"))?;
        let created = !existed && exists(&mut a, &job.target_table)?;
        let target_empty = created || is_empty(&mut a, &job.target_table)?;
        let full = FullSync::reason(cx.meta.as_ref(), target_empty, job);
        match &full {
            Some(r) if r.is_resync() => log::warn!("re-synchronising in full: {r}"),
            Some(r) => log::info!("full synchronisation: {r}"),
            None => {}
        }
        // One snapshot of M for the rows, the watermark and the keys, so they agree.
        let mut m = m.begin(Access::Snapshot)?;
        let mut plan = Plan::build(job, &mut m, &mut a)?;
        plan.seed = cx
            .meta
            .as_ref()
            .and_then(|m| m.seed)
            .unwrap_or_else(crate::state::new_seed);
        let previous = cx.meta.as_ref().and_then(|m| m.watermark.as_deref());
        let watermark = watermark::read_new(&mut m, cx.settings.overlap, previous)?;
        let stored = previous.filter(|_| full.is_none());
        let tz = m.facts.time_zone.clone();
        let bound = watermark::bound(
            &mut m,
            &plan.watermark_type,
            stored,
            cx.settings.overlap,
            &tz,
        )?;
        match &bound {
            Bound::Earliest(v) => log::info!("extracting all rows (placeholder bound to {v:?})"),
            Bound::Since(v) => log::info!("extracting rows changed since {v}"),
        }
        let mut report = JobReport::new(&job.name);
        report.full_sync = full.as_ref().map(ToString::to_string);
        report.resync = full.as_ref().is_some_and(FullSync::is_resync);
        let loader = Loader::new(&plan, full.is_some() && !target_empty);
        Ok(JobRun {
            cx,
            m,
            a,
            state,
            plan,
            full,
            target_empty,
            created,
            watermark,
            bound,
            pending: PendingState::new(),
            loader,
            prewritten: None,
            loaded: None,
            m_summary: None,
            report,
        })
    }

    fn how(&self) -> Read {
        if self.full.is_some() {
            Read::Copy
        } else {
            Read::Since
        }
    }

    /// Reads M and writes the changed rows to A: into an empty target straight by one
    /// `COPY`, else through the staging table.
    fn extract(&mut self) -> Result<()> {
        if self.target_empty && self.plan.direct_copy_sql.is_some() && self.load_direct()? {
            return self.loaded();
        }
        self.load_staged()?;
        self.loaded()
    }

    fn loaded(&mut self) -> Result<()> {
        let r = &mut self.report;
        self.cx
            .opts
            .progress
            .tell(Stage::Load, r.rows.read, r.rows.upserted);
        // rows counted as changed but skipped by a `DO UPDATE ... WHERE` are unchanged in A
        r.rows.unchanged = r.rows.read - r.rows.upserted.min(r.rows.read);
        Ok(())
    }

    /// One COPY straight into the empty target. False when the source repeats a key: the
    /// COPY is then undone and the rows must go through the upsert, which applies repeats
    /// in order as UPSERT_TARGET_SQL would.
    fn load_direct(&mut self) -> Result<bool> {
        let how = self.how();
        let faults = &self.cx.settings.faults;
        let Some(sql) = self.plan.direct_copy_sql.clone() else {
            return Ok(false);
        };
        let mut sp = self
            .a
            .savepoint("elt_direct")
            .map_err(pg(Db::Analytics, "starting the load"))?;
        // A table this run created is invisible to others until A commits: its keys are
        // built after the rows are in (the savepoint brings them back if that fails).
        let deferred = match self.created {
            true => DeferredKeys::drop(&mut sp, &self.cx.job.target_table)?,
            false => None,
        };
        let sql = match self.created {
            true => frozen(&mut sp, &self.cx.job.target_table, &sql)?,
            false => sql,
        };
        let mut copy = DirectCopy::start(&mut sp, &sql, self.plan.columns)?;
        let mut source = Source {
            m: &mut self.m,
            state: &mut *self.state,
            pending: &mut self.pending,
            report: &mut self.report,
            plan: &self.plan,
            cx: &self.cx,
            watermark: self.bound.text(),
        };
        let sum = source.read(how, |fields| {
            if copy.push(fields)? {
                faults.reach(FaultPoint::Load);
            }
            Ok(())
        })?;
        if self.full.is_some() {
            self.prewritten = prewrite(&self.cx, &mut self.pending);
        }
        let t = Instant::now();
        // a big load: M answers the key summary while A takes the last rows
        let overlap = self.plan.integer_key && self.report.rows.read >= PREWRITE_MIN_ROWS;
        let (job, seed, m) = (self.cx.job, self.plan.seed, &mut *self.m);
        let copied = copy.finish()?;
        let (finished, m_summary) = std::thread::scope(|s| {
            let summary = overlap.then(|| s.spawn(move || integer_key_summary(m, job, seed)));
            let finished = copied.and_then(|n| match deferred {
                Some(keys) => keys.restore(&mut sp).map(|_| n),
                None => Ok(n),
            });
            (finished, summary.map(|h| h.join()))
        });
        self.m_summary = match m_summary {
            Some(Ok(r)) => Some(r?),
            Some(Err(_)) => return Err(Error::Job("the key summary thread panicked".into())),
            None => None,
        };
        self.report.timings_ms.load += ms(t);
        match finished {
            Ok(n) => {
                sp.commit()
                    .map_err(pg(Db::Analytics, "finishing the load"))?;
                self.report.rows.upserted = n;
                self.loaded = Some(sum);
                Ok(true)
            }
            Err(e) if load::is_repeated_key(&e) => {
                sp.rollback()
                    .map_err(pg(Db::Analytics, "undoing the failed COPY"))?;
                log::info!("the source repeats a key; loading again through the upsert");
                // dropping it removes what it wrote
                self.prewritten = None;
                self.pending = PendingState::new();
                self.report.rows.read = 0;
                Ok(false)
            }
            Err(e) => Err(pg(Db::Analytics, "copying rows into the target")(e)),
        }
    }

    /// Changed rows through the staging table and the set-based upsert.
    fn load_staged(&mut self) -> Result<()> {
        let how = self.how();
        let faults = &self.cx.settings.faults;
        let (loader, plan, a) = (&mut self.loader, &self.plan, &mut self.a);
        let mut source = Source {
            m: &mut self.m,
            state: &mut *self.state,
            pending: &mut self.pending,
            report: &mut self.report,
            plan,
            cx: &self.cx,
            watermark: self.bound.text(),
        };
        source.read(how, |fields| {
            loader.push(plan, fields);
            if loader.should_flush() {
                loader.flush(plan, a)?;
                faults.reach(FaultPoint::Load);
                crate::stop::check()?;
            }
            Ok(())
        })?;
        let t = Instant::now();
        self.loader.flush(&self.plan, &mut self.a)?;
        self.report.timings_ms.load += ms(t);
        self.report.rows.upserted = self.loader.upserted;
        Ok(())
    }

    /// Deletes what M no longer has and copies what A lacks; the rows A holds afterwards.
    fn reconcile(&mut self) -> Result<Tracked> {
        let (r, opts) = (&self.report, self.cx.opts);
        opts.progress
            .tell(Stage::Delete, r.rows.read, r.rows.upserted);
        self.cx.settings.faults.reach(FaultPoint::Delete);
        crate::stop::check()?;
        let t = Instant::now();
        let reconciler = Reconciler {
            job: self.cx.job,
            rows_hint: self
                .cx
                .meta
                .as_ref()
                .and_then(Meta::rows)
                .unwrap_or(0)
                .max(self.report.rows.read as i64),
            guard: Guard {
                max_fraction: self.cx.job.max_delete_fraction,
                force: opts.force_deletes,
            },
            loaded: self.loaded,
            seed: self.plan.seed,
            integer: self.plan.integer_key,
            m_summary: self.m_summary,
        };
        let found = reconciler.run(&mut self.m, &mut self.a, &mut self.pending)?;
        self.report.rows.deleted = found.deleted;
        self.report.timings_ms.delete = ms(t);
        if !found.missing.is_empty() {
            let t = Instant::now();
            self.repair(&found.missing)?;
            self.report.timings_ms.load += ms(t);
        }
        // Rows in A after this run, from the key comparison's totals (no extra count).
        if found.missing.len() >= MAX_REPAIR as usize {
            log::warn!(
                "more keys missing in A than one repair copies: the next run re-syncs in full"
            );
            return Ok(Tracked::ResyncNext);
        }
        Ok(Tracked::Rows(
            found.target_rows - found.deleted as i64 + self.report.rows.repaired as i64,
        ))
    }

    /// Drift repair: copies the rows of `missing` keys from M whatever their watermark
    /// column says, bypassing the hashes (Redis may believe they were delivered).
    fn repair(&mut self, missing: &[String]) -> Result<()> {
        let Some(sql) = self.plan.repair_sql.clone() else {
            log::warn!(
                "{} key(s) of M are missing in A, but the watermark condition of \
                 SELECT_SOURCE_SQL could not be isolated to fetch them",
                missing.len()
            );
            return Ok(());
        };
        let before = self.loader.upserted;
        let stmt = self
            .m
            .prepare(&sql)
            .map_err(pg(Db::Master, "preparing the drift repair query"))?;
        let portal = self
            .m
            .bind(&stmt, &[&missing])
            .map_err(pg(Db::Master, "fetching rows missing in A"))?;
        let rows = PortalRows::new(&mut self.m, portal, &self.plan);
        let (loader, plan, a, pending) =
            (&mut self.loader, &self.plan, &mut self.a, &mut self.pending);
        extract::for_each_batch(rows, |batch| {
            for i in 0..batch.len() {
                loader.push(plan, batch.fields(i));
                pending.set(&batch.keys[i], &batch.digests[i])?;
                if loader.should_flush() {
                    loader.flush(plan, a)?;
                }
            }
            Ok(())
        })?;
        self.loader.flush(&self.plan, &mut self.a)?;
        let repaired = self.loader.upserted - before;
        self.report.rows.repaired = repaired;
        if repaired > 0 {
            log::warn!(
                "drift repair: copied {repaired} row(s) that M has and A lacked ({} key(s) missing)",
                missing.len()
            );
        }
        Ok(())
    }

    /// Ends the snapshot, commits A, and only then writes the state.
    fn finish(mut self, tracked: Tracked) -> Result<JobReport> {
        let (settings, opts, job) = (self.cx.settings, self.cx.opts, self.cx.job);
        self.m.commit()?;
        if opts.dry_run {
            self.a.rollback()?;
            return Ok(self.report);
        }
        settings.faults.reach(FaultPoint::BeforeCommit);
        crate::stop::check()?;
        if !self.cx.lock.still_held() {
            return Err(Error::Job(
                "the job lock was lost during the run; nothing was committed".into(),
            ));
        }
        self.a.commit()?;
        settings.faults.reach(FaultPoint::AfterCommit);

        // State follows A, never leads it.
        let r = &self.report;
        opts.progress
            .tell(Stage::State, r.rows.read, r.rows.upserted);
        let t = Instant::now();
        let prewritten = self.prewritten.take().map(Prewrite::finish).transpose()?;
        let meta = self.cx.meta.as_ref();
        let commit = Commit {
            watermark: self.watermark.clone(),
            tracked,
            file_sha256: job.file_digest.clone(),
            definition: job.definition.clone(),
            full: self.full.is_some(),
            prewritten,
            seed: meta
                .and_then(|m| m.seed)
                .unwrap_or_else(crate::state::new_seed),
            faults: settings.faults.clone(),
        };
        self.state
            .commit(&job.name, meta, std::mem::take(&mut self.pending), &commit)?;
        self.report.timings_ms.state = ms(t);
        Ok(self.report)
    }
}

/// One pass over the extraction: rows read, digested, compared with Redis; each changed
/// row's source fields go to `changed`, its digests to the pending state.
struct Source<'s, 'r> {
    m: &'s mut Tx<'r>,
    state: &'s mut StateStore,
    pending: &'s mut PendingState,
    report: &'s mut JobReport,
    plan: &'s Plan,
    cx: &'s Context<'r>,
    /// what the placeholder is bound to
    watermark: &'s str,
}

impl Source<'_, '_> {
    /// Reads the source; the summary of the keys read (see `KeySummary`).
    fn read(
        &mut self,
        how: Read,
        mut changed: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<KeySummary> {
        let mut key_sum = KeySummary::default();
        let wm = self.watermark.to_string();
        let full = matches!(how, Read::Copy);
        let lookup = self.cx.meta.clone().filter(|_| !full);
        // rows handed to the load so far (the staging path writes them at its next flush)
        let mut queued = 0u64;
        let (state, pending, report, cx, job) = (
            &mut *self.state,
            &mut *self.pending,
            &mut *self.report,
            self.cx,
            &self.cx.job.name,
        );
        let mut each = |batch: Batch| -> Result<()> {
            key_sum.merge(&batch.key_sum);
            report.timings_ms.extract += batch.fetch_ms;
            let t = Instant::now();
            let stored = match &lookup {
                Some(meta) => state.lookup(job, meta, &batch.keys)?,
                None => vec![None; batch.len()],
            };
            report.timings_ms.diff += batch.digest_ms + ms(t);
            let t = Instant::now();
            for (i, old) in stored.iter().enumerate() {
                report.rows.read += 1;
                if *old == Some(batch.digests[i]) {
                    continue;
                }
                changed(batch.fields(i))?;
                queued += 1;
                pending.set(&batch.keys[i], &batch.digests[i])?;
            }
            cx.settings.faults.reach(FaultPoint::Extract);
            crate::stop::check()?;
            report.timings_ms.load += ms(t);
            cx.opts
                .progress
                .tell(Stage::Extract, report.rows.read, queued);
            Ok(())
        };
        self.m
            .execute(SET_WATERMARK, &[&plan::WATERMARK_SETTING, &wm])
            .map_err(pg(Db::Master, "binding the watermark"))?;
        let rows = CopyRows::start(self.m, &self.plan.copy_out_sql, self.plan)?;
        extract::for_each_batch(rows, &mut each)?;
        Ok(key_sum)
    }
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

fn exists(a: &mut Tx<'_>, target: &str) -> Result<bool> {
    let row = a
        .query_one("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[&target])
        .map_err(pg(Db::Analytics, format!("looking for {target}")))?;
    Ok(row.get(0))
}

fn is_empty(a: &mut Tx<'_>, target: &str) -> Result<bool> {
    let row = a
        .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {target})"), &[])
        .map_err(pg(Db::Analytics, format!("looking into {target}")))?;
    Ok(row.get(0))
}

/// Every row of a full run is known: a big one writes its new state generation on a thread
/// while A takes the last rows and the keys are checked.
fn prewrite(cx: &Context<'_>, pending: &mut PendingState) -> Option<Prewrite> {
    if cx.opts.dry_run || pending.upserts < PREWRITE_MIN_ROWS {
        return None;
    }
    let rows = std::mem::take(pending);
    let s = cx.settings;
    let g = Generation::new(cx.meta.as_ref(), rows.upserts);
    Some(Prewrite::start(
        s.redis_url(),
        &s.redis_prefix,
        &cx.job.name,
        g,
        rows,
    ))
}

/// The COPY of `sql` that writes rows frozen: emptied in this subtransaction, a table the run
/// created qualifies for COPY FREEZE, and nobody has to set its rows' hint bits later.
fn frozen(sp: &mut postgres::Transaction<'_>, table: &str, sql: &str) -> Result<String> {
    sp.batch_execute(&format!("TRUNCATE {table}"))
        .map_err(pg(Db::Analytics, "preparing the load"))?;
    Ok(sql.replace("(FORMAT binary)", "(FORMAT binary, FREEZE)"))
}
