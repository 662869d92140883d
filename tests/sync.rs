//! Incremental copy: first run, no-op reruns, updates, inserts, deletions, NULL-safe keys,
//! placeholder and `%%` handling in the job's SQL.
use crate::fixture::*;

#[test]
fn first_run_copies_everything() {
    let env = TestEnv::new("first_run");
    env.products_fixture(25);
    let c = env.run_ok("products");
    assert_eq!(c.read, 25, "{c:?}");
    assert_eq!(c.upserted, 25, "{c:?}");
    assert_eq!(c.unchanged, 0, "{c:?}");
    assert_eq!(c.deleted, 0, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn second_run_without_changes_upserts_nothing() {
    let env = TestEnv::new("noop_rerun");
    env.products_fixture(12);
    env.run_ok("products");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 0, "nothing changed in M: {c:?}");
    assert_eq!(c.unchanged, c.read, "every re-read row is unchanged: {c:?}");
    assert_eq!(c.deleted, 0, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn updating_three_rows_upserts_exactly_three() {
    let env = TestEnv::new("update_three");
    env.products_fixture(20);
    env.run_ok("products");
    env.m_exec(
        "UPDATE products SET price = price + 100, title = title || ' (new)' WHERE id IN (2, 7, 19)",
    );
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 3, "{c:?}");
    assert!(c.read >= 3, "the 3 changed rows must be read: {c:?}");
    assert_eq!(c.unchanged, c.read - 3, "{c:?}");
    assert_eq!(c.deleted, 0, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn inserted_rows_arrive() {
    let env = TestEnv::new("insert_rows");
    env.products_fixture(5);
    env.run_ok("products");
    env.m_exec("INSERT INTO products (id, title, price) VALUES (100, 'Gadget', 9.99), (101, 'Gizmo', NULL)");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 2, "{c:?}");
    assert_eq!(c.deleted, 0, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    assert_eq!(env.a_count("products"), Some(7));
}

#[test]
fn deleted_rows_disappear_from_a() {
    let env = TestEnv::new("delete_rows");
    env.products_fixture(10);
    env.run_ok("products");
    env.m_exec("DELETE FROM products WHERE id IN (3, 4, 9)");
    let c = env.run_ok("products");
    assert_eq!(c.deleted, 3, "{c:?}");
    assert_eq!(c.upserted, 0, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    // The deletion is done; a further run deletes nothing more.
    let c = env.run_ok("products");
    assert_eq!(c.deleted, 0, "{c:?}");
}

#[test]
fn deleting_every_row_in_m_empties_a() {
    let env = TestEnv::new("delete_all");
    env.products_fixture(4);
    env.run_ok("products");
    env.m_exec("DELETE FROM products");
    let c = env.run_ok("products");
    assert_eq!(c.deleted, 4, "{c:?}");
    assert_eq!(env.a_count("products"), Some(0));
}

#[test]
fn insert_update_delete_in_one_run() {
    let env = TestEnv::new("mixed_changes");
    env.products_fixture(30);
    env.run_ok("products");
    env.m_exec(
        "UPDATE products SET price = 0 WHERE id IN (1, 2);
         DELETE FROM products WHERE id IN (10, 11, 12, 13);
         INSERT INTO products (id, title, price) VALUES (31, 'New', 1);",
    );
    let c = env.run_ok("products");
    assert_eq!((c.upserted, c.deleted), (3, 4), "{c:?}");
    assert_eq!(c.unchanged, c.read - 3, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn change_in_m_overwrites_hand_edit_in_a() {
    // A row changed in M is written again even when A was edited by hand in between.
    let env = TestEnv::new("m_overwrites");
    env.products_fixture(3);
    env.run_ok("products");
    env.a_exec("UPDATE products SET title = 'edited in A' WHERE id = 2");
    env.m_exec("UPDATE products SET title = 'edited in M' WHERE id = 2");
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 1, "{c:?}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// Composite keys with NULL parts: a NULL key part matches itself, and the string 'NULL'
/// is not NULL.
#[test]
fn composite_keys_with_nulls_are_deleted_null_safely() {
    let env = TestEnv::new("null_keys");
    env.m_exec(
        "CREATE TABLE stock (
             region text, code integer, qty integer NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now(),
             UNIQUE NULLS NOT DISTINCT (region, code));
         INSERT INTO stock (region, code, qty) VALUES
             (NULL, 1, 10), ('eu', NULL, 20), (NULL, NULL, 30), ('eu', 1, 40),
             ('us', 2, 50), ('NULL', 1, 60), ('', 3, 70), ('a|b', 4, 80), ('a', 4, 90);",
    );
    let yaml = job_yaml(
        "CREATE TABLE IF NOT EXISTS stock (region text, code integer, qty integer NOT NULL, \
         updated_at timestamptz NOT NULL, UNIQUE NULLS NOT DISTINCT (region, code))",
        "SELECT region, code, qty, updated_at FROM stock WHERE updated_at > %s",
        "INSERT INTO stock (region, code, qty, updated_at) VALUES (%s, %s, %s, %s) \
         ON CONFLICT (region, code) DO UPDATE SET qty = EXCLUDED.qty, updated_at = EXCLUDED.updated_at",
        "SELECT region, code FROM stock",
        "stock",
        &["region", "code"],
    );
    env.write_job("stock", &yaml);
    let q = "SELECT region, code, qty, updated_at FROM stock";
    let c = env.run_ok("stock");
    assert_eq!(c.upserted, 9, "{c:?}");
    env.assert_a_equals_m(q, q);

    // A second run must neither delete nor re-insert the NULL-keyed rows.
    let c = env.run_ok("stock");
    assert_eq!(
        (c.upserted, c.deleted),
        (0, 0),
        "rows with NULL key parts must match themselves: {c:?}"
    );
    assert_eq!(env.a_count("stock"), Some(9));

    env.m_exec("DELETE FROM stock WHERE (region IS NULL AND code = 1) OR (region = 'eu' AND code = 1) OR region = 'a'");
    let c = env.run_ok("stock");
    assert_eq!(c.deleted, 3, "{c:?}");
    env.assert_a_equals_m(q, q);
    let a = env.a_rows("SELECT region, code FROM stock");
    assert!(
        a.contains(&"(NULL,1)".to_string()),
        "the string 'NULL' key must survive: {a:?}"
    );
    assert!(
        a.contains(&"(,)".to_string()),
        "the (NULL, NULL) key must survive: {a:?}"
    );
    assert!(
        a.contains(&"(eu,)".to_string()),
        "the ('eu', NULL) key must survive: {a:?}"
    );
    assert!(a.contains(&"(a|b,4)".to_string()), "{a:?}");
}

/// Every key has a NULL part (the second column is NULL in every row), so every key bucket
/// that a deletion makes differ holds keys with NULL parts next to the deleted one: only
/// NULL-safe matching keeps those rows (deleted counts exactly the rows gone from M) and does
/// not take them for keys missing in A (nothing repaired), whether few buckets differ or
/// most of them.
#[test]
fn keys_with_a_null_part_in_every_row_survive_deletions_next_to_them() {
    let env = TestEnv::new("null_part_keys");
    env.m_exec(
        "CREATE TABLE variants (
             sku integer NOT NULL, variant text, qty integer NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now(),
             UNIQUE NULLS NOT DISTINCT (sku, variant));
         INSERT INTO variants (sku, qty) SELECT g, g % 17 FROM generate_series(1, 2000) g;",
    );
    env.write_job(
        "variants",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS variants (sku integer NOT NULL, variant text, \
             qty integer NOT NULL, updated_at timestamptz NOT NULL, \
             UNIQUE NULLS NOT DISTINCT (sku, variant))",
            "SELECT sku, variant, qty, updated_at FROM variants WHERE updated_at > %s",
            "INSERT INTO variants (sku, variant, qty, updated_at) VALUES (%s, %s, %s, %s) \
             ON CONFLICT (sku, variant) DO UPDATE SET qty = EXCLUDED.qty, updated_at = EXCLUDED.updated_at",
            "SELECT sku, variant FROM variants",
            "variants",
            &["sku", "variant"],
        ),
    );
    let q = "SELECT sku, variant, qty, updated_at FROM variants";
    let run = || {
        let (code, v) = env.run_job_json("variants");
        assert_eq!(code, 0, "{v:#}");
        let c = counts(&v, "variants");
        let repaired = job(&v, "variants")["rows_repaired"].as_u64();
        (c.upserted, c.deleted, repaired)
    };
    assert_eq!(run(), (2000, 0, Some(0)));
    env.assert_a_equals_m(q, q);

    // a few buckets differ
    env.m_exec("DELETE FROM variants WHERE sku IN (17, 500, 1999)");
    assert_eq!(run(), (0, 3, Some(0)), "only the 3 rows gone from M");
    env.assert_a_equals_m(q, q);

    // most buckets differ
    env.m_exec("DELETE FROM variants WHERE sku % 3 = 0");
    assert_eq!(run(), (0, 666, Some(0)), "only the 666 rows gone from M");
    env.assert_a_equals_m(q, q);

    // and nothing to do afterwards
    assert_eq!(run(), (0, 0, Some(0)));
    env.assert_a_equals_m(q, q);
}

/// Keys of other types (uuid, date) and deletions by them.
#[test]
fn composite_key_of_uuid_and_date() {
    let env = TestEnv::new("uuid_date_key");
    env.m_exec(
        "CREATE TABLE daily (tenant uuid, day date, visits bigint,
             updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant, day));
         INSERT INTO daily (tenant, day, visits)
         SELECT ('00000000-0000-0000-0000-00000000000' || t)::uuid, date '2024-02-27' + d, t * 100 + d
         FROM generate_series(1, 3) t, generate_series(0, 3) d;",
    );
    let yaml = job_yaml(
        "CREATE TABLE IF NOT EXISTS daily (tenant uuid, day date, visits bigint, updated_at timestamptz, PRIMARY KEY (tenant, day))",
        "SELECT tenant, day, visits, updated_at FROM daily WHERE updated_at > %s",
        "INSERT INTO daily (tenant, day, visits, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (tenant, day) DO UPDATE SET visits = EXCLUDED.visits, updated_at = EXCLUDED.updated_at",
        "SELECT tenant, day FROM daily",
        "daily",
        &["tenant", "day"],
    );
    env.write_job("daily", &yaml);
    let q = "SELECT tenant, day, visits, updated_at FROM daily";
    assert_eq!(env.run_ok("daily").upserted, 12);
    env.m_exec("DELETE FROM daily WHERE day = date '2024-02-29'");
    let c = env.run_ok("daily");
    assert_eq!(c.deleted, 3, "{c:?}");
    env.assert_a_equals_m(q, q);
}

/// Row hashing must be unambiguous: changes that keep the concatenation of the values
/// the same, or turn NULL into '' or 'NULL', are still changes.
#[test]
fn change_detection_is_unambiguous() {
    let env = TestEnv::new("hash_unambiguous");
    env.m_exec(
        "CREATE TABLE pairs (id int PRIMARY KEY, a text, b text, updated_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO pairs (id, a, b) VALUES (1, 'ab', 'c'), (2, NULL, 'x'), (3, '', 'y'), (4, 'p', NULL), (5, 'a,b', 'c');",
    );
    let yaml = job_yaml(
        "CREATE TABLE IF NOT EXISTS pairs (id int PRIMARY KEY, a text, b text)",
        "SELECT id, a, b FROM pairs WHERE updated_at > %s",
        "INSERT INTO pairs (id, a, b) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a, b = EXCLUDED.b",
        "SELECT id FROM pairs",
        "pairs",
        &["id"],
    );
    env.write_job("pairs", &yaml);
    let q = "SELECT id, a, b FROM pairs";
    env.run_ok("pairs");
    // updated_at is not selected, so it is only the watermark filter: keep it moving.
    env.m_exec(
        "UPDATE pairs SET a = 'a', b = 'bc', updated_at = now() WHERE id = 1;
         UPDATE pairs SET a = '', updated_at = now() WHERE id = 2;
         UPDATE pairs SET a = NULL, updated_at = now() WHERE id = 3;
         UPDATE pairs SET b = 'NULL', updated_at = now() WHERE id = 4;
         UPDATE pairs SET a = 'a', b = 'b,c', updated_at = now() WHERE id = 5;",
    );
    let c = env.run_ok("pairs");
    assert_eq!(c.upserted, 5, "every row changed: {c:?}");
    env.assert_a_equals_m(q, q);
}

/// `%%` outside literals is a literal `%` (modulo here); a `%` inside a string literal is
/// kept as it is; psycopg-style `'A%%'` inside a literal works too.
#[test]
fn percent_signs_in_source_sql() {
    let env = TestEnv::new("percent_source");
    env.m_exec(PRODUCTS_M_SQL);
    env.m_exec(
        "INSERT INTO products (id, title, price) VALUES
         (1, 'Widget', 1), (2, 'Widget XL', 2), (3, 'Bolt', 3), (4, 'Wid', 4), (5, 'Nut', 5), (6, 'Widow', 6);",
    );
    let create = "CREATE TABLE IF NOT EXISTS products (id integer PRIMARY KEY, title text NOT NULL, price numeric(10,2), updated_at timestamptz NOT NULL)";
    let upsert = "INSERT INTO products (id, title, price, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at";

    // Modulo written as %% (psycopg style), outside any literal.
    env.write_job(
        "even",
        &job_yaml(
            create,
            "SELECT id, title, price, updated_at FROM products WHERE id %% 2 = 0 AND updated_at > %s",
            upsert,
            // SELECT_KEYS_SQL is sent as written: `%` is the plain operator there.
            "SELECT id FROM products WHERE id % 2 = 0",
            "products",
            &["id"],
        ),
    );
    let (code, v) = env.run_job_json("even");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(&v, "even"), "ok", "{v:#}");
    env.assert_a_equals_m(
        "SELECT id, title, price, updated_at FROM products WHERE id % 2 = 0",
        PRODUCTS_Q,
    );
}

#[test]
fn percent_inside_string_literal_is_kept() {
    let env = TestEnv::new("percent_literal");
    env.m_exec(PRODUCTS_M_SQL);
    env.m_exec(
        "INSERT INTO products (id, title, price) VALUES
         (1, 'Widget', 1), (2, 'Widget XL', 2), (3, 'Bolt', 3), (4, 'Wid', 4), (5, 'Nut', 5), (6, 'Window', 6);",
    );
    let create = "CREATE TABLE IF NOT EXISTS products (id integer PRIMARY KEY, title text NOT NULL, price numeric(10,2), updated_at timestamptz NOT NULL)";
    let upsert = "INSERT INTO products (id, title, price, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at";
    env.write_job(
        "widgets",
        &job_yaml(
            create,
            "SELECT id, title, price, updated_at FROM products WHERE title LIKE 'Widg%' AND updated_at > %s",
            upsert,
            "SELECT id FROM products WHERE title LIKE 'Widg%'",
            "products",
            &["id"],
        ),
    );
    let (code, v) = env.run_job_json("widgets");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(&v, "widgets"), "ok", "{v:#}");
    env.assert_a_equals_m(
        "SELECT id, title, price, updated_at FROM products WHERE title LIKE 'Widg%'",
        PRODUCTS_Q,
    );
    assert_eq!(env.a_count("products"), Some(2));
}

/// A job written for psycopg escapes `%` inside literals as `%%`; it must work unchanged.
#[test]
fn psycopg_style_double_percent_inside_literal_works() {
    let env = TestEnv::new("percent_psycopg");
    env.m_exec(PRODUCTS_M_SQL);
    env.m_exec(
        "INSERT INTO products (id, title, price) VALUES (1, 'Widget', 1), (2, 'Bolt', 2), (3, 'Widget XL', 3);",
    );
    env.write_job(
        "widgets",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS products (id integer PRIMARY KEY, title text NOT NULL, price numeric(10,2), updated_at timestamptz NOT NULL)",
            "SELECT id, title, price, updated_at FROM products WHERE title LIKE 'Widg%%' AND updated_at > %s",
            "INSERT INTO products (id, title, price, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at",
            "SELECT id FROM products WHERE title LIKE 'Widg%'",
            "products",
            &["id"],
        ),
    );
    let (code, v) = env.run_job_json("widgets");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(&v, "widgets"), "ok", "{v:#}");
    env.assert_a_equals_m(
        "SELECT id, title, price, updated_at FROM products WHERE title LIKE 'Widg%'",
        PRODUCTS_Q,
    );
}

/// `%s` inside a string literal of SELECT_SOURCE_SQL is data, not a placeholder, and
/// `%%` in UPSERT_TARGET_SQL is the modulo operator.
#[test]
fn percent_s_literal_is_data_and_double_percent_in_upsert() {
    let env = TestEnv::new("percent_upsert");
    env.m_exec(PRODUCTS_M_SQL);
    env.m_exec("INSERT INTO products (id, title, price) VALUES (1, 'A', 1234.50), (2, 'B', 999.99), (3, 'C', 2000)");
    env.write_job(
        "tagged",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS tagged (id integer PRIMARY KEY, tag text, price numeric(10,2))",
            "SELECT id, 'tag: %s' AS tag, price FROM products WHERE updated_at > %s",
            "INSERT INTO tagged (id, tag, price) VALUES (%s, %s, %s::numeric %% 1000) ON CONFLICT (id) DO UPDATE SET tag = EXCLUDED.tag, price = EXCLUDED.price",
            "SELECT id FROM products",
            "tagged",
            &["id"],
        ),
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(&v, "tagged"), "ok", "{v:#}");
    env.assert_a_equals_m(
        "SELECT id, 'tag: %s' AS tag, price % 1000 FROM products",
        "SELECT id, tag, price FROM tagged",
    );
}

/// A data value that looks like a placeholder or contains SQL is bound, never spliced.
#[test]
fn values_that_look_like_sql_are_bound_as_data() {
    let env = TestEnv::new("injection");
    env.products_fixture(0);
    env.m_exec(
        r#"INSERT INTO products (id, title, price) VALUES
           (1, '%s', 1), (2, '%%', 2), (3, '$1', 3), (4, 'x''); DROP TABLE products; --', 4), (5, '?', 5)"#,
    );
    env.run_ok("products");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// A trailing `;` on SELECT_SOURCE_SQL is allowed, and a schema-qualified target works.
#[test]
fn trailing_semicolon_and_schema_qualified_target() {
    let env = TestEnv::new("schema_target");
    env.m_exec(PRODUCTS_M_SQL);
    env.m_exec("INSERT INTO products (id, title, price) VALUES (1, 'A', 1), (2, 'B', 2)");
    env.a_exec("CREATE SCHEMA mart");
    env.write_job(
        "mart_products",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS mart.products (id integer PRIMARY KEY, title text NOT NULL, price numeric(10,2), updated_at timestamptz NOT NULL);",
            "SELECT id, title, price, updated_at FROM products WHERE updated_at > %s;",
            "INSERT INTO mart.products (id, title, price, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at;",
            "SELECT id FROM products;",
            "mart.products",
            &["id"],
        ),
    );
    env.run_ok("mart_products");
    env.m_exec("DELETE FROM products WHERE id = 1");
    let c = env.run_ok("mart_products");
    assert_eq!(c.deleted, 1, "{c:?}");
    env.assert_a_equals_m(
        PRODUCTS_Q,
        "SELECT id, title, price, updated_at FROM mart.products",
    );
}

/// The original's example: a two-column text key.
#[test]
fn example_from_the_original_spec() {
    let env = TestEnv::new("original_example");
    env.m_exec(
        "CREATE TABLE products (title text NOT NULL, category text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
                                updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (title, category));
         INSERT INTO products (title, category) VALUES ('tea', 'drinks'), ('tea', 'plants'), ('mug', 'kitchen');",
    );
    env.write_job(
        "products",
        r#"CREATE_TABLE_SQL: "CREATE TABLE IF NOT EXISTS products (title text, category text, created_at timestamptz, updated_at timestamptz, PRIMARY KEY (title, category));"
SELECT_SOURCE_SQL: "SELECT title, category, created_at, updated_at FROM products WHERE updated_at > %s;"
UPSERT_TARGET_SQL: "INSERT INTO products (title, category, created_at, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (title, category) DO UPDATE SET created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at;"
SELECT_KEYS_SQL: "SELECT title, category FROM products;"
TARGET_TABLE: "products"
KEY_COLUMNS: ["title", "category"]
"#,
    );
    let q = "SELECT title, category, created_at, updated_at FROM products";
    env.run_ok("products");
    env.m_exec("DELETE FROM products WHERE title = 'tea' AND category = 'plants'");
    let c = env.run_ok("products");
    assert_eq!(c.deleted, 1, "{c:?}");
    env.assert_a_equals_m(q, q);
}

/// Several jobs run in name order in one run, each independent.
#[test]
fn several_jobs_in_one_run() {
    let env = TestEnv::new("several_jobs");
    env.products_fixture(6);
    env.write_job(
        "cheap_products",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS cheap (id integer PRIMARY KEY, price numeric(10,2))",
            "SELECT id, price FROM products WHERE price < 5 AND updated_at > %s",
            "INSERT INTO cheap (id, price) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price",
            "SELECT id FROM products WHERE price < 5",
            "cheap",
            &["id"],
        ),
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    let names: Vec<&str> = jobs(&v)
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["cheap_products", "products"],
        "jobs run in name order"
    );
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    env.assert_a_equals_m(
        "SELECT id, price FROM products WHERE price < 5",
        "SELECT id, price FROM cheap",
    );
    // A price rises above 5: the row leaves the cheap set and is deleted from `cheap`.
    env.m_exec("UPDATE products SET price = 50 WHERE id = 1");
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "cheap_products").deleted, 1, "{v:#}");
    env.assert_a_equals_m(
        "SELECT id, price FROM products WHERE price < 5",
        "SELECT id, price FROM cheap",
    );
}

/// `run-job` takes a job name or a path to a job file outside the jobs folder.
#[test]
fn run_job_by_name_and_by_path() {
    let env = TestEnv::new("run_job_path");
    env.products_fixture(3);
    let (code, v) = env.run_job_json("products");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(jobs(&v).len(), 1);
    assert_eq!(status(&v, "products"), "ok");

    let elsewhere = env.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let file = elsewhere.join("products_copy.yml");
    std::fs::write(
        &file,
        PRODUCTS_JOB
            .replace("products", "products_copy")
            .replace("FROM products_copy", "FROM products"),
    )
    .unwrap();
    let mut c = env.elt();
    c.arg("run-job").arg(&file).arg("--json");
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        status(&v, "products_copy"),
        "ok",
        "a job's name is its file name without extension: {v:#}"
    );
    env.assert_a_equals_m(
        PRODUCTS_Q,
        "SELECT id, title, price, updated_at FROM products_copy",
    );
}
