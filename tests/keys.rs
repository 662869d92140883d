//! Key comparison: a keyed summary of both sides first (a run that deleted nothing moves no
//! key), then only the keys of differing buckets, or all keys when many differ; for integer,
//! text, uuid and composite keys with NULL parts; drift in A; keys sharing buckets; a lost
//! seed.

use crate::fixture::*;

/// `n` rows keyed by `kind`: "int", "text", "uuid" or "composite" (text + int, NULL parts).
fn keyed(env: &TestEnv, kind: &str, n: i64) -> (&'static str, Vec<&'static str>) {
    let (key_ddl, key_expr, keys): (&str, String, Vec<&str>) = match kind {
        "int" => ("k bigint", "g".into(), vec!["k"]),
        "text" => ("k text", "'key-' || g".into(), vec!["k"]),
        "uuid" => ("k uuid", "md5(g::text)::uuid".into(), vec!["k"]),
        _ => (
            "k text, j int",
            "'k' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE g % 10 END".into(),
            vec!["k", "j"],
        ),
    };
    let list = keys.join(", ");
    env.m_exec(&format!(
        "CREATE TABLE t ({key_ddl}, v text, updated_at timestamptz NOT NULL DEFAULT now()); \
         CREATE UNIQUE INDEX ON t ({list}) NULLS NOT DISTINCT; \
         INSERT INTO t SELECT {key_expr}, 'v' || g, now() FROM generate_series(1, {n}) g"
    ));
    let cols = format!("{list}, v, updated_at");
    let ph = vec!["%s"; keys.len() + 2].join(", ");
    env.write_job(
        "t",
        &job_yaml(
            &format!(
                "CREATE TABLE IF NOT EXISTS t ({key_ddl}, v text, updated_at timestamptz, \
                 UNIQUE NULLS NOT DISTINCT ({list}))"
            ),
            &format!("SELECT {cols} FROM t WHERE updated_at > %s"),
            &format!(
                "INSERT INTO t ({cols}) VALUES ({ph}) ON CONFLICT ({list}) DO UPDATE SET \
                 v = EXCLUDED.v, updated_at = EXCLUDED.updated_at"
            ),
            &format!("SELECT {list} FROM t"),
            "t",
            &keys,
        ),
    );
    ("SELECT * FROM t", keys)
}

/// Log lines of the last run only.
fn last_run_log(env: &TestEnv) -> String {
    let log = env.elt_log();
    let start = log.rfind("run started").unwrap_or(0);
    log[start..].to_string()
}

#[test]
fn a_run_that_deleted_nothing_moves_no_key_for_every_kind_of_key() {
    for kind in ["int", "text", "uuid", "composite"] {
        let env = TestEnv::new(&format!("keys_noop_{kind}"));
        let (q, _) = keyed(&env, kind, 3000);
        env.run_ok("t");
        env.m_exec("UPDATE t SET v = v || '!' WHERE v LIKE 'v1%'");
        let c = env.run_ok("t");
        assert!(c.upserted > 0);
        let log = last_run_log(&env);
        assert!(!log.contains("buckets differ"), "{kind}: {log}");
        assert!(!log.contains("comparing all keys"), "{kind}: {log}");
        env.assert_a_equals_m(q, q);
    }
}

#[test]
fn a_few_deletions_and_inserts_are_found_key_by_key_for_every_kind_of_key() {
    for kind in ["int", "text", "uuid", "composite"] {
        let env = TestEnv::new(&format!("keys_few_{kind}"));
        let (q, _) = keyed(&env, kind, 5000);
        env.run_ok("t");
        // as many deleted as inserted: the counts stay equal, the keys do not
        let new_keys = match kind {
            "int" => "g + 100000",
            "text" => "'new-' || g",
            "uuid" => "md5('new' || g)::uuid",
            _ => "'new' || g, g",
        };
        env.m_exec(&format!(
            "DELETE FROM t WHERE ctid IN (SELECT ctid FROM t ORDER BY v LIMIT 3); \
             INSERT INTO t SELECT {new_keys}, 'n' || g, now() FROM generate_series(1, 3) g"
        ));
        let c = env.run_ok("t");
        assert_eq!((c.deleted, c.upserted), (3, 3), "{kind}");
        let log = last_run_log(&env);
        assert!(log.contains("buckets differ"), "{kind}: {log}");
        assert!(!log.contains("comparing all keys"), "{kind}: {log}");
        env.assert_a_equals_m(q, q);
    }
}

#[test]
fn a_deleted_and_a_new_key_in_one_bucket_are_both_found() {
    let env = TestEnv::new("keys_same_bucket");
    let (q, _) = keyed(&env, "int", 5000);
    env.run_ok("t");
    let mut con = env.redis();
    let seed: String = redis::cmd("HGET")
        .arg(format!("{}:job:t:meta", env.prefix))
        .arg("seed")
        .query(&mut con)
        .unwrap();
    // 5,000 keys make 64 buckets (the log says so): a new key in the bucket of key 77
    let bucket = |k: &str| format!("(hashint8extended({k}, {seed}) & 63)");
    env.m_exec(&format!(
        "DELETE FROM t WHERE k = 77; \
         INSERT INTO t SELECT g, 'same bucket', now() FROM generate_series(100001, 101000) g \
         WHERE {} = {} LIMIT 1",
        bucket("g"),
        bucket("77")
    ));
    assert_eq!(env.m_count("t"), 5000);
    let c = env.run_ok("t");
    assert_eq!((c.deleted, c.upserted), (1, 1));
    let log = last_run_log(&env);
    assert!(log.contains("1 of 64 key buckets differ"), "{log}");
    env.assert_a_equals_m(q, q);
}

#[test]
fn drift_in_a_is_repaired_and_extra_rows_deleted() {
    for kind in ["int", "composite"] {
        let env = TestEnv::new(&format!("keys_drift_{kind}"));
        let (q, keys) = keyed(&env, kind, 2000);
        env.run_ok("t");
        let list = keys.join(", ");
        env.a_exec(&format!(
            "DELETE FROM t WHERE ctid IN (SELECT ctid FROM t ORDER BY v LIMIT 7); \
             INSERT INTO t ({list}, v) SELECT {}, 'extra' FROM generate_series(1, 3) g",
            if kind == "int" {
                "-g".to_string()
            } else {
                "'extra' || g, NULL".to_string()
            }
        ));
        let (code, v) = env.run_json();
        assert_eq!(code, 0, "{v:#}");
        let j = job(&v, "t");
        assert_eq!(j["rows_repaired"].as_u64(), Some(7), "{kind}: {v:#}");
        assert_eq!(j["rows_deleted"].as_u64(), Some(3), "{kind}: {v:#}");
        env.assert_a_equals_m(q, q);
    }
}

#[test]
fn many_deletions_compare_all_keys() {
    for kind in ["int", "text"] {
        let env = TestEnv::new(&format!("keys_many_{kind}"));
        let (q, _) = keyed(&env, kind, 4000);
        env.run_ok("t");
        env.m_exec("DELETE FROM t WHERE v LIKE '%3%'");
        let deleted = 4000 - env.m_count("t");
        let mut c = env.elt();
        c.args(["run", "--json", "--force-deletes"]);
        let (code, v) = run_cmd_json(c);
        assert_eq!(code, 0, "{v:#}");
        assert_eq!(counts(&v, "t").deleted as i64, deleted, "{kind}");
        env.assert_a_equals_m(q, q);
    }
}

#[test]
fn a_lost_seed_is_replaced_and_nothing_is_missed() {
    let env = TestEnv::new("keys_lost_seed");
    let (q, _) = keyed(&env, "int", 1000);
    env.run_ok("t");
    let meta = format!("{}:job:t:meta", env.prefix);
    let mut con = env.redis();
    let old: Option<String> = redis::cmd("HGET")
        .arg(&meta)
        .arg("seed")
        .query(&mut con)
        .unwrap();
    assert!(old.is_some(), "the state keeps a seed");
    let _: () = redis::cmd("HDEL")
        .arg(&meta)
        .arg("seed")
        .query(&mut con)
        .unwrap();
    env.m_exec("DELETE FROM t WHERE k % 100 = 0");
    let c = env.run_ok("t");
    assert_eq!(c.deleted, 10);
    env.assert_a_equals_m(q, q);
    let new: Option<String> = redis::cmd("HGET")
        .arg(&meta)
        .arg("seed")
        .query(&mut con)
        .unwrap();
    assert!(
        new.is_some() && new != old,
        "a new seed is kept: {old:?} {new:?}"
    );
}
