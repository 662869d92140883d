//! State in Redis is a cache: losing it, or losing A's table, never loses data. Late commits,
//! dry runs, reset-state, status, locks between concurrent runners.
use crate::fixture::*;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Rows with old, distinct `updated_at` values, far outside any overlap window.
fn old_products(env: &TestEnv, n: i64) {
    env.m_exec(PRODUCTS_M_SQL);
    env.m_exec(&format!(
        "INSERT INTO products (id, title, price, updated_at)
         SELECT g, 'Old ' || g, g, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 day'
         FROM generate_series(1, {n}) g"
    ));
    env.write_job("products", PRODUCTS_JOB);
}

#[test]
fn redis_flushed_between_runs_resyncs_in_full() {
    let env = TestEnv::new("redis_flushed");
    old_products(&env, 20);
    env.run_ok("products");
    // A change that an incremental run would not see (updated_at stays old) ...
    env.m_exec("UPDATE products SET title = 'changed behind the watermark', updated_at = updated_at + interval '1 second' WHERE id = 5");
    env.m_exec("DELETE FROM products WHERE id = 6");
    env.flush_redis_state();
    // ... is delivered once the state is gone.
    let c = env.run_ok("products");
    assert_eq!(c.read, 19, "a full re-sync reads every row: {c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    // And the state is rebuilt: the next run is incremental again.
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 0, "{c:?}");
    assert!(c.read < 19, "incremental again after the re-sync: {c:?}");
}

#[test]
fn dropped_target_table_is_recreated_and_refilled_in_the_same_run() {
    let env = TestEnv::new("a_dropped");
    old_products(&env, 15);
    env.run_ok("products");
    env.a_exec("DROP TABLE products");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 15, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn truncated_target_table_is_refilled_in_the_same_run() {
    let env = TestEnv::new("a_truncated");
    old_products(&env, 15);
    env.run_ok("products");
    env.a_exec("TRUNCATE products");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 15, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// A row whose updated_at is older than the watermark but that appears after the run.
#[test]
fn late_row_with_old_updated_at_is_delivered() {
    let env = TestEnv::new("late_row");
    env.products_fixture(5);
    env.run_ok("products");
    env.m_exec("INSERT INTO products (id, title, price, updated_at) VALUES (6, 'late', 6, now() - interval '1 minute')");
    env.m_exec("UPDATE products SET title = 'late update', updated_at = now() - interval '2 minutes' WHERE id = 2");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 2, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// `--overlap-seconds` (or `ELT_OVERLAP_SECONDS`) is how far a run reaches back before the
/// stored watermark: a change stamped two minutes behind it is outside a 60 s window and
/// inside a 300 s one.
#[test]
fn overlap_seconds_set_how_far_a_run_reaches_back() {
    let env = TestEnv::new("overlap_window");
    env.products_fixture(5);
    env.run_ok("products");
    env.m_exec("UPDATE products SET title = 'late update', updated_at = now() - interval '2 minutes' WHERE id = 2");
    let mut c = env.elt();
    c.args(["run", "--json", "--overlap-seconds", "60"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        counts(&v, "products").upserted,
        0,
        "two minutes back is outside a 60 s overlap: {v:#}"
    );
    let mut c = env.elt();
    c.env("ELT_OVERLAP_SECONDS", "300").args(["run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "products").upserted, 1, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// A transaction open across a run commits afterwards, with updated_at = its start time.
#[test]
fn transaction_committing_after_a_run_is_delivered() {
    let env = TestEnv::new("late_commit");
    env.products_fixture(5);
    env.run_ok("products");
    let mut m = env.m();
    let mut tx = m.transaction().unwrap();
    // now() is the transaction's start time, i.e. before the next run's watermark.
    tx.batch_execute("INSERT INTO products (id, title, price) VALUES (100, 'slow writer', 1)")
        .unwrap();
    // Not an ordering: M's clock must move on, so that the run's watermark (M's now()) is
    // clearly later than the row's updated_at, which is the open transaction's start.
    std::thread::sleep(Duration::from_millis(1100));
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 0, "uncommitted row is invisible: {c:?}");
    tx.commit().unwrap();
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 1, "the late commit arrives: {c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn dry_run_writes_nothing_but_reports_counts() {
    let env = TestEnv::new("dry_run");
    env.products_fixture(10);
    env.run_ok("products");
    env.m_exec(
        "UPDATE products SET price = 0 WHERE id IN (1, 2);
         INSERT INTO products (id, title, price) VALUES (11, 'eleven', 11);
         DELETE FROM products WHERE id = 10;",
    );
    let a_before = env.a_rows(PRODUCTS_Q);
    let redis_before = env.redis_snapshot();
    let mut c = env.elt();
    c.args(["run", "--dry-run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(&v, "products"), "ok", "{v:#}");
    let dry = counts(&v, "products");
    assert_eq!(
        (dry.upserted, dry.deleted),
        (3, 1),
        "dry-run counts are what would happen: {dry:?}"
    );
    assert_eq!(env.a_rows(PRODUCTS_Q), a_before, "dry-run must not touch A");
    assert_eq!(
        env.redis_snapshot(),
        redis_before,
        "dry-run must not touch Redis"
    );

    // run-job --dry-run too.
    let mut c = env.elt();
    c.args(["run-job", "products", "--dry-run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "products"), dry);
    assert_eq!(env.a_rows(PRODUCTS_Q), a_before);
    assert_eq!(env.redis_snapshot(), redis_before);

    // The real run then does exactly that.
    let real = env.run_ok("products");
    assert_eq!((real.upserted, real.deleted), (3, 1), "{real:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn dry_run_on_a_fresh_job_leaves_a_and_redis_empty() {
    let env = TestEnv::new("dry_run_fresh");
    env.products_fixture(7);
    let mut c = env.elt();
    c.args(["run", "--dry-run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    let dry = counts(&v, "products");
    assert_eq!((dry.read, dry.upserted), (7, 7), "{dry:?}");
    assert!(
        matches!(env.a_count("products"), None | Some(0)),
        "no rows written to A"
    );
    assert!(
        env.redis_snapshot().is_empty(),
        "no state written: {:?}",
        env.redis_keys()
    );
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 7, "{c:?}");
}

#[test]
fn reset_state_of_one_job_resyncs_only_that_job() {
    let env = TestEnv::new("reset_one");
    old_products(&env, 10);
    env.write_job(
        "products_b",
        &PRODUCTS_JOB
            .replace("INTO products", "INTO products_b")
            .replace("EXISTS products", "EXISTS products_b")
            .replace("TARGET_TABLE: products", "TARGET_TABLE: products_b"),
    );
    env.run_ok("products");
    // A change hidden behind the watermark in both jobs' source.
    env.m_exec("UPDATE products SET title = 'hidden change', updated_at = updated_at + interval '1 second' WHERE id = 3");
    let out = env
        .elt()
        .args(["reset-state", "products"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    let reset = counts(&v, "products");
    let kept = counts(&v, "products_b");
    assert_eq!(reset.read, 10, "the reset job re-reads everything: {v:#}");
    assert!(kept.read < 10, "the other job stays incremental: {v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn reset_state_all_and_bad_invocations() {
    let env = TestEnv::new("reset_all");
    old_products(&env, 5);
    env.run_ok("products");
    env.m_exec("UPDATE products SET title = 'hidden change', updated_at = updated_at + interval '1 second' WHERE id = 1");
    let out = env.elt().args(["reset-state", "--all"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        env.redis_snapshot().is_empty(),
        "--all forgets every job's state: {:?}",
        env.redis_keys()
    );
    let c = env.run_ok("products");
    assert_eq!(c.read, 5, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);

    let out = env.elt().arg("reset-state").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "reset-state needs JOB... or --all: {}",
        output_text(&out)
    );
}

#[test]
fn status_reports_last_error() {
    let env = TestEnv::new("status_error");
    env.write_job(
        "broken",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS broken (id int PRIMARY KEY)",
            "SELECT id FROM missing_source_table WHERE updated_at > %s",
            "INSERT INTO broken (id) VALUES (%s) ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id",
            "SELECT id FROM missing_source_table",
            "broken",
            &["id"],
        ),
    );
    let (code, _) = env.run_json();
    assert_eq!(code, 1);
    let out = env.elt().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("broken") && s.contains("missing_source_table"),
        "status shows the last error:\n{s}"
    );
}

/// Another runner holds the job's lock: the job is skipped (exit 0) with a warning.
#[test]
fn job_locked_by_another_runner_is_skipped() {
    let env = TestEnv::new("lock_held");
    env.products_fixture(3);
    env.hold_lock("products", 60);
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "a skipped job counts as success: {v:#}");
    assert_eq!(status(&v, "products"), "skipped", "{v:#}");
    assert!(
        matches!(env.a_count("products"), None | Some(0)),
        "nothing loaded"
    );
    let log = env.elt_log();
    assert!(
        log.lines()
            .any(|l| l.contains("products") && l.to_lowercase().contains("warn")),
        "a warning naming the job in elt.log:\n{log}"
    );
    // The foreign lock is left alone.
    let mut con = env.redis();
    let holder: Option<String> = redis::cmd("GET")
        .arg(env.lock_key("products"))
        .query(&mut con)
        .unwrap();
    assert_eq!(holder.as_deref(), Some("another-runner-on-another-host"));
    // Once released, the job runs.
    let _: i64 = redis::cmd("DEL")
        .arg(env.lock_key("products"))
        .query(&mut con)
        .unwrap();
    env.run_ok("products");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    let holder: Option<String> = redis::cmd("GET")
        .arg(env.lock_key("products"))
        .query(&mut con)
        .unwrap();
    assert_eq!(holder, None, "the lock is released after the run");
}

/// Lock lifetime of a key `--lock-ttl-seconds`/`ELT_LOCK_TTL_SECONDS` gave, in ms; None
/// when nobody holds it.
fn lock_pttl(env: &TestEnv, job: &str) -> Option<i64> {
    let pttl: i64 = redis::cmd("PTTL")
        .arg(env.lock_key(job))
        .query(&mut env.redis())
        .unwrap();
    (pttl >= 0).then_some(pttl)
}

/// Two runs at the same time: one processes the job, the other skips it.
#[test]
fn concurrent_runs_do_not_process_the_same_job() {
    let env = TestEnv::new("concurrent_runs");
    env.products_fixture(5);
    let mut c = env.elt_process();
    c.args(["run", "--json"]);
    // The first runner holds the job (paused before its key comparison) ...
    let first = Paused::start(c, &env.log_dir, "delete");
    // ... while the second one runs from start to end.
    let mut c = env.elt_process();
    c.args(["run", "--json"]);
    let o2 = run(c);
    let o1 = first.resume(Duration::from_secs(120));
    assert_eq!(o1.code(), Some(0), "{}", o1.describe());
    assert_eq!(o2.code(), Some(0), "{}", o2.describe());
    assert_eq!(
        (o1.job_status("products"), o2.job_status("products")),
        (Some("ok".into()), Some("skipped".into())),
        "first:\n{}\nsecond:\n{}",
        o1.describe(),
        o2.describe()
    );
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// The lock is renewed while its holder works: with a 3 s lifetime, a runner that starts
/// more than 3 s into the holder's run still finds the job taken.
#[test]
fn lock_is_renewed_while_the_holder_works() {
    let env = TestEnv::new("lock_renewed");
    env.products_fixture(5);
    let mut c = env.elt_process();
    c.args(["--lock-ttl-seconds", "3", "run", "--json"]);
    let first = Paused::start(c, &env.log_dir, "delete");
    let pttl = lock_pttl(&env, "products").expect("the paused runner holds the lock");
    assert!(
        pttl <= 3_000,
        "the lock lives {pttl} ms, --lock-ttl-seconds 3"
    );
    // Not an ordering: wall-clock time must pass the lock's lifetime, so that only its
    // renewal keeps it held.
    std::thread::sleep(Duration::from_millis(4_500));
    let mut second = env.elt();
    second.args(["--lock-ttl-seconds", "3", "run", "--json"]);
    let (code2, v2) = run_cmd_json(second);
    let o1 = first.resume(Duration::from_secs(120));
    assert_eq!(o1.code(), Some(0), "{}", o1.describe());
    assert_eq!(
        o1.job_status("products").as_deref(),
        Some("ok"),
        "{}",
        o1.describe()
    );
    assert_eq!(code2, 0, "{v2:#}");
    assert_eq!(
        status(&v2, "products"),
        "skipped",
        "the lock must still be held (renewed) after its TTL: {v2:#}"
    );
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// A runner killed mid-job leaves A consistent; once its lock expires the next run completes.
#[test]
fn killed_run_is_completed_by_the_next_run() {
    let env = TestEnv::new("killed_run");
    env.products_fixture(5);
    env.m_exec("INSERT INTO products (id, title, price) SELECT g, 'more ' || g, g FROM generate_series(6, 500) g");
    let mut c = env.elt_process();
    c.env("ELT_LOCK_TTL_SECONDS", "3").args(["run", "--json"]);
    // Killed after its rows went to A, before its key comparison and commit.
    let paused = Paused::start(c, &env.log_dir, "delete");
    let pttl = lock_pttl(&env, "products").expect("the paused runner holds the lock");
    assert!(
        pttl <= 3_000,
        "the lock lives {pttl} ms, ELT_LOCK_TTL_SECONDS=3"
    );
    let o = paused.kill9(); // SIGKILL: no cleanup at all
    assert!(o.killed(), "{}", o.describe());
    let n = env.a_count("products").unwrap_or(0);
    assert!(
        n == 0 || n == 500,
        "A is consistent after the kill (all or nothing), has {n} rows"
    );
    assert_eq!(
        env.a_count("products"),
        None,
        "killed before the commit: not even the table CREATE_TABLE_SQL made is left"
    );
    // The dead runner's lock expires within its TTL; then the next run does the work.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut c = env.elt();
        c.env("ELT_LOCK_TTL_SECONDS", "3").args(["run", "--json"]);
        let (code, v) = run_cmd_json(c);
        assert_eq!(code, 0, "{v:#}");
        match status(&v, "products") {
            "ok" => break,
            // polls until the lock expires (a condition, with a deadline)
            "skipped" if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(1)),
            other => panic!("unexpected status {other}: {v:#}"),
        }
    }
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// A job skipped for another runner's lock names the holder readably, from the lock's
/// value `host@pid-namespace/pid/start-ms`: written by hand (another host), and held by a
/// real runner of this host (its pid, this host's name, the moment it took the lock).
#[test]
fn a_skipped_job_names_the_lock_holder_by_host_pid_and_start() {
    let env = TestEnv::new("lock_holder_shown");
    env.products_fixture(3);
    let mut con = env.redis();
    let _: () = redis::cmd("SET")
        .arg(env.lock_key("products"))
        .arg("db1@4026531836/4242/1764676800000")
        .arg("EX")
        .arg(60)
        .query(&mut con)
        .unwrap();
    let holder = "pid 4242 on host db1, since 2025-12-02T12:00:00Z";
    let out = env.elt().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("products: skipped: another runner holds the job's lock ({holder})\n")
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(
        env.elt_log().lines().any(|l| l.contains("WARN")
            && l.ends_with(&format!(
                "[products] skipped: another runner holds the job's lock ({holder})"
            ))),
        "{}",
        env.elt_log()
    );
    // status says who runs it, in the table and in --json
    let out = env.elt().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("products  never run, running  ")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l == format!("running: products ({holder})")),
        "{table}"
    );
    let out = env.elt().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["jobs"][0]["running"], holder, "{v:#}");
    // reset-state leaves a running job's state alone and says who runs it
    let out = env
        .elt()
        .args(["reset-state", "products"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "elt: warning: job products is running ({holder}); its state was not reset\n\
             elt: error: job(s) products are running now; try again when they finish\n"
        )
    );
    let _: i64 = redis::cmd("DEL")
        .arg(env.lock_key("products"))
        .query(&mut con)
        .unwrap();
    let out = env.elt().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["jobs"][0]["running"], serde_json::Value::Null, "{v:#}");

    // a real runner, paused while it holds the lock (its pause file holds its pid)
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = env.elt_process();
    c.args(["run", "--json"]);
    let first = Paused::start(c, &env.log_dir, "delete");
    let pid = std::fs::read_to_string(env.log_dir.join("fault-delete.paused")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = env.elt().arg("run").output().unwrap();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let o1 = first.resume(Duration::from_secs(120));
    assert_eq!(o1.code(), Some(0), "{}", o1.describe());
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let head = format!(
        "products: skipped: another runner holds the job's lock (pid {} on host {}, since ",
        pid.trim(),
        host.trim()
    );
    let since = stdout
        .strip_prefix(&head)
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{head}…):\n{stdout}"));
    let since = humantime::parse_rfc3339(since)
        .unwrap_or_else(|e| panic!("{since}: {e}"))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (before..=after).contains(&since),
        "{before} {since} {after}"
    );
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}
