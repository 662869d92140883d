//! Failures: one job's failure does not stop the others and leaves its target as it was;
//! unreachable servers; password masking.
use crate::fixture::*;
use std::collections::{BTreeMap, BTreeSet};

fn broken_source_job(env: &TestEnv, name: &str) {
    env.write_job(
        name,
        &job_yaml(
            &format!("CREATE TABLE IF NOT EXISTS {name} (id int PRIMARY KEY)"),
            "SELECT id FROM missing_source_table WHERE updated_at > %s",
            &format!("INSERT INTO {name} (id) VALUES (%s) ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id"),
            "SELECT id FROM missing_source_table",
            name,
            &["id"],
        ),
    );
}

#[test]
fn sql_error_fails_only_that_job() {
    let env = TestEnv::new("sql_error");
    env.products_fixture(5);
    broken_source_job(&env, "a_broken");
    let (code, v) = env.run_json();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "a_broken"), "failed", "{v:#}");
    assert_eq!(
        status(&v, "products"),
        "ok",
        "a job after the failed one still runs: {v:#}"
    );
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    let err = env.error_log();
    assert!(
        err.lines()
            .any(|l| l.contains("a_broken") && l.contains("missing_source_table")),
        "error.log names the job and the cause:\n{err}"
    );
    assert!(
        !err.contains("products"),
        "error.log holds errors only:\n{err}"
    );
    let log = env.elt_log();
    assert!(
        log.contains("a_broken") && log.contains("products"),
        "elt.log has both jobs:\n{log}"
    );
}

#[test]
fn invalid_job_file_fails_only_that_job() {
    let env = TestEnv::new("invalid_file_run");
    env.products_fixture(3);
    env.write_job("aa_bad_yaml", "CREATE_TABLE_SQL: [unclosed\n");
    env.write_job(
        "ab_missing_key",
        &PRODUCTS_JOB.replace("KEY_COLUMNS: [\"id\"]\n", ""),
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "aa_bad_yaml"), "failed", "{v:#}");
    assert_eq!(status(&v, "ab_missing_key"), "failed", "{v:#}");
    assert!(
        job(&v, "ab_missing_key")["error"]
            .as_str()
            .unwrap_or("")
            .contains("KEY_COLUMNS"),
        "{v:#}"
    );
    assert_eq!(status(&v, "products"), "ok", "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

const CHECKED_JOB: &str = r#"CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS products (
      id integer PRIMARY KEY,
      title text NOT NULL,
      price numeric(10,2) CONSTRAINT price_not_negative CHECK (price >= 0),
      updated_at timestamptz NOT NULL
  )
SELECT_SOURCE_SQL: "SELECT id, title, price, updated_at FROM products WHERE updated_at > %s"
UPSERT_TARGET_SQL: >-
  INSERT INTO products (id, title, price, updated_at) VALUES (%s, %s, %s, %s)
  ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price = EXCLUDED.price,
  updated_at = EXCLUDED.updated_at
SELECT_KEYS_SQL: "SELECT id FROM products"
TARGET_TABLE: products
KEY_COLUMNS: ["id"]
"#;

/// A job whose load fails on one row of many leaves A exactly as it was, and keeps the
/// Redis state where it was, so that the fixed rerun delivers every change.
#[test]
fn constraint_violation_mid_load_leaves_a_unchanged() {
    let env = TestEnv::new("mid_load_failure");
    env.m_exec(PRODUCTS_M_SQL);
    env.m_exec("INSERT INTO products (id, title, price) SELECT g, 'P' || g, g FROM generate_series(1, 50) g");
    env.write_job("products", CHECKED_JOB);
    env.run_ok("products");
    let a_before = env.a_rows(PRODUCTS_Q);

    // 10 updates, the 5th of them violating A's CHECK; 2 inserts; 3 deletions.
    env.m_exec(
        "UPDATE products SET price = price + 1000 WHERE id IN (1, 2, 3, 4, 6, 7, 8, 9, 10);
         UPDATE products SET price = -1 WHERE id = 5;
         INSERT INTO products (id, title, price) VALUES (51, 'new', 1), (52, 'new', 2);
         DELETE FROM products WHERE id IN (40, 41, 42);",
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "products"), "failed", "{v:#}");
    let err = job(&v, "products")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        err.contains("price_not_negative"),
        "the error names the violated constraint: {err}"
    );
    assert_eq!(
        env.a_rows(PRODUCTS_Q),
        a_before,
        "no partial load, no deletions: A is as before the run"
    );

    // Fixed in M: the rerun delivers all changes, none was marked as delivered.
    env.m_exec("UPDATE products SET price = 5 WHERE id = 5");
    let c = env.run_ok("products");
    assert_eq!((c.upserted, c.deleted), (12, 3), "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// Titles are unique in A, checked only at COMMIT: a run that brings two equal titles
/// fails when A commits, after every other step went well.
const DEFERRED_JOB: &str = r#"CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS products (
      id integer PRIMARY KEY,
      title text NOT NULL,
      price numeric(10,2),
      updated_at timestamptz NOT NULL,
      CONSTRAINT title_unique UNIQUE (title) DEFERRABLE INITIALLY DEFERRED
  )
SELECT_SOURCE_SQL: "SELECT id, title, price, updated_at FROM products WHERE updated_at > %s"
UPSERT_TARGET_SQL: >-
  INSERT INTO products (id, title, price, updated_at) VALUES (%s, %s, %s, %s)
  ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price = EXCLUDED.price,
  updated_at = EXCLUDED.updated_at
SELECT_KEYS_SQL: "SELECT id FROM products"
TARGET_TABLE: products
KEY_COLUMNS: ["id"]
"#;

/// What a successful run of `job` keeps in Redis (the meta fields and every row-hash
/// bucket), without what a failed run records about itself (`last_error`, `last_error_ms`,
/// `failures`) and without the lock.
fn sync_state(env: &TestEnv, job: &str) -> BTreeMap<String, Vec<u8>> {
    let meta_key = format!("{}:job:{job}:meta", env.prefix);
    let mut con = env.redis();
    let mut out = BTreeMap::new();
    for k in env.redis_keys() {
        if k == meta_key {
            let meta: BTreeMap<String, Vec<u8>> =
                redis::cmd("HGETALL").arg(&k).query(&mut con).unwrap();
            for (field, value) in meta {
                if !["last_error", "last_error_ms", "failures"].contains(&field.as_str()) {
                    out.insert(format!("{k} {field}"), value);
                }
            }
        } else if !k.ends_with(":lock") {
            let v: Option<Vec<u8>> = redis::cmd("DUMP").arg(&k).query(&mut con).unwrap();
            out.insert(k, v.unwrap_or_default());
        }
    }
    out
}

/// A's commit itself fails: no row hash and no watermark of that run reaches Redis (state
/// never runs ahead of A), so the run after M is fixed delivers every change, value by value.
#[test]
fn failed_commit_on_a_leaves_the_state_as_it_was() {
    let env = TestEnv::new("commit_failure");
    env.m_exec(PRODUCTS_M_SQL);
    env.m_exec("INSERT INTO products (id, title, price) SELECT g, 'P' || g, g FROM generate_series(1, 50) g");
    env.write_job("products", DEFERRED_JOB);
    env.run_ok("products");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    let a_before = env.a_rows(PRODUCTS_Q);
    let state_before = sync_state(&env, "products");
    assert!(
        state_before.iter().any(|(k, _)| k.contains(":h:")),
        "the first run wrote row hashes: {state_before:?}"
    );

    // 5 updates of existing rows, a deletion, and two new rows with one title.
    env.m_exec(
        "UPDATE products SET price = price + 1000 WHERE id <= 5;
         DELETE FROM products WHERE id = 40;
         INSERT INTO products (id, title, price) VALUES (51, 'twin', 1), (52, 'twin', 2);",
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "products"), "failed", "{v:#}");
    let err = job(&v, "products")["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("committing") && err.contains("title_unique"),
        "the commit failed on the deferred constraint: {err}"
    );
    assert_eq!(env.a_rows(PRODUCTS_Q), a_before, "A is as before the run");
    let after = sync_state(&env, "products");
    let changed: BTreeSet<&String> = state_before
        .keys()
        .chain(after.keys())
        .filter(|k| state_before.get(*k) != after.get(*k))
        .collect();
    assert!(
        changed.is_empty(),
        "the failed run changed the state in Redis: {changed:?}"
    );

    // Fixed in M: the next run delivers all of it.
    env.m_exec("UPDATE products SET title = 'twin 2' WHERE id = 52");
    let c = env.run_ok("products");
    assert_eq!((c.upserted, c.deleted), (7, 1), "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn failure_on_the_first_run_leaves_no_rows() {
    let env = TestEnv::new("first_run_failure");
    env.m_exec(PRODUCTS_M_SQL);
    env.m_exec("INSERT INTO products (id, title, price) SELECT g, 'P' || g, CASE WHEN g = 150 THEN -1 ELSE g END FROM generate_series(1, 300) g");
    env.write_job("products", CHECKED_JOB);
    let (code, v) = env.run_json();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "products"), "failed", "{v:#}");
    assert!(
        matches!(env.a_count("products"), None | Some(0)),
        "no partial rows in A: {:?}",
        env.a_count("products")
    );
    env.m_exec("UPDATE products SET price = 150 WHERE id = 150");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 300, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// SELECT_KEYS_SQL fails after the changes were extracted: the upserts are not kept either.
#[test]
fn failure_in_the_deletion_step_leaves_a_unchanged() {
    let env = TestEnv::new("keys_failure");
    env.products_fixture(10);
    env.m_exec("CREATE VIEW product_keys AS SELECT id FROM products");
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace("SELECT id FROM products", "SELECT id FROM product_keys"),
    );
    env.run_ok("products");
    let a_before = env.a_rows(PRODUCTS_Q);
    env.m_exec("UPDATE products SET title = 'changed' WHERE id IN (1, 2); DELETE FROM products WHERE id = 3; DROP VIEW product_keys;");
    let (code, v) = env.run_json();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "products"), "failed", "{v:#}");
    assert_eq!(
        env.a_rows(PRODUCTS_Q),
        a_before,
        "the job's target is as it was before the run"
    );
    env.m_exec("CREATE VIEW product_keys AS SELECT id FROM products");
    let c = env.run_ok("products");
    assert_eq!((c.upserted, c.deleted), (2, 1), "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn unreachable_redis_fails_the_jobs() {
    let env = TestEnv::new("redis_down");
    env.products_fixture(3);
    let mut c = env.elt();
    c.env("ELT_REDIS_URL", "redis://127.0.0.1:1/0")
        .args(["run", "--json"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
        assert_eq!(status(&v, "products"), "failed", "{v:#}");
    } else {
        panic!("--json still prints the report: {}", output_text(&out));
    }
    assert!(
        matches!(env.a_count("products"), None | Some(0)),
        "nothing loaded without state"
    );
    assert!(
        !env.error_log().trim().is_empty(),
        "the failure is in error.log"
    );
}

#[test]
fn unreachable_master_fails_the_jobs() {
    let env = TestEnv::new("master_down");
    env.products_fixture(3);
    let mut c = env.elt();
    c.env(
        "ELT_MASTER_URL",
        "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=5",
    )
    .args(["run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "products"), "failed", "{v:#}");
    assert!(job(&v, "products")["error"].is_string(), "{v:#}");
    assert!(env.error_log().contains("products"), "{}", env.error_log());
}

#[test]
fn unreachable_analytics_fails_the_jobs() {
    let env = TestEnv::new("analytics_down");
    env.products_fixture(3);
    let mut c = env.elt();
    c.env(
        "ELT_ANALYTICS_URL",
        "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=5",
    )
    .args(["run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(status(&v, "products"), "failed", "{v:#}");
    // No state was recorded: with A back, the next run copies everything.
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 3, "{c:?}");
}

fn assert_secret_nowhere(env: &TestEnv, out: &std::process::Output, secret: &str) {
    let text = output_text(out);
    assert!(
        !text.contains(secret),
        "the password appears in the output:\n{text}"
    );
    for f in ["elt.log", "error.log"] {
        let log = std::fs::read_to_string(env.log_dir.join(f)).unwrap_or_default();
        assert!(!log.contains(secret), "the password appears in {f}:\n{log}");
    }
}

#[test]
fn passwords_never_appear_in_output_or_logs() {
    let env = TestEnv::new("password_mask");
    env.products_fixture(2);

    // URL with a password, unreachable.
    let out = env
        .elt()
        .env("ELT_MASTER_URL", "postgres://user:secretpw1@127.0.0.1:1/db")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_secret_nowhere(&env, &out, "secretpw1");

    // key=value string with a password, unreachable.
    let out = env
        .elt()
        .env(
            "ELT_ANALYTICS_URL",
            "host=127.0.0.1 port=1 user=u password=secretpw2 dbname=x",
        )
        .args(["run", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_secret_nowhere(&env, &out, "secretpw2");

    // Redis URL with a password, unreachable.
    let out = env
        .elt()
        .env("ELT_REDIS_URL", "redis://:secretpw3@127.0.0.1:1/0")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_secret_nowhere(&env, &out, "secretpw3");

    // Flags instead of variables.
    let out = env
        .elt()
        .args([
            "run",
            "--master-url",
            "postgres://user:secretpw4@127.0.0.1:1/db",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_secret_nowhere(&env, &out, "secretpw4");
}

/// A password in a URL that works (the test server trusts every login) stays out of the logs.
#[test]
fn password_of_a_working_connection_stays_out_of_logs() {
    let env = TestEnv::new("password_ok_conn");
    env.products_fixture(2);
    let p = pg_parts(env.pg_url());
    let with_pw = |db: &str| format!("postgres://{}:secretpw5@{}:{}/{db}", p.user, p.host, p.port);
    let out = env
        .elt()
        .env("ELT_MASTER_URL", with_pw(&env.m_db))
        .env("ELT_ANALYTICS_URL", with_pw(&env.a_db))
        .args(["run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_secret_nowhere(&env, &out, "secretpw5");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    let out = env
        .elt()
        .env("ELT_MASTER_URL", with_pw(&env.m_db))
        .env("ELT_ANALYTICS_URL", with_pw(&env.a_db))
        .args(["status"])
        .output()
        .unwrap();
    assert_secret_nowhere(&env, &out, "secretpw5");
}

/// stderr of a finished command, as text.
fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fatal error (a setting refused before any job, a jobs folder that cannot be read) is
/// printed once, as one `elt: error: …` line on standard error, with nothing on standard
/// output; one that happens after the log files are open is in error.log once too.
#[test]
fn a_fatal_error_is_printed_once_on_standard_error() {
    let env = TestEnv::new("fatal_once");
    env.products_fixture(2);
    let missing = env.path().join("no-such-jobs");
    let cases: Vec<(assert_cmd::Command, String)> = vec![
        (
            {
                let mut c = env.elt();
                c.args(["--redis-prefix", "a b", "run"]);
                c
            },
            "elt: error: configuration: --redis-prefix `a b` must be non-empty without spaces \
             or glob characters"
                .to_string(),
        ),
        (
            {
                let mut c = env.elt();
                c.arg("run").arg("--jobs-dir").arg(&missing);
                c
            },
            format!(
                "elt: error: cannot read the jobs folder {}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
    ];
    for (mut c, line) in cases {
        let out = c.output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
        assert_eq!(stderr, format!("{line}\n"), "one line, said once");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "",
            "nothing on stdout"
        );
    }
    let message = format!("cannot read the jobs folder {}", missing.display());
    assert_eq!(
        env.error_log().matches(&message).count(),
        1,
        "{}",
        env.error_log()
    );
    assert_eq!(env.a_count("products"), None, "nothing was run");
}

/// A failed job is said once: its summary line on standard output (README, *Output
/// channels*), one line even when PostgreSQL adds a HINT, the hint in it once; not again on
/// standard error; once in error.log.
#[test]
fn a_failed_job_is_one_summary_line_on_standard_output_only() {
    let env = TestEnv::new("failed_once");
    env.products_fixture(3);
    env.write_job(
        "typo",
        &PRODUCTS_JOB
            .replace("WHERE updated_at", "WHERE updatd_at")
            .replace("TABLE IF NOT EXISTS products", "TABLE IF NOT EXISTS typo")
            .replace("INSERT INTO products", "INSERT INTO typo")
            .replace("TARGET_TABLE: products", "TARGET_TABLE: typo"),
    );
    let out = env.elt().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per job:\n{stdout}");
    assert!(
        lines[0].starts_with("products: ok: read 3, upserted 3"),
        "{stdout}"
    );
    let why = "master database (M): preparing SELECT_SOURCE_SQL: db error: ERROR: column \
               \"updatd_at\" does not exist; HINT: Perhaps you meant to reference the column \
               \"products.updated_at\".";
    let (head, tail) = lines[1]
        .split_once(" ms: ")
        .unwrap_or_else(|| panic!("typo: failed after N ms: …: {stdout}"));
    assert!(
        head.strip_prefix("typo: failed after ")
            .is_some_and(|ms| ms.parse::<u64>().is_ok()),
        "{stdout}"
    );
    assert_eq!(tail, why, "the hint once, on the summary line");
    assert_eq!(stdout.matches("HINT").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("Perhaps you meant").count(), 1, "{stdout}");
    assert_eq!(stderr_of(&out), "", "not repeated on standard error");
    let err = env.error_log();
    assert_eq!(err.matches("Perhaps you meant").count(), 1, "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("ERROR [typo] failed: ") && l.ends_with(why)),
        "{err}"
    );
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// A password with an `@` that was not written `%40`: exit 2 before anything is done, with
/// advice naming `%40` and the URL masked; written `%40`, the same password works.
#[test]
fn a_password_with_an_unencoded_at_sign_gets_advice_naming_percent_40() {
    let env = TestEnv::new("unencoded_at");
    env.products_fixture(2);
    let advice = "the part before the host holds more than one `@`; an `@` in a user name or \
                  password must be written `%40` (a password p@ss as p%40ss)";
    for (var, flag) in [
        ("ELT_MASTER_URL", "--master-url"),
        ("ELT_ANALYTICS_URL", "--analytics-url"),
    ] {
        let out = env
            .elt()
            .env(var, "postgres://u:s3cr@t@127.0.0.1:1/db")
            .arg("run")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
        assert_eq!(
            stderr_of(&out),
            format!(
                "elt: error: configuration: {flag} postgres://u:***@127.0.0.1:1/db: {advice}\n"
            )
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        assert_secret_nowhere(&env, &out, "s3cr");
    }
    assert_eq!(env.a_count("products"), None, "nothing was run");

    // written as advised, it connects (the test server trusts every login)
    let p = pg_parts(env.pg_url());
    let encoded = |db: &str| format!("postgres://{}:s3cr%40t@{}:{}/{db}", p.user, p.host, p.port);
    let out = env
        .elt()
        .env("ELT_MASTER_URL", encoded(&env.m_db))
        .env("ELT_ANALYTICS_URL", encoded(&env.a_db))
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_secret_nowhere(&env, &out, "s3cr");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// `?password=…` of a URL is masked up to its end only: the `&` or the `: ` after it, and
/// the rest of the message, are kept; the secret is shown nowhere.
#[test]
fn a_password_in_the_query_string_is_masked_and_the_message_goes_on() {
    let env = TestEnv::new("query_password");
    env.products_fixture(2);
    for (url, shown) in [
        (
            "postgres://u@127.0.0.1:1/db?password=secretpw6",
            "postgres://u@127.0.0.1:1/db?password=***",
        ),
        (
            "postgres://u@127.0.0.1:1/db?password=secretpw6&connect_timeout=5",
            "postgres://u@127.0.0.1:1/db?password=***&connect_timeout=5",
        ),
    ] {
        let out = env
            .elt()
            .env("ELT_MASTER_URL", url)
            .arg("run")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = format!(
            "cannot connect to the master database (M) at {shown}: error connecting to server: "
        );
        assert!(
            stdout.starts_with("products: failed after ") && stdout.contains(&line),
            "{stdout}"
        );
        assert!(env.error_log().contains(&line), "{}", env.error_log());
        assert_secret_nowhere(&env, &out, "secretpw6");

        // a command that stops at the error says it on standard error, just as masked
        let out = env
            .elt()
            .env("ELT_MASTER_URL", url)
            .args(["validate", "--connect"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
        let stderr = stderr_of(&out);
        assert!(
            stderr.starts_with(&format!("elt: error: {line}")),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_secret_nowhere(&env, &out, "secretpw6");
    }
}
