//! `elt verify`: equal after a run; values changed in A, rows missing and extra in A found and
//! named; NULL key parts; a transforming upsert compared with what it would write; nothing
//! changed anywhere; exit statuses.

use crate::fixture::*;
use serde_json::Value;

fn verify_json(env: &TestEnv, args: &[&str]) -> (i32, Value) {
    let mut c = env.elt();
    c.arg("verify").args(args).arg("--json");
    run_cmd_json(c)
}

fn keys(v: &Value, kind: &str) -> Vec<Vec<Option<String>>> {
    serde_json::from_value(v["sample_keys"][kind].clone()).unwrap()
}

fn k(parts: &[Option<&str>]) -> Vec<Option<String>> {
    parts.iter().map(|p| p.map(str::to_string)).collect()
}

#[test]
fn equal_after_a_run_and_each_difference_named() {
    let env = TestEnv::new("verify_basic");
    env.products_fixture(50);
    env.run_ok("products");
    let (code, v) = verify_json(&env, &[]);
    assert_eq!(code, 0, "{v:#}");
    let j = job(&v, "products");
    assert_eq!(j["status"], "equal");
    assert_eq!(
        (j["rows_m"].as_u64(), j["rows_a"].as_u64()),
        (Some(50), Some(50))
    );
    assert_eq!(j["error"], Value::Null);

    env.a_exec(
        "UPDATE products SET price = price + 1 WHERE id IN (3, 4); \
         DELETE FROM products WHERE id = 7; \
         INSERT INTO products VALUES (900, 'only in A', 1, now())",
    );
    let redis_before = env.redis_snapshot();
    let a_before = env.a_rows(PRODUCTS_Q);
    let (code, v) = verify_json(&env, &["products"]);
    assert_eq!(code, 1, "{v:#}");
    let j = job(&v, "products");
    assert_eq!(j["status"], "different", "{v:#}");
    assert_eq!(
        (
            j["differ"].as_u64(),
            j["missing"].as_u64(),
            j["extra"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{v:#}"
    );
    assert_eq!(
        (j["rows_m"].as_u64(), j["rows_a"].as_u64()),
        (Some(50), Some(50))
    );
    let mut differ = keys(j, "differ");
    differ.sort();
    assert_eq!(differ, vec![k(&[Some("3")]), k(&[Some("4")])]);
    assert_eq!(keys(j, "missing"), vec![k(&[Some("7")])]);
    assert_eq!(keys(j, "extra"), vec![k(&[Some("900")])]);
    // it changed nothing
    assert_eq!(env.redis_snapshot(), redis_before);
    assert_eq!(env.a_rows(PRODUCTS_Q), a_before);

    // the human form: one line, the counts and the keys
    let out = env.elt().args(["verify", "products"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("products: differ: 2 row(s) differ, 1 missing in A, 1 extra in A"),
        "{text}"
    );
    assert!(
        text.contains("missing: 7") && text.contains("extra: 900"),
        "{text}"
    );

    // the documented repair: reset-state and run the job
    env.elt()
        .args(["reset-state", "products"])
        .assert()
        .success();
    let (code, _) = env.run_job_json("products");
    assert_eq!(code, 0);
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    assert_eq!(verify_json(&env, &[]).0, 0);
}

#[test]
fn composite_keys_with_null_parts() {
    let env = TestEnv::new("verify_nulls");
    env.m_exec(
        "CREATE TABLE pairs (a text, b int, v text, updated_at timestamptz NOT NULL DEFAULT now()); \
         CREATE UNIQUE INDEX ON pairs (a, b) NULLS NOT DISTINCT; \
         INSERT INTO pairs SELECT 'k' || (g % 20), CASE WHEN g % 3 = 0 THEN NULL ELSE g END, 'v' || g, now() \
         FROM generate_series(1, 60) g",
    );
    env.write_job(
        "pairs",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS pairs (a text, b int, v text, updated_at timestamptz, \
             UNIQUE NULLS NOT DISTINCT (a, b))",
            "SELECT a, b, v, updated_at FROM pairs WHERE updated_at > %s",
            "INSERT INTO pairs (a, b, v, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (a, b) \
             DO UPDATE SET v = EXCLUDED.v, updated_at = EXCLUDED.updated_at",
            "SELECT a, b FROM pairs",
            "pairs",
            &["a", "b"],
        ),
    );
    env.run_ok("pairs");
    assert_eq!(verify_json(&env, &[]).0, 0);
    env.a_exec("UPDATE pairs SET v = 'changed' WHERE a = 'k3' AND b IS NULL");
    let (code, v) = verify_json(&env, &[]);
    assert_eq!(code, 1);
    let j = job(&v, "pairs");
    assert_eq!(j["differ"].as_u64(), Some(1), "{v:#}");
    assert_eq!(keys(j, "differ"), vec![k(&[Some("k3"), None])]);
    assert_eq!(
        (j["missing"].as_u64(), j["extra"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn a_transforming_upsert_is_compared_with_what_it_would_write() {
    let env = TestEnv::new("verify_transform");
    env.products_fixture(30);
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace(
            "VALUES (%s, %s, %s, %s)",
            "VALUES (%s, upper(%s), %s * 2, %s)",
        ),
    );
    env.run_ok("products");
    let (code, v) = verify_json(&env, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(job(&v, "products")["rows_a"].as_u64(), Some(30));
    // a value A holds that the upsert would not write
    env.a_exec("UPDATE products SET title = lower(title) WHERE id = 9");
    let (code, v) = verify_json(&env, &[]);
    assert_eq!(code, 1);
    let j = job(&v, "products");
    assert_eq!(keys(j, "differ"), vec![k(&[Some("9")])], "{v:#}");
}

#[test]
fn a_missing_target_and_bad_invocations() {
    let env = TestEnv::new("verify_missing");
    env.products_fixture(5);
    let (code, v) = verify_json(&env, &[]);
    assert_eq!(code, 1, "{v:#}");
    let j = job(&v, "products");
    assert_eq!(j["status"], "different");
    assert_eq!(
        (j["missing"].as_u64(), j["rows_a"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(env.a_count("products"), None, "verify created nothing");
    let out = env.elt().args(["verify", "nosuchjob"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    env.write_job("broken", "KEY_COLUMNS: [id]\n");
    let (code, v) = verify_json(&env, &["broken"]);
    assert_eq!(code, 1);
    assert_eq!(job(&v, "broken")["status"], "failed");
}

#[test]
fn values_equal_to_postgresql_but_written_differently_are_a_difference() {
    let env = TestEnv::new("verify_canonical");
    env.m_exec(
        "CREATE COLLATION IF NOT EXISTS ci (provider = icu, locale = 'und-u-ks-level2', \
           deterministic = false); \
         CREATE TABLE odd (id int PRIMARY KEY, n numeric, f float8, arr int[], s text COLLATE ci, \
           iv interval, updated_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO odd VALUES (1, 1.0, 0, '{1,2}', 'abc', '1 day'), \
           (2, 2.50, 1.5, '{3}', 'Mixed', '2 hours'), (3, NULL, NULL, NULL, NULL, NULL)",
    );
    env.a_exec(
        "CREATE COLLATION IF NOT EXISTS ci (provider = icu, locale = 'und-u-ks-level2', \
           deterministic = false)",
    );
    env.write_job(
        "odd",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS odd (id int PRIMARY KEY, n numeric, f float8, arr int[], \
             s text COLLATE ci, iv interval, updated_at timestamptz)",
            "SELECT id, n, f, arr, s, iv, updated_at FROM odd WHERE updated_at > %s",
            "INSERT INTO odd (id, n, f, arr, s, iv, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s) \
             ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n, f = EXCLUDED.f, arr = EXCLUDED.arr, \
             s = EXCLUDED.s, iv = EXCLUDED.iv, updated_at = EXCLUDED.updated_at",
            "SELECT id FROM odd",
            "odd",
            &["id"],
        ),
    );
    env.run_ok("odd");
    let (code, v) = verify_json(&env, &[]);
    assert_eq!(code, 0, "{v:#}");
    // each of these is `=` to what M holds, but not the same value written out
    for (id, set) in [
        (1, "n = 1.00"),
        (1, "f = '-0'"),
        (1, "arr = '[0:1]={1,2}'"),
        (2, "s = 'MIXED'"),
        (1, "iv = '24 hours'"),
    ] {
        env.a_exec(&format!("UPDATE odd SET {set} WHERE id = {id}"));
        let (code, v) = verify_json(&env, &["odd"]);
        assert_eq!(code, 1, "{set}: {v:#}");
        let j = job(&v, "odd");
        assert_eq!(
            keys(j, "differ"),
            vec![k(&[Some(&id.to_string())])],
            "{set}"
        );
        env.elt().args(["reset-state", "odd"]).assert().success();
        env.run_ok("odd");
        assert_eq!(verify_json(&env, &["odd"]).0, 0, "{set}: repaired");
    }
}
