//! Drift repair (rows M has and A lacks despite their watermark), delete guards, and key
//! reconciliation when few or many key buckets differ.

use crate::fixture::*;

fn repaired(v: &serde_json::Value, job_name: &str) -> u64 {
    job(v, job_name)["rows_repaired"]
        .as_u64()
        .expect("rows_repaired")
}

#[test]
fn rows_with_an_old_watermark_are_backfilled_by_drift_repair() {
    let env = TestEnv::new("repair_old_wm");
    env.products_fixture(50);
    env.run_ok("products");
    // Committed after the run with an updated_at far behind the watermark: no overlap
    // window reaches it, only the key comparison can.
    env.m_exec(
        "INSERT INTO products (id, title, price, updated_at) VALUES \
         (1001, 'late a', 1.00, '2001-01-01'), (1002, 'late b', 2.00, '2001-01-01')",
    );
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(repaired(&v, "products"), 2, "{v:#}");
    assert_eq!(counts(&v, "products").upserted, 0, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    // and once repaired, nothing more to do
    let (_, v) = env.run_job_json("products");
    assert_eq!(repaired(&v, "products"), 0, "{v:#}");
    assert_eq!(counts(&v, "products").upserted, 0, "{v:#}");
}

#[test]
fn rows_with_null_watermark_column_are_delivered() {
    let env = TestEnv::new("repair_null_wm");
    env.m_exec(
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text, changed_at timestamptz);
         INSERT INTO events SELECT g, 'k' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE now() END
         FROM generate_series(1, 30) g;",
    );
    env.write_job(
        "events",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS events (id bigint PRIMARY KEY, kind text, changed_at timestamptz)",
            "SELECT id, kind, changed_at FROM events WHERE changed_at > %s",
            "INSERT INTO events (id, kind, changed_at) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, changed_at = EXCLUDED.changed_at",
            "SELECT id FROM events",
            "events",
            &["id"],
        ),
    );
    let (code, v) = env.run_job_json("events");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "events").read, 20, "{v:#}");
    assert_eq!(repaired(&v, "events"), 10, "{v:#}");
    let q = "SELECT id, kind, changed_at FROM events";
    env.assert_a_equals_m(q, q);
}

#[test]
fn rows_lost_in_a_are_restored_while_counts_still_match() {
    let env = TestEnv::new("repair_lost");
    env.products_fixture(40);
    env.run_ok("products");
    // One row lost and one stray row added in A: the row count is unchanged, so only the
    // key comparison notices.
    env.a_exec("DELETE FROM products WHERE id = 7");
    env.a_exec("INSERT INTO products VALUES (999, 'stray', 1, now())");
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(repaired(&v, "products"), 1, "{v:#}");
    assert_eq!(counts(&v, "products").deleted, 1, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

fn big_table(env: &TestEnv, n: i64) {
    env.products_fixture(n);
    env.run_ok("products");
    assert_eq!(env.a_count("products"), Some(n));
}

#[test]
fn emptied_source_is_not_mirrored_without_force() {
    let env = TestEnv::new("guard_empty");
    big_table(&env, 1500);
    env.m_exec("DELETE FROM products");
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "products"), "failed");
    let err = job(&v, "products")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("delete guard") && err.contains("--force-deletes"),
        "{err}"
    );
    assert_eq!(
        env.a_count("products"),
        Some(1500),
        "nothing may be deleted"
    );

    let out = env
        .elt()
        .args(["run-job", "products", "--json", "--force-deletes"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(env.a_count("products"), Some(0));
}

#[test]
fn deleting_more_than_the_allowed_share_is_refused() {
    let env = TestEnv::new("guard_share");
    big_table(&env, 3000);
    env.m_exec("DELETE FROM products WHERE id > 1000");
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 1, "{v:#}");
    let err = job(&v, "products")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("would delete 2000 of 3000"), "{err}");
    assert_eq!(env.a_count("products"), Some(3000));

    // A job that allows it
    let job_text = std::fs::read_to_string(env.job_path("products")).expect("job");
    env.write_job("products", &format!("{job_text}MAX_DELETE_FRACTION: 0.9\n"));
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "products").deleted, 2000, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn small_deletions_pass_the_guards() {
    let env = TestEnv::new("guard_small");
    big_table(&env, 200);
    env.m_exec("DELETE FROM products");
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "products").deleted, 200);
    assert_eq!(env.a_count("products"), Some(0));
}

#[test]
fn scattered_and_mass_deletions_reconcile_exactly() {
    let env = TestEnv::new("reconcile_paths");
    big_table(&env, 5000);
    // few buckets differ: the filtered path
    env.m_exec("DELETE FROM products WHERE id IN (17, 2500, 4999)");
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "products").deleted, 3);
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    // most buckets differ: the unfiltered path
    env.m_exec("DELETE FROM products WHERE id % 3 = 0");
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "products").deleted, 1666, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn invalid_max_delete_fraction_is_a_validation_error() {
    let env = TestEnv::new("guard_validate");
    env.products_fixture(1);
    let job_text = std::fs::read_to_string(env.job_path("products")).expect("job");
    env.write_job("products", &format!("{job_text}MAX_DELETE_FRACTION: 2\n"));
    let out = env.elt().args(["validate"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        output_text(&out).contains("MAX_DELETE_FRACTION"),
        "{}",
        output_text(&out)
    );
}
