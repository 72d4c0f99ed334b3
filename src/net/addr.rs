//! Parsing of a node address: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (a DNS name such as a
//! compose service `alice:8090` or a pod `kv-0.kv.default.svc.cluster.local:8090`). Pure: no
//! lookup happens here, and the configured string stays the node's identity.

use std::fmt;
use std::net::SocketAddr;

/// Longest DNS name (RFC 1035, without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A parsed node address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeAddr {
    /// An IP literal with a port; used as is, no resolver involved.
    Ip(SocketAddr),
    /// A host name with a port; resolved when a connection is made.
    Name {
        /// The host name, as configured (a trailing dot kept).
        host: String,
        /// The port.
        port: u16,
    },
}

/// Why an address is not `IP:PORT` or `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Empty input.
    #[error("empty address")]
    Empty,
    /// No `:PORT` at the end.
    #[error("no port in {0:?} (want IP:PORT or HOST:PORT)")]
    NoPort(String),
    /// The port is not a number in 1..=65535.
    #[error("bad port in {0:?} (want 1-65535)")]
    BadPort(String),
    /// The host part is neither an IP literal nor a valid DNS name.
    #[error("bad host in {0:?} (want an IP literal, [IPv6] or a DNS name)")]
    BadHost(String),
}

impl NodeAddr {
    /// Parses `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddrError::Empty);
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            if sa.port() == 0 {
                return Err(AddrError::BadPort(s.to_string()));
            }
            return Ok(Self::Ip(sa));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| AddrError::NoPort(s.to_string()))?;
        if port.is_empty() {
            return Err(AddrError::NoPort(s.to_string()));
        }
        let port: u16 = match port.parse() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(AddrError::BadPort(s.to_string())),
        };
        if !valid_host_name(host) {
            return Err(AddrError::BadHost(s.to_string()));
        }
        Ok(Self::Name {
            host: host.to_string(),
            port,
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Ip(sa) => sa.port(),
            Self::Name { port, .. } => *port,
        }
    }

    /// True for a host name (needs a resolver), false for an IP literal.
    pub fn is_name(&self) -> bool {
        matches!(self, Self::Name { .. })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(sa) => write!(f, "{sa}"),
            Self::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A DNS host name: dot-separated labels of letters, digits and `-` (not at a label's ends),
/// at most 63 bytes each and 253 in all; an optional trailing dot. A name made only of digits
/// and dots (`1.2.3`) is rejected: it is a mistyped IP, not a name.
fn valid_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return false;
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(host: &str, port: u16) -> NodeAddr {
        NodeAddr::Name {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn ip_literals_stay_ip_literals() {
        let a = NodeAddr::parse("10.10.0.2:8090").unwrap();
        assert_eq!(a, NodeAddr::Ip("10.10.0.2:8090".parse().unwrap()));
        assert!(!a.is_name());
        let v6 = NodeAddr::parse("[fd00::2]:8090").unwrap();
        assert_eq!(v6.port(), 8090);
        assert_eq!(v6.to_string(), "[fd00::2]:8090");
        assert!(!v6.is_name());
    }

    #[test]
    fn host_names() {
        assert_eq!(NodeAddr::parse("alice:8090").unwrap(), name("alice", 8090));
        assert_eq!(
            NodeAddr::parse(" kv-0.kv.default.svc.cluster.local:8090 ").unwrap(),
            name("kv-0.kv.default.svc.cluster.local", 8090)
        );
        assert_eq!(NodeAddr::parse("kv-0.kv.:1").unwrap(), name("kv-0.kv.", 1));
        assert_eq!(NodeAddr::parse("localhost:65535").unwrap().port(), 65535);
        assert_eq!(
            NodeAddr::parse("ckv-names_x:1"),
            Err(AddrError::BadHost("ckv-names_x:1".into()))
        );
        assert!(NodeAddr::parse("Alice-2:8090").unwrap().is_name());
        assert_eq!(name("alice", 8090).to_string(), "alice:8090");
    }

    #[test]
    fn bad_input() {
        assert_eq!(NodeAddr::parse(""), Err(AddrError::Empty));
        assert_eq!(NodeAddr::parse("  "), Err(AddrError::Empty));
        assert!(matches!(
            NodeAddr::parse("alice"),
            Err(AddrError::NoPort(_))
        ));
        assert!(matches!(
            NodeAddr::parse("alice:"),
            Err(AddrError::NoPort(_))
        ));
        assert!(matches!(
            NodeAddr::parse("alice:0"),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            NodeAddr::parse("10.0.0.1:0"),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            NodeAddr::parse("alice:65536"),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            NodeAddr::parse("alice:+80"),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            NodeAddr::parse("alice:http"),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            NodeAddr::parse(":8090"),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            NodeAddr::parse("-alice:8090"),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            NodeAddr::parse("al ice:8090"),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            NodeAddr::parse("a..b:8090"),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            NodeAddr::parse("1.2.3:8090"),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            NodeAddr::parse("300.1.1.1:8090"),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            NodeAddr::parse("fd00::2:8090"),
            Err(AddrError::BadHost(_))
        ));
        assert!(NodeAddr::parse("[fd00::2]").is_err());
        assert!(matches!(
            NodeAddr::parse("http://alice:8090"),
            Err(AddrError::BadHost(_))
        ));
        let long = format!("{}:1", "a".repeat(64));
        assert!(matches!(NodeAddr::parse(&long), Err(AddrError::BadHost(_))));
    }
}
