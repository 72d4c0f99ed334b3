//! Node configuration from environment variables (`SOCKET_ADDRESS`, `VIEW`, `SHARD_COUNT`,
//! `LISTEN_ADDRESS` and the `CKV_*` tuning knobs). Addresses are `IP:PORT` or `HOST:PORT`; names
//! are only checked for syntax here (they are resolved when connecting, see `net::resolve`). Parsing is a pure function of a variable lookup, so it is tested
//! without touching the process environment.

mod secrets;

pub use secrets::{ClusterKey, MIN_CLUSTER_KEY_BYTES, TlsFiles};
use secrets::{cluster_key, tls_files};

use std::net::SocketAddr;
use std::time::Duration;

use crate::net::NodeAddr;

/// Default heartbeat period: a killed peer is noticed within one period (refused connection),
/// a paused one within period + RPC timeout; both far inside the 5 s the contract allows.
pub const DEFAULT_HEARTBEAT_MS: u64 = 250;
/// Default deadline of one replica-to-replica call: long enough for a loaded 2-core machine,
/// short enough that a paused peer is suspected in about a second.
pub const DEFAULT_RPC_TIMEOUT_MS: u64 = 1_000;
/// Default flap-damping grace period for a peer that was cut off and comes back.
pub const DEFAULT_GRACE_MS: u64 = 3_000;
/// Default largest accepted value (JSON text), 8 MiB: replication, snapshots and reshards cut
/// their messages by bytes (`cluster::batch`), so a value this large travels alone in one gRPC
/// message of about 13 MiB; measured on loopback (tests/big_values.rs) it replicates in well
/// under a second. Each value is held once per replica (queues share it).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 << 20;
/// Default bound on the bytes queued for one peer (replication backlog). Past it the queue is
/// dropped and the peer catches up by anti-entropy (a delta pull), which moves the same data
/// in large chunks: 256 MiB is seconds of full-speed writes, yet bounded per peer.
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 256 << 20;
/// Default bound on how long a legacy request waits for missing dependencies.
pub const DEFAULT_LEGACY_WAIT_MS: u64 = 30_000;
/// Default time a client has to send a request's headers: generous for any real client, short
/// enough that half-open connections (slowloris) do not pile up.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 5_000;
/// Default time an HTTP/1.1 connection may sit idle between requests (peers keep their HTTP/2
/// connections busy with heartbeats every 250 ms, so this only closes abandoned clients).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default cap on open connections: far above a cluster's peers plus its clients, far below
/// the usual file-descriptor limit (each connection is one descriptor).
pub const DEFAULT_MAX_CONNECTIONS: usize = 8_192;
/// Default cap on REST requests in progress at once; past it a request gets 503 at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 2_048;
/// Extra time a REST request may take beyond the legacy wait bound (the longest legitimate wait).
const REQUEST_TIMEOUT_MARGIN_MS: u64 = 5_000;
/// Everything a node needs to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's own address as others reach it (`IP:PORT` or `HOST:PORT`); its identity.
    pub socket_address: String,
    /// Where to bind: `LISTEN_ADDRESS`, else `socket_address` when it is an IP literal, else
    /// `0.0.0.0:PORT` (a host name cannot be bound).
    pub listen_address: SocketAddr,
    /// Every node running at start-up, this one included.
    pub view: Vec<String>,
    /// Number of shards; `None` for a spare.
    pub shard_count: Option<u32>,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Deadline of each replica-to-replica call.
    pub rpc_timeout: Duration,
    /// Flap-damping grace period.
    pub grace: Duration,
    /// Largest accepted value, in bytes of JSON text.
    pub max_value_bytes: usize,
    /// Bound on the bytes of writes queued for one peer.
    pub max_queue_bytes: usize,
    /// Bound on a legacy request's wait for dependencies.
    pub legacy_wait: Duration,
    /// Legacy compatibility switch: lists as comma-separated strings, shard ids as strings.
    pub legacy_strings: bool,
    /// Shared secret that authenticates internal traffic and keys metadata tokens; `None`
    /// runs an unauthenticated cluster (members allowed by address).
    pub cluster_key: Option<ClusterKey>,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Time an HTTP/1.1 connection may be idle between requests.
    pub idle_timeout: Duration,
    /// Longest a REST request may take.
    pub request_timeout: Duration,
    /// Cap on open connections (more are closed at once).
    pub max_connections: usize,
    /// Cap on REST requests in progress (more get 503 at once).
    pub max_in_flight: usize,
    /// Mutual TLS between nodes, when all three files are given.
    pub tls: Option<TlsFiles>,
    /// Durability: data directory, fsync policy, recovery (`DATA_DIR`, `CKV_FSYNC`, ...).
    pub storage: crate::storage::Settings,
}

/// A configuration error, naming the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    /// The variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match get(var).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| err(var, format!("not a number: {v:?}"))),
    }
}

fn flag(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> bool {
    matches!(
        get(var).map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("1" | "true" | "yes" | "on")
    )
}

impl Config {
    /// Builds the configuration from a variable lookup (e.g. `|k| std::env::var(k).ok()`);
    /// `CKV_CLUSTER_KEY_FILE` is read from the file system.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_vars_and_files(get, |p| std::fs::read(p).map_err(|e| format!("{p}: {e}")))
    }

    /// [`Config::from_vars`] with the file reader given too (pure when both are).
    pub fn from_vars_and_files(
        get: impl Fn(&str) -> Option<String>,
        read_file: impl Fn(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Self, ConfigError> {
        let socket_address = get("SOCKET_ADDRESS")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                err(
                    "SOCKET_ADDRESS",
                    "required (IP:PORT or HOST:PORT of this node)",
                )
            })?;
        let own = NodeAddr::parse(&socket_address)
            .map_err(|e| err("SOCKET_ADDRESS", format!("not IP:PORT or HOST:PORT: {e}")))?;
        let listen_address = match get("LISTEN_ADDRESS").filter(|s| !s.trim().is_empty()) {
            None => match own {
                NodeAddr::Ip(sa) => sa,
                // A name is resolved by others; we cannot bind it, so listen on every interface.
                NodeAddr::Name { port, .. } => SocketAddr::from(([0, 0, 0, 0], port)),
            },
            Some(s) => s
                .trim()
                .parse()
                .map_err(|_| err("LISTEN_ADDRESS", format!("not IP:PORT: {s:?}")))?,
        };
        let mut view = Vec::new();
        for part in get("VIEW").unwrap_or_default().split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            NodeAddr::parse(part)
                .map_err(|e| err("VIEW", format!("not IP:PORT or HOST:PORT: {e}")))?;
            if !view.iter().any(|v| v == part) {
                view.push(part.to_string());
            }
        }
        if !view.contains(&socket_address) {
            view.push(socket_address.clone());
        }
        let shard_count = match get("SHARD_COUNT").filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(s) => match s.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Some(n),
                _ => return Err(err("SHARD_COUNT", format!("not a positive integer: {s:?}"))),
            },
        };
        let legacy_wait =
            Duration::from_millis(number(&get, "CKV_LEGACY_WAIT_MS", DEFAULT_LEGACY_WAIT_MS)?);
        let request_timeout_default = legacy_wait.as_millis() as u64 + REQUEST_TIMEOUT_MARGIN_MS;
        let storage = crate::storage::Settings::from_vars(&get).map_err(|(v, p)| err(v, p))?;
        Ok(Self {
            storage,
            cluster_key: cluster_key(&get, &read_file)?,
            tls: tls_files(&get)?,
            header_timeout: Duration::from_millis(
                number(&get, "CKV_HEADER_TIMEOUT_MS", DEFAULT_HEADER_TIMEOUT_MS)?.max(100),
            ),
            idle_timeout: Duration::from_millis(
                number(&get, "CKV_IDLE_TIMEOUT_MS", DEFAULT_IDLE_TIMEOUT_MS)?.max(100),
            ),
            request_timeout: Duration::from_millis(
                number(&get, "CKV_REQUEST_TIMEOUT_MS", request_timeout_default)?.max(100),
            ),
            max_connections: number(&get, "CKV_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)?.max(16),
            max_in_flight: number(&get, "CKV_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)?.max(1),
            socket_address,
            listen_address,
            view,
            shard_count,
            heartbeat: Duration::from_millis(
                number(&get, "CKV_HEARTBEAT_MS", DEFAULT_HEARTBEAT_MS)?.max(10),
            ),
            rpc_timeout: Duration::from_millis(
                number(&get, "CKV_RPC_TIMEOUT_MS", DEFAULT_RPC_TIMEOUT_MS)?.max(50),
            ),
            grace: Duration::from_millis(number(&get, "CKV_GRACE_MS", DEFAULT_GRACE_MS)?),
            max_value_bytes: number(&get, "CKV_MAX_VALUE_BYTES", DEFAULT_MAX_VALUE_BYTES)?,
            max_queue_bytes: number(&get, "CKV_MAX_QUEUE_BYTES", DEFAULT_MAX_QUEUE_BYTES)?.max(1),
            legacy_wait,
            legacy_strings: flag(&get, "CKV_LEGACY_STRINGS"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn seed_style_environment() {
        let c = cfg(&[
            ("SOCKET_ADDRESS", "10.10.0.2:8090"),
            ("VIEW", "10.10.0.2:8090,10.10.0.3:8090, 10.10.0.3:8090"),
            ("SHARD_COUNT", "2"),
        ])
        .unwrap();
        assert_eq!(c.view, vec!["10.10.0.2:8090", "10.10.0.3:8090"]);
        assert_eq!(c.shard_count, Some(2));
        assert_eq!(c.listen_address.to_string(), "10.10.0.2:8090");
        assert_eq!(c.grace, Duration::from_millis(DEFAULT_GRACE_MS));
        assert!(!c.legacy_strings);
    }

    #[test]
    fn spare_and_overrides() {
        let c = cfg(&[
            ("SOCKET_ADDRESS", "10.10.0.8:8090"),
            ("LISTEN_ADDRESS", "0.0.0.0:8090"),
            ("CKV_GRACE_MS", "500"),
            ("CKV_LEGACY_STRINGS", "true"),
        ])
        .unwrap();
        assert_eq!(c.shard_count, None);
        assert_eq!(c.view, vec!["10.10.0.8:8090"]);
        assert_eq!(c.listen_address.to_string(), "0.0.0.0:8090");
        assert_eq!(c.grace, Duration::from_millis(500));
        assert!(c.legacy_strings);
    }

    #[test]
    fn host_names() {
        let c = cfg(&[
            ("SOCKET_ADDRESS", "alice:8090"),
            ("VIEW", "alice:8090,bob:8090,10.10.0.4:8090,[fd00::5]:8090"),
        ])
        .unwrap();
        assert_eq!(c.socket_address, "alice:8090");
        assert_eq!(
            c.view,
            vec!["alice:8090", "bob:8090", "10.10.0.4:8090", "[fd00::5]:8090"]
        );
        assert_eq!(c.listen_address.to_string(), "0.0.0.0:8090");
        let c = cfg(&[
            ("SOCKET_ADDRESS", "kv-0.kv.default.svc.cluster.local:7000"),
            ("LISTEN_ADDRESS", "127.0.0.9:7000"),
        ])
        .unwrap();
        assert_eq!(c.listen_address.to_string(), "127.0.0.9:7000");
        assert_eq!(c.view, vec!["kv-0.kv.default.svc.cluster.local:7000"]);
        let e = cfg(&[("SOCKET_ADDRESS", "alice")]).unwrap_err();
        assert_eq!(e.var, "SOCKET_ADDRESS");
        let e = cfg(&[("SOCKET_ADDRESS", "alice:1"), ("VIEW", "alice:1,bob:x")]).unwrap_err();
        assert_eq!(e.var, "VIEW");
        let e = cfg(&[("SOCKET_ADDRESS", "alice:1"), ("LISTEN_ADDRESS", "bob:1")]).unwrap_err();
        assert_eq!(e.var, "LISTEN_ADDRESS");
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(cfg(&[]).unwrap_err().var, "SOCKET_ADDRESS");
        assert_eq!(
            cfg(&[("SOCKET_ADDRESS", "nope")]).unwrap_err().var,
            "SOCKET_ADDRESS"
        );
        let e = cfg(&[("SOCKET_ADDRESS", "1.2.3.4:5"), ("VIEW", "x")]).unwrap_err();
        assert_eq!(e.var, "VIEW");
        let e = cfg(&[("SOCKET_ADDRESS", "1.2.3.4:5"), ("SHARD_COUNT", "0")]).unwrap_err();
        assert_eq!(e.var, "SHARD_COUNT");
        let e = cfg(&[("SOCKET_ADDRESS", "1.2.3.4:5"), ("CKV_GRACE_MS", "soon")]).unwrap_err();
        assert_eq!(e.var, "CKV_GRACE_MS");
    }

    #[test]
    fn cluster_key_from_text_or_file() {
        let base = [("SOCKET_ADDRESS", "1.2.3.4:5")];
        assert_eq!(cfg(&base).unwrap().cluster_key, None);
        let c = cfg(&[base[0], ("CKV_CLUSTER_KEY", "0123456789abcdef")]).unwrap();
        assert_eq!(
            c.cluster_key,
            Some(ClusterKey(b"0123456789abcdef".to_vec()))
        );
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let e = cfg(&[base[0], ("CKV_CLUSTER_KEY", "short")]).unwrap_err();
        assert_eq!(e.var, "CKV_CLUSTER_KEY");
        let vars: HashMap<&str, &str> = [base[0], ("CKV_CLUSTER_KEY_FILE", "/k")].into();
        let c = Config::from_vars_and_files(
            |k| vars.get(k).map(|v| v.to_string()),
            |p| {
                assert_eq!(p, "/k");
                Ok(b"a-key-of-enough-bytes\n".to_vec())
            },
        )
        .unwrap();
        assert_eq!(
            c.cluster_key,
            Some(ClusterKey(b"a-key-of-enough-bytes".to_vec()))
        );
    }
}
