//! The per-job run lock in Redis: taken with `SET NX PX`, renewed by a background thread
//! while the job works, released only by its holder, and freed by expiry when a holder dies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, rd};
use crate::state::job_key;

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";
const STEAL: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 else return 0 end";

/// A held lock; dropping it stops renewal and releases it.
pub struct JobLock {
    client: redis::Client,
    key: String,
    token: String,
    stop: Option<mpsc::Sender<()>>,
    lost: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

pub enum Acquired {
    Held(Box<JobLock>),
    /// Another runner holds it; the value names that runner (`host/pid/...`).
    Busy(String),
}

impl JobLock {
    /// Tries once to take the lock of `job`. A lock left by a dead process on this host is
    /// taken over at once instead of waiting for it to expire.
    pub fn acquire(redis_url: &str, prefix: &str, job: &str, ttl: Duration) -> Result<Acquired> {
        let client =
            crate::redis_conn::client(redis_url).map_err(|source| Error::RedisConnect {
                url: crate::redact::mask(redis_url),
                source,
            })?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(10))
            .map_err(|source| Error::RedisConnect {
                url: crate::redact::mask(redis_url),
                source,
            })?;
        let key = job_key(prefix, job, "lock");
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
            .query(&mut conn)
            .map_err(rd("taking the job lock"))?;
        if set.is_none() {
            let holder: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query(&mut conn)
                .map_err(rd("reading the job lock"))?;
            let holder = holder.unwrap_or_default();
            if !holder_is_dead_here(&holder) {
                return Ok(Acquired::Busy(holder));
            }
            let stolen: i64 = redis::Script::new(STEAL)
                .key(&key)
                .arg(&holder)
                .arg(&token)
                .arg(ttl_ms)
                .invoke(&mut conn)
                .map_err(rd("taking over a dead runner's job lock"))?;
            if stolen != 1 {
                return Ok(Acquired::Busy(holder));
            }
            log::warn!("took over the lock left by a runner that is no longer alive ({holder})");
        }
        let (stop, stopped) = mpsc::channel();
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (lost, key, token) = (lost.clone(), key.clone(), token.clone());
            std::thread::Builder::new()
                .name("elt-lock".into())
                .spawn(move || renew_loop(conn, &key, &token, ttl, &stopped, &lost))
                .map_err(crate::error::io("starting the lock renewal thread"))?
        };
        Ok(Acquired::Held(Box::new(JobLock {
            client,
            key,
            token,
            stop: Some(stop),
            lost,
            renewer: Some(renewer),
        })))
    }

    /// False once renewal failed for longer than the lock lives: another runner may have it.
    pub fn still_held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
    }
}

fn renew_loop(
    mut conn: redis::Connection,
    key: &str,
    token: &str,
    ttl: Duration,
    stop: &mpsc::Receiver<()>,
    lost: &AtomicBool,
) {
    let every = ttl / 3;
    let mut last_ok = Instant::now();
    // Wakes every third of the lifetime; a message or a closed channel means stop.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let renewed: redis::RedisResult<i64> = redis::Script::new(RENEW)
            .key(key)
            .arg(token)
            .arg(ttl.as_millis() as u64)
            .invoke(&mut conn);
        match renewed {
            Ok(1) => last_ok = Instant::now(),
            Ok(_) => {
                log::error!("the job lock was lost (expired or taken by another runner)");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                log::warn!("cannot renew the job lock: {e}");
                if last_ok.elapsed() >= ttl {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
        let released = self
            .client
            .get_connection_with_timeout(Duration::from_secs(5))
            .and_then(|mut c| {
                redis::Script::new(RELEASE)
                    .key(&self.key)
                    .arg(&self.token)
                    .invoke::<i64>(&mut c)
            });
        if let Err(e) = released {
            log::warn!("cannot release the job lock (it expires by itself): {e}");
        }
    }
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
