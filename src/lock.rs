//! Per-job run locks in Redis: taken with `SET NX PX` on the run's state connection, renewed
//! by one keeper thread per run (with a connection of its own, so a long statement on M or A
//! never lets the lock lapse), released only by their holder, and freed by expiry when a
//! holder dies. A lock left by a dead process on this host is taken over at once.
//!
//! The scripts go with `EVAL` (not `EVALSHA`): a cluster routes them by their key and no
//! script has to be loaded on every node first.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Result, rd};
use crate::redis_conn::{RedisConn, RedisTarget};
use crate::state::Keys;

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";
const STEAL: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 else return 0 end";

/// A held lock: release it with [`release`].
pub struct JobLock {
    key: String,
    token: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
}

impl JobLock {
    /// False once renewal failed for longer than the lock lives: another runner may have it.
    pub fn still_held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
    }
}

pub enum Acquired {
    Held(JobLock),
    /// Another runner holds it.
    Busy(Holder),
}

/// Who holds a lock: its value, `host@pid-namespace/pid/start-ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder(pub String);

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = self.0.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next().and_then(|t| t.parse::<u64>().ok()),
        ) {
            (Some(host), Some(pid), Some(ms)) => {
                let host = host.split('@').next().unwrap_or(host);
                let since = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_millis(ms),
                );
                write!(f, "pid {pid} on host {host}, since {since}")
            }
            _ => write!(f, "{}", self.0),
        }
    }
}

fn eval(script: &str, key: &str) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(script).arg(1).arg(key);
    c
}

/// Who holds the lock of `job` now, if anyone (for `status`).
pub fn holder(conn: &mut RedisConn, keys: &Keys, job: &str) -> Result<Option<Holder>> {
    let value: Option<String> = redis::cmd("GET")
        .arg(keys.lock(job))
        .query(conn)
        .map_err(rd("reading the job lock"))?;
    Ok(value.map(Holder))
}

/// Tries once to take the lock of `job`.
pub fn acquire(conn: &mut RedisConn, keys: &Keys, job: &str, ttl: Duration) -> Result<Acquired> {
    let key = keys.lock(job);
    let token = format!(
        "{}/{}/{}",
        hostname(),
        std::process::id(),
        crate::state::now_ms()
    );
    let ttl_ms = ttl.as_millis() as u64;
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&token)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .query(conn)
        .map_err(rd("taking the job lock"))?;
    if set.is_none() {
        let holder: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query(conn)
            .map_err(rd("reading the job lock"))?;
        let holder = Holder(holder.unwrap_or_default());
        if !holder_is_dead_here(&holder.0) {
            return Ok(Acquired::Busy(holder));
        }
        let stolen: i64 = eval(STEAL, &key)
            .arg(&holder.0)
            .arg(&token)
            .arg(ttl_ms)
            .query(conn)
            .map_err(rd("taking over a dead runner's job lock"))?;
        if stolen != 1 {
            return Ok(Acquired::Busy(holder));
        }
        log::warn!("took over the lock left by a runner that is no longer alive ({holder})");
    }
    Ok(Acquired::Held(JobLock {
        key,
        token,
        ttl,
        lost: Arc::new(AtomicBool::new(false)),
    }))
}

/// Releases `lock` if this runner still holds it; a failure only means it expires by itself.
pub fn release(conn: &mut RedisConn, lock: JobLock) {
    let released: redis::RedisResult<i64> = eval(RELEASE, &lock.key).arg(&lock.token).query(conn);
    if let Err(e) = released {
        log::warn!("cannot release the job lock (it expires by itself): {e}");
    }
}

/// The run's lock renewer: one thread that renews whichever lock the run holds every third
/// of its lifetime.
pub struct LockKeeper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<Watched>,
    wake: Condvar,
}

#[derive(Default)]
struct Watched {
    lock: Option<Renewal>,
    stop: bool,
}

struct Renewal {
    key: String,
    token: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    /// the last successful renewal (or the taking)
    renewed: Instant,
    /// when to try next
    next: Instant,
}

impl LockKeeper {
    /// Starts the keeper; it connects to `redis_url` when it first has a lock to renew.
    pub fn start(redis_url: &str) -> LockKeeper {
        let shared = Arc::new(Shared {
            state: Mutex::new(Watched::default()),
            wake: Condvar::new(),
        });
        let url = redis_url.to_string();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("elt-lock".into())
            .spawn(move || renew_loop(&s, &url))
            .ok();
        LockKeeper { shared, thread }
    }

    /// Renews `lock` from now on, until `unwatch`.
    pub fn watch(&self, lock: &JobLock) {
        if let Ok(mut w) = self.shared.state.lock() {
            w.lock = Some(Renewal {
                key: lock.key.clone(),
                token: lock.token.clone(),
                ttl: lock.ttl,
                lost: lock.lost.clone(),
                renewed: Instant::now(),
                next: Instant::now() + lock.ttl / 3,
            });
        }
        self.shared.wake.notify_all();
    }

    pub fn unwatch(&self) {
        if let Ok(mut w) = self.shared.state.lock() {
            w.lock = None;
        }
        self.shared.wake.notify_all();
    }
}

impl Drop for LockKeeper {
    fn drop(&mut self) {
        if let Ok(mut w) = self.shared.state.lock() {
            w.stop = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn renew_loop(shared: &Shared, url: &str) {
    let mut conn: Option<RedisConn> = None;
    let Ok(mut w) = shared.state.lock() else {
        return;
    };
    loop {
        if w.stop {
            return;
        }
        let due = w.lock.as_ref().map(|r| (r.next, r.ttl));
        let Some((at, ttl)) = due else {
            w = match shared.wake.wait(w) {
                Ok(g) => g,
                Err(_) => return,
            };
            continue;
        };
        let now = Instant::now();
        if now < at {
            w = match shared.wake.wait_timeout(w, at - now) {
                Ok((g, _)) => g,
                Err(_) => return,
            };
            continue;
        }
        let Some(r) = w.lock.as_mut() else { continue };
        let (key, token, lost) = (r.key.clone(), r.token.clone(), r.lost.clone());
        // not holding the state while talking to Redis: the run may release meanwhile
        drop(w);
        let renewed = renew(&mut conn, url, &key, &token, ttl);
        w = match shared.state.lock() {
            Ok(g) => g,
            Err(_) => return,
        };
        let Some(r) = w.lock.as_mut().filter(|r| r.token == token) else {
            continue;
        };
        match renewed {
            Ok(true) => {
                r.renewed = Instant::now();
                r.next = r.renewed + ttl / 3;
            }
            Ok(false) => {
                log::error!("the job lock was lost (expired or taken by another runner)");
                lost.store(true, Ordering::SeqCst);
                w.lock = None;
            }
            Err(e) => {
                log::warn!("cannot renew the job lock: {e}");
                conn = None;
                if r.renewed.elapsed() >= ttl {
                    lost.store(true, Ordering::SeqCst);
                    w.lock = None;
                } else {
                    // try again soon, not only after another third of the lifetime
                    r.next = Instant::now() + Duration::from_millis(500).min(ttl / 6);
                }
            }
        }
    }
}

fn renew(
    conn: &mut Option<RedisConn>,
    url: &str,
    key: &str,
    token: &str,
    ttl: Duration,
) -> redis::RedisResult<bool> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(RedisTarget::parse(url)?.connect()?),
    };
    let n: i64 = eval(RENEW, key)
        .arg(token)
        .arg(ttl.as_millis() as u64)
        .query(c)?;
    Ok(n == 1)
}

/// The host name plus the PID namespace, so containers sharing a host name never mistake
/// each other's live processes for dead ones.
fn hostname() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    match std::fs::read_link("/proc/self/ns/pid") {
        // "pid:[4026531836]" -> "host@4026531836"
        Ok(ns) => {
            let ns = ns.to_string_lossy();
            let id: String = ns.chars().filter(char::is_ascii_digit).collect();
            format!("{host}@{id}")
        }
        Err(_) => host,
    }
}

/// True when `holder` (`host/pid/...`) is a process on this host that no longer runs elt.
fn holder_is_dead_here(holder: &str) -> bool {
    let mut parts = holder.split('/');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    let proc_dir = std::path::Path::new("/proc");
    if !proc_dir.join("self").exists() {
        return false; // no procfs: cannot tell, wait for expiry
    }
    match std::fs::read_to_string(proc_dir.join(pid.to_string()).join("comm")) {
        Err(_) => true,
        Ok(comm) => {
            let ours = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "elt".into());
            // comm is cut to 15 bytes
            let ours: String = ours.chars().take(15).collect();
            comm.trim() != ours
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_read_as_host_pid_and_time() {
        let h = Holder("db1@4026531836/4242/1764676800000".into());
        assert_eq!(
            h.to_string(),
            "pid 4242 on host db1, since 2025-12-02T12:00:00Z"
        );
        assert_eq!(Holder("someone".into()).to_string(), "someone");
    }
}
