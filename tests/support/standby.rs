//! A streaming hot standby of a private PostgreSQL cluster, for tests that read from a
//! replica (lag, paused replay, read-only sessions).
//!
//! Uses from the enclosing support module: `PrivateCluster` (the primary; its `as_pg` runs a
//! program as the PostgreSQL OS user), `free_port`, `is_root` and `wait_until`. Needs the
//! `postgres` and `tempfile` crates.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{PrivateCluster, free_port, is_root, wait_until};

/// How long the standby may take to be made, started and streaming.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a wait for replay (catch-up, pause, resume, a new database) may take.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// A primary ([`PrivateCluster`]) and a hot standby of it made with
/// `pg_basebackup -R -X stream`, on its own port and socket directory, started with pg_ctl.
/// On drop the standby is stopped (`-m immediate`) and its files removed, then the primary.
pub struct Standby {
    /// Field order matters: `primary` is dropped after `Drop::drop` stopped the standby.
    pub primary: PrivateCluster,
    /// Holds the standby's data directory, socket directory and log.
    pub dir: tempfile::TempDir,
    /// The standby's TCP port on 127.0.0.1 (0 until it started).
    pub port: u16,
    pub pg_data: PathBuf,
    pub socket_dir: PathBuf,
    pub log: PathBuf,
}

impl Standby {
    /// A new primary and a standby of it.
    pub fn start() -> Standby {
        let started = Instant::now();
        let primary = PrivateCluster::start();
        eprintln!("primary cluster started in {:?}", started.elapsed());
        Self::of(primary)
    }

    /// A standby of `primary` (which it owns from now on).
    pub fn of(primary: PrivateCluster) -> Standby {
        let started = Instant::now();
        // in /tmp when root (the postgres user must reach it) or when $TMPDIR would make the
        // socket path too long (a Unix socket address holds 107 bytes)
        let mut dir = tempfile::Builder::new()
            .prefix("elt-standby-")
            .tempdir()
            .unwrap();
        if is_root() || dir.path().as_os_str().len() > 60 {
            dir = tempfile::Builder::new()
                .prefix("elt-standby-")
                .tempdir_in("/tmp")
                .unwrap();
        }
        let root = dir.path().to_path_buf();
        let mut s = Standby {
            primary,
            pg_data: root.join("data"),
            socket_dir: root.join("sock"),
            log: root.join("standby.log"),
            dir,
            port: 0,
        };
        fs::create_dir(&s.socket_dir).unwrap();
        if is_root() {
            // the whole directory belongs to the server's OS user (root removes it on drop)
            for p in [&root, &s.socket_dir] {
                let st = Command::new("chown").arg("postgres:").arg(p).status();
                assert!(
                    st.map(|st| st.success()).unwrap_or(false),
                    "chown postgres {}",
                    p.display()
                );
            }
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();

        let out = s
            .pg(Path::new("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream"])
            .args(["-c", "fast", "--no-password"])
            .arg("-p")
            .arg(s.primary.port.to_string())
            .arg("-D")
            .arg(&s.pg_data)
            .stdin(Stdio::null())
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            s.pg_data.join("standby.signal").exists(),
            "pg_basebackup -R wrote no standby.signal"
        );
        s.append_conf(&format!(
            "\n# --- standby settings written by the Standby test fixture ---\n\
             unix_socket_directories = '{}'\n\
             hot_standby = on\n\
             wal_receiver_status_interval = 1s\n",
            s.socket_dir.display()
        ));

        let mut up = false;
        for attempt in 0..5 {
            s.port = free_port();
            if s.try_start() {
                up = true;
                break;
            }
            eprintln!(
                "standby did not start on port {} (attempt {attempt})",
                s.port
            );
            s.stop();
        }
        assert!(up, "standby did not start; log:\n{}", s.log_tail());

        let url = s.url();
        let streaming = wait_until(START_LIMIT, || {
            let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls) else {
                return false;
            };
            c.query_one(
                "select pg_is_in_recovery() and exists \
                 (select 1 from pg_stat_wal_receiver where status = 'streaming')",
                &[],
            )
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false)
        });
        assert!(
            streaming,
            "standby on port {} is not streaming from the primary; log:\n{}",
            s.port,
            s.log_tail()
        );
        eprintln!(
            "standby of 127.0.0.1:{} on 127.0.0.1:{} ready in {:?}",
            s.primary.port,
            s.port,
            started.elapsed()
        );
        s
    }

    /// A PostgreSQL program (from the primary's bin dir) run as the server's OS user.
    fn pg(&self, program: &Path) -> Command {
        self.primary.as_pg(&self.primary.pg_bin.join(program))
    }

    fn append_conf(&self, text: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.pg_data.join("postgresql.conf"))
            .expect("open the standby's postgresql.conf");
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Starts the server on `self.port`; true when it is up and it is ours on that port.
    fn try_start(&self) -> bool {
        self.append_conf(&format!("port = {}\n", self.port));
        let st = self
            .pg(Path::new("pg_ctl"))
            .arg("start")
            .arg("-D")
            .arg(&self.pg_data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl start");
        if !st.success() {
            return false;
        }
        // line 4 of postmaster.pid: the port this postmaster listens on
        let pid_file = fs::read_to_string(self.pg_data.join("postmaster.pid")).unwrap_or_default();
        if pid_file.lines().nth(3) != Some(self.port.to_string().as_str()) {
            return false;
        }
        let url = self.url();
        wait_until(Duration::from_secs(10), || {
            postgres::Client::connect(&url, postgres::NoTls).is_ok()
        })
    }

    /// `pg_ctl stop -m immediate`; kill -9 of the postmaster when that fails.
    fn stop(&self) {
        let pid_path = self.pg_data.join("postmaster.pid");
        if !pid_path.exists() {
            return;
        }
        let st = self
            .pg(Path::new("pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(&self.pg_data)
            .args(["-m", "immediate", "-w", "-t", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !st.map(|st| st.success()).unwrap_or(false) {
            let pid = fs::read_to_string(&pid_path).unwrap_or_default();
            if let Some(pid) = pid.lines().next().filter(|p| !p.is_empty()) {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Superuser URL of the standby's `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// Superuser URL of database `db` on the standby.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Superuser URL of database `db` on the primary.
    pub fn primary_url_for(&self, db: &str) -> String {
        self.primary.url_for(db)
    }

    /// A session on the primary's `postgres` database.
    pub fn primary_client(&self) -> postgres::Client {
        connect_retry(&self.primary.url)
    }

    /// A session on the standby's `postgres` database.
    pub fn standby_client(&self) -> postgres::Client {
        connect_retry(&self.url())
    }

    /// `pg_wal_replay_pause()` on the standby, then waits until replay is paused
    /// (`pg_get_wal_replay_pause_state()` = 'paused').
    pub fn pause_replay(&self) {
        let mut c = self.standby_client();
        c.batch_execute("select pg_wal_replay_pause()").unwrap();
        let ok = wait_until(WAIT_LIMIT, || self.replay_pause_state(&mut c) == "paused");
        assert!(ok, "standby replay did not pause within {WAIT_LIMIT:?}");
    }

    /// `pg_wal_replay_resume()` on the standby, then waits until replay is no longer paused.
    pub fn resume_replay(&self) {
        let mut c = self.standby_client();
        c.batch_execute("select pg_wal_replay_resume()").unwrap();
        let ok = wait_until(WAIT_LIMIT, || {
            self.replay_pause_state(&mut c) == "not paused"
        });
        assert!(ok, "standby replay did not resume within {WAIT_LIMIT:?}");
    }

    /// True when replay on the standby is paused (`pg_is_wal_replay_paused()`).
    pub fn replay_paused(&self) -> bool {
        self.standby_client()
            .query_one("select pg_is_wal_replay_paused()", &[])
            .unwrap()
            .get(0)
    }

    fn replay_pause_state(&self, c: &mut postgres::Client) -> String {
        c.query_one("select pg_get_wal_replay_pause_state()", &[])
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_default()
    }

    /// Where the primary's WAL ends now, as text (`X/Y`): `pg_current_wal_insert_lsn()`,
    /// moved back over a page header it may point past. Not `pg_current_wal_lsn()` (the
    /// write position): PrivateCluster runs with `synchronous_commit = off`, so a commit
    /// may not be written yet when it returns.
    pub fn primary_wal_end(&self) -> String {
        let row = self
            .primary_client()
            .query_one(
                "select pg_current_wal_insert_lsn()::text, \
                 current_setting('wal_block_size')::bigint, \
                 pg_size_bytes(current_setting('wal_segment_size'))",
                &[],
            )
            .unwrap();
        let lsn = parse_lsn(row.get(0));
        let (page, seg) = (row.get::<_, i64>(1) as u64, row.get::<_, i64>(2) as u64);
        // the insert position of the next record skips the header of a new page (24 bytes)
        // or segment (40 bytes); a replayed record ends before it
        let end = if lsn % seg == 40 {
            lsn - 40
        } else if lsn % page == 24 {
            lsn - 24
        } else {
            lsn
        };
        format!("{:X}/{:X}", end >> 32, end & 0xFFFF_FFFF)
    }

    /// Waits until the standby replayed everything the primary had written when this was
    /// called (its `pg_last_wal_replay_lsn()` >= [`Self::primary_wal_end`]). Panics after
    /// 30 s (e.g. when replay is paused).
    pub fn wait_caught_up(&self) {
        self.wait_standby_lsn("pg_last_wal_replay_lsn()");
    }

    /// Waits until the standby received (not necessarily replayed) everything the primary
    /// had written when this was called (`pg_last_wal_receive_lsn()`).
    pub fn wait_received(&self) {
        self.wait_standby_lsn("pg_last_wal_receive_lsn()");
    }

    fn wait_standby_lsn(&self, which: &str) {
        let target = self.primary_wal_end();
        let mut c = self.standby_client();
        let ok = wait_until(WAIT_LIMIT, || {
            c.query_one(
                &format!("select coalesce({which} >= $1::text::pg_lsn, false)"),
                &[&target],
            )
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false)
        });
        let at: Option<String> = c
            .query_one(&format!("select {which}::text"), &[])
            .ok()
            .and_then(|r| r.get(0));
        assert!(
            ok,
            "standby's {which} did not reach {target} within {WAIT_LIMIT:?} (it is at {at:?})"
        );
    }

    /// `CREATE DATABASE db` on the primary, then waits until the standby has it and accepts
    /// sessions on it.
    pub fn create_db(&self, db: &str) {
        self.primary_client()
            .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE template0"))
            .unwrap();
        let url = self.url_for(db);
        let ok = wait_until(WAIT_LIMIT, || {
            postgres::Client::connect(&url, postgres::NoTls)
                .and_then(|mut c| c.simple_query("select 1"))
                .is_ok()
        });
        assert!(
            ok,
            "database {db} did not appear on the standby within {WAIT_LIMIT:?}"
        );
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop();
        // `dir` (the standby's files) and then `primary` are removed by their own drops
    }
}

/// `X/Y` (hex) as a 64-bit WAL position.
fn parse_lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').expect("an LSN X/Y");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// `postgres::Client::connect`, retried for up to 20 s.
fn connect_retry(url: &str) -> postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match postgres::Client::connect(url, postgres::NoTls) {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect {url}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("cannot connect to {url}: {e}"),
        }
    }
}
