//! A first load into a table the run creates: rows first, keys built after (as pg_restore
//! does); the table ends up exactly as CREATE_TABLE_SQL makes it, and a key the source
//! repeats still falls back to the upsert.

use crate::fixture::*;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS items (\
    id bigint CONSTRAINT items_id_key PRIMARY KEY, \
    sku text NOT NULL, \
    lot int, \
    price numeric(12,2) CHECK (price >= 0), \
    updated_at timestamptz NOT NULL, \
    CONSTRAINT items_sku_lot UNIQUE NULLS NOT DISTINCT (sku, lot) INCLUDE (price) WITH (fillfactor = 80), \
    UNIQUE (sku, updated_at) DEFERRABLE INITIALLY DEFERRED)";

fn items_job() -> String {
    job_yaml(
        CREATE,
        "SELECT id, sku, lot, price, updated_at FROM items WHERE updated_at > %s",
        "INSERT INTO items (id, sku, lot, price, updated_at) VALUES (%s, %s, %s, %s, %s) \
         ON CONFLICT (id) DO UPDATE SET sku = EXCLUDED.sku, lot = EXCLUDED.lot, \
         price = EXCLUDED.price, updated_at = EXCLUDED.updated_at",
        "SELECT id FROM items",
        "items",
        &["id"],
    )
}

/// Everything that defines the table: columns, constraints, indexes.
fn definition(c: &mut Client) -> Vec<String> {
    let mut out = TestEnv::texts(
        c,
        "SELECT attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull \
         FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 ORDER BY attnum",
    );
    out.extend(TestEnv::texts(
        c,
        "SELECT conname || ' ' || contype::text || ' ' || pg_get_constraintdef(oid) || ' ' || \
                condeferrable || condeferred \
         FROM pg_constraint WHERE conrelid = 'items'::regclass ORDER BY conname",
    ));
    out.extend(TestEnv::texts(
        c,
        "SELECT replace(pg_get_indexdef(indexrelid), 'fresh.', 'public.') || ' ' || \
                coalesce(reltablespace::text, '') \
         FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid \
         WHERE indrelid = 'items'::regclass ORDER BY relname",
    ));
    out
}

fn m_items(env: &TestEnv, n: i64) {
    env.m_exec(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, sku text NOT NULL, lot int, \
         price numeric(12,2), updated_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO items SELECT g, 'SKU-' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE g / 1000 END, \
                g * 0.5, now() - g * interval '1 second' FROM generate_series(1, {n}) g"
    ));
}

#[test]
fn a_created_table_gets_its_keys_after_its_rows_and_is_defined_as_written() {
    let env = TestEnv::new("first_load_keys");
    m_items(&env, 5000);
    env.write_job("items", &items_job());
    let c = env.run_ok("items");
    assert_eq!(c.upserted, 5000);
    let q = "SELECT id, sku, lot, price, updated_at FROM items";
    env.assert_a_equals_m(q, q);
    // the same CREATE_TABLE_SQL run by hand in a fresh schema of A
    let mut a = env.a();
    let loaded = definition(&mut a);
    a.batch_execute(&format!(
        "CREATE SCHEMA fresh; SET search_path = fresh; {CREATE}"
    ))
    .unwrap();
    let fresh = definition(&mut a);
    assert_eq!(loaded, fresh);
    assert!(
        loaded.iter().any(|l| l.contains("items_sku_lot")),
        "{loaded:#?}"
    );
    // the keys work: the next run upserts through them
    env.m_exec("UPDATE items SET price = price + 1 WHERE id <= 10");
    assert_eq!(env.run_ok("items").upserted, 10);
    env.assert_a_equals_m(q, q);
}

#[test]
fn a_key_the_source_repeats_fails_the_key_build_and_goes_through_the_upsert() {
    let env = TestEnv::new("first_load_dupes");
    env.m_exec(
        "CREATE TABLE src (id bigint, v text, updated_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO src SELECT g % 40, 'v' || g, now() - g * interval '1 second' \
         FROM generate_series(1, 100) g",
    );
    env.write_job(
        "dupes",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS dupes (id bigint PRIMARY KEY, v text, updated_at timestamptz)",
            "SELECT id, v, updated_at FROM src WHERE updated_at > %s",
            "INSERT INTO dupes (id, v, updated_at) VALUES (%s, %s, %s) \
             ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, updated_at = EXCLUDED.updated_at",
            "SELECT DISTINCT id FROM src",
            "dupes",
            &["id"],
        ),
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(env.a_count("dupes"), Some(40));
    let pk = env.a_texts(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'dupes'::regclass",
    );
    assert_eq!(pk, vec!["PRIMARY KEY (id)".to_string()]);
}

#[test]
fn a_table_with_a_foreign_key_to_itself_loads_with_its_keys_in_place() {
    let env = TestEnv::new("first_load_fk");
    env.m_exec(
        "CREATE TABLE nodes (id int PRIMARY KEY, parent int, updated_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO nodes SELECT g, NULLIF(g / 2, 0), now() FROM generate_series(1, 300) g",
    );
    env.write_job(
        "nodes",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS nodes (id int PRIMARY KEY, parent int REFERENCES nodes (id) \
             DEFERRABLE INITIALLY DEFERRED, updated_at timestamptz)",
            "SELECT id, parent, updated_at FROM nodes WHERE updated_at > %s",
            "INSERT INTO nodes (id, parent, updated_at) VALUES (%s, %s, %s) ON CONFLICT (id) \
             DO UPDATE SET parent = EXCLUDED.parent, updated_at = EXCLUDED.updated_at",
            "SELECT id FROM nodes",
            "nodes",
            &["id"],
        ),
    );
    assert_eq!(env.run_ok("nodes").upserted, 300);
    let q = "SELECT id, parent, updated_at FROM nodes";
    env.assert_a_equals_m(q, q);
}
