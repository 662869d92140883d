//! Redis from a URL: one server (`redis://`, or `rediss://` over TLS), the master of a
//! Sentinel-monitored service (`redis+sentinel://`, asked of the Sentinels at every connect,
//! so a failover is followed), or a Redis Cluster (`redis+cluster://`), with a username and
//! password for AUTH/ACL users (`rediss://user:pass@host/0`).
//!
//! TLS (rustls, no system library) checks the server's certificate and name against the
//! operating system's CAs, or against the CAs of `?sslrootcert=PATH` (a PEM file, for a
//! private CA); `#insecure` encrypts without checking, like PostgreSQL's `sslmode=require`.

use std::sync::Once;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    ConnectionAddr, ConnectionLike, ErrorKind, RedisError, RedisResult, TlsCertificates, TlsMode,
    Value,
};

/// The query parameter naming a PEM file of trusted CAs (the name PostgreSQL uses).
const ROOT_CERT_PARAM: &str = "sslrootcert";
/// How long connecting (and each reply) may take before the operation fails.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Replies may take longer than connecting: a large `MGET` or `SCAN` page.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the state lives, as `--redis-url` says.
pub struct RedisTarget {
    kind: Target,
}

enum Target {
    Single(redis::Client),
    /// The Sentinels asked with the URL's credentials, and, when there are any, a client
    /// that asks them without (Sentinels often take no password while the master does).
    Sentinel(Box<SentinelClient>, Option<Box<SentinelClient>>),
    Cluster(ClusterClient),
}

impl RedisTarget {
    /// Reads `url`; nothing is connected yet.
    pub fn parse(url: &str) -> RedisResult<RedisTarget> {
        let kind = match url.split_once("://").map(|(s, _)| s) {
            Some("redis+sentinel" | "rediss+sentinel") => {
                let spec = Spec::parse(url)?;
                let open = match spec.username.is_some() || spec.password.is_some() {
                    true => Some(Box::new(sentinel(&spec, false)?)),
                    false => None,
                };
                Target::Sentinel(Box::new(sentinel(&spec, true)?), open)
            }
            Some("redis+cluster" | "rediss+cluster") => {
                Target::Cluster(cluster(&Spec::parse(url)?)?)
            }
            _ => Target::Single(single(url)?),
        };
        Ok(RedisTarget { kind })
    }

    /// True for a Redis Cluster: every key of a job then carries one hash tag.
    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Target::Cluster(_))
    }

    /// A new connection (through Sentinel: to the service's current master).
    pub fn connect(&mut self) -> RedisResult<RedisConn> {
        let conn = match &mut self.kind {
            Target::Single(c) => RedisConn::Node(c.get_connection_with_timeout(TIMEOUT)?),
            Target::Sentinel(s, open) => {
                let master = match (s.get_client(), open) {
                    (Ok(m), _) => m,
                    // Sentinels without a password refuse AUTH: ask them without it (the
                    // master still gets the credentials), and first from now on
                    (Err(e), Some(o)) if e.kind() == ErrorKind::AuthenticationFailed => {
                        let m = o.get_client().map_err(|_| e)?;
                        std::mem::swap(s, o);
                        m
                    }
                    (Err(e), _) => return Err(e),
                };
                RedisConn::Node(master.get_connection_with_timeout(TIMEOUT)?)
            }
            Target::Cluster(c) => RedisConn::Cluster(Box::new(c.get_connection()?)),
        };
        conn.set_timeouts()?;
        Ok(conn)
    }
}

/// A connection to one server or to a cluster; commands go through `ConnectionLike`.
pub enum RedisConn {
    Node(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl RedisConn {
    fn set_timeouts(&self) -> RedisResult<()> {
        match self {
            RedisConn::Node(c) => {
                c.set_read_timeout(Some(REPLY_TIMEOUT))?;
                c.set_write_timeout(Some(REPLY_TIMEOUT))
            }
            RedisConn::Cluster(c) => {
                c.set_read_timeout(Some(REPLY_TIMEOUT))?;
                c.set_write_timeout(Some(REPLY_TIMEOUT))
            }
        }
    }

    /// Runs `cmd` (a `SCAN`) where the keys are: on a cluster, on the master serving
    /// `slot_of` (a key carrying the hash tag of the keys scanned), or on every master when
    /// `slot_of` is `None` (then the replies come back one per node).
    pub fn scan_query(
        &mut self,
        cmd: &redis::Cmd,
        slot_of: Option<&str>,
    ) -> RedisResult<Vec<Value>> {
        match self {
            RedisConn::Node(c) => Ok(vec![cmd.query(c)?]),
            RedisConn::Cluster(c) => {
                let routing = match slot_of {
                    Some(key) => RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                        Route::with_key(key, SlotAddr::Master),
                    )),
                    None => RoutingInfo::MultiNode((
                        redis::cluster_routing::MultipleNodeRoutingInfo::AllMasters,
                        None,
                    )),
                };
                match c.route_command(cmd, routing)? {
                    Value::Map(per_node) if slot_of.is_none() => {
                        Ok(per_node.into_iter().map(|(_, v)| v).collect())
                    }
                    v => Ok(vec![v]),
                }
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            RedisConn::Node(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            RedisConn::Node(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Node(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            RedisConn::Node(c) => c.check_connection(),
            RedisConn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            RedisConn::Node(c) => c.is_open(),
            RedisConn::Cluster(c) => c.is_open(),
        }
    }
}

fn invalid(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what, detail))
}

/// `redis://` or `rediss://`: the redis crate reads the URL itself, but for `sslrootcert`.
fn single(url: &str) -> RedisResult<redis::Client> {
    let (url, root_cert) = split_root_cert(url);
    let Some(path) = root_cert else {
        if is_tls(&url) {
            install_crypto_provider();
        }
        return redis::Client::open(url.as_str());
    };
    if !is_tls(&url) {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "sslrootcert needs a rediss:// URL (TLS)",
        )));
    }
    install_crypto_provider();
    redis::Client::build_with_tls(url.as_str(), certificates(&path)?)
}

fn certificates(path: &str) -> RedisResult<TlsCertificates> {
    let pem = std::fs::read(path)
        .map_err(|e| invalid("cannot read sslrootcert", format!("{path}: {e}")))?;
    Ok(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    })
}

/// A `redis+sentinel://` or `redis+cluster://` URL taken apart.
#[derive(Debug, PartialEq)]
struct Spec {
    tls: Option<TlsMode>,
    username: Option<String>,
    password: Option<String>,
    hosts: Vec<(String, u16)>,
    /// the path's parts: SERVICE and DB for Sentinel
    path: Vec<String>,
    root_cert: Option<String>,
}

/// `%XX` escapes decoded; an empty part is absent.
fn decode(s: &str) -> Option<String> {
    Some(crate::percent::decode(s)).filter(|s| !s.is_empty())
}

/// `HOST:PORT[,HOST:PORT…]`, brackets around IPv6 addresses allowed.
fn hosts(list: &str) -> Result<Vec<(String, u16)>, &'static str> {
    list.split(',')
        .map(|h| {
            let (host, port) = h.rsplit_once(':').ok_or("each host needs a :PORT")?;
            let port = port.parse().map_err(|_| "a port is not a number")?;
            Ok((
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
            ))
        })
        .collect()
}

impl Spec {
    fn parse(url: &str) -> RedisResult<Spec> {
        let bad = |why: &str| {
            invalid(
                "invalid Redis URL",
                format!("{}: {why}", crate::redact::mask(url)),
            )
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (rest, insecure) = match rest.rsplit_once('#') {
            Some((r, "insecure")) => (r, true),
            Some(_) => return Err(bad("the only fragment known is #insecure")),
            None => (rest, false),
        };
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host_list, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, pass) = userinfo.map_or(("", ""), |u| u.split_once(':').unwrap_or((u, "")));
        let mut root_cert = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((ROOT_CERT_PARAM, v)) => root_cert = decode(v),
                _ => return Err(bad("the only query parameter known is sslrootcert")),
            }
        }
        let tls = scheme.starts_with("rediss").then_some(if insecure {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        });
        if root_cert.is_some() && tls.is_none() {
            return Err(bad("sslrootcert needs TLS (rediss+...)"));
        }
        Ok(Spec {
            tls,
            username: decode(user),
            password: decode(pass),
            hosts: hosts(host_list).map_err(bad)?,
            path: path
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            root_cert,
        })
    }

    fn addrs(&self) -> Vec<ConnectionAddr> {
        self.hosts
            .iter()
            .map(|(h, p)| match self.tls {
                Some(mode) => ConnectionAddr::TcpTls {
                    host: h.clone(),
                    port: *p,
                    insecure: mode == TlsMode::Insecure,
                    tls_params: None,
                },
                None => ConnectionAddr::Tcp(h.clone(), *p),
            })
            .collect()
    }
}

/// `redis+sentinel://[user:pass@]HOST:PORT[,HOST:PORT…]/SERVICE[/DB]`: the credentials and
/// TLS apply to the master, and to the Sentinels when `sentinel_auth`.
fn sentinel(spec: &Spec, sentinel_auth: bool) -> RedisResult<SentinelClient> {
    let service = spec.path.first().ok_or_else(|| {
        invalid(
            "invalid Redis URL",
            "redis+sentinel:// needs /SERVICE after the hosts".into(),
        )
    })?;
    let db: i64 = match spec.path.get(1) {
        Some(d) => d.parse().map_err(|_| {
            invalid(
                "invalid Redis URL",
                format!("database `{d}` is not a number"),
            )
        })?,
        None => 0,
    };
    if spec.tls.is_some() {
        install_crypto_provider();
    }
    let mut b =
        SentinelClientBuilder::new(spec.addrs(), service.clone(), SentinelServerType::Master)?
            .set_client_to_redis_db(db);
    if let Some(u) = &spec.username {
        b = b.set_client_to_redis_username(u);
        if sentinel_auth {
            b = b.set_client_to_sentinel_username(u);
        }
    }
    if let Some(p) = &spec.password {
        b = b.set_client_to_redis_password(p);
        if sentinel_auth {
            b = b.set_client_to_sentinel_password(p);
        }
    }
    if let Some(mode) = spec.tls {
        b = b
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_sentinel_tls_mode(mode);
    }
    if let Some(path) = &spec.root_cert {
        b = b
            .set_client_to_redis_certificates(certificates(path)?)
            .set_client_to_sentinel_certificates(certificates(path)?);
    }
    b.build()
}

/// `redis+cluster://[user:pass@]HOST:PORT[,HOST:PORT…]`: the seed nodes of a cluster.
fn cluster(spec: &Spec) -> RedisResult<ClusterClient> {
    if spec.tls.is_some() {
        install_crypto_provider();
    }
    let mut b = ClusterClient::builder(spec.addrs())
        .connection_timeout(TIMEOUT)
        .response_timeout(REPLY_TIMEOUT);
    if let Some(u) = &spec.username {
        b = b.username(u);
    }
    if let Some(p) = &spec.password {
        b = b.password(p);
    }
    if let Some(mode) = spec.tls {
        b = b.tls(mode);
    }
    if let Some(path) = &spec.root_cert {
        b = b.certs(certificates(path)?);
    }
    b.build()
}

fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("valkeys://")
}

/// rustls needs one process-wide cryptography provider for the Redis crate's TLS; ours is
/// ring, as for PostgreSQL.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means one is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Takes `sslrootcert=PATH` out of the URL's query: (URL without it, PATH).
fn split_root_cert(url: &str) -> (String, Option<String>) {
    let from = url.find('@').map_or(0, |at| at + 1);
    let Some(q) = url[from..].find('?').map(|i| i + from) else {
        return (url.to_string(), None);
    };
    let (query, fragment) = match url[q + 1..].find('#') {
        Some(h) => (&url[q + 1..q + 1 + h], &url[q + 1 + h..]),
        None => (&url[q + 1..], ""),
    };
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((ROOT_CERT_PARAM, v)) => root_cert = Some(crate::percent::decode(v)),
            _ => kept.push(pair),
        }
    }
    let mut out = url[..q].to_string();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    out.push_str(fragment);
    (out, root_cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cert_is_taken_out_of_the_query() {
        assert_eq!(
            split_root_cert("rediss://u:p@h:6380/0?sslrootcert=/etc/ca%20x.pem"),
            ("rediss://u:p@h:6380/0".into(), Some("/etc/ca x.pem".into()))
        );
        assert_eq!(
            split_root_cert("rediss://h/0?protocol=resp3&sslrootcert=/ca.pem#insecure"),
            (
                "rediss://h/0?protocol=resp3#insecure".into(),
                Some("/ca.pem".into())
            )
        );
        assert_eq!(
            split_root_cert("redis://:pa?ss@h/0"),
            ("redis://:pa?ss@h/0".into(), None)
        );
    }

    #[test]
    fn plain_and_tls_urls_make_clients() {
        assert!(RedisTarget::parse("redis://127.0.0.1:1/0").is_ok());
        assert!(RedisTarget::parse("rediss://127.0.0.1:1/0#insecure").is_ok());
        let e = RedisTarget::parse("redis://127.0.0.1:1/0?sslrootcert=/x.pem")
            .err()
            .unwrap();
        assert!(e.to_string().contains("rediss://"), "{e}");
        let e = RedisTarget::parse("rediss://127.0.0.1:1/0?sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn sentinel_and_cluster_urls_are_taken_apart() {
        let s = Spec::parse("rediss+sentinel://elt:p%40ss@a:26379,[::1]:26380/mymaster/2#insecure")
            .unwrap();
        assert_eq!(s.tls, Some(TlsMode::Insecure));
        assert_eq!(s.username.as_deref(), Some("elt"));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.hosts, vec![("a".into(), 26379), ("::1".into(), 26380)]);
        assert_eq!(s.path, vec!["mymaster".to_string(), "2".into()]);
        let c = Spec::parse("redis+cluster://:secret@h1:7000,h2:7001").unwrap();
        assert_eq!(
            (c.tls, c.username, c.password.as_deref()),
            (None, None, Some("secret"))
        );
        let e = Spec::parse("redis+cluster://:hunter2@h1")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":PORT") && !e.contains("hunter2"), "{e}");
        assert!(RedisTarget::parse("redis+sentinel://h:1").is_err());
        assert!(RedisTarget::parse("redis+cluster://h:1,h:2").is_ok());
    }
}
