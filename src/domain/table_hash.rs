//! The hasher of the store's and the replica's tables: SipHash (std's `DefaultHasher`) under a
//! per-process random key, so clients cannot aim keys at one bucket. A simulation fixes the key
//! ([`fix_key`]) before it builds any table, so that table order, and with it every schedule
//! it replays, is the same in every run. Pure apart from drawing the key once.

use std::hash::{BuildHasher, DefaultHasher, Hasher};
use std::sync::OnceLock;

static KEY: OnceLock<[u64; 2]> = OnceLock::new();

fn key() -> [u64; 2] {
    *KEY.get_or_init(|| {
        let mut b = [0u8; 16];
        if getrandom::fill(&mut b).is_err() {
            // no OS randomness: the address of a local and the time still differ per process
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let here = &t as *const u64 as u64;
            b[..8].copy_from_slice(&t.to_le_bytes());
            b[8..].copy_from_slice(&here.to_le_bytes());
        }
        let (a, c) = b.split_at(8);
        [
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(c.try_into().unwrap_or_default()),
        ]
    })
}

/// Fixes the key of every table built from now on in this process (simulations); false when
/// a different key was already in use.
pub fn fix_key(k: u64) -> bool {
    let want = [k, !k];
    *KEY.get_or_init(|| want) == want
}

/// Builds the hashers of the store's tables.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableState;

impl BuildHasher for TableState {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        let mut h = DefaultHasher::new();
        let [a, b] = key();
        h.write_u64(a);
        h.write_u64(b);
        h
    }
}

/// A hash map over [`TableState`].
pub type TableMap<K, V> = std::collections::HashMap<K, V, TableState>;
