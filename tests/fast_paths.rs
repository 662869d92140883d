//! The fast paths of a run keep every outcome exact: the COPY extraction and the single
//! streamed COPY into an empty target, its fallback when the source repeats a key, the key
//! summary that spares the first comparison, the ordered merge of integer keys (extremes and
//! NULL included), and the per-bucket state strings in Redis.

use std::collections::BTreeSet;

use crate::fixture::*;

const EDGE_Q: &str = "SELECT id, v FROM edge";

fn edge_job(env: &TestEnv, keys_sql: &str) {
    env.write_job(
        "edge",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS edge (id bigint UNIQUE, v text)",
            "SELECT id, v FROM edge WHERE changed_at > %s",
            "INSERT INTO edge (id, v) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
            keys_sql,
            "edge",
            &["id"],
        ),
    );
}

fn edge_fixture(env: &TestEnv) {
    env.m_exec(
        "CREATE TABLE edge (id bigint UNIQUE, v text, changed_at timestamptz DEFAULT now());
         INSERT INTO edge (id, v) VALUES
           (-9223372036854775808, 'min'), (9223372036854775807, 'max'), (0, 'zero'),
           (-5, 'minus five'), (NULL, 'null key'), (2147483648, 'past int4');
         INSERT INTO edge (id, v) SELECT g, 'row ' || g FROM generate_series(1, 3000) g;",
    );
}

#[test]
fn integer_keys_at_the_extremes_and_null_reconcile_exactly() {
    let env = TestEnv::new("fast_edge_keys");
    edge_fixture(&env);
    edge_job(&env, "SELECT id FROM edge");
    let c = env.run_ok("edge");
    assert_eq!((c.read, c.upserted, c.deleted), (3006, 3006, 0));
    env.assert_a_equals_m(EDGE_Q, EDGE_Q);

    // the extremes, the NULL key and a scattered few go; one comes back changed
    env.m_exec(
        "DELETE FROM edge WHERE id IN (-9223372036854775808, 9223372036854775807, 17, 2999)
            OR id IS NULL;
         UPDATE edge SET v = 'changed', changed_at = now() WHERE id = -5;",
    );
    let c = env.run_ok("edge");
    assert_eq!((c.upserted, c.deleted), (1, 5), "{c:?}");
    env.assert_a_equals_m(EDGE_Q, EDGE_Q);

    // and nothing to do afterwards
    let c = env.run_ok("edge");
    assert_eq!((c.upserted, c.deleted), (0, 0), "{c:?}");
}

/// A NULL integer key stays through runs that delete rows around it: M has no key
/// constraint on the column and A's unique index lets a NULL be, so the ordered merge must
/// match M's NULL with A's, run after run.
#[test]
fn a_null_integer_key_survives_runs_that_delete_other_rows() {
    let env = TestEnv::new("fast_null_key_kept");
    env.m_exec(
        "CREATE TABLE edge (id bigint, v text, changed_at timestamptz DEFAULT now());
         INSERT INTO edge (id, v) VALUES (NULL, 'null key'), (-5, 'minus five');
         INSERT INTO edge (id, v) SELECT g, 'row ' || g FROM generate_series(1, 3000) g;",
    );
    edge_job(&env, "SELECT id FROM edge");
    let c = env.run_ok("edge");
    assert_eq!((c.read, c.upserted, c.deleted), (3002, 3002, 0));
    env.assert_a_equals_m(EDGE_Q, EDGE_Q);

    for (change, upserted, deleted) in [
        ("DELETE FROM edge WHERE id IN (17, 2999)", 0, 2),
        (
            "DELETE FROM edge WHERE id IN (-5, 3000);
             UPDATE edge SET v = 'changed', changed_at = now() WHERE id = 1",
            1,
            2,
        ),
        ("DELETE FROM edge WHERE id BETWEEN 100 AND 199", 0, 100),
        ("SELECT 1", 0, 0),
    ] {
        env.m_exec(change);
        let c = env.run_ok("edge");
        assert_eq!(
            (c.upserted, c.deleted),
            (upserted, deleted),
            "{change}: {c:?}"
        );
        env.assert_a_equals_m(EDGE_Q, EDGE_Q);
    }
    assert_eq!(
        env.a_texts("SELECT v FROM edge WHERE id IS NULL"),
        ["null key"],
        "the NULL key's row is still there"
    );
}

#[test]
fn a_first_run_deletes_what_select_keys_sql_leaves_out() {
    // The key summary of the rows loaded differs from M's keys: the full comparison runs
    // on the first run already, not one run later.
    let env = TestEnv::new("fast_keys_subset");
    edge_fixture(&env);
    edge_job(&env, "SELECT id FROM edge WHERE id BETWEEN 1 AND 2000");
    let (code, v) = env.run_job_json("edge");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "edge").deleted, 1006, "{v:#}");
    let q = "SELECT id, v FROM edge WHERE id BETWEEN 1 AND 2000";
    env.assert_a_equals_m(q, EDGE_Q);
    // the state written during the run lost the deleted rows' hashes after the commit
    assert_eq!(state_entries(&env), 2000);
}

/// Row hashes stored under the test's prefix, all generations.
fn state_entries(env: &TestEnv) -> usize {
    let mut con = env.redis();
    env.redis_keys()
        .iter()
        .filter(|k| k.contains(":h:"))
        .map(|k| {
            let v: Vec<u8> = redis::cmd("GET")
                .arg(k)
                .query(&mut con)
                .expect("GET bucket");
            assert_eq!(v.len() % 24, 0, "{k}");
            v.len() / 24
        })
        .sum()
}

#[test]
fn a_failed_first_load_leaves_no_row_state() {
    // The state of a full run is written while the run finishes; the run then fails (the
    // delete guard: M's keys query returns nothing) and that state must go.
    let env = TestEnv::new("fast_failed_state");
    edge_fixture(&env);
    edge_job(&env, "SELECT id FROM edge WHERE false");
    let (code, v) = env.run_job_json("edge");
    assert_eq!(code, 1, "{v:#}");
    assert!(
        job(&v, "edge")["error"]
            .as_str()
            .unwrap_or_default()
            .contains("delete guard"),
        "{v:#}"
    );
    // the whole job rolled back, the table CREATE_TABLE_SQL made included
    assert_eq!(env.a_count("edge"), None);
    assert_eq!(state_entries(&env), 0, "{:?}", env.redis_keys());
}

#[test]
fn a_source_repeating_a_key_into_an_empty_target_is_upserted_in_order() {
    let env = TestEnv::new("fast_repeat_key");
    env.m_exec(
        "CREATE TABLE src (n int, id bigint, v text, changed_at timestamptz DEFAULT now());
         INSERT INTO src (n, id, v) SELECT g, g, 'v' || g FROM generate_series(1, 500) g;
         INSERT INTO src (n, id, v) VALUES (501, 7, 'later seven');",
    );
    env.write_job(
        "rep",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS rep (id bigint PRIMARY KEY, v text)",
            "SELECT id, v FROM (SELECT * FROM src ORDER BY n) s WHERE changed_at > %s",
            "INSERT INTO rep (id, v) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
            "SELECT id FROM src",
            "rep",
            &["id"],
        ),
    );
    let (code, v) = env.run_job_json("rep");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(env.a_count("rep"), Some(500));
    assert_eq!(
        env.a_texts("SELECT v FROM rep WHERE id = 7"),
        vec!["later seven".to_string()]
    );
    assert!(
        env.elt_log().contains("repeats a key"),
        "the fallback is logged: {}",
        env.elt_log()
    );
}

#[test]
fn a_large_first_load_streams_and_its_state_finds_every_row() {
    // More than one streamed COPY buffer (1 MiB) and more buckets than state parts (128).
    let env = TestEnv::new("fast_large");
    env.products_fixture(0);
    env.m_exec(
        "INSERT INTO products (id, title, price)
         SELECT g, repeat('t', 60) || g, (g * 1.25)::numeric(10,2) FROM generate_series(1, 20000) g",
    );
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 20000);
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);

    // Every bucket is a string of 24-byte entries, one entry per row.
    let mut con = env.redis();
    let buckets: Vec<String> = env
        .redis_keys()
        .into_iter()
        .filter(|k| k.contains(":h:"))
        .collect();
    assert!(buckets.len() >= 128, "{} buckets", buckets.len());
    let mut entries = 0;
    for k in &buckets {
        let v: Vec<u8> = redis::cmd("GET")
            .arg(k)
            .query(&mut con)
            .expect("GET bucket");
        assert_eq!(v.len() % 24, 0, "{k}");
        entries += v.len() / 24;
    }
    assert_eq!(entries, 20000);

    // The overlap window re-reads every row (all are recent): all found unchanged.
    let c = env.run_ok("products");
    assert_eq!((c.read, c.upserted), (20000, 0), "{c:?}");
    env.m_exec("UPDATE products SET price = price + 1, updated_at = now() WHERE id % 1000 = 0");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 20, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn a_full_sync_removes_generations_left_by_a_killed_run() {
    let env = TestEnv::new("fast_old_gen");
    env.products_fixture(10);
    // killed after writing its row hashes, before making them current
    let out = env
        .elt()
        .args(["run-job", "products", "--fault-point", "state:kill"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    let left: Vec<String> = env
        .redis_keys()
        .into_iter()
        .filter(|k| k.contains(":h:"))
        .collect();
    assert!(!left.is_empty(), "the killed run wrote row hashes");
    env.run_ok("products");
    let keys = env.redis_keys();
    for k in &left {
        assert!(!keys.contains(k), "{k} left behind: {keys:?}");
    }
    assert!(keys.iter().any(|k| k.contains(":h:")), "{keys:?}");
    assert_eq!(state_entries(&env), 10);
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    // and a later full sync removes the generation it replaces
    env.elt()
        .args(["reset-state", "products"])
        .assert()
        .success();
    env.run_ok("products");
    env.m_exec("UPDATE products SET price = price + 1 WHERE id = 1");
    let before = env.redis_keys();
    env.a_exec("TRUNCATE products");
    env.run_ok("products");
    let after = env.redis_keys();
    assert!(
        before
            .iter()
            .filter(|k| k.contains(":h:"))
            .all(|k| !after.contains(k)),
        "{before:?} {after:?}"
    );
    assert_eq!(state_entries(&env), 10);
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// `reset-state` removes row hashes by the names the job's meta gives (its current
/// generation and an attempt a killed run left), not by scanning all of Redis: both go.
#[test]
fn reset_state_removes_the_current_generation_and_a_killed_attempt() {
    let env = TestEnv::new("fast_reset_gens");
    env.products_fixture(10);
    env.run_ok("products");
    // a truncated target makes the next run a full re-sync into a new generation; it is
    // killed after writing that generation's row hashes, before making them current
    env.a_exec("TRUNCATE products");
    let out = env
        .elt()
        .args(["run-job", "products", "--fault-point", "state:kill"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    let hashes = |env: &TestEnv| -> Vec<String> {
        env.redis_keys()
            .into_iter()
            .filter(|k| k.contains(":h:"))
            .collect()
    };
    let left = hashes(&env);
    let generations: BTreeSet<&str> = left
        .iter()
        .filter_map(|k| k.split(":h:").nth(1)?.split(':').next())
        .collect();
    assert_eq!(generations.len(), 2, "{left:?}");

    let out = env
        .elt()
        .args(["reset-state", "products"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "products: state reset ({} key(s) removed)\n",
            left.len() + 1
        )
    );
    assert_eq!(env.redis_keys(), Vec::<String>::new());
    env.run_ok("products");
    assert_eq!(state_entries(&env), 10);
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn state_of_an_older_layout_triggers_a_resync_that_rewrites_nothing() {
    let env = TestEnv::new("fast_old_format");
    env.products_fixture(300);
    env.run_ok("products");
    let meta = format!("{}:job:products:meta", env.prefix);
    let mut con = env.redis();
    redis::cmd("HDEL")
        .arg(&meta)
        .arg("format")
        .query::<()>(&mut con)
        .expect("HDEL");
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 0, "{v:#}");
    let c = counts(&v, "products");
    assert_eq!((c.read, c.upserted, c.deleted), (300, 0, 0), "{v:#}");
    assert!(
        env.elt_log().contains("older version of elt"),
        "{}",
        env.elt_log()
    );
    let format: Option<String> = redis::cmd("HGET")
        .arg(&meta)
        .arg("format")
        .query(&mut con)
        .expect("HGET");
    assert_eq!(format.as_deref(), Some("2"));
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}
