//! The pagila sample database as M: `film` (enum, domain, text[], tsvector, numeric) and the
//! partitioned `payment` table. Skipped when the data set is absent.
use crate::fixture::*;

const FILM_COLS: &str = "film_id, title, description, release_year, language_id, original_language_id, \
    rental_duration, rental_rate, length, replacement_cost, rating, last_update, special_features, fulltext";

const FILM_JOB: &str = r#"CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS film (
      film_id integer PRIMARY KEY,
      title text NOT NULL,
      description text,
      release_year year,
      language_id integer NOT NULL,
      original_language_id integer,
      rental_duration smallint NOT NULL,
      rental_rate numeric(4,2) NOT NULL,
      length smallint,
      replacement_cost numeric(5,2) NOT NULL,
      rating mpaa_rating,
      last_update timestamptz NOT NULL,
      special_features text[],
      fulltext tsvector NOT NULL
  )
SELECT_SOURCE_SQL: |
  SELECT film_id, title, description, release_year, language_id, original_language_id,
         rental_duration, rental_rate, length, replacement_cost, rating, last_update,
         special_features, fulltext
  FROM film
  WHERE last_update > %s
UPSERT_TARGET_SQL: |
  INSERT INTO film (film_id, title, description, release_year, language_id, original_language_id,
                    rental_duration, rental_rate, length, replacement_cost, rating, last_update,
                    special_features, fulltext)
  VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
  ON CONFLICT (film_id) DO UPDATE SET
      title = EXCLUDED.title, description = EXCLUDED.description,
      release_year = EXCLUDED.release_year, language_id = EXCLUDED.language_id,
      original_language_id = EXCLUDED.original_language_id,
      rental_duration = EXCLUDED.rental_duration, rental_rate = EXCLUDED.rental_rate,
      length = EXCLUDED.length, replacement_cost = EXCLUDED.replacement_cost,
      rating = EXCLUDED.rating, last_update = EXCLUDED.last_update,
      special_features = EXCLUDED.special_features, fulltext = EXCLUDED.fulltext
SELECT_KEYS_SQL: SELECT film_id FROM film
TARGET_TABLE: film
KEY_COLUMNS:
  - film_id
"#;

const PAYMENT_COLS: &str =
    "payment_id, customer_id, staff_id, rental_id, amount, payment_date, last_update";

const PAYMENT_JOB: &str = r#"CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS payment (
      payment_id integer NOT NULL,
      customer_id integer NOT NULL,
      staff_id integer NOT NULL,
      rental_id integer NOT NULL,
      amount numeric(5,2) NOT NULL,
      payment_date timestamptz NOT NULL,
      last_update timestamptz NOT NULL,
      PRIMARY KEY (payment_date, payment_id)
  )
SELECT_SOURCE_SQL: >-
  SELECT payment_id, customer_id, staff_id, rental_id, amount, payment_date, last_update
  FROM payment WHERE last_update > %s
UPSERT_TARGET_SQL: >-
  INSERT INTO payment (payment_id, customer_id, staff_id, rental_id, amount, payment_date, last_update)
  VALUES (%s, %s, %s, %s, %s, %s, %s)
  ON CONFLICT (payment_date, payment_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,
  staff_id = EXCLUDED.staff_id, rental_id = EXCLUDED.rental_id, amount = EXCLUDED.amount,
  last_update = EXCLUDED.last_update
SELECT_KEYS_SQL: SELECT payment_date, payment_id FROM payment
TARGET_TABLE: payment
KEY_COLUMNS: [payment_date, payment_id]
"#;

#[test]
fn pagila_film_and_partitioned_payment() {
    let Some(dir) = pagila_dir() else {
        eprintln!(
            "SKIPPED: the pagila data set (pagila-schema.sql, pagila-data.sql) was not found"
        );
        return;
    };
    let env = TestEnv::new("pagila");
    env.psql_file_m(&dir.join("pagila-schema.sql"));
    env.psql_file_m(&dir.join("pagila-data.sql"));
    // payment has no change column: give it one, kept by a trigger like the other tables.
    env.m_exec(
        "ALTER TABLE payment ADD COLUMN last_update timestamptz NOT NULL DEFAULT now();
         CREATE TRIGGER payment_last_updated BEFORE UPDATE ON payment
             FOR EACH ROW EXECUTE FUNCTION last_updated();",
    );
    // A has the types the film table needs (one statement per CREATE_TABLE_SQL).
    env.a_exec(
        "CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17');
         CREATE DOMAIN year AS integer CONSTRAINT year_check CHECK (VALUE >= 1901 AND VALUE <= 2155);",
    );
    env.write_job("film", FILM_JOB);
    env.write_job("payment", PAYMENT_JOB);

    let film_q = format!("SELECT {FILM_COLS} FROM film");
    let payment_q = format!("SELECT {PAYMENT_COLS} FROM payment");
    let films = env.m_count("film") as u64;
    let payments = env.m_count("payment") as u64;
    assert!(
        films >= 1000 && payments >= 16000,
        "pagila loaded: {films} films, {payments} payments"
    );

    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "film").upserted, films, "{v:#}");
    assert_eq!(counts(&v, "payment").upserted, payments, "{v:#}");
    env.assert_a_equals_m(&film_q, &film_q);
    env.assert_a_equals_m(&payment_q, &payment_q);

    // Changes in M: films updated (trigger sets last_update, fulltext recomputed), films
    // without inventory deleted, a new film; payments updated, deleted and added.
    env.m_exec(
        "UPDATE film SET rental_rate = rental_rate + 1, special_features = special_features || '{Director''s Cut}'
             WHERE film_id IN (1, 2, 3, 500, 1000);
         UPDATE film SET description = NULL, rating = NULL WHERE film_id = 7;
         CREATE TEMP TABLE gone AS
             SELECT film_id FROM film WHERE film_id NOT IN (SELECT film_id FROM inventory) ORDER BY film_id LIMIT 3;
         DELETE FROM film_actor WHERE film_id IN (SELECT film_id FROM gone);
         DELETE FROM film_category WHERE film_id IN (SELECT film_id FROM gone);
         DELETE FROM film WHERE film_id IN (SELECT film_id FROM gone);
         INSERT INTO film (title, description, release_year, language_id, rental_rate, length, replacement_cost, rating, special_features)
             VALUES ('ЁЛКА 😀', E'multi\\nline', 2155, 1, 0.99, 1, 0.01, 'NC-17', '{}');
         UPDATE payment SET amount = amount + 0.01
             WHERE (payment_date, payment_id) IN (SELECT payment_date, payment_id FROM payment ORDER BY payment_id LIMIT 10);
         DELETE FROM payment
             WHERE (payment_date, payment_id) IN (SELECT payment_date, payment_id FROM payment ORDER BY payment_id DESC LIMIT 5);
         INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
             VALUES (1, 1, 1, 123.45, '2022-03-15 12:00:00+00');",
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    let f = counts(&v, "film");
    let p = counts(&v, "payment");
    assert_eq!((f.upserted, f.deleted), (7, 3), "film: {f:?}");
    assert_eq!((p.upserted, p.deleted), (11, 5), "payment: {p:?}");
    env.assert_a_equals_m(&film_q, &film_q);
    env.assert_a_equals_m(&payment_q, &payment_q);

    // Nothing changed since: nothing is written.
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(counts(&v, "film").upserted, 0, "{v:#}");
    assert_eq!(counts(&v, "payment").upserted, 0, "{v:#}");
}
