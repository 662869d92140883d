//! Edited jobs: a changed definition re-synchronises the job in full (rewriting only the rows
//! whose values in A differ), a cosmetic edit changes nothing, and a column added to a job
//! whose table exists in A fails with the `ALTER TABLE` to run, then backfills.

use crate::fixture::*;

fn full_sync(v: &serde_json::Value, name: &str) -> Option<String> {
    job(v, name)["full_sync"].as_str().map(str::to_string)
}

#[test]
fn an_edited_upsert_reaches_every_row_and_the_next_run_is_incremental() {
    let env = TestEnv::new("edited_upsert");
    env.products_fixture(40);
    env.run_ok("products");
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace("VALUES (%s, %s, %s, %s)", "VALUES (%s, upper(%s), %s, %s)"),
    );
    let transformed = "SELECT id, upper(title), price, updated_at FROM products";

    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    let why = full_sync(&v, "products").unwrap_or_default();
    assert!(why.contains("definition"), "{v:#}");
    let c = counts(&v, "products");
    assert_eq!(
        (c.read, c.upserted),
        (40, 40),
        "every row is rewritten: {v:#}"
    );
    env.assert_a_equals_m(transformed, PRODUCTS_Q);
    assert!(
        env.elt_log()
            .contains("re-synchronising in full: the job's definition"),
        "{}",
        env.elt_log()
    );

    // the run after is incremental again: nothing read since the watermark is rewritten
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(full_sync(&v, "products"), None, "{v:#}");
    assert_eq!(counts(&v, "products").upserted, 0, "{v:#}");
    env.m_exec("UPDATE products SET title = 'mixed Case' WHERE id = 3");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 1);
    env.assert_a_equals_m(transformed, PRODUCTS_Q);
}

#[test]
fn a_resync_rewrites_only_the_rows_the_new_definition_changes() {
    let env = TestEnv::new("edited_partly");
    env.products_fixture(30);
    env.m_exec("UPDATE products SET price = NULL WHERE id IN (4, 9, 17)");
    env.run_ok("products");
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace(
            "VALUES (%s, %s, %s, %s)",
            "VALUES (%s, %s, coalesce(%s, 0), %s)",
        ),
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert!(full_sync(&v, "products").is_some(), "{v:#}");
    let c = counts(&v, "products");
    assert_eq!((c.read, c.upserted, c.unchanged), (30, 3, 27), "{v:#}");
    env.assert_a_equals_m(
        "SELECT id, title, coalesce(price, 0)::numeric(10,2), updated_at FROM products",
        PRODUCTS_Q,
    );
}

#[test]
fn an_edited_source_query_reaches_every_row() {
    let env = TestEnv::new("edited_source");
    env.products_fixture(25);
    env.run_ok("products");
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace(
            "SELECT id, title, price, updated_at FROM products WHERE",
            "SELECT id, title || ' (' || id || ')' AS title, price * 2 AS price, updated_at FROM products WHERE",
        ),
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "products").upserted, 25, "{v:#}");
    env.assert_a_equals_m(
        "SELECT id, title || ' (' || id || ')', price * 2, updated_at FROM products",
        PRODUCTS_Q,
    );
    // the summary line says why the run was full
    env.m_exec("UPDATE products SET price = 1 WHERE id = 2");
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace(
            "SELECT id, title, price,",
            "SELECT id, upper(title) AS title, price,",
        ),
    );
    let out = env.elt().arg("run").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let line = text
        .lines()
        .find(|l| l.starts_with("products:"))
        .unwrap_or("");
    assert!(
        line.contains("full re-sync") && line.contains("definition"),
        "{text}"
    );
    env.assert_a_equals_m(
        "SELECT id, upper(title), price, updated_at FROM products",
        PRODUCTS_Q,
    );
}

#[test]
fn white_space_comments_and_keyword_case_are_no_edit() {
    let env = TestEnv::new("cosmetic_edit");
    env.products_fixture(20);
    env.run_ok("products");
    let cosmetic = r#"# the products job, reformatted
CREATE_TABLE_SQL: |
  create table if not exists products (
      id integer primary key,   -- the key
      title text not null,
      price numeric(10,2),
      updated_at timestamptz not null
  );
SELECT_SOURCE_SQL: |
  select id, title, price, updated_at
    from products
   where updated_at > %s   /* the watermark */
UPSERT_TARGET_SQL: >-
  insert into products (id, title, price, updated_at) values (%s, %s, %s, %s)
  on conflict (id) do update set title = excluded.title, price = excluded.price,
  updated_at = excluded.updated_at;
SELECT_KEYS_SQL: "select id from products -- all of them"
TARGET_TABLE: products
KEY_COLUMNS: ["id"]
"#;
    env.write_job("products", cosmetic);
    let status: serde_json::Value = serde_json::from_slice(
        &env.elt()
            .args(["status", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let s = &status["jobs"][0];
    assert_eq!(s["file_changed_since_last_run"], true, "{status:#}");
    assert_eq!(s["definition_changed_since_last_run"], false, "{status:#}");
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(full_sync(&v, "products"), None, "{v:#}");
    assert_eq!(counts(&v, "products").upserted, 0, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn status_shows_a_changed_definition_until_a_run_succeeds_with_it() {
    let env = TestEnv::new("status_changed");
    env.products_fixture(10);
    env.run_ok("products");
    let status = || -> serde_json::Value {
        serde_json::from_slice(
            &env.elt()
                .args(["status", "--json"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    assert_eq!(
        status()["jobs"][0]["definition_changed_since_last_run"],
        false
    );
    // a broken edit: the run fails, and status still says the definition changed
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace("SELECT id FROM products", "SELECT id FROM no_such_table"),
    );
    let (code, _) = env.run_json();
    assert_eq!(code, 1);
    assert_eq!(
        status()["jobs"][0]["definition_changed_since_last_run"],
        true
    );
    let table = env.elt().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("products"))
        .unwrap_or("");
    assert!(
        row.contains(" changed ") && row.contains(" re-sync "),
        "{text}"
    );
    assert!(text.contains("re-synchronises it in full"), "{text}");
    // fixed: the successful run re-syncs and status is clean again
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace(
            "SELECT id FROM products",
            "SELECT id FROM products WHERE true",
        ),
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert!(full_sync(&v, "products").is_some(), "{v:#}");
    assert_eq!(
        status()["jobs"][0]["definition_changed_since_last_run"],
        false
    );
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

const WITH_DISCOUNT: &str = r#"CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS products (
      id integer PRIMARY KEY,
      title text NOT NULL,
      price numeric(10,2),
      discount numeric(5,2),
      updated_at timestamptz NOT NULL
  )
SELECT_SOURCE_SQL: "SELECT id, title, price, discount, updated_at FROM products WHERE updated_at > %s"
UPSERT_TARGET_SQL: >-
  INSERT INTO products (id, title, price, discount, updated_at) VALUES (%s, %s, %s, %s, %s)
  ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price = EXCLUDED.price,
  discount = EXCLUDED.discount, updated_at = EXCLUDED.updated_at
SELECT_KEYS_SQL: "SELECT id FROM products"
TARGET_TABLE: products
KEY_COLUMNS: ["id"]
"#;

const WITH_DISCOUNT_Q: &str = "SELECT id, title, price, discount, updated_at FROM products";

#[test]
fn a_column_added_to_the_job_fails_with_the_alter_table_to_run_then_is_backfilled() {
    let env = TestEnv::new("added_column");
    env.products_fixture(30);
    env.run_ok("products");
    // a new column in M, filled for every row without touching updated_at
    env.m_exec(
        "ALTER TABLE products ADD COLUMN discount numeric(5,2); \
         ALTER TABLE products DISABLE TRIGGER products_touch; \
         UPDATE products SET discount = (id % 7) / 10.0; \
         ALTER TABLE products ENABLE TRIGGER products_touch",
    );
    env.write_job("products", WITH_DISCOUNT);
    let before = env.a_rows(PRODUCTS_Q);

    let out = env.elt().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("products:"))
        .unwrap_or("");
    for part in [
        "products",
        "`discount`",
        "numeric(5,2)",
        "ALTER TABLE products ADD COLUMN \"discount\" numeric(5,2);",
        "DROP TABLE products;",
    ] {
        assert!(line.contains(part), "missing {part:?} in: {stdout}");
    }
    assert!(!line.contains("does not exist"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "one line per job: {stdout}");
    assert_eq!(env.a_rows(PRODUCTS_Q), before, "A is left as it was");

    env.a_exec("ALTER TABLE products ADD COLUMN discount numeric(5,2)");
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert!(full_sync(&v, "products").is_some(), "{v:#}");
    assert_eq!(counts(&v, "products").upserted, 30, "{v:#}");
    env.assert_a_equals_m(WITH_DISCOUNT_Q, WITH_DISCOUNT_Q);
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 0);
}

#[test]
fn dropping_the_table_instead_rebuilds_it_with_the_new_column() {
    let env = TestEnv::new("added_column_drop");
    env.products_fixture(12);
    env.run_ok("products");
    env.m_exec("ALTER TABLE products ADD COLUMN discount numeric(5,2) DEFAULT 0.25");
    env.write_job("products", WITH_DISCOUNT);
    let (code, _) = env.run_json();
    assert_eq!(code, 1);
    env.a_exec("DROP TABLE products");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 12);
    env.assert_a_equals_m(WITH_DISCOUNT_Q, WITH_DISCOUNT_Q);
}
