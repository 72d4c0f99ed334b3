//! The secrets of a node's configuration: the cluster key (`CKV_CLUSTER_KEY` /
//! `CKV_CLUSTER_KEY_FILE`) that authenticates peers and signs metadata, and the mutual-TLS files
//! (`CKV_TLS_CERT`, `CKV_TLS_KEY`, `CKV_TLS_CA`). Pure functions of a variable lookup and a file
//! reader, like the rest of `config`.

use super::{ConfigError, err};

/// Shortest accepted cluster key: 16 bytes, so a key cannot be guessed.
pub const MIN_CLUSTER_KEY_BYTES: usize = 16;

/// Paths of the PEM files for mutual TLS between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (`CKV_TLS_CERT`).
    pub cert: String,
    /// Its private key (`CKV_TLS_KEY`).
    pub key: String,
    /// The CA that signs every node's certificate (`CKV_TLS_CA`).
    pub ca: String,
}

/// The shared secret of a cluster. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey(pub Vec<u8>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey(<{} bytes>)", self.0.len())
    }
}

pub(super) fn tls_files(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<TlsFiles>, ConfigError> {
    let var = |v| {
        get(v)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    match (var("CKV_TLS_CERT"), var("CKV_TLS_KEY"), var("CKV_TLS_CA")) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
        _ => Err(err(
            "CKV_TLS_CERT",
            "set CKV_TLS_CERT, CKV_TLS_KEY and CKV_TLS_CA together",
        )),
    }
}

/// The cluster key from `CKV_CLUSTER_KEY` (the text itself) or `CKV_CLUSTER_KEY_FILE` (the
/// file's contents, trailing whitespace dropped), at least [`MIN_CLUSTER_KEY_BYTES`] long.
pub(super) fn cluster_key(
    get: &impl Fn(&str) -> Option<String>,
    read_file: &impl Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<Option<ClusterKey>, ConfigError> {
    let (var, bytes) = match (
        get("CKV_CLUSTER_KEY").filter(|s| !s.trim().is_empty()),
        get("CKV_CLUSTER_KEY_FILE").filter(|s| !s.trim().is_empty()),
    ) {
        (Some(_), Some(_)) => {
            return Err(err(
                "CKV_CLUSTER_KEY",
                "set either it or CKV_CLUSTER_KEY_FILE",
            ));
        }
        (None, None) => return Ok(None),
        (Some(k), None) => ("CKV_CLUSTER_KEY", k.trim().as_bytes().to_vec()),
        (None, Some(path)) => {
            let mut b = read_file(path.trim()).map_err(|e| err("CKV_CLUSTER_KEY_FILE", e))?;
            while b.last().is_some_and(u8::is_ascii_whitespace) {
                b.pop();
            }
            ("CKV_CLUSTER_KEY_FILE", b)
        }
    };
    if bytes.len() < MIN_CLUSTER_KEY_BYTES {
        return Err(err(
            var,
            format!("a cluster key needs at least {MIN_CLUSTER_KEY_BYTES} bytes"),
        ));
    }
    Ok(Some(ClusterKey(bytes)))
}
