//! `elt new NAME --from-table T`: writes a job that passes `validate --connect` and keeps A
//! equal to M, on the pagila sample database (skipped when absent) and on a table with the
//! awkward parts (quoted names, enum arrays, domains, a unique index instead of a key).
use crate::fixture::*;
use std::fs;

/// `elt new NAME --from-table TABLE [extra…]` → (exit code, output).
fn new(env: &TestEnv, name: &str, table: &str, extra: &[&str]) -> (i32, String) {
    let out = env
        .elt()
        .args(["new", name, "--from-table", table])
        .args(extra)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), output_text(&out))
}

fn validate_connect(env: &TestEnv) -> (i32, String) {
    let out = env.elt().args(["validate", "--connect"]).output().unwrap();
    (out.status.code().unwrap_or(-1), output_text(&out))
}

fn run_job_ok(env: &TestEnv, name: &str) -> Counts {
    let (code, v) = env.run_job_json(name);
    assert_eq!(code, 0, "run-job {name}: {v:#}");
    assert_eq!(status(&v, name), "ok", "{v:#}");
    counts(&v, name)
}

#[test]
fn new_jobs_for_pagila_tables_run_and_keep_a_equal_to_m() {
    let Some(dir) = pagila_dir() else {
        eprintln!("SKIPPED: the pagila data set was not found");
        return;
    };
    let env = TestEnv::new("new_pagila");
    env.psql_file_m(&dir.join("pagila-schema.sql"));
    env.psql_file_m(&dir.join("pagila-data.sql"));
    let tables = ["film", "payment", "customer", "actor"];
    for t in tables {
        let (code, out) = new(&env, t, &format!("public.{t}"), &[]);
        assert_eq!(code, 0, "elt new {t}: {out}");
        assert!(env.job_path(t).exists(), "{out}");
    }
    // What it inferred is said, and written into the file as comments.
    let film = fs::read_to_string(env.job_path("film")).unwrap();
    assert!(
        film.contains("rating::text AS rating"),
        "enum → text:\n{film}"
    );
    assert!(
        film.contains("release_year::integer AS release_year"),
        "domain → base:\n{film}"
    );
    assert!(film.contains("WHERE last_update > %s"), "{film}");
    let payment = fs::read_to_string(env.job_path("payment")).unwrap();
    assert!(
        payment.contains("KEY_COLUMNS: [\"payment_date\",\"payment_id\"]"),
        "{payment}"
    );
    assert!(payment.contains("no updated_at-like column"), "{payment}");

    let (code, out) = validate_connect(&env);
    assert_eq!(code, 0, "the new jobs pass validate --connect:\n{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("/")),
        "no errors:\n{out}"
    );

    let q = |t: &str| format!("SELECT * FROM {t}");
    for t in tables {
        let c = run_job_ok(&env, t);
        assert_eq!(c.upserted as i64, env.m_count(t), "{t}: {c:?}");
        env.assert_a_equals_m(&q(t), &q(t));
    }
    // Changes on M arrive; deletions too.
    env.m_exec(
        "UPDATE film SET rating = 'NC-17', release_year = 2001 WHERE film_id IN (1, 2);
         UPDATE actor SET first_name = 'ZOË' WHERE actor_id = 3;
         INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR');
         DELETE FROM payment WHERE payment_id IN (SELECT payment_id FROM payment ORDER BY payment_id LIMIT 3);
         UPDATE customer SET email = NULL WHERE customer_id = 5;",
    );
    for t in tables {
        run_job_ok(&env, t);
        env.assert_a_equals_m(&q(t), &q(t));
    }
    let c = run_job_ok(&env, "film");
    assert_eq!(c.upserted, 0, "nothing changed: {c:?}");
}

#[test]
fn new_handles_quoted_names_enum_arrays_domains_and_unique_indexes() {
    let env = TestEnv::new("new_awkward");
    env.m_exec(
        r#"CREATE SCHEMA shop;
           CREATE TYPE shop.color AS ENUM ('red', 'green', 'blue');
           CREATE DOMAIN shop.amount AS numeric(12,2) CHECK (VALUE >= 0);
           CREATE TABLE shop."Shop Items" (
               "Item ID" bigint NOT NULL,
               sku text NOT NULL,
               colors shop.color[],
               price shop.amount,
               "order" integer,
               "pct%" numeric,
               attrs jsonb,
               modified_at timestamp,
               UNIQUE ("Item ID")
           );
           INSERT INTO shop."Shop Items" VALUES
               (1, 'a', '{red,blue}', 1.50, 1, 0.5, '{"k": [1, 2]}', '2024-01-01 10:00'),
               (2, 'b', NULL, NULL, NULL, NULL, NULL, NULL),
               (3, 'c''s', '{}', 0, 3, 100, 'null', '2024-02-01');"#,
    );
    let (code, out) = new(
        &env,
        "items",
        "shop.\"Shop Items\"",
        &["--target-table", "items"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("unique index"),
        "the key's origin is explained: {out}"
    );
    assert!(
        out.contains("can be NULL"),
        "a nullable watermark is explained: {out}"
    );
    let yaml = fs::read_to_string(env.job_path("items")).unwrap();
    assert!(yaml.contains("colors::text[] AS colors"), "{yaml}");
    assert!(
        yaml.contains("\"pct%%\""),
        "`%` doubled where %% is a literal %:\n{yaml}"
    );
    let (code, out) = validate_connect(&env);
    assert_eq!(code, 0, "{out}");
    run_job_ok(&env, "items");
    env.assert_a_equals_m(
        r#"SELECT "Item ID", sku, colors::text[], price::numeric, "order", "pct%", attrs, modified_at FROM shop."Shop Items""#,
        r#"SELECT "Item ID", sku, colors, price, "order", "pct%", attrs, modified_at FROM items"#,
    );
}

#[test]
fn new_refuses_to_overwrite_and_explains_what_it_cannot_infer() {
    let env = TestEnv::new("new_refuse");
    env.m_exec(
        "CREATE TABLE keyed (id integer PRIMARY KEY, updated_at timestamptz NOT NULL);
         CREATE TABLE nokey (a text, b text);
         CREATE TABLE nullable_unique (id integer UNIQUE, updated_at timestamptz);
         CREATE TABLE no_wm (code text PRIMARY KEY, note text);",
    );
    // an existing file is never overwritten
    env.write_job("keyed", "# mine\n");
    let (code, out) = new(&env, "keyed", "keyed", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("already exists"), "{out}");
    assert_eq!(
        fs::read_to_string(env.job_path("keyed")).unwrap(),
        "# mine\n"
    );
    // nor is another file of the same job name
    fs::write(env.jobs_dir.join("other.yml"), "# mine\n").unwrap();
    let (code, out) = new(&env, "other", "keyed", &[]);
    assert_eq!(code, 2, "{out}");

    for (table, why) in [
        ("nokey", "KEY_COLUMNS"),
        ("nullable_unique", "KEY_COLUMNS"),
        ("no_wm", "watermark"),
        ("no_such_table", "no table"),
    ] {
        let (code, out) = new(&env, table, table, &[]);
        assert_eq!(code, 2, "{table}: {out}");
        assert!(out.contains(why), "{table}: {out}");
        assert!(!env.job_path(table).exists(), "{table}: no file on failure");
    }
    // an explicit watermark column is honoured and checked
    let (code, out) = new(&env, "k2", "keyed", &["--watermark-column", "nope"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = new(&env, "k2", "keyed", &["--watermark-column", "updated_at"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = new(&env, "../escape", "keyed", &[]);
    assert_eq!(code, 2, "{out}");
}

/// With `--jobs-dir DIR`, the `next:` line of `elt new` names DIR, so the command it
/// suggests finds the job (without it, `run-job` would look in another folder); with the
/// default folder it needs no `--jobs-dir`.
#[test]
fn new_with_a_jobs_dir_suggests_a_next_command_that_names_it() {
    let env = TestEnv::new("new_next_cmd");
    env.m_exec(
        "CREATE TABLE items (id integer PRIMARY KEY, updated_at timestamptz NOT NULL);
         INSERT INTO items SELECT g, now() FROM generate_series(1, 3) g;",
    );
    let out = env
        .elt()
        .current_dir(env.path())
        .args([
            "new",
            "items",
            "--from-table",
            "items",
            "--jobs-dir",
            "other",
        ])
        .output()
        .unwrap();
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "wrote other/items.yaml\n"
    );
    let next = "next: elt validate --connect other/items.yaml && elt --jobs-dir other run-job \
                items --dry-run";
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().filter(|l| *l == next).count(), 1, "{stderr}");

    // the suggestion works as written (ELT_JOBS_DIR names the test's own jobs folder)
    for command in next.trim_start_matches("next: elt ").split(" && elt ") {
        let out = env
            .elt()
            .current_dir(env.path())
            .args(command.split(' '))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command}: {}",
            output_text(&out)
        );
    }
    let out = env
        .elt()
        .args(["run-job", "items", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));

    // a folder whose name the shell would split is quoted, and the line still works when
    // pasted into a shell (the shell splits it here, then each command runs)
    let out = env
        .elt()
        .current_dir(env.path())
        .args([
            "new",
            "items3",
            "--from-table",
            "items",
            "--jobs-dir",
            "my jobs",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let next = "next: elt validate --connect 'my jobs/items3.yaml' && elt --jobs-dir 'my jobs' \
                run-job items3 --dry-run";
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().filter(|l| *l == next).count(), 1, "{stderr}");
    for command in next.trim_start_matches("next: elt ").split(" && elt ") {
        let split = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for w in {command}; do printf '%s\\n' \"$w\"; done"
            ))
            .output()
            .unwrap();
        let words: Vec<String> = String::from_utf8_lossy(&split.stdout)
            .lines()
            .map(String::from)
            .collect();
        assert!(words.iter().any(|w| w.starts_with("my jobs")), "{words:?}");
        let out = env
            .elt()
            .current_dir(env.path())
            .args(&words)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{words:?}: {}",
            output_text(&out)
        );
    }

    // the default folder: no --jobs-dir to add
    let out = env
        .elt()
        .env_remove("ELT_JOBS_DIR")
        .args(["new", "items2", "--from-table", "items"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).lines().any(|l| l
            == "next: elt validate --connect ./jobs/items2.yaml && elt run-job items2 --dry-run"),
        "{}",
        output_text(&out)
    );
}
