//! What a new user meets in `validate` and `run`: broken SQL reported once at its place,
//! `--connect` checking each statement on its own and casting a sample of real values, and
//! `run` wording a mistake exactly as `validate` does. Each test drives the real binary and
//! asserts the lines a user reads and the exit status.
use crate::fixture::*;
use std::path::Path;

/// Line and column (1-based, in characters) of the `nth` (0-based) occurrence of `needle`
/// in `text`.
fn pos(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let at = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in {text}"))
        .0;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// `FILE: KEY: line L, column C: message`, as `validate` prints a problem.
fn line_for(file: &Path, key: &str, (l, c): (usize, usize), message: &str) -> String {
    format!("{}: {key}: line {l}, column {c}: {message}", file.display())
}

/// `elt validate [ARGS] FILE` → (exit status, stdout lines, stderr).
fn validate(env: &TestEnv, args: &[&str], file: &Path) -> (i32, Vec<String>, String) {
    let out = env
        .elt()
        .arg("validate")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `elt run-job NAME --json` → (exit status, the job's error).
fn run_error(env: &TestEnv, name: &str) -> (i32, String) {
    let (code, v) = env.run_job_json(name);
    let e = job(&v, name)["error"].as_str().unwrap_or("").to_string();
    (code, e)
}

const BASE: &str = "CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, x text)
SELECT_SOURCE_SQL: |
  SELECT id, x FROM s WHERE u > %s
UPSERT_TARGET_SQL: |
  INSERT INTO t (id, x) VALUES (%s, %s)
  ON CONFLICT (id) DO UPDATE SET x = EXCLUDED.x
SELECT_KEYS_SQL: SELECT id FROM s
TARGET_TABLE: t
KEY_COLUMNS: [id]
";

#[test]
fn broken_sql_is_one_error_at_one_place() {
    let env = TestEnv::new("vm_broken");
    let cases = [
        (
            "(id int PRIMARY KEY, x text)",
            "(id int PRIMARY KEY,, x text)",
            "CREATE_TABLE_SQL",
            (",,", 1),
            "syntax error: an empty item in a list (two commas in a row, or a comma next to a parenthesis)",
        ),
        (
            "(id int PRIMARY KEY, x text)",
            "(id int PRIMARY KEY x text)",
            "CREATE_TABLE_SQL",
            (" x text", 1),
            "syntax error: `x` cannot stand here: expected ',' or ')' after column definition",
        ),
        (
            "VALUES (%s, %s)",
            "VALUS (%s, %s)",
            "UPSERT_TARGET_SQL",
            ("VALUS", 0),
            "must use `VALUES (%s, …)` right after the column list",
        ),
        (
            "ON CONFLICT (id)",
            "ON CONFLICT (id",
            "UPSERT_TARGET_SQL",
            ("(id DO", 0),
            "syntax error: this `(` is never closed",
        ),
        (
            "SELECT id FROM s\n",
            "SELECT id FORM s\n",
            "SELECT_KEYS_SQL",
            (" s\nTARGET", 1),
            "syntax error: `s` cannot stand here: expected end of statement",
        ),
    ];
    for (i, (from, to, key, (needle, skip), message)) in cases.into_iter().enumerate() {
        let yaml = BASE.replacen(from, to, 1);
        let f = env.write_job(&format!("broken{i}"), &yaml);
        let (l, c) = pos(&yaml, needle, 0);
        let want = line_for(&f, key, (l, c + skip), message);
        let (code, lines, stderr) = validate(&env, &[], &f);
        assert_eq!(code, 2, "{lines:?}");
        assert_eq!(lines, vec![want], "{to}");
        assert_eq!(stderr.trim(), "elt: 1 problem(s) in 1 of 1 job file(s)");
    }
}

#[test]
fn postgresql_syntax_the_parser_lacks_is_a_note_at_one_place() {
    let env = TestEnv::new("vm_note");
    let f = repo_root().join("tests/validate/corpus/ok/like_and_window.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    let (code, lines, _) = validate(&env, &["-v"], &f);
    assert_eq!(code, 0, "{lines:?}");
    let note = format!(
        "note: {}",
        line_for(
            &f,
            "CREATE_TABLE_SQL",
            pos(&text, "INCLUDING ALL", 0),
            "the SQL parser (sqlparser, PostgreSQL dialect) cannot read this statement \
             (Expected: ), found: INCLUDING), which may be PostgreSQL syntax it lacks; its rules \
             were checked token by token, and `validate --connect` lets PostgreSQL itself check it"
        )
    );
    assert_eq!(lines, vec![note, "1 job file(s) valid".to_string()]);
}

const ITEMS: &str = "CREATE TABLE items (id integer PRIMARY KEY, updated_at timestamptz NOT NULL);";

#[test]
fn connect_checks_each_statement_on_its_own_and_run_says_the_same() {
    let env = TestEnv::new("vm_isolated");
    env.m_exec(ITEMS);
    let yaml = "CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS items_copy (id integer PRIMARY KEY, updated_at timestamptz)
SELECT_SOURCE_SQL: |
  SELECT id, updated_at
  FROM items
  WHERE updatd_at > %s
UPSERT_TARGET_SQL: |
  INSERT INTO items_copy (id, updated_at) VALUES (%s, %s)
  ON CONFLICT (id) DO UPDATE SET updated_at = EXCLUDED.updated_at
SELECT_KEYS_SQL: SELECT id FROM items
TARGET_TABLE: items_copy
KEY_COLUMNS: [id]
";
    let f = env.write_job("typo", yaml);
    let why = "column \"updatd_at\" does not exist; HINT: Perhaps you meant to reference the \
               column \"items.updated_at\".";
    let (code, lines, stderr) = validate(&env, &["--connect"], &f);
    assert_eq!(code, 2, "{lines:?} {stderr}");
    // before each statement had its savepoint, SELECT_KEYS_SQL (and the checks after it)
    // failed too, with "current transaction is aborted"
    assert_eq!(
        lines,
        vec![line_for(
            &f,
            "SELECT_SOURCE_SQL",
            pos(yaml, "updatd_at", 0),
            &format!("M rejects it: {why}")
        )]
    );
    let (code, error) = run_error(&env, "typo");
    assert_eq!(code, 1);
    assert_eq!(
        error,
        format!("master database (M): preparing SELECT_SOURCE_SQL: db error: ERROR: {why}")
    );
}

#[test]
fn connect_casts_a_sample_of_real_values_to_the_target_types() {
    let env = TestEnv::new("vm_sample");
    let long = "a label that is much longer than ten characters, really";
    env.m_exec(&format!(
        "CREATE TABLE src (id integer PRIMARY KEY, code text, amount numeric, label text, \
           born text, price numeric, updated_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO src (id, code, amount, label, born, price) VALUES
           (1, '12', 1, 'short', '2020-01-01', 1.5),
           (2, 'x7', 2.5, '{long}', 'not a date', 12345.678),
           (3, NULL, NULL, NULL, NULL, NULL);"
    ));
    let yaml = "CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS dst (id integer PRIMARY KEY, code integer, amount integer,
    label varchar(10), born date, price numeric(5,2), updated_at timestamptz)
SELECT_SOURCE_SQL: |
  SELECT id, code, amount, label, born, price, updated_at FROM src WHERE updated_at > %s
UPSERT_TARGET_SQL: |
  INSERT INTO dst (id, code, amount, label, born, price, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)
  ON CONFLICT (id) DO UPDATE SET code = EXCLUDED.code, amount = EXCLUDED.amount,
    label = EXCLUDED.label, born = EXCLUDED.born, price = EXCLUDED.price,
    updated_at = EXCLUDED.updated_at
SELECT_KEYS_SQL: SELECT id FROM src
TARGET_TABLE: dst
KEY_COLUMNS: [id]
";
    let f = env.write_job("sample", yaml);
    let at = |n: usize| pos(yaml, "%s", n + 1); // the first `%s` is the source's
    let bad = |n: usize, col: &str, value: &str, ty: &str, why: &str| {
        line_for(
            &f,
            "UPSERT_TARGET_SQL",
            at(n),
            &format!(
                "placeholder {p} takes output column {p} `{col}` of SELECT_SOURCE_SQL: its value \
                 '{value}' (row 2 of the first 1000 rows) cannot be stored as {ty}: {why}",
                p = n + 1
            ),
        )
    };
    let shown: String = long.chars().take(40).collect::<String>() + "…";
    let want = vec![
        bad(
            1,
            "code",
            "x7",
            "integer",
            "invalid input syntax for type integer: \"x7\"",
        ),
        format!(
            "warning: {}",
            line_for(
                &f,
                "UPSERT_TARGET_SQL",
                at(2),
                "placeholder 3 takes output column 3 `amount` of SELECT_SOURCE_SQL: numeric \
                 values with a fraction cannot be read as integer; round or cast them in the SELECT"
            )
        ),
        bad(
            2,
            "amount",
            "2.5",
            "integer",
            "invalid input syntax for type integer: \"2.5\"",
        ),
        bad(
            3,
            "label",
            &shown,
            "character varying(10)",
            "value too long for type character varying(10)",
        ),
        bad(
            4,
            "born",
            "not a date",
            "date",
            "invalid input syntax for type date: \"not a date\"",
        ),
        bad(
            5,
            "price",
            "12345.678",
            "numeric(5,2)",
            "numeric field overflow; DETAIL: A field with precision 5, scale 2 must round to an \
             absolute value less than 10^3.",
        ),
    ];
    let (code, lines, stderr) = validate(&env, &["--connect"], &f);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(lines, want);
    assert_eq!(stderr.trim(), "elt: 5 problem(s) in 1 of 1 job file(s)");
    assert_eq!(env.a_count("dst"), None, "--connect leaves nothing in A");
}

const CUSTOMERS: &str = "CREATE TABLE customers (customer_id integer PRIMARY KEY, name text, \
                         updated_at timestamptz NOT NULL DEFAULT now());
                         INSERT INTO customers (customer_id, name) VALUES (1, 'a'), (2, 'b');";

/// A job copying `customers` into `clients (id, name, updated_at)`.
fn clients_job(source: &str, upsert_values: &str, keys: &str) -> String {
    format!(
        "CREATE_TABLE_SQL: CREATE TABLE IF NOT EXISTS clients (id integer PRIMARY KEY, name text, updated_at timestamptz)
SELECT_SOURCE_SQL: {source}
UPSERT_TARGET_SQL: INSERT INTO clients (id, name, updated_at) VALUES ({upsert_values}) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = EXCLUDED.updated_at
SELECT_KEYS_SQL: {keys}
TARGET_TABLE: clients
KEY_COLUMNS: [id]
"
    )
}

#[test]
fn run_words_a_wrong_keys_query_as_validate_does() {
    let env = TestEnv::new("vm_keys");
    env.m_exec(CUSTOMERS);
    let source = "SELECT customer_id AS id, name, updated_at FROM customers WHERE updated_at > %s";
    let message = "output column 1 is `customer_id` but KEY_COLUMNS has `id` there: same names, \
                   same order";
    // the parser names the column: `validate` says so without a database
    let plain = clients_job(source, "%s, %s, %s", "SELECT customer_id FROM customers");
    let f = env.write_job("keys", &plain);
    let want = line_for(
        &f,
        "SELECT_KEYS_SQL",
        pos(&plain, "customer_id FROM customers", 0),
        message,
    );
    let (code, lines, _) = validate(&env, &[], &f);
    assert_eq!((code, lines), (2, vec![want]));
    // `run` used to fail later with "column t.customer_id does not exist"
    assert_eq!(
        run_error(&env, "keys"),
        (1, format!("SELECT_KEYS_SQL: {message}"))
    );

    // only M can name a sub-select's column: `validate --connect` and `run` agree
    let sub = clients_job(
        source,
        "%s, %s, %s",
        "SELECT (SELECT c.customer_id) FROM customers c",
    );
    let f = env.write_job("keys", &sub);
    let want = line_for(
        &f,
        "SELECT_KEYS_SQL",
        pos(&sub, "SELECT c.customer_id", 0),
        message,
    );
    let (code, lines, _) = validate(&env, &["--connect"], &f);
    assert_eq!((code, lines), (2, vec![want]));
    assert_eq!(
        run_error(&env, "keys"),
        (1, format!("SELECT_KEYS_SQL: {message}"))
    );
}

#[test]
fn run_words_key_and_placeholder_mismatches_as_validate_does() {
    let env = TestEnv::new("vm_agree");
    env.m_exec(CUSTOMERS);
    let keys = "SELECT customer_id AS id FROM customers";
    let star = "SELECT * FROM customers WHERE updated_at > %s";

    // `*` hides the columns from the parser; M returns customer_id, not id
    let yaml = clients_job(star, "%s, %s, %s", keys);
    let f = env.write_job("agree", &yaml);
    let message = "`id` is not an output column of SELECT_SOURCE_SQL (its columns: customer_id, \
                   name, updated_at); each row's key is read from it";
    let want = format!("{}: KEY_COLUMNS: line 6, column 14: {message}", f.display());
    let (code, lines, _) = validate(&env, &["--connect"], &f);
    assert_eq!((code, lines), (2, vec![want]));
    assert_eq!(
        run_error(&env, "agree"),
        (1, format!("KEY_COLUMNS: {message}"))
    );

    // three placeholders for the four columns `*` returns
    let star_id = "SELECT customer_id AS id, * FROM customers WHERE updated_at > %s";
    let yaml = clients_job(star_id, "%s, %s, %s", keys);
    let f = env.write_job("agree", &yaml);
    let message = "has 3 placeholder(s) but SELECT_SOURCE_SQL returns 4 column(s); values are \
                   bound in the order of the source's columns, so they must be equal";
    let want = line_for(&f, "UPSERT_TARGET_SQL", pos(&yaml, "%s", 1), message);
    let (code, lines, _) = validate(&env, &["--connect"], &f);
    assert_eq!((code, lines), (2, vec![want]));
    assert_eq!(
        run_error(&env, "agree"),
        (1, format!("UPSERT_TARGET_SQL: {message}"))
    );
}
