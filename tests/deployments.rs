//! elt in production set-ups, against the real servers the fixtures of tests/fixture start:
//! M on a streaming hot standby, M and A behind PgBouncer in transaction pooling mode (with
//! unusual database defaults), Redis behind Sentinel (with a failover, with a password), and
//! a Redis Cluster of three masters.
//!
//!     cargo test --test main deployments::
//!
//! Every test ends with A compared with M value by value (every column, as text under one
//! fixed set of session settings, so equal values have equal text on both sides), over
//! numeric, timestamptz, timestamp, date, interval, float8, bytea, jsonb, text[], an enum, a
//! domain, NULLs and Unicode. Each test starts its own servers (free ports, private dirs) and
//! uses its own databases and Redis prefix, so the tests run in parallel with each other and
//! with the other areas.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::fixture::*;
use serde_json::Value;

// --- the tables ------------------------------------------------------------------------

/// Types both M and A need: enums and a domain.
const TYPES_SQL: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ünïcödé ☃'); \
     CREATE DOMAIN posint AS integer CHECK (VALUE > 0); \
     CREATE TYPE priority AS ENUM ('low', 'high');";

/// M's trigger: `updated_at = now()` on every UPDATE that does not set it itself.
const TOUCH_SQL: &str = r#"
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
"#;

/// The value columns every table here carries (name, type, value for row number `g`): every
/// type whose text form depends on a session setting, NULLs, Unicode, edge values.
const RICH: &[(&str, &str, &str)] = &[
    (
        "title",
        "text",
        r#"CASE g % 4 WHEN 0 THEN 'Ünïcödé ' || g || ' 😀 日本語 "q" \ ' || chr(9)
                     WHEN 1 THEN '' WHEN 2 THEN NULL ELSE 'item ' || g END"#,
    ),
    (
        "price",
        "numeric(14,4)",
        "CASE WHEN g % 11 = 0 THEN NULL ELSE round(g * 1.23456, 4) END",
    ),
    (
        "big",
        "numeric",
        "CASE WHEN g % 13 = 0 THEN NULL WHEN g % 13 = 1 THEN 'NaN'::numeric \
         ELSE 12345678901234567890.123456789012345::numeric * g / 7 END",
    ),
    (
        "happened",
        "timestamptz",
        "CASE WHEN g % 17 = 0 THEN NULL WHEN g % 17 = 1 THEN 'infinity'::timestamptz \
         ELSE timestamptz '2024-03-10 06:30:00.123456+00' + g * interval '37 minutes 13.654321 seconds' END",
    ),
    (
        "local_ts",
        "timestamp",
        "CASE WHEN g % 18 = 1 THEN '-infinity'::timestamp \
         ELSE timestamp '1999-12-31 23:59:59.999999' + g * interval '1 day 1 hour 1.000001 seconds' END",
    ),
    (
        "day",
        "date",
        "CASE WHEN g % 19 = 0 THEN NULL WHEN g % 19 = 1 THEN date '0044-03-15 BC' \
         ELSE date '2000-02-28' + g END",
    ),
    (
        "span",
        "interval",
        "CASE WHEN g % 23 = 0 THEN NULL \
         ELSE make_interval(years => g % 3, months => -(g % 5), days => g, secs => g * 1.5 - 7200) END",
    ),
    (
        "ratio",
        "float8",
        "CASE g % 29 WHEN 0 THEN NULL WHEN 1 THEN 'NaN'::float8 WHEN 2 THEN '-0'::float8 \
         WHEN 3 THEN 1e-308::float8 ELSE g / 3.0::float8 END",
    ),
    (
        "blob",
        "bytea",
        r"CASE WHEN g % 31 = 0 THEN NULL WHEN g % 31 = 1 THEN ''::bytea
               ELSE decode(md5(g::text), 'hex') || '\x005c27ff'::bytea END",
    ),
    (
        "doc",
        "jsonb",
        "CASE WHEN g % 37 = 0 THEN NULL \
         ELSE jsonb_build_object('g', g, 'név', 'é' || g, 'arr', jsonb_build_array(g, g * 1.5, NULL)) END",
    ),
    (
        "tags",
        "text[]",
        r#"CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN '{}'::text[] ELSE ARRAY['a' || g, NULL, 'ü "x" \'] END"#,
    ),
    (
        "feeling",
        "mood",
        "CASE WHEN g % 7 = 3 THEN NULL ELSE (enum_range(NULL::mood))[g % 4 + 1] END",
    ),
    ("qty", "posint", "CASE WHEN g % 5 = 2 THEN NULL ELSE g END"),
];

/// One table: its leading (key and handle) columns, then [`RICH`], then `updated_at`.
struct Table {
    name: &'static str,
    /// (name, type in M and A, value for row `g`)
    lead: &'static [(&'static str, &'static str, &'static str)],
    keys: &'static [&'static str],
    /// the column tests address rows by (`WHERE n BETWEEN …`)
    handle: &'static str,
}

/// Integer key.
const ITEMS: Table = Table {
    name: "items",
    lead: &[("id", "integer NOT NULL", "g")],
    keys: &["id"],
    handle: "id",
};

/// A key of a timestamptz and an interval, whose text forms depend on TimeZone, DateStyle and
/// IntervalStyle.
const EVENTS: Table = Table {
    name: "events",
    lead: &[
        (
            "at",
            "timestamptz NOT NULL",
            "timestamptz '2024-11-03 04:00:00.5+00' + g * interval '17 minutes 0.000001 seconds'",
        ),
        (
            "dur",
            "interval NOT NULL",
            "make_interval(days => g % 3, hours => -(g % 7), secs => g * 0.25)",
        ),
        ("n", "integer NOT NULL", "g"),
        // a user-defined type the job before it (accounts) does not have: the driver looks
        // it up in a later transaction of the same session
        (
            "prio",
            "priority",
            "CASE WHEN g % 3 = 0 THEN NULL ELSE (enum_range(NULL::priority))[g % 2 + 1] END",
        ),
    ],
    keys: &["at", "dur"],
    handle: "n",
};

/// A composite key of text and uuid.
const ACCOUNTS: Table = Table {
    name: "accounts",
    lead: &[
        (
            "region",
            "text NOT NULL",
            "(ARRAY['eu-west', 'us-east', 'Zürich ☃', '', 'a,b \"c\"'])[g % 5 + 1]",
        ),
        ("account", "uuid NOT NULL", "md5(g::text)::uuid"),
        ("n", "integer NOT NULL", "g"),
    ],
    keys: &["region", "account"],
    handle: "n",
};

impl Table {
    fn columns(&self) -> Vec<(&'static str, &'static str)> {
        let mut c: Vec<(&str, &str)> = self.lead.iter().map(|(n, t, _)| (*n, *t)).collect();
        c.extend(RICH.iter().map(|(n, t, _)| (*n, *t)));
        c.push(("updated_at", "timestamptz NOT NULL"));
        c
    }

    fn names(&self) -> String {
        let n: Vec<&str> = self.columns().iter().map(|c| c.0).collect();
        n.join(", ")
    }

    /// DDL of the source table in M (with the trigger; needs [`TYPES_SQL`] and [`TOUCH_SQL`]).
    fn m_sql(&self) -> String {
        let cols: Vec<String> = self
            .columns()
            .iter()
            .map(|(n, t)| match *n {
                "updated_at" => format!("{n} {t} DEFAULT now()"),
                _ => format!("{n} {t}"),
            })
            .collect();
        format!(
            "CREATE TABLE {t} ({}, PRIMARY KEY ({}), UNIQUE ({h})); \
             CREATE TRIGGER {t}_touch BEFORE UPDATE ON {t} \
                 FOR EACH ROW EXECUTE FUNCTION touch_updated_at();",
            cols.join(", "),
            self.keys.join(", "),
            t = self.name,
            h = self.handle,
        )
    }

    /// Inserts rows `from..=to` into M.
    fn insert_sql(&self, from: i64, to: i64) -> String {
        let names: Vec<&str> = self
            .lead
            .iter()
            .map(|c| c.0)
            .chain(RICH.iter().map(|c| c.0))
            .collect();
        let values: Vec<&str> = self
            .lead
            .iter()
            .map(|c| c.2)
            .chain(RICH.iter().map(|c| c.2))
            .collect();
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM generate_series({from}, {to}) g",
            self.name,
            names.join(", "),
            values.join(", ")
        )
    }

    /// A job copying the table into `target` on A.
    fn job(&self, target: &str) -> String {
        let cols = self.columns();
        let ddl: Vec<String> = cols.iter().map(|(n, t)| format!("{n} {t}")).collect();
        let names = self.names();
        let placeholders = vec!["%s"; cols.len()].join(", ");
        let sets: Vec<String> = cols
            .iter()
            .filter(|(n, _)| !self.keys.contains(n))
            .map(|(n, _)| format!("{n} = EXCLUDED.{n}"))
            .collect();
        let keys = self.keys.join(", ");
        job_yaml(
            &format!(
                "CREATE TABLE IF NOT EXISTS {target} ({}, PRIMARY KEY ({keys}))",
                ddl.join(", ")
            ),
            &format!("SELECT {names} FROM {} WHERE updated_at > %s", self.name),
            &format!(
                "INSERT INTO {target} ({names}) VALUES ({placeholders}) \
                 ON CONFLICT ({keys}) DO UPDATE SET {}",
                sets.join(", ")
            ),
            &format!("SELECT {keys} FROM {}", self.name),
            target,
            self.keys,
        )
    }

    /// Every column of the table (in M) or of `target` (in A).
    fn query(&self, from: &str) -> String {
        format!("SELECT {} FROM {from}", self.names())
    }
}

/// Creates the types, the trigger function and `tables` (with rows 1..=`rows`) in M, and the
/// types in A.
fn create_source(m_url: &str, a_url: &str, tables: &[&Table], rows: i64) {
    let mut m = connect(m_url);
    m.batch_execute(TYPES_SQL).unwrap();
    m.batch_execute(TOUCH_SQL).unwrap();
    for t in tables {
        m.batch_execute(&t.m_sql())
            .unwrap_or_else(|e| panic!("{}: {}", t.name, pg_err(&e)));
        m.batch_execute(&t.insert_sql(1, rows))
            .unwrap_or_else(|e| panic!("{}: {}", t.name, pg_err(&e)));
    }
    connect(a_url).batch_execute(TYPES_SQL).unwrap();
}

fn exec(url: &str, sql: &str) {
    connect(url)
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{url}: {sql}: {}", pg_err(&e)));
}

// --- comparing A with M ------------------------------------------------------------------

/// Session settings under which equal values have equal text on any server, whatever its
/// defaults (`ALTER DATABASE … SET …`).
const CANON: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
     SET extra_float_digits = 3; SET TimeZone = 'UTC'; SET bytea_output = 'hex'; \
     SET lc_monetary = 'C'";

/// Rows of `query` as text under [`CANON`], sorted.
fn canon_rows(url: &str, query: &str) -> Vec<String> {
    let mut c = connect(url);
    c.batch_execute(CANON).unwrap();
    TestEnv::rows_text(&mut c, query)
}

/// `a_table` on A holds exactly the rows of `t` on M, every column equal.
fn assert_synced(m_url: &str, a_url: &str, t: &Table, a_table: &str) {
    let m = canon_rows(m_url, &t.query(t.name));
    let a = canon_rows(a_url, &t.query(a_table));
    assert!(!m.is_empty(), "{} is empty on M", t.name);
    assert_same_rows(&m, &a, &format!("M {}", t.name), &format!("A {a_table}"));
}

fn count(url: &str, sql: &str) -> i64 {
    connect(url).query_one(sql, &[]).unwrap().get(0)
}

// --- running elt -------------------------------------------------------------------------

/// How one `elt` command ended.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("no JSON document ({e}): {}", self.describe()))
    }

    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// M, A and Redis as elt sees them in one test (the rest as `TestEnv::elt` sets it).
struct Deployment<'e> {
    env: &'e TestEnv,
    m: String,
    a: String,
    redis: String,
}

impl Deployment<'_> {
    fn cmd(&self, args: &[&str]) -> Ran {
        let mut c = self.env.elt();
        c.env("ELT_MASTER_URL", &self.m)
            .env("ELT_ANALYTICS_URL", &self.a)
            .env("ELT_REDIS_URL", &self.redis)
            .args(args);
        let out = c.output().expect("run elt");
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `args`, asserting exit 0.
    fn ok(&self, args: &[&str]) -> Ran {
        let r = self.cmd(args);
        assert_eq!(r.code, 0, "elt {}: {}", args.join(" "), r.describe());
        r
    }

    /// `elt run --json ARGS…`: exit 0, every job `ok`; the report.
    fn run(&self, args: &[&str]) -> (Value, Ran) {
        let mut all = vec!["run", "--json"];
        all.extend_from_slice(args);
        let r = self.ok(&all);
        let v = r.json();
        for j in jobs(&v) {
            assert_eq!(j["status"], "ok", "job not ok: {j:#}\n{}", r.describe());
        }
        (v, r)
    }
}

/// The job's `full_sync` reason, `None` for an incremental run.
fn full_sync(v: &Value, name: &str) -> Option<String> {
    let f = &job(v, name)["full_sync"];
    assert!(f.is_null() || f.is_string(), "full_sync of {name}: {f}");
    f.as_str().map(String::from)
}

fn assert_counts(v: &Value, name: &str, upserted: u64, deleted: u64) {
    let c = counts(v, name);
    assert_eq!(
        (c.upserted, c.deleted),
        (upserted, deleted),
        "{name}: (upserted, deleted) in {:#}",
        job(v, name)
    );
    assert_eq!(c.unchanged, c.read - c.upserted, "{c:?}");
}

// --- 1. M on a hot standby -----------------------------------------------------------------

/// M is a database on a streaming standby, written on its primary. Rows updated on the
/// primary while the standby's replay is paused reach A after replay resumes, even with no
/// overlap: the paused run's watermark is capped at the standby's last replayed commit (its
/// own clock runs ahead of what it holds). Deletions arrive through the standby, and
/// `validate --connect` and `elt new` work on the read-only standby.
#[test]
fn standby_as_master_loses_no_update_made_while_replay_was_paused() {
    let s = Standby::start();
    let env = TestEnv::new("deploy_standby");
    s.create_db("shop");
    let primary = s.primary_url_for("shop");
    let standby = s.url_for("shop");
    create_source(&primary, &env.a_url(), &[&ITEMS], 400);
    env.write_job("items", &ITEMS.job("items"));
    s.wait_caught_up();
    let d = Deployment {
        env: &env,
        m: standby.clone(),
        a: env.a_url(),
        redis: env.redis_url().to_string(),
    };
    let no_overlap = ["--overlap-seconds", "0"];

    // 1: full
    let (v, _) = d.run(&no_overlap);
    assert!(full_sync(&v, "items").is_some(), "{v:#}");
    assert_counts(&v, "items", 400, 0);
    assert_synced(&primary, &d.a, &ITEMS, "items");

    // 2: replay paused, rows updated on the primary; the standby got their WAL, not applied
    s.pause_replay();
    exec(
        &primary,
        "UPDATE items SET price = price + 1, title = title || ' (paused)' WHERE id BETWEEN 1 AND 30",
    );
    s.wait_received();
    let (v, r) = d.run(&no_overlap);
    assert!(full_sync(&v, "items").is_none(), "{v:#}");
    assert_counts(&v, "items", 0, 0);
    let warned = |text: &str| text.contains("replay is paused");
    assert!(
        warned(&r.stderr) && warned(&env.elt_log()),
        "no warning about the paused replay:\n{}\nelt.log:\n{}",
        r.describe(),
        env.elt_log()
    );
    // A holds what the standby holds, not yet the primary's updates
    assert_synced(&standby, &d.a, &ITEMS, "items");
    assert_eq!(
        count(
            &d.a,
            "SELECT count(*) FROM items WHERE title LIKE '%(paused)'"
        ),
        0
    );

    // 3: more changes, replay resumed: every update, insert and delete is in A
    exec(
        &primary,
        "UPDATE items SET ratio = -ratio, span = span * 2 WHERE id BETWEEN 21 AND 50; \
         DELETE FROM items WHERE id BETWEEN 391 AND 400 OR id IN (7, 77);",
    );
    exec(&primary, &ITEMS.insert_sql(401, 410));
    s.resume_replay();
    s.wait_caught_up();
    let (v, _) = d.run(&no_overlap);
    assert_synced(&primary, &d.a, &ITEMS, "items");
    assert!(full_sync(&v, "items").is_none(), "{v:#}");
    // ids 1..=50 but 7, and 401..=410
    assert_counts(&v, "items", 49 + 10, 12);
    assert_eq!(
        count(
            &d.a,
            "SELECT count(*) FROM items WHERE title LIKE '%(paused)'"
        ),
        count(
            &primary,
            "SELECT count(*) FROM items WHERE title LIKE '%(paused)'"
        )
    );

    // 4: nothing changed
    let (v, _) = d.run(&no_overlap);
    assert_counts(&v, "items", 0, 0);

    // validate --connect and elt new against the read-only standby
    let r = d.ok(&["validate", "--connect"]);
    assert!(r.stdout.contains("valid"), "{}", r.describe());
    d.ok(&[
        "new",
        "items_copy",
        "--from-table",
        "public.items",
        "--target-table",
        "items_copy",
    ]);
    assert!(env.job_path("items_copy").exists());
    d.ok(&["validate", "--connect"]);
    exec(&primary, "UPDATE items SET qty = 1 WHERE id = 3");
    s.wait_caught_up();
    let (v, _) = d.run(&no_overlap);
    assert_counts(&v, "items", 1, 0);
    assert_counts(&v, "items_copy", 398, 0);
    assert_synced(&primary, &d.a, &ITEMS, "items");
    assert_synced(&primary, &d.a, &ITEMS, "items_copy");
}

// --- 2. PgBouncer in transaction pooling mode ----------------------------------------------

/// `ALTER DATABASE db SET …` of every setting that changes a value's text form.
fn odd_defaults(admin: &mut Client, db: &str, datestyle: &str, tz: &str, intervalstyle: &str) {
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET DateStyle = '{datestyle}'; \
             ALTER DATABASE {db} SET TimeZone = '{tz}'; \
             ALTER DATABASE {db} SET IntervalStyle = '{intervalstyle}'; \
             ALTER DATABASE {db} SET extra_float_digits = 0; \
             ALTER DATABASE {db} SET bytea_output = 'escape';"
        ))
        .unwrap();
}

/// `SHOW name` with the simple protocol (one statement, one transaction of its own).
fn show(c: &mut Client, name: &str) -> String {
    for m in c.simple_query(&format!("SHOW {name}")).unwrap() {
        if let postgres::SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap().to_string();
        }
    }
    panic!("SHOW {name} returned no row");
}

/// M and A behind one PgBouncer in transaction pooling mode, with several server
/// connections per database, so one client's consecutive transactions land on different
/// server sessions; the databases' defaults differ from each other and from PostgreSQL's
/// (DateStyle, TimeZone, IntervalStyle, extra_float_digits, bytea_output). Runs (full,
/// incremental with updates, inserts and deletions, no-op), `run-job`, `validate --connect`,
/// `new` and `status` all work and every value arrives exactly, with an enum and a domain
/// column (the driver's type lookups) and keys whose text depends on those settings
/// (timestamptz + interval; text + uuid).
#[test]
fn pgbouncer_transaction_pooling_with_odd_server_defaults_keeps_values_exact() {
    let env = TestEnv::new("deploy_bouncer");
    create_source(&env.m_url(), &env.a_url(), &[&EVENTS, &ACCOUNTS], 300);
    let mut admin = connect(env.pg_url());
    odd_defaults(
        &mut admin,
        &env.m_db,
        "SQL, DMY",
        "America/New_York",
        "sql_standard",
    );
    odd_defaults(
        &mut admin,
        &env.a_db,
        "Postgres, MDY",
        "Asia/Kolkata",
        "iso_8601",
    );
    // The bouncer opens its server sessions of M and A only now, after the ALTERs.
    let b = Bouncer::start(pg_parts(env.pg_url()).port);
    let pool_m = b.fill_pool(&env.m_db);
    let pool_a = b.fill_pool(&env.a_db);
    assert_eq!((pool_m.len(), pool_a.len()), (b.pool_size, b.pool_size));
    let (m_url, a_url) = (b.url_for(&env.m_db), b.url_for(&env.a_db));
    {
        // one client's transactions run on several server sessions, each with the defaults
        let mut c = connect(&m_url);
        let pids: BTreeSet<i32> = (0..8).map(|_| backend_pid(&mut c)).collect();
        assert!(pids.len() >= 2, "8 transactions all ran on {pids:?}");
        assert!(
            pids.is_subset(&pool_m),
            "{pids:?} outside the pool {pool_m:?}"
        );
        let mut a = c.transaction().unwrap();
        let first = a
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get::<_, i32>(0);
        a.commit().unwrap();
        let second = backend_pid(&mut c);
        assert_ne!(
            first, second,
            "two transactions of one client on one server session"
        );
        for _ in 0..b.pool_size {
            assert_eq!(show(&mut c, "TimeZone"), "America/New_York");
            assert_eq!(show(&mut c, "IntervalStyle"), "sql_standard");
            assert_eq!(show(&mut c, "extra_float_digits"), "0");
        }
        let mut c = connect(&a_url);
        for _ in 0..b.pool_size {
            assert_eq!(show(&mut c, "TimeZone"), "Asia/Kolkata");
            assert_eq!(show(&mut c, "DateStyle"), "Postgres, MDY");
            assert_eq!(show(&mut c, "bytea_output"), "escape");
        }
    }
    env.write_job("events", &EVENTS.job("events"));
    env.write_job("accounts", &ACCOUNTS.job("accounts"));
    let d = Deployment {
        env: &env,
        m: m_url,
        a: a_url,
        redis: env.redis_url().to_string(),
    };
    // compared directly, not through the bouncer
    let (m, a) = (env.m_url(), env.a_url());
    let synced = || {
        assert_synced(&m, &a, &EVENTS, "events");
        assert_synced(&m, &a, &ACCOUNTS, "accounts");
    };

    // 1: full
    let (v, _) = d.run(&[]);
    for t in ["events", "accounts"] {
        assert!(full_sync(&v, t).is_some(), "{v:#}");
        assert_counts(&v, t, 300, 0);
    }
    synced();

    // 2: updates, inserts, deletions
    for t in [&EVENTS, &ACCOUNTS] {
        exec(
            &m,
            &format!(
                "UPDATE {t} SET big = big * 3, span = span - interval '1 day', blob = blob || '\\x00'::bytea \
                 WHERE n BETWEEN 10 AND 29; \
                 DELETE FROM {t} WHERE n BETWEEN 281 AND 300 OR n IN (1, 2, 3);",
                t = t.name
            ),
        );
        exec(&m, &t.insert_sql(301, 315));
    }
    let (v, _) = d.run(&[]);
    synced();
    for t in ["events", "accounts"] {
        assert!(full_sync(&v, t).is_none(), "{v:#}");
        assert_counts(&v, t, 20 + 15, 23);
    }

    // 3: nothing changed
    let (v, _) = d.run(&[]);
    for t in ["events", "accounts"] {
        assert_counts(&v, t, 0, 0);
    }

    // 4: run-job
    exec(
        &m,
        "UPDATE events SET feeling = 'happy', qty = 42 WHERE n BETWEEN 100 AND 104",
    );
    let r = d.ok(&["run-job", "events", "--json"]);
    synced();
    assert_counts(&r.json(), "events", 5, 0);

    // validate --connect, new, status
    let r = d.ok(&["validate", "--connect"]);
    assert!(r.stdout.contains("2 job file(s) valid"), "{}", r.describe());
    d.ok(&[
        "new",
        "accounts_copy",
        "--from-table",
        "public.accounts",
        "--target-table",
        "accounts_copy",
    ]);
    let r = d.ok(&["validate", "--connect"]);
    assert!(r.stdout.contains("3 job file(s) valid"), "{}", r.describe());
    exec(&m, "DELETE FROM accounts WHERE n = 50");
    let (v, _) = d.run(&[]);
    synced();
    assert_synced(&m, &a, &ACCOUNTS, "accounts_copy");
    assert_counts(&v, "accounts", 0, 1);
    assert_counts(&v, "accounts_copy", 292 - 1, 0);
    assert_counts(&v, "events", 0, 0);

    let r = d.ok(&["status", "--json"]);
    let st: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let states: BTreeMap<String, (String, i64)> = jobs(&st)
        .iter()
        .map(|j| {
            (
                j["job"].as_str().unwrap().to_string(),
                (
                    j["state"].as_str().unwrap().to_string(),
                    j["rows_tracked"].as_i64().unwrap_or(-1),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (String, i64)> =
        [("accounts", 291), ("accounts_copy", 291), ("events", 292)]
            .into_iter()
            .map(|(j, n)| (j.to_string(), ("ok".to_string(), n)))
            .collect();
    assert_eq!(states, expected, "{st:#}");
}

// --- 3. Redis Sentinel -------------------------------------------------------------------

/// Every key under `prefix` on one plain Redis connection.
fn keys_on(con: &mut redis::Connection, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(con)
        .unwrap();
    keys.sort();
    keys
}

/// State in Redis behind Sentinel survives a failover: the run after it is incremental and
/// writes only the changed rows; `status` and `reset-state` work through Sentinel.
#[test]
fn sentinel_failover_keeps_the_state() {
    let s = Sentinel::start();
    let env = TestEnv::new("deploy_sentinel");
    create_source(&env.m_url(), &env.a_url(), &[&ITEMS], 2000);
    env.write_job("items", &ITEMS.job("items"));
    let d = Deployment {
        env: &env,
        m: env.m_url(),
        a: env.a_url(),
        redis: format!("redis+sentinel://{}/mymaster", s.sentinel_addrs()),
    };
    let (v, _) = d.run(&[]);
    assert!(full_sync(&v, "items").is_some());
    assert_counts(&v, "items", 2000, 0);
    assert_synced(&d.m, &d.a, &ITEMS, "items");
    let before = keys_on(&mut s.master(), &env.prefix);
    assert!(
        before.iter().any(|k| k.ends_with(":meta")) && before.len() > 10,
        "{before:?}"
    );

    let old = s.master_addr();
    let new = s.failover();
    assert_ne!(old, new);
    assert_eq!(keys_on(&mut s.master(), &env.prefix), before);

    exec(
        &d.m,
        "UPDATE items SET doc = doc || '{\"v\": 2}', local_ts = local_ts + interval '1 microsecond' \
         WHERE id BETWEEN 100 AND 124; DELETE FROM items WHERE id IN (5, 500, 1500);",
    );
    exec(&d.m, &ITEMS.insert_sql(2001, 2010));
    let (v, _) = d.run(&[]);
    assert_eq!(full_sync(&v, "items"), None, "state lost: {v:#}");
    assert_counts(&v, "items", 35, 3);
    let c = counts(&v, "items");
    assert!(c.unchanged >= 1900, "{c:?}");
    assert_synced(&d.m, &d.a, &ITEMS, "items");

    let r = d.ok(&["status", "--json"]);
    let st: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let j = job(&st, "items");
    assert_eq!(
        (j["state"].as_str(), j["rows_tracked"].as_i64()),
        (Some("ok"), Some(2007)),
        "{st:#}"
    );

    let r = d.ok(&["reset-state", "items"]);
    assert!(r.stdout.contains("state reset"), "{}", r.describe());
    assert_eq!(keys_on(&mut s.master(), &env.prefix), Vec::<String>::new());
    let (v, _) = d.run(&[]);
    assert!(full_sync(&v, "items").is_some(), "{v:#}");
    // a full run over an unchanged target rewrites nothing
    assert_counts(&v, "items", 0, 0);
    assert_synced(&d.m, &d.a, &ITEMS, "items");
}

/// Sentinel with a password on the data nodes: runs, `status` and `reset-state` work, and
/// neither the right password nor a wrong one appears in any output or log.
#[test]
fn sentinel_with_a_password_never_shows_it() {
    const PW: &str = "Pw-s3cret-4711";
    const WRONG: &str = "Wr0ng-pass-0815";
    let s = Sentinel::start_with(Some(PW));
    let env = TestEnv::new("deploy_sentinel_pw");
    create_source(&env.m_url(), &env.a_url(), &[&ITEMS], 300);
    env.write_job("items", &ITEMS.job("items"));
    let url = |pw: &str| format!("redis+sentinel://:{pw}@{}/mymaster", s.sentinel_addrs());
    let d = Deployment {
        env: &env,
        m: env.m_url(),
        a: env.a_url(),
        redis: url(PW),
    };
    let mut seen = Vec::new();
    let (v, r) = d.run(&["-v"]);
    seen.push(r.text());
    assert_counts(&v, "items", 300, 0);
    assert_synced(&d.m, &d.a, &ITEMS, "items");

    exec(
        &d.m,
        "UPDATE items SET tags = tags || 'n'::text WHERE id <= 10",
    );
    let (v, r) = d.run(&[]);
    seen.push(r.text());
    assert_eq!(full_sync(&v, "items"), None, "{v:#}");
    assert_counts(&v, "items", 10, 0);
    assert_synced(&d.m, &d.a, &ITEMS, "items");
    let r = d.ok(&["status"]);
    assert!(r.stdout.contains("items"), "{}", r.describe());
    seen.push(r.text());
    let r = d.ok(&["reset-state", "items"]);
    seen.push(r.text());
    let mut master = s.master();
    assert_eq!(keys_on(&mut master, &env.prefix), Vec::<String>::new());

    let bad = Deployment {
        env: &env,
        m: d.m.clone(),
        a: d.a.clone(),
        redis: url(WRONG),
    };
    for args in [
        &["run", "--json"][..],
        &["status"][..],
        &["reset-state", "items"][..],
    ] {
        let r = bad.cmd(args);
        assert_ne!(r.code, 0, "a wrong password was accepted: {}", r.describe());
        assert!(
            r.text()
                .contains(&format!("redis+sentinel://:***@{}", s.sentinel_addrs())),
            "the error does not name the (masked) Redis URL: {}",
            r.describe()
        );
        seen.push(r.text());
    }
    seen.push(env.elt_log());
    seen.push(env.error_log());
    assert!(env.elt_log().contains("items"), "{}", env.elt_log());
    for text in &seen {
        assert!(
            !text.contains(PW) && !text.contains(WRONG),
            "a password is shown:\n{text}"
        );
    }
    // the failed runs changed nothing; a good one after them re-syncs in full, exactly
    let (v, _) = d.run(&[]);
    assert!(full_sync(&v, "items").is_some(), "{v:#}");
    assert_synced(&d.m, &d.a, &ITEMS, "items");
}

// --- 4. Redis Cluster --------------------------------------------------------------------

/// The job a key of `prefix` belongs to on a cluster (`<prefix>:job:{<job>}:…`).
fn job_of_key(prefix: &str, key: &str) -> String {
    let rest = key
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix(":job:{"))
        .unwrap_or_else(|| panic!("{key} is not a cluster key of job state"));
    rest.split_once('}').expect("a hash tag").0.to_string()
}

/// Keys of each job on the cluster.
fn cluster_keys(rc: &RedisCluster, prefix: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in rc.keys(&format!("{prefix}:*")) {
        by_job.entry(job_of_key(prefix, &k)).or_default().push(k);
    }
    by_job
}

const CLUSTER_JOBS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];

/// Eight jobs over a Redis Cluster of three masters: each job's keys share one slot (one
/// hash tag), the jobs spread over the nodes; full, incremental, no-op and deleting runs;
/// `status`, `reset-state JOB` (only its keys go), a lock held by another runner (the job is
/// skipped), the metrics file, `reset-state --all`.
#[test]
fn redis_cluster_spreads_jobs_and_keeps_each_jobs_keys_together() {
    let rc = RedisCluster::start();
    let env = TestEnv::new("deploy_cluster");
    create_source(&env.m_url(), &env.a_url(), &[&ITEMS], 200);
    for j in CLUSTER_JOBS {
        env.write_job(j, &ITEMS.job(&format!("t_{j}")));
    }
    let d = Deployment {
        env: &env,
        m: env.m_url(),
        a: env.a_url(),
        redis: format!("redis+cluster://{}", rc.seeds()),
    };
    let synced = || {
        for j in CLUSTER_JOBS {
            assert_synced(&d.m, &d.a, &ITEMS, &format!("t_{j}"));
        }
    };
    let each = |v: &Value, upserted: u64, deleted: u64| {
        assert_eq!(jobs(v).len(), CLUSTER_JOBS.len(), "{v:#}");
        for j in CLUSTER_JOBS {
            assert_counts(v, j, upserted, deleted);
        }
    };

    // 1: full
    let (v, _) = d.run(&[]);
    each(&v, 200, 0);
    synced();
    let by_job = cluster_keys(&rc, &env.prefix);
    assert_eq!(
        by_job.keys().map(String::as_str).collect::<Vec<_>>(),
        CLUSTER_JOBS,
        "{by_job:?}"
    );
    let mut nodes = BTreeSet::new();
    for (j, keys) in &by_job {
        assert!(
            keys.contains(&format!("{}:job:{{{j}}}:meta", env.prefix)),
            "{keys:?}"
        );
        assert!(keys.len() > 2, "{j}: no row hashes in {keys:?}");
        let slots: BTreeSet<u16> = keys.iter().map(|k| rc.slot_of(k)).collect();
        assert_eq!(slots.len(), 1, "keys of {j} in several slots: {keys:?}");
        let slot = *slots.first().unwrap();
        nodes.insert(rc.node_for_slot(slot).port);
    }
    assert!(nodes.len() >= 2, "every job's keys are on one node");

    // 2: changes
    exec(
        &d.m,
        "UPDATE items SET happened = happened - interval '1 hour' WHERE id BETWEEN 1 AND 12",
    );
    exec(&d.m, &ITEMS.insert_sql(201, 204));
    let (v, _) = d.run(&[]);
    each(&v, 16, 0);
    for j in CLUSTER_JOBS {
        assert_eq!(full_sync(&v, j), None, "{v:#}");
    }
    synced();

    // 3: nothing changed
    let (v, _) = d.run(&[]);
    each(&v, 0, 0);

    // 4: deletions
    exec(&d.m, "DELETE FROM items WHERE id BETWEEN 50 AND 58");
    let (v, _) = d.run(&[]);
    each(&v, 0, 9);
    synced();

    // status
    let r = d.ok(&["status", "--json"]);
    let st: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    for j in CLUSTER_JOBS {
        let s = job(&st, j);
        assert_eq!(
            (s["state"].as_str(), s["rows_tracked"].as_i64()),
            (Some("ok"), Some(195)),
            "{st:#}"
        );
    }

    // reset-state of one job: its keys go, the others' stay
    let before = cluster_keys(&rc, &env.prefix);
    d.ok(&["reset-state", "alpha"]);
    let after = cluster_keys(&rc, &env.prefix);
    assert!(!after.contains_key("alpha"), "{after:?}");
    for j in &CLUSTER_JOBS[1..] {
        assert_eq!(after.get(*j), before.get(*j), "{j}");
    }

    // a lock held by another runner: that job is skipped, the others run; metrics written
    let lock = format!("{}:job:{{bravo}}:lock", env.prefix);
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("another-runner-on-another-host")
        .arg("EX")
        .arg(120)
        .query(&mut rc.connection_for_key(&lock))
        .unwrap();
    exec(&d.m, "UPDATE items SET qty = 7 WHERE id = 100");
    let metrics = env.path().join("elt.prom");
    let r = d.ok(&["run", "--json", "--metrics-file", metrics.to_str().unwrap()]);
    let v = r.json();
    assert_eq!(status(&v, "bravo"), "skipped", "{v:#}");
    // alpha re-syncs in full, rewriting only the changed row
    assert!(full_sync(&v, "alpha").is_some(), "{v:#}");
    assert_counts(&v, "alpha", 1, 0);
    for j in &CLUSTER_JOBS[2..] {
        assert_eq!(status(&v, j), "ok", "{v:#}");
        assert_counts(&v, j, 1, 0);
    }
    assert_metrics(&metrics);
    assert_eq!(
        rc.get(&lock).as_deref(),
        Some(&b"another-runner-on-another-host"[..]),
        "the other runner's lock was touched"
    );
    let _: () = redis::cmd("DEL")
        .arg(&lock)
        .query(&mut rc.connection_for_key(&lock))
        .unwrap();
    let (v, _) = d.run(&[]);
    assert_counts(&v, "bravo", 1, 0);
    synced();

    // reset-state --all: nothing is left; the next run re-syncs everything, rewriting nothing
    d.ok(&["reset-state", "--all"]);
    assert_eq!(rc.keys(&format!("{}:*", env.prefix)), Vec::<String>::new());
    let (v, _) = d.run(&[]);
    for j in CLUSTER_JOBS {
        assert!(full_sync(&v, j).is_some(), "{v:#}");
    }
    each(&v, 0, 0);
    synced();
}

fn assert_metrics(path: &Path) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("metrics file {}: {e}", path.display()));
    let line = |job: &str, needle: &str| {
        text.lines()
            .any(|l| l.contains(&format!("job=\"{job}\"")) && l.contains(needle))
    };
    assert!(
        text.lines()
            .any(|l| l == "elt_job_status{job=\"bravo\",status=\"skipped\"} 1"),
        "{text}"
    );
    for j in CLUSTER_JOBS {
        assert!(line(j, "elt_job_up"), "no elt_job_up for {j}:\n{text}");
        let ok = format!("elt_job_status{{job=\"{j}\",status=\"ok\"}} 1");
        assert_eq!(text.lines().any(|l| l == ok), j != "bravo", "{ok}:\n{text}");
    }
}
