//! State in Redis is a cache: losing it, or losing A's table, never loses data. Late commits,
//! dry runs, reset-state, status, locks between concurrent runners.
mod common;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

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

/// A job that takes a few seconds: the source query sleeps once.
fn slow_products(env: &TestEnv, secs: f64) {
    env.products_fixture(5);
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace(
            "FROM products WHERE updated_at > %s",
            &format!(
                "FROM products WHERE id > (SELECT -1 FROM pg_sleep({secs})) AND updated_at > %s"
            ),
        ),
    );
}

/// Two runs at the same time: one processes the job, the other skips it.
#[test]
fn concurrent_runs_do_not_process_the_same_job() {
    let env = TestEnv::new("concurrent_runs");
    slow_products(&env, 3.0);
    let spawn = || {
        let mut c = std::process::Command::new(elt_bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ELT_") {
                c.env_remove(&k);
            }
        }
        c.env("ELT_MASTER_URL", env.m_url())
            .env("ELT_ANALYTICS_URL", env.a_url())
            .env("ELT_REDIS_URL", env.redis_url())
            .env("ELT_JOBS_DIR", &env.jobs_dir)
            .env("ELT_LOG_DIR", &env.log_dir)
            .env("ELT_REDIS_PREFIX", &env.prefix)
            .current_dir(env.path())
            .args(["run", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    std::thread::sleep(Duration::from_millis(1000));
    let second = spawn();
    let o1 = first.wait_with_output().unwrap();
    let o2 = second.wait_with_output().unwrap();
    assert_eq!(o1.status.code(), Some(0), "{}", output_text(&o1));
    assert_eq!(o2.status.code(), Some(0), "{}", output_text(&o2));
    let v1: serde_json::Value = serde_json::from_slice(&o1.stdout).unwrap();
    let v2: serde_json::Value = serde_json::from_slice(&o2.stdout).unwrap();
    let mut statuses = vec![
        status(&v1, "products").to_string(),
        status(&v2, "products").to_string(),
    ];
    statuses.sort();
    assert_eq!(
        statuses,
        vec!["ok", "skipped"],
        "first: {v1:#}\nsecond: {v2:#}"
    );
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// The lock is renewed while its holder works: with a 3 s TTL and an 8 s job, a runner that
/// starts 5.5 s in still finds the job taken.
#[test]
fn lock_is_renewed_while_the_holder_works() {
    let env = TestEnv::new("lock_renewed");
    slow_products(&env, 8.0);
    let mut first = env.elt();
    first.args(["--lock-ttl-seconds", "3", "run", "--json"]);
    let handle = std::thread::spawn(move || run_cmd_json(first));
    std::thread::sleep(Duration::from_millis(5500));
    let mut second = env.elt();
    second.args(["--lock-ttl-seconds", "3", "run", "--json"]);
    let (code2, v2) = run_cmd_json(second);
    let (code1, v1) = handle.join().unwrap();
    assert_eq!(code1, 0, "{v1:#}");
    assert_eq!(status(&v1, "products"), "ok", "{v1:#}");
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
    slow_products(&env, 3.0);
    env.m_exec("INSERT INTO products (id, title, price) SELECT g, 'more ' || g, g FROM generate_series(6, 500) g");
    let mut c = std::process::Command::new(elt_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ELT_") {
            c.env_remove(&k);
        }
    }
    let mut child = c
        .env("ELT_MASTER_URL", env.m_url())
        .env("ELT_ANALYTICS_URL", env.a_url())
        .env("ELT_REDIS_URL", env.redis_url())
        .env("ELT_JOBS_DIR", &env.jobs_dir)
        .env("ELT_LOG_DIR", &env.log_dir)
        .env("ELT_REDIS_PREFIX", &env.prefix)
        .env("ELT_LOCK_TTL_SECONDS", "3")
        .current_dir(env.path())
        .args(["run", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();
    let n = env.a_count("products").unwrap_or(0);
    assert!(
        n == 0 || n == 500,
        "A is consistent after the kill (all or nothing), has {n} rows"
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
            "skipped" if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(1)),
            other => panic!("unexpected status {other}: {v:#}"),
        }
    }
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}
