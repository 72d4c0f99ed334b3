//! The key that authenticates causal-metadata tokens (HMAC-SHA256, tag truncated to
//! [`super::metadata::TAG_BYTES`]), held process-wide: one process is one node, and every call
//! site that encodes or decodes a token (REST handlers, gRPC conversions, the cluster layer)
//! then uses the same keyring without threading it through every signature.
//!
//! With a cluster key, the token key is derived from it ([`derive_from_cluster_key`]), so every
//! node of the cluster has it from the start and across whole-cluster restarts. Without one,
//! each process starts with a random key stamped with its creation time, and nodes converge on
//! the oldest key they hear of from members ([`adopt`], fed by Announce and Heartbeat answers),
//! so a restarted or added node learns the cluster's key before it serves. Every key learned
//! from a member, and every key this process used before, stays accepted ([`MAX_RETIRED`] of
//! them): nodes exchange keys in Announce requests and answers before they serve, so a token
//! any member signed during start-up is valid everywhere. No I/O besides the OS random source at first use.

use std::sync::{OnceLock, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::metadata::TAG_BYTES;

/// Bytes of a token key (the HMAC-SHA256 block output size).
pub const KEY_BYTES: usize = 32;
/// Other keys still accepted: this process's earlier keys and the keys of members (a token a
/// member signed before the cluster converged on one key stays valid everywhere). One per
/// node of a cluster plus restarts; past it the least recently learned key is forgotten.
pub const MAX_RETIRED: usize = 64;
/// Label of the token key derived from a cluster key (domain separation from RPC signatures).
const DERIVE_LABEL: &[u8] = b"causalkv token key v2";

/// A token key and when it was created (ms since the Unix epoch; 0 = derived from the
/// cluster key, which is older than every random key).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenKey {
    /// Creation time; the oldest key wins.
    pub created_ms: u64,
    /// The key bytes (ties on time broken by bytes, so every node picks the same).
    pub bytes: [u8; KEY_BYTES],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey(created {})", self.created_ms)
    }
}

struct Keyring {
    current: TokenKey,
    retired: Vec<TokenKey>,
    /// Set by a cluster key: never replaced by keys learned from peers.
    fixed: bool,
}

fn ring() -> &'static RwLock<Keyring> {
    static RING: OnceLock<RwLock<Keyring>> = OnceLock::new();
    RING.get_or_init(|| {
        let mut bytes = [0u8; KEY_BYTES];
        if getrandom::fill(&mut bytes).is_err() {
            // No OS randomness: fall back on the clock and addresses of locals; weak, logged
            // nowhere (domain), but only matters for a cluster without a configured key.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            bytes[..16].copy_from_slice(&t.to_le_bytes());
        }
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1)
            .max(1);
        RwLock::new(Keyring {
            current: TokenKey { created_ms, bytes },
            retired: Vec::new(),
            fixed: false,
        })
    })
}

fn mac(key: &[u8; KEY_BYTES]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// The tag of `payload` under the current key.
pub fn tag(payload: &[u8]) -> [u8; TAG_BYTES] {
    let key = ring()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .current
        .bytes;
    let mut m = mac(&key);
    m.update(payload);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(&full[..TAG_BYTES]);
    out
}

/// True when `tag` is `payload`'s tag under the current key or a retired one (constant time
/// per key).
pub fn verify(payload: &[u8], tag: &[u8]) -> bool {
    let r = ring().read().unwrap_or_else(|p| p.into_inner());
    std::iter::once(&r.current)
        .chain(r.retired.iter())
        .any(|k| {
            let mut m = mac(&k.bytes);
            m.update(payload);
            m.verify_truncated_left(tag).is_ok()
        })
}

/// The key this process signs with (to share with members in keyless clusters).
pub fn current() -> TokenKey {
    ring().read().unwrap_or_else(|p| p.into_inner()).current
}

/// Every key this process accepts, the one it signs with first (to keep across restarts).
pub fn known() -> Vec<TokenKey> {
    let r = ring().read().unwrap_or_else(|p| p.into_inner());
    std::iter::once(r.current)
        .chain(r.retired.iter().copied())
        .collect()
}

/// Fixes the token key to one derived from the cluster key (HMAC of a label under it).
pub fn derive_from_cluster_key(cluster_key: &[u8]) {
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(cluster_key).unwrap_or_else(|_| unreachable!());
    m.update(DERIVE_LABEL);
    let mut bytes = [0u8; KEY_BYTES];
    bytes.copy_from_slice(&m.finalize().into_bytes());
    let mut r = ring().write().unwrap_or_else(|p| p.into_inner());
    r.current = TokenKey {
        created_ms: 0,
        bytes,
    };
    r.retired.clear();
    r.fixed = true;
}

/// Learns `key` from a member: signs with it from now on if it is older than ours (returns
/// true then), and accepts tokens under it in any case.
pub fn adopt(key: TokenKey) -> bool {
    let mut r = ring().write().unwrap_or_else(|p| p.into_inner());
    if r.fixed || key == r.current {
        return false;
    }
    let newer = key > r.current;
    let kept = if newer {
        key
    } else {
        std::mem::replace(&mut r.current, key)
    };
    r.retired.retain(|k| *k != key && *k != kept);
    r.retired.insert(0, kept);
    r.retired.truncate(MAX_RETIRED);
    !newer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_key_is_adopted_and_old_tags_stay_valid() {
        let before = tag(b"payload");
        let mine = current();
        assert!(verify(b"payload", &before));
        assert!(!verify(b"payload!", &before));
        let younger = TokenKey {
            created_ms: u64::MAX,
            bytes: [1; KEY_BYTES],
        };
        assert!(!adopt(younger), "a younger key is not signed with");
        assert_eq!(current(), mine);
        let older = TokenKey {
            created_ms: 1,
            bytes: [2; KEY_BYTES],
        };
        if !ring().read().unwrap().fixed && mine > older {
            assert!(adopt(older));
            assert_eq!(current(), older);
            assert_ne!(tag(b"payload"), before);
            assert!(verify(b"payload", &before), "retired key still verifies");
        }
    }
}
