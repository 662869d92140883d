//! Redis set-ups of production: a Sentinel-watched master with replicas, and a Redis
//! Cluster of three masters. Every server is a plain `redis-server` child process run from
//! its own config file in the fixture's temp dir on free 127.0.0.1 ports.
//!
//! Uses from the enclosing support module: `free_port` and `wait_until`. Needs the `redis`
//! (plain connections only: no `cluster`/`sentinel` features) and `tempfile` crates, and
//! Debian's redis-server (which runs as a sentinel with `--sentinel`) and redis-cli.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, wait_until};

/// How long a fixture may take to be up (all nodes, replication, discovery).
const START_LIMIT: Duration = Duration::from_secs(30);

// --- one redis-server ----------------------------------------------------------------------

/// What a [`RedisNode`] is.
enum Kind {
    /// A data node; `Some(port)`: a replica of 127.0.0.1:port.
    Data { replica_of: Option<u16> },
    /// A sentinel monitoring `mymaster` at 127.0.0.1:port (with `auth_pass` for it).
    Sentinel {
        master: u16,
        auth_pass: Option<String>,
    },
    /// A cluster node (its bus port, `cluster-port`, is picked free as well).
    Cluster,
}

/// One redis-server (data node, sentinel or cluster node) of a fixture.
pub struct RedisNode {
    pub name: String,
    pub port: u16,
    /// Cluster bus port (`cluster-port`) of a cluster node, else 0.
    pub bus_port: u16,
    /// Its working dir (config file, log, nodes.conf).
    pub dir: PathBuf,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisNode {
    /// `password`: what clients AUTH with (a data node's `requirepass`).
    fn start(root: &Path, name: &str, kind: &Kind, password: Option<&str>) -> RedisNode {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        let mut n = RedisNode {
            name: name.to_string(),
            port: 0,
            bus_port: 0,
            dir,
            password: password.map(String::from),
            child: None,
        };
        for attempt in 0..5 {
            n.port = free_port();
            n.bus_port = match kind {
                Kind::Cluster => loop {
                    let p = free_port();
                    if p != n.port {
                        break p;
                    }
                },
                _ => 0,
            };
            if n.spawn(kind) {
                return n;
            }
            eprintln!(
                "redis {name} did not start on port {} (attempt {attempt})",
                n.port
            );
        }
        panic!("redis {name} did not start; log:\n{}", n.log_tail());
    }

    fn conf(&self, kind: &Kind) -> String {
        let d = self.dir.display();
        let mut c = format!(
            "port {}\nbind 127.0.0.1\ndaemonize no\ndir \"{d}\"\nlogfile \"{d}/redis.log\"\n",
            self.port
        );
        match kind {
            Kind::Sentinel { master, auth_pass } => {
                c += &format!(
                    "sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 1000\n\
                     sentinel failover-timeout {SERVICE} 5000\n\
                     sentinel parallel-syncs {SERVICE} 2\n"
                );
                if let Some(pw) = auth_pass {
                    c += &format!("sentinel auth-pass {SERVICE} {pw}\n");
                }
            }
            Kind::Data { replica_of } => {
                c += "save \"\"\nappendonly no\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\n";
                if let Some(m) = replica_of {
                    c += &format!("replicaof 127.0.0.1 {m}\n");
                }
                if let Some(pw) = &self.password {
                    c += &format!("requirepass {pw}\nmasterauth {pw}\n");
                }
            }
            Kind::Cluster => {
                c += &format!(
                    "save \"\"\nappendonly no\ncluster-enabled yes\n\
                     cluster-config-file nodes.conf\ncluster-port {}\n\
                     cluster-node-timeout 2000\n",
                    self.bus_port
                );
            }
        }
        c
    }

    /// Starts it on `self.port`; true when the server answering there is our child.
    fn spawn(&mut self, kind: &Kind) -> bool {
        self.kill();
        let _ = fs::remove_file(self.dir.join("nodes.conf"));
        let conf = self.dir.join("redis.conf");
        fs::write(&conf, self.conf(kind)).unwrap();
        let mut c = Command::new("redis-server");
        c.arg(&conf);
        if matches!(kind, Kind::Sentinel { .. }) {
            c.arg("--sentinel");
        }
        let child = c
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let pid = child.id().to_string();
        self.child = Some(child);
        let mut ours = false;
        wait_until(Duration::from_secs(10), || {
            if !self.alive() {
                return true; // it gave up (e.g. a port taken)
            }
            let served = self
                .connection()
                .and_then(|mut con| redis::cmd("INFO").arg("server").query::<String>(&mut con))
                .map(|info| info_field(&info, "process_id").unwrap_or_default())
                .unwrap_or_default();
            ours = served == pid;
            ours
        });
        if ours && self.alive() {
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

    /// SIGKILL (nothing saved) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://[:password@]127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// A connection (with a 5 s connect timeout and 10 s read timeout).
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let con =
            redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(5))?;
        con.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(con)
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Value of `field` in an `INFO` reply.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix(&format!("{field}:")))
        .map(String::from)
}

/// What `ROLE` says: ("master", None, "") or ("slave", Some(master port), link state).
pub fn role(con: &mut redis::Connection) -> redis::RedisResult<(String, Option<u16>, String)> {
    let v: Vec<redis::Value> = redis::cmd("ROLE").query(con)?;
    let text = |i: usize| -> String {
        v.get(i)
            .and_then(|x| redis::from_redis_value_ref::<String>(x).ok())
            .unwrap_or_default()
    };
    let role = text(0);
    if role == "slave" {
        let port = v
            .get(2)
            .and_then(|x| redis::from_redis_value_ref::<i64>(x).ok())
            .and_then(|p| u16::try_from(p).ok());
        return Ok((role, port, text(3)));
    }
    Ok((role, None, String::new()))
}

// --- Sentinel ------------------------------------------------------------------------------

/// The service name the sentinels monitor.
pub const SERVICE: &str = "mymaster";

/// One master, two replicas (`replicaof`) and three sentinels (`redis-server FILE
/// --sentinel`) monitoring [`SERVICE`] with quorum 2, `down-after-milliseconds 1000` and
/// `failover-timeout 5000`. Sentinels rewrite their config files (myid, known replicas and
/// sentinels, epochs): each has its own, writable. All killed and removed on drop.
pub struct Sentinel {
    /// Dropped first (field order), so no sentinel reacts to the data nodes going away.
    pub sentinels: Vec<RedisNode>,
    /// Data nodes; `data[0]` was the master at start.
    pub data: Vec<RedisNode>,
    /// `requirepass`/`masterauth` of the data nodes (the sentinels have none).
    pub password: Option<String>,
    /// Removed after every server is gone.
    pub dir: tempfile::TempDir,
}

impl Sentinel {
    /// Without passwords.
    pub fn start() -> Sentinel {
        Self::start_with(None)
    }

    /// `password`: `requirepass` and `masterauth` on the data nodes, `sentinel auth-pass`
    /// on the sentinels.
    pub fn start_with(password: Option<&str>) -> Sentinel {
        let started = Instant::now();
        let mut s = Sentinel {
            dir: tempfile::Builder::new()
                .prefix("elt-sentinel-")
                .tempdir()
                .unwrap(),
            data: Vec::new(),
            sentinels: Vec::new(),
            password: password.map(String::from),
        };
        let root = s.dir.path().to_path_buf();
        let master = RedisNode::start(&root, "data0", &Kind::Data { replica_of: None }, password);
        let mport = master.port;
        s.data.push(master);
        for i in 1..=2 {
            let kind = Kind::Data {
                replica_of: Some(mport),
            };
            s.data.push(RedisNode::start(
                &root,
                &format!("data{i}"),
                &kind,
                password,
            ));
        }
        // replicas in sync before the sentinels look, so they list them at once
        let synced = wait_until(START_LIMIT, || {
            s.data[1..].iter().all(|r| {
                r.connection()
                    .and_then(|mut c| role(&mut c))
                    .map(|(role, port, state)| {
                        role == "slave" && port == Some(mport) && state == "connected"
                    })
                    .unwrap_or(false)
            })
        });
        assert!(synced, "the replicas did not sync with the master");
        for i in 0..3 {
            let kind = Kind::Sentinel {
                master: mport,
                auth_pass: password.map(String::from),
            };
            // the sentinels themselves take no password
            s.sentinels.push(RedisNode::start(
                &root,
                &format!("sentinel{i}"),
                &kind,
                None,
            ));
        }
        // every sentinel knows the master, both replicas and the two other sentinels
        let master_addr = s.data[0].addr();
        let ready = wait_until(START_LIMIT, || {
            s.sentinels
                .iter()
                .all(|n| sentinel_ready(n, &master_addr, 2, 2))
        });
        assert!(
            ready,
            "the sentinels did not discover the master, its replicas and each other; log:\n{}",
            s.sentinels[0].log_tail()
        );
        eprintln!(
            "sentinel set-up (master {master_addr}, sentinels {}) ready in {:?}",
            s.sentinel_addrs(),
            started.elapsed()
        );
        s
    }

    /// The sentinels as `HOST:PORT,HOST:PORT,HOST:PORT`.
    pub fn sentinel_addrs(&self) -> String {
        let addrs: Vec<String> = self.sentinels.iter().map(RedisNode::addr).collect();
        addrs.join(",")
    }

    /// The master's address (`HOST:PORT`) as the first sentinel reports it.
    pub fn master_addr(&self) -> String {
        sentinel_master(&self.sentinels[0]).expect("ask the sentinel for the master")
    }

    /// The data node that is master now (as the sentinels report it).
    pub fn master_node(&self) -> &RedisNode {
        let addr = self.master_addr();
        self.data
            .iter()
            .find(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("the sentinels name {addr}, which is none of ours"))
    }

    /// `redis://[:password@]HOST:PORT/0` of the current master.
    pub fn master_url(&self) -> String {
        self.master_node().url()
    }

    /// A connection to the current master.
    pub fn master(&self) -> redis::Connection {
        self.master_node()
            .connection()
            .expect("connect to the master")
    }

    /// `WAIT replicas 5000` on the master: true when every replica acknowledged all its
    /// writes so far.
    pub fn sync_replicas(&self) -> bool {
        let n = (self.data.len() - 1) as i64;
        let acked: i64 = redis::cmd("WAIT")
            .arg(n)
            .arg(5000)
            .query(&mut self.master())
            .expect("WAIT on the master");
        acked >= n
    }

    /// `SENTINEL FAILOVER mymaster` (after making sure the replicas hold all the master
    /// had), then waits until every sentinel names the same new master, that server says
    /// `ROLE` master and every other data node, the old master included, is a connected
    /// replica of it. Returns the new master's address.
    pub fn failover(&self) -> String {
        let started = Instant::now();
        let old = self.master_addr();
        assert!(
            self.sync_replicas(),
            "the replicas did not acknowledge the master's writes"
        );
        // the sentinel may not yet consider a replica good (NOGOODSLAVE): retry a while
        let mut last_err = String::new();
        let asked = wait_until(Duration::from_secs(20), || {
            let r: redis::RedisResult<String> = self.sentinels[0].connection().and_then(|mut c| {
                redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg(SERVICE)
                    .query(&mut c)
            });
            match r {
                Ok(_) => true,
                Err(e) => {
                    last_err = e.to_string();
                    std::thread::sleep(Duration::from_millis(200));
                    false
                }
            }
        });
        assert!(asked, "SENTINEL FAILOVER {SERVICE} failed: {last_err}");
        let mut new = String::new();
        let mut switched = None;
        let done = wait_until(Duration::from_secs(60), || {
            let named: Vec<Option<String>> = self.sentinels.iter().map(sentinel_master).collect();
            let Some(Some(first)) = named.first().cloned() else {
                return false;
            };
            if first == old || named.iter().any(|n| n.as_deref() != Some(first.as_str())) {
                return false;
            }
            new = first;
            switched.get_or_insert_with(|| started.elapsed());
            self.data.iter().all(|n| {
                let Ok((role, port, state)) = n.connection().and_then(|mut c| role(&mut c)) else {
                    return false;
                };
                if n.addr() == new {
                    role == "master"
                } else {
                    role == "slave"
                        && port.map(|p| format!("127.0.0.1:{p}")).as_deref() == Some(new.as_str())
                        && state == "connected"
                }
            })
        });
        assert!(
            done,
            "failover from {old} did not complete (sentinels name {:?}); sentinel log:\n{}",
            self.sentinels
                .iter()
                .map(sentinel_master)
                .collect::<Vec<_>>(),
            self.sentinels[0].log_tail()
        );
        // the sentinels switch within a second or two; the old master is told to replicate
        // only once it reported role master for 8 s (Sentinel's 4 x publish period)
        eprintln!(
            "failover {old} -> {new}: sentinels switched after {switched:?}, \
             every data node in place after {:?}",
            started.elapsed()
        );
        new
    }
}

/// The master address a sentinel reports for [`SERVICE`].
fn sentinel_master(n: &RedisNode) -> Option<String> {
    let mut c = n.connection().ok()?;
    let v: Option<Vec<String>> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(SERVICE)
        .query(&mut c)
        .ok()?;
    match v.as_deref() {
        Some([host, port]) => Some(format!("{host}:{port}")),
        _ => None,
    }
}

/// True when sentinel `n` names `master`, sees `replicas` healthy replicas and `others`
/// other sentinels, and `SENTINEL CKQUORUM` is OK.
fn sentinel_ready(n: &RedisNode, master: &str, replicas: usize, others: usize) -> bool {
    if sentinel_master(n).as_deref() != Some(master) {
        return false;
    }
    let Ok(mut c) = n.connection() else {
        return false;
    };
    let list = |c: &mut redis::Connection, what: &str| -> Vec<HashMap<String, String>> {
        redis::cmd("SENTINEL")
            .arg(what)
            .arg(SERVICE)
            .query(c)
            .unwrap_or_default()
    };
    let healthy = |m: &HashMap<String, String>| {
        m.get("flags")
            .map(|f| !f.contains("down") && !f.contains("disconnected"))
            .unwrap_or(false)
    };
    let good_replicas = list(&mut c, "REPLICAS")
        .iter()
        .filter(|m| healthy(m) && m.get("master-link-status").map(String::as_str) == Some("ok"))
        .count();
    let good_sentinels = list(&mut c, "SENTINELS")
        .iter()
        .filter(|m| healthy(m))
        .count();
    let quorum: redis::RedisResult<String> = redis::cmd("SENTINEL")
        .arg("CKQUORUM")
        .arg(SERVICE)
        .query(&mut c);
    good_replicas >= replicas && good_sentinels >= others && quorum.is_ok()
}

// --- Redis Cluster -------------------------------------------------------------------------

/// Three cluster masters (`cluster-enabled yes`, own nodes.conf, explicit `cluster-port`
/// bus ports picked free rather than PORT+10000), joined with
/// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`. Killed and removed
/// on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisNode>,
    /// Removed after every server is gone (field order).
    pub dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let started = Instant::now();
        let mut rc = RedisCluster {
            dir: tempfile::Builder::new()
                .prefix("elt-rcluster-")
                .tempdir()
                .unwrap(),
            nodes: Vec::new(),
        };
        let root = rc.dir.path().to_path_buf();
        for i in 0..3 {
            rc.nodes.push(RedisNode::start(
                &root,
                &format!("node{i}"),
                &Kind::Cluster,
                None,
            ));
        }
        let out = Command::new("timeout")
            .arg("60")
            .arg("redis-cli")
            .args(["--cluster", "create"])
            .args(rc.nodes.iter().map(RedisNode::addr))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ok = wait_until(START_LIMIT, || {
            rc.nodes.iter().all(|n| {
                let info: String = match n
                    .connection()
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
                {
                    Ok(i) => i,
                    Err(_) => return false,
                };
                info_field(&info, "cluster_state").as_deref() == Some("ok")
                    && info_field(&info, "cluster_slots_ok").as_deref() == Some("16384")
                    && info_field(&info, "cluster_known_nodes").as_deref() == Some("3")
            })
        });
        assert!(
            ok,
            "the cluster did not reach cluster_state:ok on every node"
        );
        eprintln!(
            "redis cluster {} ready in {:?}",
            rc.seeds(),
            started.elapsed()
        );
        rc
    }

    /// The seed list `HOST:PORT,HOST:PORT,HOST:PORT`.
    pub fn seeds(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(RedisNode::addr).collect();
        addrs.join(",")
    }

    /// `redis://HOST:PORT` of every node (what a cluster client takes as seeds).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://{}", n.addr()))
            .collect()
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        let mut c = self.nodes[0]
            .connection()
            .expect("connect to a cluster node");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .unwrap();
        slot as u16
    }

    /// The node serving `slot`: the one whose own line (`myself`) in `CLUSTER NODES`
    /// lists it.
    pub fn node_for_slot(&self, slot: u16) -> &RedisNode {
        self.nodes
            .iter()
            .find(|n| own_slots(n).iter().any(|&(a, b)| a <= slot && slot <= b))
            .unwrap_or_else(|| panic!("no node serves slot {slot}"))
    }

    /// The node serving `key`.
    pub fn node_for_key(&self, key: &str) -> &RedisNode {
        self.node_for_slot(self.slot_of(key))
    }

    /// A plain connection to the node serving `key` (commands on keys of that slot work
    /// there; others answer MOVED).
    pub fn connection_for_key(&self, key: &str) -> redis::Connection {
        self.node_for_key(key)
            .connection()
            .expect("connect to the node of the key")
    }

    /// `GET key` on the node serving it.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.connection_for_key(key))
            .unwrap()
    }

    /// `SET key value` on the node serving it.
    pub fn set(&self, key: &str, value: &[u8]) {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query(&mut self.connection_for_key(key))
            .unwrap();
    }

    /// Every key matching `pattern` on every node (SCAN), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut all = Vec::new();
        for n in &self.nodes {
            let mut c = n.connection().expect("connect to a cluster node");
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut c)
                    .unwrap();
                all.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        all.sort();
        all
    }
}

/// The slot ranges node `n` serves, from its own line of `CLUSTER NODES`.
fn own_slots(n: &RedisNode) -> Vec<(u16, u16)> {
    let Ok(mut c) = n.connection() else {
        return Vec::new();
    };
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut c)
        .unwrap_or_default();
    let Some(line) = text
        .lines()
        .find(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("myself")))
    else {
        return Vec::new();
    };
    line.split(' ')
        .skip(8)
        .filter(|f| !f.starts_with('[')) // slots being migrated
        .filter_map(|f| match f.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => f.parse().ok().map(|s| (s, s)),
        })
        .collect()
}
