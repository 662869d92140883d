//! Many runners under load: 3 concurrent `elt run` processes share 30 jobs for 10 cycles
//! while pgbench inserts, updates and deletes rows on M. `#[ignore]`d; `make test-load` (and
//! `make test-faults`) run it:
//!
//!     cargo test --test main -- --ignored --nocapture load::
//!
//! Checked: no run fails and no job fails; in every cycle each job is done by at least one
//! runner and skipped by the others when its lock is taken; no job is ever processed by two
//! runners at once (an event trigger on A records, for every committed elt transaction, its
//! start and its commit: intervals of one job never overlap); and after pgbench stops and
//! one final run, every target equals its source.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::*;

const TABLES: usize = 30;
const RUNNERS: usize = 3;
const CYCLES: usize = 10;
const ROWS: i64 = 1_000;

fn table(i: usize) -> String {
    format!("t{i:02}")
}

const M_SETUP: &str = r#"
CREATE SEQUENCE ids START 1000000;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN NEW.updated_at := now(); END IF;
    RETURN NEW;
END $$;
-- one change on table t (1..30): op 1-5 update, 6-8 insert, 9-10 delete
CREATE FUNCTION churn(t integer, op integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tbl text := format('t%s', lpad(t::text, 2, '0'));
    victim bigint := 1 + floor(random() * 1000)::bigint;
BEGIN
    IF op <= 5 THEN
        EXECUTE format('UPDATE %I SET v = md5(random()::text), n = n + 1 WHERE id = $1', tbl)
            USING victim;
    ELSIF op <= 8 THEN
        EXECUTE format('INSERT INTO %I (id, v, n) VALUES (nextval(''ids''), md5(random()::text), 0)', tbl);
    ELSE
        EXECUTE format('DELETE FROM %I WHERE id = $1', tbl) USING victim;
    END IF;
END $$;
"#;

/// Records every committed elt transaction on A: the job (from CREATE_TABLE_SQL, which
/// opens it), the transaction's start and, from a deferred trigger, its commit.
const A_AUDIT: &str = r#"
CREATE TABLE elt_audit (job text, pid integer, xid xid8 PRIMARY KEY, started timestamptz,
                        finished timestamptz);
CREATE FUNCTION audit_start() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE m text[];
BEGIN
    m := regexp_match(current_query(), 'CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(t\d\d)\M', 'i');
    IF m IS NULL THEN RETURN; END IF;
    INSERT INTO elt_audit (job, pid, xid, started)
        VALUES (m[1], pg_backend_pid(), pg_current_xact_id(), now()) ON CONFLICT DO NOTHING;
END $$;
CREATE EVENT TRIGGER audit_start ON ddl_command_start WHEN TAG IN ('CREATE TABLE')
    EXECUTE FUNCTION audit_start();
CREATE FUNCTION audit_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE elt_audit SET finished = clock_timestamp() WHERE xid = NEW.xid;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER audit_end AFTER INSERT ON elt_audit
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_end();
"#;

const PGBENCH_SCRIPT: &str =
    "\\set t random(1, 30)\n\\set op random(1, 10)\nSELECT churn(:t, :op);\n";

fn job_yaml(t: &str) -> String {
    format!(
        "CREATE_TABLE_SQL: \"CREATE TABLE IF NOT EXISTS {t} (id bigint PRIMARY KEY, v text, n integer, updated_at timestamptz NOT NULL)\"\n\
         SELECT_SOURCE_SQL: \"SELECT id, v, n, updated_at FROM {t} WHERE updated_at > %s\"\n\
         UPSERT_TARGET_SQL: \"INSERT INTO {t} (id, v, n, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = EXCLUDED.n, updated_at = EXCLUDED.updated_at\"\n\
         SELECT_KEYS_SQL: \"SELECT id FROM {t}\"\n\
         TARGET_TABLE: {t}\n\
         KEY_COLUMNS: [id]\n"
    )
}

/// pgbench from PATH or PostgreSQL's own bin folder.
fn pgbench() -> PathBuf {
    let mut candidates: Vec<PathBuf> = vec![PathBuf::from("/usr/lib/postgresql/15/bin/pgbench")];
    if let Ok(dirs) = fs::read_dir("/usr/lib/postgresql") {
        for d in dirs.flatten() {
            candidates.push(d.path().join("bin/pgbench"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pgbench"))
}

#[test]
#[ignore = "load test: make test-load"]
fn three_runners_share_thirty_jobs_under_pgbench() {
    let started = Instant::now();
    let env = TestEnv::new("load_runners");
    env.m_exec(M_SETUP);
    for i in 1..=TABLES {
        let t = table(i);
        env.m_exec(&format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, v text, n integer NOT NULL DEFAULT 0,
                              updated_at timestamptz NOT NULL DEFAULT now());
             CREATE TRIGGER {t}_touch BEFORE UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION touch();
             INSERT INTO {t} (id, v, n) SELECT g, md5(g::text), 0 FROM generate_series(1, {ROWS}) g;"
        ));
        env.write_job(&t, &job_yaml(&t));
    }
    env.a_exec(A_AUDIT);

    // pgbench: 2 clients, 80 transactions a second, stopped after the cycles (and by its
    // own time limit at the latest)
    let script = env.path().join("churn.sql");
    fs::write(&script, PGBENCH_SCRIPT).unwrap();
    let p = pg_parts(env.pg_url());
    let mut bench = Command::new(pgbench())
        .args(["-n", "-c", "2", "-j", "2", "-R", "80", "-T", "240", "-f"])
        .arg(&script)
        .args(["-h", &p.host, "-p", &p.port.to_string(), "-U", &p.user])
        .arg(&env.m_db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgbench");

    let mut ok_total = 0usize;
    let mut skipped_total = 0usize;
    let mut per_job_ok: BTreeMap<String, usize> = BTreeMap::new();
    for cycle in 0..CYCLES {
        let children: Vec<_> = (0..RUNNERS)
            .map(|r| {
                let mut c = env.elt_process();
                c.env("ELT_LOG_DIR", env.log_dir.join(format!("runner{r}")))
                    .env("ELT_LOCK_TTL_SECONDS", "10")
                    .args(["run", "--json"]);
                c.spawn().expect("start a runner")
            })
            .collect();
        let outcomes: Vec<Outcome> = children
            .into_iter()
            .map(|c| wait(c, Duration::from_secs(120)))
            .collect();
        let mut ok_this_cycle: BTreeMap<String, usize> = BTreeMap::new();
        for (r, o) in outcomes.iter().enumerate() {
            assert_eq!(
                o.code(),
                Some(0),
                "cycle {cycle} runner {r} failed:\n{}",
                o.describe()
            );
            let v = o.json().expect("a --json report");
            for j in jobs(&v) {
                let name = j["job"].as_str().unwrap().to_string();
                match j["status"].as_str() {
                    Some("ok") => {
                        ok_total += 1;
                        *ok_this_cycle.entry(name.clone()).or_default() += 1;
                        *per_job_ok.entry(name).or_default() += 1;
                    }
                    Some("skipped") => skipped_total += 1,
                    other => panic!("cycle {cycle} runner {r}: job {name} is {other:?}: {j:#}"),
                }
            }
        }
        // exactly one runner processes each job per tick; the others find it held or done
        for i in 1..=TABLES {
            assert_eq!(
                ok_this_cycle.get(&table(i)).copied().unwrap_or(0),
                1,
                "cycle {cycle}: {} was not processed by exactly one runner",
                table(i)
            );
        }
    }
    let _ = bench.kill();
    let bench_out = bench.wait_with_output().expect("pgbench");
    // pgbench must have been running all along (killed by us, not dead of an error)
    let bench_err = String::from_utf8_lossy(&bench_out.stderr);
    assert!(
        !bench_err.contains("error") && !bench_err.contains("FATAL"),
        "pgbench: {bench_err}"
    );
    let changes: i64 = env
        .m()
        .query_one("SELECT last_value - 1000000 FROM ids", &[])
        .unwrap()
        .get(0);
    assert!(changes > 50, "pgbench inserted only {changes} rows");

    // One final run after the load stops: every target equals its source.
    let o = run({
        let mut c = env.elt_process();
        c.env("ELT_LOG_DIR", env.log_dir.join("final"))
            .args(["run", "--json"]);
        c
    });
    assert_eq!(o.code(), Some(0), "final run:\n{}", o.describe());
    let v = o.json().unwrap();
    for j in jobs(&v) {
        assert_eq!(j["status"], "ok", "{j:#}");
        ok_total += 1;
    }
    let mut lost = 0;
    for i in 1..=TABLES {
        let q = format!("SELECT id, v, n, updated_at FROM {}", table(i));
        let (m, a) = (env.m_rows(&q), env.a_rows(&q));
        lost += rows_lost(&m, &a);
        assert_same_rows(&m, &a, "M", "A");
    }

    // No job was ever processed by two runners at once.
    let mut a = env.a();
    let audited: i64 = a
        .query_one(
            "SELECT count(*) FROM elt_audit WHERE finished IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        audited as usize, ok_total,
        "the audit on A saw {audited} committed job runs, the reports {ok_total}"
    );
    let overlaps = TestEnv::texts(
        &mut a,
        "SELECT format('%s: pid %s [%s, %s] and pid %s [%s, %s]', x.job, x.pid, x.started,
                       x.finished, y.pid, y.started, y.finished)
         FROM elt_audit x JOIN elt_audit y ON x.job = y.job AND x.xid < y.xid
         WHERE tstzrange(x.started, x.finished) && tstzrange(y.started, y.finished)",
    );
    assert!(
        overlaps.is_empty(),
        "jobs processed by two runners at once:\n{}",
        overlaps.join("\n")
    );
    assert!(
        skipped_total > 0,
        "no runner ever met a held lock: the test did not exercise the locks"
    );
    for r in 0..RUNNERS {
        let errors = fs::read_to_string(env.log_dir.join(format!("runner{r}/error.log")))
            .unwrap_or_default();
        assert!(
            errors.trim().is_empty(),
            "runner {r} logged errors:\n{errors}"
        );
    }
    println!(
        "load: {RUNNERS} runners x {CYCLES} cycles x {TABLES} jobs: {ok_total} job runs ok, \
         {skipped_total} skipped (lock held), {changes} rows inserted by pgbench (plus updates \
         and deletes), per job ok runs {:?}..., {} s",
        per_job_ok.values().take(5).collect::<Vec<_>>(),
        started.elapsed().as_secs()
    );
    record(
        "3 runners x 30 jobs x 10 cycles under pgbench",
        (RUNNERS * CYCLES + 1) as u32,
        (RUNNERS * CYCLES + 1) as u32,
        lost,
    );
}
