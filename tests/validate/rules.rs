//! `elt validate`: every rule of the job-file table, all problems at once, folder rules.
use crate::fixture::*;
use std::fs;
use std::path::{Path, PathBuf};

const KEYS: [&str; 6] = [
    "CREATE_TABLE_SQL",
    "SELECT_SOURCE_SQL",
    "UPSERT_TARGET_SQL",
    "SELECT_KEYS_SQL",
    "TARGET_TABLE",
    "KEY_COLUMNS",
];

/// A valid job as ordered (key, YAML value) pairs.
fn valid() -> Vec<(String, String)> {
    vec![
        (
            "CREATE_TABLE_SQL",
            yaml_str("CREATE TABLE IF NOT EXISTS products (product_id integer PRIMARY KEY, title text, created_at timestamptz, updated_at timestamptz)"),
        ),
        (
            "SELECT_SOURCE_SQL",
            yaml_str("SELECT product_id, title, created_at, updated_at FROM products WHERE updated_at > %s"),
        ),
        (
            "UPSERT_TARGET_SQL",
            yaml_str("INSERT INTO products (product_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (product_id) DO UPDATE SET title = EXCLUDED.title, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at;"),
        ),
        ("SELECT_KEYS_SQL", yaml_str("SELECT product_id FROM products;")),
        ("TARGET_TABLE", "products".to_string()),
        ("KEY_COLUMNS", "[\"product_id\"]".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn render(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
}

/// The valid job with `key` set to the YAML value `value` (None removes the key).
fn with(key: &str, value: Option<&str>) -> String {
    let mut p = valid();
    match value {
        Some(v) => {
            if let Some(e) = p.iter_mut().find(|(k, _)| k == key) {
                e.1 = v.to_string();
            } else {
                p.push((key.to_string(), v.to_string()));
            }
        }
        None => p.retain(|(k, _)| k != key),
    }
    render(&p)
}

fn with_sql(key: &str, sql: &str) -> String {
    with(key, Some(&yaml_str(sql)))
}

struct V {
    env: TestEnv,
    dir: PathBuf,
}

impl V {
    fn new(name: &str) -> V {
        let env = TestEnv::new(name);
        let dir = env.path().join("cand");
        fs::create_dir_all(&dir).unwrap();
        V { env, dir }
    }
    fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, body).unwrap();
        p
    }
    /// `elt validate ARGS...` without any database settings → (exit code, stdout+stderr).
    fn validate(&self, args: &[&Path]) -> (i32, String) {
        let mut c = self.env.elt_bare();
        c.arg("validate");
        for a in args {
            c.arg(a);
        }
        let out = c.output().unwrap();
        (out.status.code().unwrap_or(-1), output_text(&out))
    }
}

fn problem_lines<'a>(out: &'a str, file: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.contains(&format!("{file}: ")))
        .collect()
}

/// Asserts a `FILE: KEY: message` line for `file` with one of `keys`.
fn assert_problem(out: &str, file: &Path, keys: &[&str]) {
    let f = file.display().to_string();
    let ok = out.lines().any(|l| {
        keys.iter()
            .any(|k| l.contains(&format!("{f}: {k}: ")) && l.len() > f.len() + k.len() + 4)
    });
    assert!(
        ok,
        "expected a line `{f}: <{}>: message` in:\n{out}",
        keys.join("|")
    );
}

fn assert_clean(code: i32, out: &str, what: &str) {
    assert_eq!(code, 0, "{what} should be valid; output:\n{out}");
}

impl V {
    /// `file` is valid alone (exit 0), and next to a broken control file only the control
    /// is reported (so that a validator that checks nothing cannot pass).
    fn assert_valid(&self, file: &Path, what: &str) {
        let (code, out) = self.validate(&[file]);
        assert_clean(code, &out, what);
        let control = self.file("zz_control.yaml", &with("TARGET_TABLE", None));
        let (code, out) = self.validate(&[file, &control]);
        assert_eq!(code, 2, "control file must be rejected:\n{out}");
        assert_problem(&out, &control, &["TARGET_TABLE"]);
        assert!(
            problem_lines(&out, &file.display().to_string()).is_empty(),
            "{what} must have no problem lines:\n{out}"
        );
    }
}

#[test]
fn valid_job_passes() {
    let v = V::new("v_valid");
    let f = v.file("products.yaml", &render(&valid()));
    v.assert_valid(&f, "the spec's example");
}

#[test]
fn create_table_variants_accepted() {
    let v = V::new("v_create_ok");
    let variants = [
        "create table if not exists products (product_id integer PRIMARY KEY, title text, created_at timestamptz, updated_at timestamptz)",
        "Create Table If Not Exists products (product_id integer PRIMARY KEY, title text, created_at timestamptz, updated_at timestamptz);",
        "  \n\tCREATE   TABLE\n  IF  NOT\tEXISTS\n products (product_id integer PRIMARY KEY, title text, created_at timestamptz, updated_at timestamptz)\n",
        "CREATE TABLE IF NOT EXISTS products (product_id integer PRIMARY KEY, title text DEFAULT 'a;b', created_at timestamptz, updated_at timestamptz)",
    ];
    for (i, sql) in variants.iter().enumerate() {
        let f = v.file(&format!("c{i}.yaml"), &with_sql("CREATE_TABLE_SQL", sql));
        v.assert_valid(&f, &format!("CREATE_TABLE_SQL {sql:?}"));
    }
}

#[test]
fn create_table_must_start_with_if_not_exists() {
    let v = V::new("v_create_bad");
    let bad = [
        "CREATE TABLE products (product_id integer PRIMARY KEY, title text, created_at timestamptz, updated_at timestamptz)",
        "CREATE UNLOGGED TABLE IF NOT EXISTS products (product_id integer PRIMARY KEY, title text, created_at timestamptz, updated_at timestamptz)",
        "DROP TABLE products",
        "",
    ];
    for (i, sql) in bad.iter().enumerate() {
        let f = v.file(&format!("c{i}.yaml"), &with_sql("CREATE_TABLE_SQL", sql));
        let (code, out) = v.validate(&[&f]);
        assert_eq!(
            code, 2,
            "CREATE_TABLE_SQL {sql:?} must be rejected; output:\n{out}"
        );
        assert_problem(&out, &f, &["CREATE_TABLE_SQL"]);
    }
}

#[test]
fn select_source_valid_variants() {
    let v = V::new("v_source_ok");
    let ok = [
        "SELECT product_id, title, created_at, updated_at FROM products WHERE updated_at > %s;",
        "SELECT product_id, title, created_at, updated_at FROM products WHERE updated_at > %s ;\n",
        "select product_id, title, created_at, updated_at\nfrom products\nwhere updated_at >= %s\n",
        "SELECT product_id, title || '%s' AS title, created_at, updated_at FROM products WHERE updated_at > %s",
        "SELECT product_id, title AS \"a%s\", created_at, updated_at FROM products WHERE product_id %% 2 = 0 AND updated_at > %s",
        "SELECT product_id, $$%s$$ AS title, created_at, updated_at FROM products /* %s */ WHERE updated_at > %s",
        "SELECT product_id, title, created_at, updated_at FROM products WHERE title LIKE 'a%' AND updated_at > %s",
    ];
    for (i, sql) in ok.iter().enumerate() {
        let f = v.file(&format!("s{i}.yaml"), &with_sql("SELECT_SOURCE_SQL", sql));
        v.assert_valid(&f, &format!("SELECT_SOURCE_SQL {sql:?}"));
    }
}

#[test]
fn select_source_needs_exactly_one_trailing_placeholder_condition() {
    let v = V::new("v_source_bad");
    let bad = [
        // no placeholder at all
        "SELECT product_id, title, created_at, updated_at FROM products",
        // the placeholder condition does not end the query
        "SELECT product_id, title, created_at, updated_at FROM products WHERE updated_at > %s ORDER BY product_id",
        // two placeholders
        "SELECT product_id, title, created_at, updated_at FROM products WHERE created_at > %s AND updated_at > %s",
        // %s only inside a string literal / comment / quoted identifier / dollar quotes
        "SELECT product_id, title, created_at, updated_at FROM products WHERE title <> '%s'",
        "SELECT product_id, title, created_at, updated_at FROM products WHERE updated_at > now() -- %s",
        "SELECT product_id, title, created_at, updated_at FROM products WHERE \"%s\" > now()",
        "SELECT product_id, title, created_at, updated_at FROM products WHERE title <> $q$%s$q$",
    ];
    for (i, sql) in bad.iter().enumerate() {
        let f = v.file(&format!("s{i}.yaml"), &with_sql("SELECT_SOURCE_SQL", sql));
        let (code, out) = v.validate(&[&f]);
        assert_eq!(
            code, 2,
            "SELECT_SOURCE_SQL {sql:?} must be rejected; output:\n{out}"
        );
        assert_problem(&out, &f, &["SELECT_SOURCE_SQL"]);
    }
}

#[test]
fn upsert_placeholder_count_must_match_columns() {
    let v = V::new("v_upsert_count");
    let bad = [
        "INSERT INTO products (product_id, title, created_at, updated_at) VALUES (%s, %s, %s) ON CONFLICT (product_id) DO UPDATE SET title = EXCLUDED.title",
        "INSERT INTO products (product_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (product_id) DO UPDATE SET title = EXCLUDED.title",
        "INSERT INTO products (product_id, title, created_at, updated_at) VALUES (%s, %s, '%s', %s) ON CONFLICT (product_id) DO UPDATE SET title = EXCLUDED.title",
    ];
    for (i, sql) in bad.iter().enumerate() {
        let f = v.file(&format!("u{i}.yaml"), &with_sql("UPSERT_TARGET_SQL", sql));
        let (code, out) = v.validate(&[&f]);
        assert_eq!(
            code, 2,
            "UPSERT_TARGET_SQL {sql:?} must be rejected; output:\n{out}"
        );
        assert_problem(&out, &f, &["UPSERT_TARGET_SQL"]);
    }
    // Lower-case keywords and line breaks are fine.
    let f = v.file(
        "ok.yaml",
        &with_sql(
            "UPSERT_TARGET_SQL",
            "insert into products (product_id, title, created_at, updated_at)\nvalues (%s, %s, %s, %s)\non conflict (product_id) do update set title = excluded.title, created_at = excluded.created_at, updated_at = excluded.updated_at",
        ),
    );
    v.assert_valid(&f, "lower-case upsert");
}

#[test]
fn upsert_needs_on_conflict_do_update() {
    let v = V::new("v_upsert_conflict");
    let bad = [
        "INSERT INTO products (product_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s)",
        "INSERT INTO products (product_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (product_id) DO NOTHING",
        "UPDATE products SET title = %s WHERE product_id = %s",
    ];
    for (i, sql) in bad.iter().enumerate() {
        let f = v.file(&format!("u{i}.yaml"), &with_sql("UPSERT_TARGET_SQL", sql));
        let (code, out) = v.validate(&[&f]);
        assert_eq!(
            code, 2,
            "UPSERT_TARGET_SQL {sql:?} must be rejected; output:\n{out}"
        );
        assert_problem(&out, &f, &["UPSERT_TARGET_SQL"]);
    }
}

#[test]
fn select_keys_must_match_key_columns() {
    let v = V::new("v_keys");
    let cases: [(&str, &str); 4] = [
        ("SELECT product_id, title FROM products", "[\"product_id\"]"),
        (
            "SELECT category, title FROM products",
            "[\"title\", \"category\"]",
        ),
        ("SELECT id FROM products", "[\"product_id\"]"),
        ("SELECT title FROM products", "[\"title\", \"category\"]"),
    ];
    for (i, (sql, kc)) in cases.iter().enumerate() {
        let mut p = valid();
        for e in p.iter_mut() {
            if e.0 == "SELECT_KEYS_SQL" {
                e.1 = yaml_str(sql);
            }
            if e.0 == "KEY_COLUMNS" {
                e.1 = kc.to_string();
            }
        }
        let f = v.file(&format!("k{i}.yaml"), &render(&p));
        let (code, out) = v.validate(&[&f]);
        assert_eq!(
            code, 2,
            "SELECT_KEYS_SQL {sql:?} with KEY_COLUMNS {kc} must be rejected:\n{out}"
        );
        assert_problem(&out, &f, &["SELECT_KEYS_SQL", "KEY_COLUMNS"]);
    }
    // The original's example (a two-column key) is valid.
    let f = v.file(
        "example.yaml",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS products (title text, category text, updated_at timestamptz, PRIMARY KEY (title, category))",
            "SELECT title, category, updated_at FROM products WHERE updated_at > %s",
            "INSERT INTO products (title, category, updated_at) VALUES (%s, %s, %s) ON CONFLICT (title, category) DO UPDATE SET updated_at = EXCLUDED.updated_at",
            "SELECT title, category FROM products;",
            "products",
            &["title", "category"],
        ),
    );
    v.assert_valid(&f, "the original's SELECT_KEYS_SQL example");
}

#[test]
fn target_table_must_be_the_created_table() {
    let v = V::new("v_target");
    let f = v.file("t1.yaml", &with("TARGET_TABLE", Some("items")));
    let (code, out) = v.validate(&[&f]);
    assert_eq!(code, 2, "{out}");
    assert_problem(
        &out,
        &f,
        &["TARGET_TABLE", "CREATE_TABLE_SQL", "UPSERT_TARGET_SQL"],
    );

    // The upsert writes another table.
    let f = v.file(
        "t2.yaml",
        &with_sql(
            "UPSERT_TARGET_SQL",
            "INSERT INTO items (product_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (product_id) DO UPDATE SET title = EXCLUDED.title",
        ),
    );
    let (code, out) = v.validate(&[&f]);
    assert_eq!(code, 2, "{out}");
    assert_problem(
        &out,
        &f,
        &["UPSERT_TARGET_SQL", "TARGET_TABLE", "CREATE_TABLE_SQL"],
    );

    // Schema-qualified everywhere is fine.
    let mut p = valid();
    for e in p.iter_mut() {
        match e.0.as_str() {
            "CREATE_TABLE_SQL" => {
                e.1 = yaml_str(
                    "CREATE TABLE IF NOT EXISTS mart.products (product_id integer PRIMARY KEY, title text, created_at timestamptz, updated_at timestamptz)",
                )
            }
            "UPSERT_TARGET_SQL" => {
                e.1 = yaml_str(
                    "INSERT INTO mart.products (product_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (product_id) DO UPDATE SET title = EXCLUDED.title, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
                )
            }
            "TARGET_TABLE" => e.1 = "mart.products".into(),
            _ => {}
        }
    }
    let f = v.file("t3.yaml", &render(&p));
    v.assert_valid(&f, "schema-qualified target");
}

#[test]
fn key_columns_must_be_a_nonempty_list() {
    let v = V::new("v_key_columns");
    for (i, val) in ["[]", "product_id", "\"\"", "{a: 1}"].iter().enumerate() {
        let f = v.file(&format!("k{i}.yaml"), &with("KEY_COLUMNS", Some(val)));
        let (code, out) = v.validate(&[&f]);
        assert_eq!(code, 2, "KEY_COLUMNS: {val} must be rejected:\n{out}");
        assert_problem(&out, &f, &["KEY_COLUMNS"]);
    }
}

#[test]
fn every_missing_key_is_reported() {
    let v = V::new("v_missing");
    for key in KEYS {
        let f = v.file(
            &format!("missing_{}.yaml", key.to_lowercase()),
            &with(key, None),
        );
        let (code, out) = v.validate(&[&f]);
        assert_eq!(code, 2, "missing {key} must be rejected:\n{out}");
        assert_problem(&out, &f, &[key]);
    }
}

#[test]
fn unknown_key_is_reported() {
    let v = V::new("v_unknown");
    // A typo: KEY_COLUMN instead of KEY_COLUMNS → unknown key and missing key.
    let mut p = valid();
    for e in p.iter_mut() {
        if e.0 == "KEY_COLUMNS" {
            e.0 = "KEY_COLUMN".into();
        }
    }
    let f = v.file("typo.yaml", &render(&p));
    let (code, out) = v.validate(&[&f]);
    assert_eq!(code, 2, "{out}");
    assert_problem(&out, &f, &["KEY_COLUMN"]);
    assert_problem(&out, &f, &["KEY_COLUMNS"]);

    // Lower-case key names are not the keys.
    let f = v.file(
        "lower.yaml",
        &render(&valid()).replace("TARGET_TABLE:", "target_table:"),
    );
    let (code, out) = v.validate(&[&f]);
    assert_eq!(code, 2, "{out}");
    assert_problem(&out, &f, &["target_table"]);
}

#[test]
fn not_a_mapping_or_bad_yaml_is_reported() {
    let v = V::new("v_not_mapping");
    let bodies = [
        ("list.yaml", "- CREATE_TABLE_SQL\n- SELECT_SOURCE_SQL\n"),
        ("scalar.yaml", "just a string\n"),
        ("empty.yaml", ""),
        (
            "broken.yaml",
            "CREATE_TABLE_SQL: [unclosed\nSELECT_SOURCE_SQL: x\n",
        ),
        (
            "tabs.yaml",
            "CREATE_TABLE_SQL: a\n\tSELECT_SOURCE_SQL: b\n  : :\n",
        ),
    ];
    for (name, body) in bodies {
        let f = v.file(name, body);
        let (code, out) = v.validate(&[&f]);
        assert_eq!(code, 2, "{name} must be rejected:\n{out}");
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("{}: ", f.display()))),
            "the problem line names the file {}:\n{out}",
            f.display()
        );
    }
}

#[test]
fn multiple_statements_are_rejected() {
    let v = V::new("v_multi_stmt");
    let cases = [
        (
            "CREATE_TABLE_SQL",
            "CREATE TABLE IF NOT EXISTS products (product_id integer PRIMARY KEY, title text, created_at timestamptz, updated_at timestamptz); DROP TABLE users",
        ),
        (
            "SELECT_SOURCE_SQL",
            "DELETE FROM audit; SELECT product_id, title, created_at, updated_at FROM products WHERE updated_at > %s",
        ),
        (
            "SELECT_KEYS_SQL",
            "SELECT product_id FROM products; SELECT 1",
        ),
        (
            "UPSERT_TARGET_SQL",
            "INSERT INTO products (product_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (product_id) DO UPDATE SET title = EXCLUDED.title; DELETE FROM products",
        ),
    ];
    for (key, sql) in cases {
        let f = v.file(&format!("{}.yaml", key.to_lowercase()), &with_sql(key, sql));
        let (code, out) = v.validate(&[&f]);
        assert_eq!(
            code, 2,
            "{key} with two statements must be rejected:\n{out}"
        );
        assert_problem(&out, &f, &[key]);
    }
}

#[test]
fn all_problems_of_all_files_are_reported_at_once() {
    let v = V::new("v_all_at_once");
    let mut p = valid();
    for e in p.iter_mut() {
        match e.0.as_str() {
            "CREATE_TABLE_SQL" => {
                e.1 = yaml_str(
                    "CREATE TABLE products (product_id integer PRIMARY KEY, title text, created_at timestamptz, updated_at timestamptz)",
                )
            }
            "UPSERT_TARGET_SQL" => {
                e.1 = yaml_str(
                    "INSERT INTO products (product_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s)",
                )
            }
            "KEY_COLUMNS" => e.1 = "[]".into(),
            _ => {}
        }
    }
    p.push(("EXTRA".into(), "1".into()));
    let f1 = v.file("many.yaml", &render(&p));
    let f2 = v.file("other.yaml", &with_sql("SELECT_SOURCE_SQL", "SELECT 1"));
    let f3 = v.file("fine.yaml", &render(&valid()));
    let (code, out) = v.validate(&[&f1, &f2, &f3]);
    assert_eq!(code, 2, "{out}");
    assert_problem(&out, &f1, &["CREATE_TABLE_SQL"]);
    assert_problem(&out, &f1, &["UPSERT_TARGET_SQL"]);
    assert_problem(&out, &f1, &["KEY_COLUMNS"]);
    assert_problem(&out, &f1, &["EXTRA"]);
    assert_problem(&out, &f2, &["SELECT_SOURCE_SQL"]);
    assert!(
        problem_lines(&out, &f3.display().to_string()).is_empty(),
        "fine.yaml has no problem:\n{out}"
    );
}

#[test]
fn folder_rules_extensions_hidden_files_and_subfolders() {
    let v = V::new("v_folder");
    let broken = "CREATE_TABLE_SQL: [unclosed\n";
    v.file("good.yaml", &render(&valid()));
    v.file("Upper.YML", &render(&valid()));
    v.file(".hidden.yaml", broken);
    v.file("notes.txt", broken);
    v.file("README.md", broken);
    v.file("old.yaml.bak", broken);
    v.file("sub/nested.yaml", broken);
    let (code, out) = v.validate(&[&v.dir]);
    assert_eq!(
        code, 0,
        "only good.yaml and Upper.YML are jobs here:\n{out}"
    );
    for ignored in [
        ".hidden.yaml",
        "notes.txt",
        "README.md",
        "old.yaml.bak",
        "nested.yaml",
    ] {
        assert!(
            !out.contains(&format!("{ignored}: ")),
            "{ignored} must be ignored:\n{out}"
        );
    }

    // An upper-case extension counts as a job file, so its problems are reported.
    v.file("Broken.YAML", &with("TARGET_TABLE", None));
    let (code, out) = v.validate(&[&v.dir]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("Broken.YAML: TARGET_TABLE: ")),
        "Broken.YAML's missing TARGET_TABLE must be reported:\n{out}"
    );
    assert!(
        !out.contains("nested.yaml: ") && !out.contains(".hidden.yaml: "),
        "{out}"
    );
}

#[test]
fn default_folder_is_the_jobs_dir() {
    let v = V::new("v_default_dir");
    fs::write(v.env.job_path("bad"), with("TARGET_TABLE", None)).unwrap();
    // From ELT_JOBS_DIR.
    let out = v
        .env
        .elt_bare()
        .env("ELT_JOBS_DIR", &v.env.jobs_dir)
        .arg("validate")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("bad.yaml: TARGET_TABLE: "), "{text}");
    // From --jobs-dir, which wins over the variable.
    let empty = v.env.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let out = v
        .env
        .elt_bare()
        .env("ELT_JOBS_DIR", &v.env.jobs_dir)
        .arg("validate")
        .arg("--jobs-dir")
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    // Default ./jobs relative to the working directory (the env's temp dir).
    let out = v.env.elt_bare().arg("validate").output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("bad.yaml: TARGET_TABLE: "), "{text}");
}

#[test]
fn missing_path_is_an_error() {
    let v = V::new("v_missing_path");
    let p = v.dir.join("nope.yaml");
    let (code, out) = v.validate(&[&p]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nope.yaml"), "{out}");
}

#[test]
fn shipped_jobs_folder_validates_clean() {
    let jobs = repo_root().join("jobs");
    let has_jobs = fs::read_dir(&jobs)
        .map(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().to_lowercase();
                !n.starts_with('.') && (n.ends_with(".yaml") || n.ends_with(".yml"))
            })
        })
        .unwrap_or(false);
    if !has_jobs {
        eprintln!("SKIPPED: {} holds no job files yet", jobs.display());
        return;
    }
    let v = V::new("v_shipped");
    let (code, out) = v.validate(&[&jobs]);
    assert_eq!(
        code, 0,
        "the shipped jobs/ folder must validate clean:\n{out}"
    );
}
