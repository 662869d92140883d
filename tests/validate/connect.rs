//! `elt validate --connect`: what only the databases can tell, with nothing changed in A,
//! warnings that do not fail the run, and problems located in the YAML file.
use crate::fixture::*;
use serde_json::Value;

const M_SCHEMA: &str = "
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN positive AS numeric(10,2) CHECK (VALUE > 0);
CREATE TABLE items (
    id integer PRIMARY KEY,
    flag boolean NOT NULL DEFAULT false,
    amount numeric(10,2),
    price positive,
    feeling mood,
    attrs jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE events (id integer NOT NULL, note text, updated_at timestamptz NOT NULL);
";

fn validate_json(env: &TestEnv, job: &str) -> (i32, Value, String) {
    let out = env
        .elt()
        .args(["validate", "--connect", "--format", "json"])
        .arg(env.job_path(job))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", output_text(&out)));
    (out.status.code().unwrap_or(-1), v, output_text(&out))
}

fn problems<'a>(v: &'a Value, severity: &str) -> Vec<&'a Value> {
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] == severity)
        .collect()
}

/// A job over `items` whose upsert writes into `a_types` (the column types in A).
fn items_job(select: &str, a_types: &[(&str, &str)], cond: &str) -> String {
    let cols: Vec<&str> = a_types.iter().map(|(c, _)| *c).collect();
    let create = format!(
        "CREATE TABLE IF NOT EXISTS items_copy ({}, PRIMARY KEY (id))",
        a_types
            .iter()
            .map(|(c, t)| format!("{c} {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let upsert = format!(
        "INSERT INTO items_copy ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}",
        cols.join(", "),
        vec!["%s"; cols.len()].join(", "),
        cols.iter()
            .filter(|c| **c != "id")
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    job_yaml(
        &create,
        &format!("SELECT {select} FROM items WHERE {cond} > %s"),
        &upsert,
        "SELECT id FROM items",
        "items_copy",
        &["id"],
    )
}

#[test]
fn connect_accepts_enum_domain_and_casts_and_changes_nothing() {
    let env = TestEnv::new("vc_ok");
    env.m_exec(M_SCHEMA);
    env.write_job(
        "ok",
        &items_job(
            "id, flag, amount, price, feeling, attrs, updated_at",
            &[
                ("id", "bigint"),
                ("flag", "boolean"),
                ("amount", "numeric"),
                ("price", "numeric(10,2)"),
                ("feeling", "text"),
                ("attrs", "jsonb"),
                ("updated_at", "timestamptz"),
            ],
            "updated_at",
        ),
    );
    let (code, v, text) = validate_json(&env, "ok");
    assert_eq!(code, 0, "{text}");
    assert!(problems(&v, "error").is_empty(), "{v:#}");
    assert!(problems(&v, "warning").is_empty(), "{v:#}");
    assert_eq!(
        env.a_count("items_copy"),
        None,
        "--connect must not leave the table it created"
    );
}

#[test]
fn connect_reports_incompatible_types_with_their_placeholder() {
    let env = TestEnv::new("vc_types");
    env.m_exec(M_SCHEMA);
    env.write_job(
        "bad",
        &items_job(
            "id, flag, amount, updated_at",
            &[
                ("id", "integer"),
                ("flag", "integer"),
                ("amount", "integer"),
                ("updated_at", "integer"),
            ],
            "updated_at",
        ),
    );
    let (code, v, text) = validate_json(&env, "bad");
    assert_eq!(code, 2, "{text}");
    let errors = problems(&v, "error");
    let msg = |needle: &str| {
        errors.iter().any(|p| {
            p["key"] == "UPSERT_TARGET_SQL" && p["message"].as_str().unwrap().contains(needle)
        })
    };
    assert!(msg("`updated_at`"), "timestamptz → integer: {v:#}");
    assert!(msg("`flag`"), "boolean → integer: {v:#}");
    assert!(
        problems(&v, "warning")
            .iter()
            .any(|p| p["message"].as_str().unwrap().contains("`amount`")),
        "numeric → integer warns: {v:#}"
    );
    for p in &errors {
        assert!(
            p["line"].as_u64().is_some(),
            "every problem has a line: {p}"
        );
    }
}

#[test]
fn connect_checks_watermark_type_conflict_index_and_key_uniqueness() {
    let env = TestEnv::new("vc_keys");
    env.m_exec(M_SCHEMA);
    // A placeholder compared with jsonb cannot hold a watermark.
    env.write_job(
        "wm",
        &items_job(
            "id, attrs",
            &[("id", "integer"), ("attrs", "jsonb")],
            "attrs",
        ),
    );
    let (code, v, text) = validate_json(&env, "wm");
    assert_eq!(code, 2, "{text}");
    assert!(
        problems(&v, "error")
            .iter()
            .any(|p| p["key"] == "SELECT_SOURCE_SQL"
                && p["message"]
                    .as_str()
                    .unwrap()
                    .contains("cannot hold a watermark")),
        "{v:#}"
    );

    // A table that already exists in A without the unique index the upsert needs.
    env.a_exec("CREATE TABLE items_copy (id integer, updated_at timestamptz)");
    env.write_job(
        "noindex",
        &items_job(
            "id, updated_at",
            &[("id", "integer"), ("updated_at", "timestamptz")],
            "updated_at",
        ),
    );
    let (code, v, text) = validate_json(&env, "noindex");
    assert_eq!(code, 2, "{text}");
    assert!(
        problems(&v, "error")
            .iter()
            .any(|p| p["key"] == "UPSERT_TARGET_SQL"
                && p["message"].as_str().unwrap().contains("no unique index")),
        "{v:#}"
    );
    env.a_exec("DROP TABLE items_copy");

    // A source key without a unique index on M: a warning, and exit 0.
    env.write_job(
        "events",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS events (id integer PRIMARY KEY, note text, updated_at timestamptz)",
            "SELECT id, note, updated_at FROM events WHERE updated_at > %s",
            "INSERT INTO events (id, note, updated_at) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note, updated_at = EXCLUDED.updated_at",
            "SELECT id FROM events",
            "events",
            &["id"],
        ),
    );
    let (code, v, text) = validate_json(&env, "events");
    assert_eq!(code, 0, "a warning does not fail validation: {text}");
    assert!(
        problems(&v, "warning")
            .iter()
            .any(|p| p["key"] == "KEY_COLUMNS"
                && p["message"].as_str().unwrap().contains("can repeat")),
        "{v:#}"
    );
    // The human form marks it as a warning.
    let out = env
        .elt()
        .args(["validate", "--connect"])
        .arg(env.job_path("events"))
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("events.yaml: KEY_COLUMNS: ")),
        "{text}"
    );
}

#[test]
fn connect_locates_database_errors_in_the_yaml_file() {
    let env = TestEnv::new("vc_locate");
    env.m_exec(M_SCHEMA);
    let yaml = "CREATE_TABLE_SQL: |\n  CREATE TABLE IF NOT EXISTS items_copy (id integer PRIMARY KEY, updated_at timestamptz)\n\
SELECT_SOURCE_SQL: |\n  SELECT id,\n         updated_at\n  FROM items\n  WHERE updatd_at > %s\n\
UPSERT_TARGET_SQL: |\n  INSERT INTO items_copy (id, updated_at) VALUES (%s, %s)\n  ON CONFLICT (id) DO UPDATE SET updated_at = EXCLUDED.updated_at\n\
SELECT_KEYS_SQL: SELECT id FROM items\nTARGET_TABLE: items_copy\nKEY_COLUMNS: [id]\n";
    env.write_job("typo", yaml);
    let (code, v, text) = validate_json(&env, "typo");
    assert_eq!(code, 2, "{text}");
    let e = problems(&v, "error");
    let p = e
        .iter()
        .find(|p| p["key"] == "SELECT_SOURCE_SQL")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert!(p["message"].as_str().unwrap().contains("updatd_at"), "{p}");
    // `updatd_at` is on line 7, column 9 of the file
    assert_eq!(
        (p["line"].as_u64(), p["column"].as_u64()),
        (Some(7), Some(9)),
        "{p}"
    );
}
