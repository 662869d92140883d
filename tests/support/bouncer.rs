//! A private PgBouncer in transaction pooling mode in front of a PostgreSQL server, so that
//! consecutive transactions of one client run on different server connections.
//!
//! Uses from the enclosing support module: `free_port`, `is_root` and `wait_until`. Needs
//! the `postgres` and `tempfile` crates, and `scripts/services.sh ensure-pgbouncer` (found
//! through `CARGO_MANIFEST_DIR`) to install Debian's pgbouncer when it is missing.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, is_root, wait_until};

/// Server connections per (database, user) pool.
pub const BOUNCER_POOL_SIZE: usize = 4;

/// A pgbouncer of the test's own (own ini, pid, log and socket files in a temp dir) on a
/// free 127.0.0.1 port, forwarding every database name to one PostgreSQL server with
/// `pool_mode = transaction` and `server_round_robin = 1`. Killed and removed on drop.
///
/// pgbouncer refuses to run as root; when we are root the ini says `user = postgres`, so
/// it drops to that user right after start (and the temp dir belongs to postgres).
pub struct Bouncer {
    pub dir: tempfile::TempDir,
    /// The port clients connect to (0 until it started).
    pub port: u16,
    /// The PostgreSQL server behind it.
    pub server_host: String,
    pub server_port: u16,
    pub pool_size: usize,
    child: Option<Child>,
}

impl Bouncer {
    /// A pgbouncer in front of the PostgreSQL server on 127.0.0.1:`pg_port`, for user
    /// `postgres`.
    pub fn start(pg_port: u16) -> Bouncer {
        Self::start_with("127.0.0.1", pg_port, &[], BOUNCER_POOL_SIZE)
    }

    /// A pgbouncer in front of `host:port` that lets in `postgres` and `users` (no
    /// password: `auth_type = trust` only checks the name against its auth file), with
    /// `pool_size` server connections per (database, user) pool.
    pub fn start_with(host: &str, port: u16, users: &[&str], pool_size: usize) -> Bouncer {
        let started = Instant::now();
        ensure_pgbouncer();
        // as root, pgbouncer runs as postgres, which must reach its dir: put it in /tmp
        let mut builder = tempfile::Builder::new();
        builder.prefix("elt-pgbouncer-");
        let dir = if is_root() {
            builder.tempdir_in("/tmp")
        } else {
            builder.tempdir()
        }
        .unwrap();
        let mut b = Bouncer {
            dir,
            port: 0,
            server_host: host.to_string(),
            server_port: port,
            pool_size,
            child: None,
        };
        let mut names: BTreeSet<&str> = users.iter().copied().collect();
        names.insert("postgres");
        let userlist: String = names.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        fs::write(b.path("userlist.txt"), userlist).unwrap();
        if is_root() {
            let st = Command::new("chown")
                .arg("postgres:")
                .arg(b.dir.path())
                .arg(b.path("userlist.txt"))
                .status();
            assert!(
                st.map(|s| s.success()).unwrap_or(false),
                "chown postgres {}",
                b.dir.path().display()
            );
        }
        for attempt in 0..5 {
            b.port = free_port();
            if b.spawn() {
                eprintln!(
                    "pgbouncer on 127.0.0.1:{} in front of {host}:{port} ready in {:?}",
                    b.port,
                    started.elapsed()
                );
                return b;
            }
            eprintln!(
                "pgbouncer did not start on port {} (attempt {attempt})",
                b.port
            );
        }
        panic!("pgbouncer did not start; log:\n{}", b.log_tail());
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// pgbouncer's own log (`logfile`).
    pub fn log_path(&self) -> PathBuf {
        self.path("pgbouncer.log")
    }

    fn ini(&self) -> String {
        let d = self.dir.path().display();
        let mut ini = format!(
            "[databases]\n\
             * = host={host} port={port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen}\n\
             unix_socket_dir = {d}\n\
             pidfile = {d}/pgbouncer.pid\n\
             logfile = {d}/pgbouncer.log\n\
             auth_type = trust\n\
             auth_file = {d}/userlist.txt\n\
             admin_users = postgres\n\
             stats_users = postgres\n\
             pool_mode = transaction\n\
             default_pool_size = {size}\n\
             min_pool_size = {size}\n\
             reserve_pool_size = 0\n\
             server_round_robin = 1\n\
             ignore_startup_parameters = extra_float_digits\n\
             max_client_conn = 200\n\
             server_connect_timeout = 5\n\
             server_login_retry = 1\n\
             query_wait_timeout = 30\n",
            host = self.server_host,
            port = self.server_port,
            listen = self.port,
            size = self.pool_size,
        );
        if is_root() {
            ini.push_str("user = postgres\n");
        }
        ini
    }

    /// Starts pgbouncer on `self.port`; true when it is up and it is ours.
    fn spawn(&mut self) -> bool {
        self.kill();
        let ini_path = self.path("pgbouncer.ini");
        fs::write(&ini_path, self.ini()).unwrap();
        let _ = fs::remove_file(self.path("pgbouncer.pid"));
        if is_root() {
            let _ = Command::new("chown")
                .arg("postgres:")
                .arg(&ini_path)
                .status();
        }
        let stderr = fs::File::create(self.path("stderr.log")).unwrap();
        let child = Command::new(pgbouncer_bin())
            .arg(&ini_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start pgbouncer");
        let pid = child.id();
        self.child = Some(child);
        // up: its pid file names our child (pgbouncer writes it once it listens) and a
        // session through it reaches the server
        let pid_path = self.path("pgbouncer.pid");
        let url = self.url();
        let up = wait_until(Duration::from_secs(20), || {
            if !self.alive() {
                return true; // stop waiting: it gave up (e.g. port taken)
            }
            fs::read_to_string(&pid_path)
                .map(|s| s.trim() == pid.to_string())
                .unwrap_or(false)
                && postgres::Client::connect(&url, postgres::NoTls)
                    .and_then(|mut c| c.simple_query("select 1"))
                    .is_ok()
        });
        if up && self.alive() {
            return true;
        }
        self.kill();
        false
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .map(|c| c.try_wait().ok().flatten().is_none())
            .unwrap_or(false)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_tail(&self) -> String {
        let mut text = fs::read_to_string(self.log_path()).unwrap_or_default();
        text += &fs::read_to_string(self.path("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// URL of database `db` (as user `postgres`) through the bouncer.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// URL of the `postgres` database through the bouncer.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// A session on pgbouncer's admin console (`SHOW POOLS`, `SHOW SERVERS`...; simple
    /// query protocol only: use `simple_query`).
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url_for("pgbouncer"), postgres::NoTls)
            .expect("connect to the pgbouncer admin console")
    }

    /// Makes the pool of (`db`, postgres) hold `pool_size` server connections now, by
    /// keeping that many transactions open at once; returns their backend pids. Call it
    /// before a test's own sessions, or the pool grows only under concurrency (or when
    /// pgbouncer's janitor tops it up to `min_pool_size` while a client is connected).
    pub fn fill_pool(&self, db: &str) -> BTreeSet<i32> {
        let url = self.url_for(db);
        let mut clients = Vec::new();
        let mut pids = BTreeSet::new();
        for _ in 0..self.pool_size {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
            c.batch_execute("BEGIN").unwrap();
            pids.insert(backend_pid(&mut c));
            clients.push(c);
        }
        for c in &mut clients {
            c.batch_execute("COMMIT").unwrap();
        }
        assert_eq!(
            pids.len(),
            self.pool_size,
            "open transactions through pgbouncer shared a server connection"
        );
        pids
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `select pg_backend_pid()` with the simple query protocol (no prepared statement, so it
/// works whatever server connection pgbouncer picks).
pub fn backend_pid(c: &mut postgres::Client) -> i32 {
    for m in c.simple_query("select pg_backend_pid()").unwrap() {
        if let postgres::SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap().parse().unwrap();
        }
    }
    panic!("select pg_backend_pid() returned no row");
}

fn pgbouncer_bin() -> PathBuf {
    let sbin = Path::new("/usr/sbin/pgbouncer");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("pgbouncer")
    }
}

/// `scripts/services.sh ensure-pgbouncer` once per test process.
fn ensure_pgbouncer() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if Command::new(pgbouncer_bin())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("ensure-pgbouncer")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/services.sh ensure-pgbouncer");
        assert!(
            out.status.success(),
            "scripts/services.sh ensure-pgbouncer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
