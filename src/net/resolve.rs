//! Resolving node addresses to socket addresses, with a short cache. IP literals are returned as
//! they are (no resolver involved). Host names are looked up first in the hosts file
//! (`/etc/hosts`, or the file named by `CKV_HOSTS_FILE`), then by DNS with `hickory-resolver`
//! configured from `/etc/resolv.conf` — pure Rust, so it works in the static `FROM scratch`
//! image, where glibc's NSS cannot. A name that does not resolve is an error for this call
//! only: callers retry later (a pod not scheduled yet resolves a few seconds on).
//! It must not hold a lock across a lookup, and it never caches a failure.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::system_conf::parse_resolv_conf;
use tokio::sync::OnceCell;

use super::addr::{AddrError, NodeAddr};

/// How long a resolved name is reused: short, because a restarted pod or container keeps its
/// name but gets a new IP; long enough that a burst of reconnects does one lookup.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// Bound on one DNS query attempt (the orchestrator's DNS answers in milliseconds; a resolver
/// that does not answer must not stall a connection attempt for long).
const DNS_TIMEOUT: Duration = Duration::from_millis(800);
/// DNS attempts per query: one retry covers a dropped UDP packet.
const DNS_ATTEMPTS: usize = 2;
/// How long "no such name" is remembered by the DNS client: short, since a pod being scheduled
/// gets its record within seconds (this module itself never caches a failure).
const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// Bound on the whole lookup of one name, all attempts and search domains included.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Cached names at most (a cluster has a handful of nodes; this only bounds a misuse).
const MAX_CACHE_ENTRIES: usize = 1024;
/// Environment variable naming the hosts file to read instead of `/etc/hosts` (a test and ops
/// knob: loopback tests map names to 127.x addresses without touching the system's file).
pub const HOSTS_FILE_ENV: &str = "CKV_HOSTS_FILE";
/// The system hosts file.
const DEFAULT_HOSTS_FILE: &str = "/etc/hosts";
/// Environment variable naming the resolver configuration to read instead of
/// `/etc/resolv.conf` (a test and ops knob: loopback tests point it at an empty file, so a name
/// missing from their hosts file never becomes a DNS query leaving the machine).
pub const RESOLV_CONF_ENV: &str = "CKV_RESOLV_CONF";
/// The system resolver configuration.
const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Why an address could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The address is not `IP:PORT` or `HOST:PORT`.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// The name has no address (yet): not in the hosts file, and DNS had none.
    #[error("{0}: name does not resolve (yet): {1}")]
    NotFound(String, String),
    /// The lookup took longer than its bound.
    #[error("{0}: lookup timed out")]
    Timeout(String),
}

/// A resolver with a hosts file, DNS from `/etc/resolv.conf`, and a short cache.
pub struct Resolver {
    hosts_file: PathBuf,
    resolv_conf: PathBuf,
    dns: OnceCell<Option<TokioResolver>>,
    cache: Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>,
}

impl Resolver {
    /// A resolver that reads `hosts_file` (re-read on every cache miss, so edits take effect).
    /// DNS comes from `/etc/resolv.conf` unless [`Resolver::with_resolv_conf`] says otherwise.
    pub fn new(hosts_file: impl Into<PathBuf>) -> Self {
        Self {
            hosts_file: hosts_file.into(),
            resolv_conf: PathBuf::from(DEFAULT_RESOLV_CONF),
            dns: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the DNS configuration from `path` (read once, at the first DNS lookup); a missing
    /// file, or one naming no name server, means the hosts file only.
    pub fn with_resolv_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.resolv_conf = path.into();
        self
    }

    /// Socket addresses of `addr` (`IP:PORT` or `HOST:PORT`), hosts-file answers first.
    pub async fn resolve(&self, addr: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let (host, port) = match NodeAddr::parse(addr)? {
            NodeAddr::Ip(sa) => return Ok(vec![sa]),
            NodeAddr::Name { host, port } => (host, port),
        };
        if let Some(hit) = self.cached(addr) {
            return Ok(hit);
        }
        let ips = match tokio::time::timeout(LOOKUP_TIMEOUT, self.lookup(&host)).await {
            Ok(r) => r.map_err(|why| ResolveError::NotFound(addr.to_string(), why))?,
            Err(_) => return Err(ResolveError::Timeout(addr.to_string())),
        };
        let found: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(addr.to_string(), (Instant::now(), found.clone()));
        Ok(found)
    }

    /// Drops the cached answer for `addr` (call it when connecting to it failed: the name may
    /// point somewhere else now).
    pub fn forget(&self, addr: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(addr);
    }

    fn cached(&self, addr: &str) -> Option<Vec<SocketAddr>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(addr)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, v)| v.clone())
    }

    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let text = tokio::fs::read_to_string(&self.hosts_file)
            .await
            .unwrap_or_default();
        let from_file = hosts_lookup(&text, host);
        if !from_file.is_empty() {
            return Ok(from_file);
        }
        let conf = &self.resolv_conf;
        let Some(dns) = self.dns.get_or_init(|| async { dns_resolver(conf) }).await else {
            return Err(format!(
                "not in {} and no name server in {}",
                self.hosts_file.display(),
                conf.display()
            ));
        };
        let found = dns.lookup_ip(host).await.map_err(|e| e.to_string())?;
        let ips: Vec<IpAddr> = found.iter().collect();
        if ips.is_empty() {
            return Err("no address records".into());
        }
        Ok(ips)
    }
}

/// DNS from a resolv.conf (search domains and ndots included, as Kubernetes sets them); `None`
/// when there is no usable configuration. The hosts file is ours, not hickory's, and hickory's
/// own cache is capped at [`CACHE_TTL`] so a changed record is seen at once.
fn dns_resolver(resolv_conf: &Path) -> Option<TokioResolver> {
    let parsed = std::fs::read(resolv_conf)
        .map_err(|e| e.to_string())
        .and_then(|text| parse_resolv_conf(text).map_err(|e| e.to_string()));
    let (config, opts) = match parsed {
        Ok((c, _)) if c.name_servers().is_empty() => {
            tracing::info!(file = %resolv_conf.display(), "no name server: host names resolve from the hosts file only");
            return None;
        }
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(file = %resolv_conf.display(), error = %e, "no DNS configuration: host names resolve from the hosts file only");
            return None;
        }
    };
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = opts;
    let opts = builder.options_mut();
    opts.use_hosts_file = ResolveHosts::Never;
    opts.timeout = DNS_TIMEOUT;
    opts.attempts = DNS_ATTEMPTS;
    opts.positive_max_ttl = Some(CACHE_TTL);
    opts.negative_max_ttl = Some(NEGATIVE_TTL);
    match builder.build() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the DNS resolver");
            None
        }
    }
}

/// The addresses of `host` in hosts-file text (`IP name alias...` lines, `#` comments),
/// case-insensitively, in file order; a trailing dot on `host` is ignored.
pub fn hosts_lookup(text: &str, host: &str) -> Vec<IpAddr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(ip) = fields.next().and_then(|f| f.parse::<IpAddr>().ok()) else {
            continue;
        };
        if fields.any(|n| n.eq_ignore_ascii_case(host)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The process-wide resolver: hosts file from `CKV_HOSTS_FILE` (else `/etc/hosts`), DNS
/// configuration from `CKV_RESOLV_CONF` (else `/etc/resolv.conf`).
pub fn global() -> &'static Resolver {
    static GLOBAL: OnceLock<Resolver> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Resolver::new(var(HOSTS_FILE_ENV, DEFAULT_HOSTS_FILE))
            .with_resolv_conf(var(RESOLV_CONF_ENV, DEFAULT_RESOLV_CONF))
    })
}

/// Resolves `addr` (`IP:PORT` or `HOST:PORT`) with the process-wide resolver: an IP literal at
/// once, a name from a cache of [`CACHE_TTL`], else the hosts file, else DNS.
pub async fn resolve(addr: &str) -> Result<Vec<SocketAddr>, ResolveError> {
    global().resolve(addr).await
}

/// Forgets the process-wide cached answer for `addr` (after a failed connection).
pub fn forget(addr: &str) {
    global().forget(addr);
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "127.0.0.1 localhost\n\
        # comment 10.0.0.9 alice\n\
        127.44.0.2\talice alice.test # trailing\n\
        ::1 ip6-localhost\n\
        127.44.0.3 bob\n\
        127.44.0.4 ALICE\n\
        garbage line\n";

    #[test]
    fn hosts_file_lines() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            hosts_lookup(HOSTS, "alice"),
            vec![ip("127.44.0.2"), ip("127.44.0.4")]
        );
        assert_eq!(hosts_lookup(HOSTS, "alice.test."), vec![ip("127.44.0.2")]);
        assert_eq!(hosts_lookup(HOSTS, "ip6-localhost"), vec![ip("::1")]);
        assert!(hosts_lookup(HOSTS, "carol").is_empty());
        assert!(hosts_lookup(HOSTS, "comment").is_empty());
        assert!(hosts_lookup(HOSTS, "line").is_empty());
    }

    fn temp_hosts(tag: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ckv-hosts-{tag}-{}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[tokio::test]
    async fn literals_names_cache_and_forget() {
        let path = temp_hosts("unit", "127.44.0.2 alice\n");
        let r = Resolver::new(&path);
        assert_eq!(
            r.resolve("10.1.2.3:80").await.unwrap(),
            vec!["10.1.2.3:80".parse().unwrap()]
        );
        assert_eq!(
            r.resolve("[::1]:80").await.unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        assert_eq!(
            r.resolve("alice:8090").await.unwrap(),
            vec!["127.44.0.2:8090".parse().unwrap()]
        );
        // the pod restarted with a new IP: the cache still answers until forgotten
        std::fs::write(&path, "127.44.0.9 alice\n").unwrap();
        assert_eq!(
            r.resolve("alice:8090").await.unwrap(),
            vec!["127.44.0.2:8090".parse().unwrap()]
        );
        r.forget("alice:8090");
        assert_eq!(
            r.resolve("alice:8090").await.unwrap(),
            vec!["127.44.0.9:8090".parse().unwrap()]
        );
        assert!(matches!(
            r.resolve("alice").await,
            Err(ResolveError::Addr(AddrError::NoPort(_)))
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn unknown_name_without_name_server_is_not_found() {
        let hosts = temp_hosts("nf", "127.44.0.2 alice\n");
        let conf = temp_hosts("nf-resolv", "# no nameserver line\nsearch example\n");
        let r = Resolver::new(&hosts).with_resolv_conf(&conf);
        assert!(matches!(
            r.resolve("carol:8090").await,
            Err(ResolveError::NotFound(..))
        ));
        // once the name appears (a pod got scheduled) it resolves: failures are not cached
        std::fs::write(&hosts, "127.44.0.2 alice\n127.44.0.4 carol\n").unwrap();
        assert_eq!(
            r.resolve("carol:8090").await.unwrap(),
            vec!["127.44.0.4:8090".parse().unwrap()]
        );
        let _ = std::fs::remove_file(&hosts);
        let _ = std::fs::remove_file(&conf);
    }
}
