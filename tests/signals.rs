//! Stopping a run: SIGTERM (systemd, timeout(1)) and SIGINT (Ctrl-C) roll the current job
//! back, write nothing to Redis for it, release its lock at once, start no later job, name
//! the signal in error.log and exit 143 or 130.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::fixture::*;

/// Two jobs: `a_products` (stopped) and `b_products` (must not start).
fn two_jobs(env: &TestEnv) {
    env.products_fixture(20);
    std::fs::remove_file(env.job_path("products")).unwrap();
    env.write_job("a_products", PRODUCTS_JOB);
    env.write_job(
        "b_products",
        &PRODUCTS_JOB
            .replace(
                "TABLE IF NOT EXISTS products",
                "TABLE IF NOT EXISTS products_b",
            )
            .replace("INSERT INTO products", "INSERT INTO products_b")
            .replace("TARGET_TABLE: products", "TARGET_TABLE: products_b"),
    );
}

fn lock_value(env: &TestEnv, job: &str) -> Option<String> {
    let mut con = env.redis();
    redis::cmd("GET")
        .arg(env.lock_key(job))
        .query(&mut con)
        .unwrap()
}

#[test]
fn sigterm_before_the_commit_rolls_back_and_exits_143() {
    let env = TestEnv::new("sigterm_commit");
    two_jobs(&env);
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    env.m_exec(
        "UPDATE products SET price = price + 1 WHERE id <= 5; DELETE FROM products WHERE id = 20",
    );
    let a_before = env.a_rows(PRODUCTS_Q);
    let b_before = env.a_rows("SELECT id, title, price, updated_at FROM products_b");
    let redis_before = env.redis_snapshot();

    let mut c = env.elt_process();
    c.args(["run", "--json"]);
    let paused = Paused::start(c, &env.log_dir, "before-commit");
    assert!(
        lock_value(&env, "a_products").is_some(),
        "the job holds its lock"
    );
    paused.signal("-TERM");
    let started = Instant::now();
    let out = paused.end(Duration::from_secs(60));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.code(), Some(143), "{}", out.describe());

    assert_eq!(env.a_rows(PRODUCTS_Q), a_before, "A was rolled back");
    assert_eq!(
        env.a_rows("SELECT id, title, price, updated_at FROM products_b"),
        b_before,
        "the later job did not run"
    );
    assert_eq!(
        env.redis_snapshot(),
        redis_before,
        "nothing written to Redis"
    );
    assert_eq!(
        lock_value(&env, "a_products"),
        None,
        "the lock is released at once"
    );
    assert_eq!(
        out.job_status("a_products").as_deref(),
        Some("failed"),
        "{}",
        out.describe()
    );
    assert_eq!(out.job_status("b_products"), None, "{}", out.describe());
    assert!(
        out.job_error("a_products")
            .unwrap_or_default()
            .contains("SIGTERM"),
        "{}",
        out.describe()
    );
    assert!(env.error_log().contains("SIGTERM"), "{}", env.error_log());

    // the next run is not skipped and completes the work
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    env.assert_a_equals_m(
        PRODUCTS_Q,
        "SELECT id, title, price, updated_at FROM products_b",
    );
}

#[test]
fn sigint_cancels_a_long_query_within_seconds_and_exits_130() {
    let env = TestEnv::new("sigint_query");
    env.products_fixture(10);
    env.run_ok("products");
    env.m_exec("UPDATE products SET title = title || '!' WHERE id = 1");
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace(
            "FROM products WHERE updated_at > %s",
            "FROM products WHERE id > (SELECT -1 FROM pg_sleep(60)) AND updated_at > %s",
        ),
    );
    let before = env.a_rows(PRODUCTS_Q);
    let mut c = env.elt_process();
    c.args(["run-job", "products"]);
    let child = c.spawn().unwrap();
    let mut m = env.m();
    let sleeping = wait_until(Duration::from_secs(60), || {
        m.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()",
            &[],
        )
        .map(|r| r.get::<_, i64>(0) > 0)
        .unwrap_or(false)
    });
    assert!(sleeping, "the slow query never started");
    signal(&child, "-INT");
    let started = Instant::now();
    let out = wait(child, Duration::from_secs(90));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.code(), Some(130), "{}", out.describe());
    assert_eq!(env.a_rows(PRODUCTS_Q), before);
    assert_eq!(lock_value(&env, "products"), None);
    assert!(env.error_log().contains("SIGINT"), "{}", env.error_log());
    let gone = wait_until(Duration::from_secs(10), || {
        m.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' \
             AND pid <> pg_backend_pid()",
            &[],
        )
        .map(|r| r.get::<_, i64>(0) == 0)
        .unwrap_or(false)
    });
    assert!(gone, "the query on M was not cancelled");
    assert!(Path::new(&env.log_dir).join("error.log").exists());
}
