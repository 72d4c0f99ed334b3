//! The identity of one accepted write: the node that accepted it, the shard-map generation and
//! the node's sequence number in that generation. Nodes return it with every write (a response
//! header) so a tool can tell which node held an acknowledged write first: the nemesis uses it
//! to explain writes lost with a node that was killed before any peer had them. Pure.

use std::fmt;
use std::str::FromStr;

use super::store::Version;

/// `origin/generation/seq`; the origin (`IP:PORT` or `name:PORT`) never contains a `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId {
    /// Node that accepted the write from a client.
    pub origin: String,
    /// Shard-map generation in which it was accepted.
    pub generation: u64,
    /// The origin's sequence number for it in that generation.
    pub seq: u64,
}

impl From<&Version> for WriteId {
    fn from(v: &Version) -> Self {
        WriteId {
            origin: v.origin.to_string(),
            generation: v.generation,
            seq: v.seq,
        }
    }
}

impl fmt::Display for WriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.origin, self.generation, self.seq)
    }
}

/// Why a write id did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a write id (origin/generation/seq): {0:?}")]
pub struct WriteIdError(String);

impl FromStr for WriteId {
    type Err = WriteIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WriteIdError(s.to_string());
        let mut parts = s.rsplitn(3, '/');
        let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let generation = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let origin = parts.next().filter(|o| !o.is_empty()).ok_or_else(bad)?;
        Ok(WriteId {
            origin: origin.to_string(),
            generation,
            seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = WriteId {
            origin: "[::1]:8090".into(),
            generation: 2,
            seq: 17,
        };
        assert_eq!(id.to_string(), "[::1]:8090/2/17");
        assert_eq!("[::1]:8090/2/17".parse::<WriteId>(), Ok(id));
        for bad in ["", "a/1", "/1/2", "a/x/2", "a/1/-2", "a/1/2/"] {
            assert!(bad.parse::<WriteId>().is_err(), "{bad}");
        }
    }
}
