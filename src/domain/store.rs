//! The versioned key-value store: one winning version per key, tombstones for deletes.
//!
//! Merging is a join (commutative, associative, idempotent) under a total order of versions that
//! extends happens-before, so replicas that saw the same writes hold the same data. Pure; no I/O.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use super::clock::VectorClock;

/// The version of one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Shard-map generation in which the write was accepted.
    pub generation: u64,
    /// Node that accepted the write from a client.
    pub origin: Arc<str>,
    /// The origin's sequence number for this write (1, 2, …, gap-free per generation).
    pub seq: u64,
    /// Causal dependencies of the write, including itself (`clock[origin] == seq`).
    pub clock: VectorClock,
}

impl Version {
    /// The deterministic total order used to resolve concurrent writes: generation, then clock
    /// sum (grows along happens-before), then origin, then sequence number.
    pub fn total_cmp(&self, other: &Version) -> Ordering {
        (self.generation, self.clock.sum(), &*self.origin, self.seq).cmp(&(
            other.generation,
            other.clock.sum(),
            &*other.origin,
            other.seq,
        ))
    }
}

/// One write: a key, its version, and the JSON text of the value (`None` = delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The key written.
    pub key: String,
    /// Version of the write.
    pub version: Version,
    /// JSON text of the value; `None` for a tombstone.
    pub value: Option<Arc<str>>,
}

/// What applying a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The write won and the key had no live value before.
    Created,
    /// The write won over a live value.
    Replaced,
    /// An equal or newer version was already stored.
    Superseded,
}

/// Stored state of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Version of the winning write.
    pub version: Version,
    /// Its value; `None` for a tombstone.
    pub value: Option<Arc<str>>,
}

/// Keys → winning versions.
#[derive(Clone, Debug, Default)]
pub struct Store {
    entries: HashMap<String, Entry>,
    live: usize,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored entry of `key`, tombstones included.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The live value of `key` (not a tombstone).
    pub fn live(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.value.is_some())
    }

    /// Number of keys with a live value.
    pub fn live_count(&self) -> usize {
        self.live
    }

    /// Number of stored entries, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies a write if its version is greater than the stored one.
    pub fn apply(&mut self, write: Write) -> Applied {
        let was_live = match self.entries.get(&write.key) {
            Some(e) if e.version.total_cmp(&write.version) != Ordering::Less => {
                return Applied::Superseded;
            }
            Some(e) => e.value.is_some(),
            None => false,
        };
        let now_live = write.value.is_some();
        self.live = self.live + usize::from(now_live) - usize::from(was_live);
        self.entries.insert(
            write.key,
            Entry {
                version: write.version,
                value: write.value,
            },
        );
        if was_live {
            Applied::Replaced
        } else {
            Applied::Created
        }
    }

    /// Every entry as a write, for snapshots and reshard transfer.
    pub fn writes(&self) -> impl Iterator<Item = Write> + '_ {
        self.entries.iter().map(|(k, e)| Write {
            key: k.clone(),
            version: e.version.clone(),
            value: e.value.clone(),
        })
    }

    /// Entries of `generation` whose write `known` does not cover (what a peer at `known` lacks).
    pub fn delta(&self, generation: u64, known: &VectorClock) -> Vec<Write> {
        self.writes()
            .filter(|w| {
                w.version.generation > generation
                    || (w.version.generation == generation
                        && known.get(&w.version.origin) < w.version.seq)
            })
            .collect()
    }

    /// Keeps only the keys for which `keep` is true.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|k, _| keep(k));
        self.live = self.entries.values().filter(|e| e.value.is_some()).count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn write(
        key: &str,
        origin: &str,
        seq: u64,
        clock: &[(&str, u64)],
        v: Option<&str>,
    ) -> Write {
        Write {
            key: key.into(),
            version: Version {
                generation: 1,
                origin: origin.into(),
                seq,
                clock: VectorClock::from_entries(clock.iter().map(|(o, s)| (o.to_string(), *s))),
            },
            value: v.map(Arc::from),
        }
    }

    #[test]
    fn created_replaced_superseded_and_counts() {
        let mut s = Store::new();
        assert_eq!(
            s.apply(write("k", "a", 1, &[("a", 1)], Some("1"))),
            Applied::Created
        );
        assert_eq!(
            s.apply(write("k", "a", 2, &[("a", 2)], Some("2"))),
            Applied::Replaced
        );
        assert_eq!(
            s.apply(write("k", "a", 1, &[("a", 1)], Some("1"))),
            Applied::Superseded
        );
        assert_eq!(s.live_count(), 1);
        assert_eq!(
            s.apply(write("k", "a", 3, &[("a", 3)], None)),
            Applied::Replaced
        );
        assert_eq!(s.live_count(), 0);
        assert!(s.live("k").is_none() && s.get("k").is_some());
        assert_eq!(
            s.apply(write("k", "a", 4, &[("a", 4)], Some("4"))),
            Applied::Created
        );
        assert_eq!(s.live_count(), 1);
    }

    #[test]
    fn concurrent_writes_converge_in_any_order() {
        let w1 = write("k", "a", 1, &[("a", 1)], Some("\"from a\""));
        let w2 = write("k", "b", 1, &[("b", 1)], Some("\"from b\""));
        let w3 = write("k", "a", 2, &[("a", 2), ("b", 1)], Some("\"after both\""));
        let orders = [
            [&w1, &w2, &w3],
            [&w3, &w2, &w1],
            [&w2, &w1, &w3],
            [&w2, &w3, &w1],
        ];
        let results: Vec<_> = orders
            .iter()
            .map(|o| {
                let mut s = Store::new();
                o.iter().for_each(|w| {
                    s.apply((*w).clone());
                });
                s.get("k").cloned()
            })
            .collect();
        assert!(results.windows(2).all(|p| p[0] == p[1]));
        assert_eq!(
            results[0].as_ref().unwrap().value.as_deref(),
            Some("\"after both\"")
        );
        // the tie between w1 and w2 is broken by origin
        let mut s = Store::new();
        s.apply(w2.clone());
        s.apply(w1.clone());
        assert_eq!(s.get("k").unwrap().value.as_deref(), Some("\"from b\""));
    }

    #[test]
    fn delta_lists_uncovered_writes() {
        let mut s = Store::new();
        s.apply(write("x", "a", 1, &[("a", 1)], Some("1")));
        s.apply(write("y", "b", 2, &[("b", 2)], Some("2")));
        let known = VectorClock::from_entries([("a".to_string(), 1)]);
        let d = s.delta(1, &known);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].key, "y");
    }
}
