//! Shared harness for the integration tests.
//!
//! Servers come from `ELT_TEST_PG_URL` / `ELT_TEST_REDIS_URL`; when those are not set, the
//! harness starts throwaway ones once per test binary with `scripts/services.sh start DIR`
//! and leaves a detached watchdog that stops them when the test process is gone.
//!
//! Every test builds its own [`TestEnv`]: two fresh databases (M and A), its own Redis key
//! prefix and its own temp folder with `jobs/` and `logs/`, so tests run in parallel.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use postgres::Client;

pub struct Servers {
    pub pg_url: String,
    pub redis_url: String,
}

static SERVERS: OnceLock<Servers> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test.
pub fn elt_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_elt"))
}

pub fn servers() -> &'static Servers {
    SERVERS.get_or_init(|| {
        let pg = std::env::var("ELT_TEST_PG_URL")
            .ok()
            .filter(|s| !s.is_empty());
        let redis = std::env::var("ELT_TEST_REDIS_URL")
            .ok()
            .filter(|s| !s.is_empty());
        if let (Some(pg_url), Some(redis_url)) = (pg, redis) {
            return Servers { pg_url, redis_url };
        }
        start_services()
    })
}

fn start_services() -> Servers {
    let root = repo_root();
    let script = root.join("scripts/services.sh");
    assert!(
        script.exists(),
        "ELT_TEST_PG_URL/ELT_TEST_REDIS_URL are not set and {} does not exist",
        script.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("elt-test-svc-")
        .tempdir()
        .expect("temp dir for services")
        .keep();
    let out = StdCommand::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&dir)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/services.sh start");
    // Watchdog first, so that even a half-started set of services is cleaned up.
    spawn_watchdog(&root, &script, &dir);
    assert!(
        out.status.success(),
        "scripts/services.sh start {} failed ({}):\n{}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let env = fs::read_to_string(dir.join("env")).expect("services.sh wrote no env file");
    let mut pg_url = None;
    let mut redis_url = None;
    for line in env.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                "ELT_TEST_PG_URL" => pg_url = Some(v),
                "ELT_TEST_REDIS_URL" => redis_url = Some(v),
                _ => {}
            }
        }
    }
    Servers {
        pg_url: pg_url.expect("ELT_TEST_PG_URL missing from services env file"),
        redis_url: redis_url.expect("ELT_TEST_REDIS_URL missing from services env file"),
    }
}

fn spawn_watchdog(root: &Path, script: &Path, dir: &Path) {
    let pid = std::process::id();
    // If `stop` hangs (e.g. on a lock that the daemons inherited), kill the daemons named
    // in DIR/state ourselves and let `stop` clean up after that.
    let cmd = format!(
        r#"while kill -0 {pid} 2>/dev/null; do sleep 1; done
S='{script}'; D='{dir}'
if ! timeout 30 bash "$S" stop "$D" >/dev/null 2>&1; then
    if [ -f "$D/state" ]; then
        . "$D/state"
        [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ] && kill -QUIT "$(head -n1 "$PG_DATA/postmaster.pid")" 2>/dev/null
        [ -n "$REDIS_DIR" ] && [ -f "$REDIS_DIR/redis.pid" ] && kill "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null
        sleep 3
    fi
    timeout 30 bash "$S" stop "$D" >/dev/null 2>&1
    [ -n "$PG_ROOT" ] && rm -rf "$PG_ROOT"
fi
rm -rf "$D""#,
        script = script.display(),
        dir = dir.display()
    );
    let mut c = StdCommand::new("bash");
    c.arg("-c")
        .arg(cmd)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Own process group: a Ctrl-C to the test run does not kill the cleanup.
    c.process_group(0);
    // Deliberately not waited for: it must outlive the test process to clean up after it.
    let child = c.spawn().expect("spawn services watchdog");
    std::mem::forget(child);
}

/// Replaces the database name of a `postgres://` URL (keeps user, host, port and query).
pub fn url_with_db(base: &str, db: &str) -> String {
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let (head, query) = match base.find('?') {
        Some(q) => (&base[..q], &base[q..]),
        None => (base, ""),
    };
    let head = match head[scheme_end..].find('/') {
        Some(slash) => &head[..scheme_end + slash],
        None => head,
    };
    format!("{head}/{db}{query}")
}

/// Parts of a `postgres://user[:pass]@host:port/db` URL.
pub struct PgParts {
    pub user: String,
    pub host: String,
    pub port: u16,
}

pub fn pg_parts(url: &str) -> PgParts {
    let rest = url.split_once("://").map(|x| x.1).unwrap_or(url);
    let rest = rest.split(['/', '?']).next().unwrap();
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("postgres", rest),
    };
    let user = userinfo.split(':').next().unwrap().to_string();
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().expect("port")),
        None => (hostport.to_string(), 5432),
    };
    PgParts { user, host, port }
}

pub fn connect(url: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(url, postgres::NoTls) {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect {url}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("cannot connect to {url}: {e}"),
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '_' }
        })
        .collect()
}

pub struct TestEnv {
    pub unique: String,
    pub prefix: String,
    pub m_db: String,
    pub a_db: String,
    pub dir: tempfile::TempDir,
    pub jobs_dir: PathBuf,
    pub log_dir: PathBuf,
}

/// Counts of one job in a `--json` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub upserted: u64,
    pub unchanged: u64,
    pub deleted: u64,
}

impl TestEnv {
    pub fn new(name: &str) -> TestEnv {
        let s = servers();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let suffix = format!("_{}_{}", std::process::id(), n);
        let mut base = sanitize(name);
        let max_base = 60usize.saturating_sub(suffix.len());
        base.truncate(max_base);
        let unique = format!("{base}{suffix}");
        let m_db = format!("m_{unique}");
        let a_db = format!("a_{unique}");
        let mut admin = connect(&s.pg_url);
        for db in [&m_db, &a_db] {
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .unwrap();
            create_database(&mut admin, db);
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("elt-{}-", &unique[..unique.len().min(30)]))
            .tempdir()
            .expect("tempdir");
        let jobs_dir = dir.path().join("jobs");
        let log_dir = dir.path().join("logs");
        fs::create_dir_all(&jobs_dir).unwrap();
        fs::create_dir_all(&log_dir).unwrap();
        let env = TestEnv {
            prefix: format!("t_{unique}"),
            unique,
            m_db,
            a_db,
            dir,
            jobs_dir,
            log_dir,
        };
        env.flush_redis_state();
        env
    }

    pub fn pg_url(&self) -> &str {
        &servers().pg_url
    }
    pub fn redis_url(&self) -> &str {
        &servers().redis_url
    }
    pub fn m_url(&self) -> String {
        url_with_db(&servers().pg_url, &self.m_db)
    }
    pub fn a_url(&self) -> String {
        url_with_db(&servers().pg_url, &self.a_db)
    }
    pub fn m(&self) -> Client {
        connect(&self.m_url())
    }
    pub fn a(&self) -> Client {
        connect(&self.a_url())
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.redis_url())
            .expect("redis url")
            .get_connection()
            .expect("redis connection")
    }

    /// All keys under this test's prefix.
    pub fn redis_keys(&self) -> Vec<String> {
        let mut con = self.redis();
        let mut cursor: u64 = 0;
        let mut keys = BTreeSet::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.into_iter().collect()
    }

    /// Every key under the prefix with its serialized value (DUMP), lock keys left out.
    pub fn redis_snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut con = self.redis();
        self.redis_keys()
            .into_iter()
            .filter(|k| !k.ends_with(":lock"))
            .map(|k| {
                let v: Option<Vec<u8>> = redis::cmd("DUMP").arg(&k).query(&mut con).unwrap();
                (k, v.unwrap_or_default())
            })
            .collect()
    }

    pub fn flush_redis_state(&self) {
        let keys = self.redis_keys();
        if keys.is_empty() {
            return;
        }
        let mut con = self.redis();
        for chunk in keys.chunks(500) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query(&mut con).expect("DEL");
        }
    }

    pub fn job_path(&self, name: &str) -> PathBuf {
        self.jobs_dir.join(format!("{name}.yaml"))
    }

    /// Writes `jobs/<name>.yaml`.
    pub fn write_job(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.job_path(name);
        fs::write(&p, yaml).unwrap();
        p
    }

    /// The binary with no ELT_* variables and the temp dir as working directory.
    pub fn elt_bare(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(elt_bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ELT_") {
                c.env_remove(&k);
            }
        }
        c.env_remove("DATABASE_URL");
        c.current_dir(self.path());
        c.timeout(Duration::from_secs(240));
        c
    }

    /// The binary with every setting given through the environment.
    pub fn elt(&self) -> assert_cmd::Command {
        let mut c = self.elt_bare();
        c.env("ELT_MASTER_URL", self.m_url())
            .env("ELT_ANALYTICS_URL", self.a_url())
            .env("ELT_REDIS_URL", self.redis_url())
            .env("ELT_JOBS_DIR", &self.jobs_dir)
            .env("ELT_LOG_DIR", &self.log_dir)
            .env("ELT_REDIS_PREFIX", &self.prefix);
        c
    }

    /// `elt run --json` → (exit code, report).
    pub fn run_json(&self) -> (i32, Value) {
        let mut c = self.elt();
        c.args(["run", "--json"]);
        run_cmd_json(c)
    }

    /// `elt run-job NAME --json` → (exit code, report).
    pub fn run_job_json(&self, name: &str) -> (i32, Value) {
        let mut c = self.elt();
        c.args(["run-job", name, "--json"]);
        run_cmd_json(c)
    }

    /// `elt run --json`, asserting exit 0 and every listed job `ok`; returns the counts of `job`.
    pub fn run_ok(&self, job: &str) -> Counts {
        let (code, v) = self.run_json();
        assert_eq!(code, 0, "elt run exited {code}; report: {v:#}");
        for j in jobs(&v) {
            assert_eq!(j["status"], "ok", "job not ok: {j:#}");
        }
        counts(&v, job)
    }

    pub fn elt_log(&self) -> String {
        fs::read_to_string(self.log_dir.join("elt.log")).unwrap_or_default()
    }
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.log_dir.join("error.log")).unwrap_or_default()
    }

    /// Rows of `query` as text, sorted.
    pub fn rows_text(client: &mut Client, query: &str) -> Vec<String> {
        let sql = format!("SELECT elt_row_::text FROM ({query}) elt_row_ ORDER BY 1");
        client
            .query(sql.as_str(), &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", pg_err(&e)))
            .iter()
            .map(|r| {
                r.try_get::<_, String>(0)
                    .unwrap_or_else(|e| panic!("{sql}: reading a row: {e:?}"))
            })
            .collect()
    }

    /// The first column of every row of `sql`, as text (`sql` must return text).
    pub fn texts(client: &mut Client, sql: &str) -> Vec<String> {
        client
            .query(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", pg_err(&e)))
            .iter()
            .map(|r| {
                r.get::<_, Option<String>>(0)
                    .unwrap_or_else(|| "<NULL>".into())
            })
            .collect()
    }
    pub fn a_texts(&self, sql: &str) -> Vec<String> {
        Self::texts(&mut self.a(), sql)
    }
    pub fn m_texts(&self, sql: &str) -> Vec<String> {
        Self::texts(&mut self.m(), sql)
    }

    pub fn m_rows(&self, query: &str) -> Vec<String> {
        Self::rows_text(&mut self.m(), query)
    }
    pub fn a_rows(&self, query: &str) -> Vec<String> {
        Self::rows_text(&mut self.a(), query)
    }

    /// A's rows of `a_query` equal M's rows of `m_query` (as text, order-insensitive).
    pub fn assert_a_equals_m(&self, m_query: &str, a_query: &str) {
        let m = self.m_rows(m_query);
        let a = self.a_rows(a_query);
        assert_same_rows(&m, &a, "M", "A");
    }

    pub fn m_exec(&self, sql: &str) {
        self.m()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("M: {sql}: {}", pg_err(&e)));
    }
    pub fn a_exec(&self, sql: &str) {
        self.a()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("A: {sql}: {}", pg_err(&e)));
    }

    pub fn m_count(&self, table: &str) -> i64 {
        self.m()
            .query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])
            .unwrap()
            .get(0)
    }

    /// Row count of an A table, or None when it does not exist.
    pub fn a_count(&self, table: &str) -> Option<i64> {
        let mut a = self.a();
        let exists: bool = a
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .unwrap()
            .get(0);
        if !exists {
            return None;
        }
        Some(
            a.query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])
                .unwrap()
                .get(0),
        )
    }

    /// Runs a SQL file on M with psql.
    pub fn psql_file_m(&self, file: &Path) {
        let out = StdCommand::new("psql")
            .arg("-X")
            .arg("-q")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg("-d")
            .arg(self.m_url())
            .arg("-f")
            .arg(file)
            .stdout(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql -f {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets the lock key of `job` to a foreign token with a TTL.
    pub fn hold_lock(&self, job: &str, ttl_secs: u64) {
        let mut con = self.redis();
        let _: () = redis::cmd("SET")
            .arg(self.lock_key(job))
            .arg("another-runner-on-another-host")
            .arg("EX")
            .arg(ttl_secs)
            .query(&mut con)
            .unwrap();
    }

    pub fn lock_key(&self, job: &str) -> String {
        format!("{}:job:{}:lock", self.prefix, job)
    }

    /// The standard `products` fixture: table + trigger in M, `n` rows, job file `products`.
    /// The trigger sets `updated_at = now()` on UPDATE unless the statement sets it itself.
    pub fn products_fixture(&self, n: i64) {
        self.m_exec(PRODUCTS_M_SQL);
        self.m_exec(&format!(
            "INSERT INTO products (id, title, price) \
             SELECT g, 'Product ' || g, (g * 1.25)::numeric(10,2) FROM generate_series(1, {n}) g"
        ));
        self.write_job("products", PRODUCTS_JOB);
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Best effort: never panic in drop.
        if let Ok(mut admin) = Client::connect(self.pg_url(), postgres::NoTls) {
            for db in [&self.m_db, &self.a_db] {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
            }
        }
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.flush_redis_state()));
    }
}

fn create_database(admin: &mut Client, db: &str) {
    // CREATE DATABASE can fail transiently when template1 is in use by a parallel CREATE.
    let mut tries = 0;
    loop {
        match admin.batch_execute(&format!(
            "CREATE DATABASE {db} TEMPLATE template0 ENCODING 'UTF8'"
        )) {
            Ok(()) => return,
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("CREATE DATABASE {db}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("CREATE DATABASE {db}: {e}"),
        }
    }
}

pub const PRODUCTS_M_SQL: &str = r#"
CREATE TABLE products (
    id integer PRIMARY KEY,
    title text NOT NULL,
    price numeric(10,2),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER products_touch BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
"#;

pub const PRODUCTS_JOB: &str = r#"CREATE_TABLE_SQL: |
  CREATE TABLE IF NOT EXISTS products (
      id integer PRIMARY KEY,
      title text NOT NULL,
      price numeric(10,2),
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

pub const PRODUCTS_Q: &str = "SELECT id, title, price, updated_at FROM products";

/// Builds a job file from its six parts.
pub fn job_yaml(
    create: &str,
    source: &str,
    upsert: &str,
    keys: &str,
    target: &str,
    key_columns: &[&str],
) -> String {
    let kc: Vec<String> = key_columns.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "CREATE_TABLE_SQL: {}\nSELECT_SOURCE_SQL: {}\nUPSERT_TARGET_SQL: {}\nSELECT_KEYS_SQL: {}\nTARGET_TABLE: {}\nKEY_COLUMNS: [{}]\n",
        yaml_str(create),
        yaml_str(source),
        yaml_str(upsert),
        yaml_str(keys),
        yaml_str(target),
        kc.join(", ")
    )
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
pub fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

pub fn run_cmd_json(mut c: assert_cmd::Command) -> (i32, Value) {
    let out = c.output().expect("run elt");
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "elt --json printed no JSON document ({e}); exit {code}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

pub fn jobs(v: &Value) -> &Vec<Value> {
    v["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("report has no jobs array: {v:#}"))
}

pub fn job<'a>(v: &'a Value, name: &str) -> &'a Value {
    jobs(v)
        .iter()
        .find(|j| j["job"] == name)
        .unwrap_or_else(|| panic!("job {name} missing from report: {v:#}"))
}

pub fn status<'a>(v: &'a Value, name: &str) -> &'a str {
    job(v, name)["status"].as_str().unwrap_or("<not a string>")
}

pub fn counts(v: &Value, name: &str) -> Counts {
    let j = job(v, name);
    let get = |k: &str| {
        j[k].as_u64()
            .unwrap_or_else(|| panic!("{k} is not a non-negative integer in {j:#}"))
    };
    Counts {
        read: get("rows_read"),
        upserted: get("rows_upserted"),
        unchanged: get("rows_unchanged"),
        deleted: get("rows_deleted"),
    }
}

pub fn assert_same_rows(left: &[String], right: &[String], lname: &str, rname: &str) {
    if left == right {
        return;
    }
    let l: BTreeSet<&String> = left.iter().collect();
    let r: BTreeSet<&String> = right.iter().collect();
    let only_l: Vec<&&String> = l.difference(&r).take(10).collect();
    let only_r: Vec<&&String> = r.difference(&l).take(10).collect();
    let mut msg = format!(
        "row sets differ: {lname} has {} rows, {rname} has {} rows\n",
        left.len(),
        right.len()
    );
    msg += &format!("only in {lname} (first 10):\n");
    for x in &only_l {
        msg += &format!("  {x}\n");
    }
    msg += &format!("only in {rname} (first 10):\n");
    for x in &only_r {
        msg += &format!("  {x}\n");
    }
    if only_l.is_empty() && only_r.is_empty() {
        msg += "(same distinct rows, different duplicates)\n";
    }
    panic!("{msg}");
}

/// A PostgreSQL error with the server's message.
pub fn pg_err(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => format!("{e:?}"),
    }
}

/// stdout + stderr of a finished command, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// True when the line holds a date like 2024-05-01.
pub fn has_date(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(10).any(|w| {
        w[0..4].iter().all(u8::is_ascii_digit)
            && w[4] == b'-'
            && w[5..7].iter().all(u8::is_ascii_digit)
            && w[7] == b'-'
            && w[8..10].iter().all(u8::is_ascii_digit)
    })
}
