//! Helpers for the fault, load and security suites: running `elt` as a process that can be
//! killed, private servers that a test may stop, restart or configure (a redis-server of
//! its own, a PostgreSQL cluster of its own), a throwaway certificate authority, and the
//! fault report.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestEnv, elt_bin, repo_root};

// Production set-ups: a streaming standby, PgBouncer in transaction mode, Redis Sentinel and
// Redis Cluster (each self-contained; see the module docs for what they use from here).
pub mod bouncer;
pub mod redis_ha;
pub mod standby;

/// `elt` as a plain process with the settings of `env` (as `TestEnv::elt` gives them), so a
/// test can start it, watch it and kill it.
pub fn elt_std(env: &TestEnv) -> Command {
    let mut c = Command::new(elt_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ELT_") {
            c.env_remove(&k);
        }
    }
    c.env_remove("DATABASE_URL")
        .env("ELT_MASTER_URL", env.m_url())
        .env("ELT_ANALYTICS_URL", env.a_url())
        .env("ELT_REDIS_URL", env.redis_url())
        .env("ELT_JOBS_DIR", &env.jobs_dir)
        .env("ELT_LOG_DIR", &env.log_dir)
        .env("ELT_REDIS_PREFIX", &env.prefix)
        .current_dir(env.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// How one `elt` process ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Exit code; `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn killed(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.status.signal() == Some(9)
    }

    /// The `--json` report, when the process printed one.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(self.stdout.trim()).ok()
    }

    /// Status of `job` in the report ("ok", "failed", "skipped").
    pub fn job_status(&self, job: &str) -> Option<String> {
        let v = self.json()?;
        v["jobs"]
            .as_array()?
            .iter()
            .find(|j| j["job"] == job)
            .and_then(|j| j["status"].as_str().map(String::from))
    }

    pub fn job_error(&self, job: &str) -> Option<String> {
        let v = self.json()?;
        v["jobs"]
            .as_array()?
            .iter()
            .find(|j| j["job"] == job)
            .and_then(|j| j["error"].as_str().map(String::from))
    }

    pub fn describe(&self) -> String {
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `c` to the end (bounded: killed after 5 minutes).
pub fn run(mut c: Command) -> Outcome {
    let child = c.spawn().expect("start elt");
    wait(child, Duration::from_secs(300))
}

/// Waits for `child`, killing it after `limit`.
pub fn wait(mut child: Child, limit: Duration) -> Outcome {
    let deadline = Instant::now() + limit;
    // Drain the pipes in threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = std::io::Read::read_to_string(o, &mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut s);
        }
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for elt") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let st = child.wait().expect("wait for killed elt");
            panic!("elt did not finish within {limit:?} ({st:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// `kill -9 PID`, as an operator (or the OOM killer) would.
pub fn kill9(child: &Child) {
    let st = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -9 {} failed", child.id());
}

/// Polls `f` every 20 ms until it returns true; false when `limit` passes first.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// True when the current user is root (then PostgreSQL runs as `postgres`).
pub fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

// --- the fault report --------------------------------------------------------------------

/// Appends one row of the fault table (`fault`, runs that met it, runs that survived it,
/// rows lost after the recovery run) to `$ELT_FAULTS_REPORT` (when set) and prints it.
pub fn record(fault: &str, runs: u32, survived: u32, rows_lost: usize) {
    println!("FAULT | {fault} | runs {runs} | survived {survived} | rows lost {rows_lost}");
    let Some(path) = std::env::var_os("ELT_FAULTS_REPORT").map(PathBuf::from) else {
        return;
    };
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = writeln!(f, "{fault}\t{runs}\t{survived}\t{rows_lost}");
    }
}

/// Rows in one list and not the other (both sides counted).
pub fn rows_lost(m: &[String], a: &[String]) -> usize {
    use std::collections::BTreeSet;
    let m: BTreeSet<&String> = m.iter().collect();
    let a: BTreeSet<&String> = a.iter().collect();
    m.symmetric_difference(&a).count()
}

// --- a private redis-server ----------------------------------------------------------------

/// A redis-server of the test's own, on a fixed port, that the test may stop and restart.
pub struct PrivateRedis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    /// The port the server answers on in the clear (0 for a TLS-only server).
    pub plain: bool,
}

impl PrivateRedis {
    /// A plain server on a free port.
    pub fn start() -> PrivateRedis {
        Self::start_with(Vec::new(), true)
    }

    /// A server with extra arguments; `plain` false when it only speaks TLS (`--port 0`).
    pub fn start_with(extra: Vec<String>, plain: bool) -> PrivateRedis {
        let dir = tempfile::Builder::new()
            .prefix("elt-redis-")
            .tempdir()
            .unwrap();
        let mut r = PrivateRedis {
            port: 0,
            dir,
            child: None,
            extra,
            plain,
        };
        for attempt in 0..5 {
            r.port = free_port();
            if r.spawn() {
                return r;
            }
            eprintln!(
                "redis-server did not start on {} (attempt {attempt})",
                r.port
            );
        }
        panic!(
            "redis-server did not start; log: {}",
            r.log_path().display()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) -> bool {
        let mut c = Command::new("redis-server");
        if self.plain {
            c.args(["--port", &self.port.to_string()]);
        } else {
            c.args(["--port", "0", "--tls-port", &self.port.to_string()]);
        }
        c.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c.spawn().expect("start redis-server");
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let alive = self
            .child
            .as_mut()
            .map(|c| c.try_wait().ok().flatten().is_none())
            .unwrap_or(false);
        if !(up && alive) {
            self.kill();
            return false;
        }
        true
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server at once (SIGKILL: nothing saved).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server after saving its data (`SHUTDOWN SAVE`), so a restart keeps it.
    pub fn shutdown_save(&mut self) {
        let st = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "save"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(st.is_ok(), "redis-cli shutdown save");
        if let Some(mut c) = self.child.take() {
            let done = wait_until(Duration::from_secs(10), || {
                c.try_wait().ok().flatten().is_some()
            });
            if !done {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (with whatever data it saved).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running redis-server");
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}; log: {}",
            self.port,
            self.log_path().display()
        );
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .expect("connect to the private redis")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

// --- a private PostgreSQL cluster ----------------------------------------------------------

/// A PostgreSQL cluster of the test's own, started with `scripts/services.sh start DIR`, that
/// the test may restart or reconfigure. Stopped (and removed) on drop.
pub struct PrivateCluster {
    pub dir: tempfile::TempDir,
    /// Superuser URL of its `postgres` database.
    pub url: String,
    pub port: u16,
    pub pg_bin: PathBuf,
    pub pg_data: PathBuf,
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        let dir = tempfile::Builder::new()
            .prefix("elt-pgc-")
            .tempdir()
            .unwrap();
        let script = repo_root().join("scripts/services.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/services.sh start");
        let mut cluster = PrivateCluster {
            dir,
            url: String::new(),
            port: 0,
            pg_bin: PathBuf::new(),
            pg_data: PathBuf::new(),
        };
        assert!(
            out.status.success(),
            "scripts/services.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = fs::read_to_string(cluster.dir.path().join("state")).expect("state file");
        for line in state.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim_matches('\'').trim_matches('"').to_string();
            match k {
                "PG_BIN" => cluster.pg_bin = PathBuf::from(v),
                "PG_DATA" => cluster.pg_data = PathBuf::from(v),
                "PG_PORT" => cluster.port = v.parse().expect("PG_PORT"),
                _ => {}
            }
        }
        cluster.url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
        cluster
    }

    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn admin(&self) -> postgres::Client {
        crate::common::connect(&self.url)
    }

    pub fn create_db(&self, db: &str) {
        self.admin()
            .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE template0"))
            .unwrap();
    }

    /// A command run as the PostgreSQL OS user (postgres when we are root).
    pub fn as_pg(&self, program: &Path) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(program)
                .current_dir("/");
            c
        } else {
            Command::new(program)
        }
    }

    /// `pg_ctl restart -m fast`: every session is ended, the server comes back.
    pub fn restart(&self) {
        let st = self
            .as_pg(&self.pg_bin.join("pg_ctl"))
            .arg("restart")
            .arg("-D")
            .arg(&self.pg_data)
            .args(["-m", "fast", "-w", "-t", "60"])
            .arg("-l")
            .arg(self.pg_data.join("restart.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pg_ctl restart");
        assert!(st.success(), "pg_ctl restart failed");
        let url = self.url.clone();
        assert!(
            wait_until(Duration::from_secs(30), || {
                postgres::Client::connect(&url, postgres::NoTls).is_ok()
            }),
            "PostgreSQL did not come back after the restart"
        );
    }

    /// Gives a file to the server's OS user (root: chown to postgres) with `mode`.
    pub fn give_to_server(&self, path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        if is_root() {
            let st = Command::new("chown")
                .arg("postgres:")
                .arg(path)
                .status()
                .unwrap();
            assert!(st.success(), "chown postgres {}", path.display());
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let script = repo_root().join("scripts/services.sh");
        let _ = Command::new("bash")
            .arg(&script)
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// --- a throwaway certificate authority -----------------------------------------------------

/// A CA and a server certificate for `localhost` (DNS name only: connecting to 127.0.0.1
/// makes a name mismatch), made with openssl; plus a second, unrelated CA.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("elt-certs-")
            .tempdir()
            .unwrap();
        // traversable by the server's OS user, which reads its key from here
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdin(Stdio::null())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-days",
                "3",
                "-subj",
                &format!("/CN=elt test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        }
        fs::write(
            d.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "3",
            "-extfile",
            "server.ext",
        ]);
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
