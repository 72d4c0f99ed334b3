//! The versioned key-value store: one winning version per key, tombstones for deletes.
//!
//! Merging is a join (commutative, associative, idempotent) under a total order of versions that
//! extends happens-before, so replicas that saw the same writes hold the same data. Pure; no I/O.

use super::table_hash::TableMap;
use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use super::clock::VectorClock;
use super::packed::{PackedClock, packed_pairs, put_varint};

/// Number of slices the keys are spread over (by a hash of the key). Snapshots and reshard
/// copies read one slice at a time under the node's lock: at 1M keys a slice is ~4k keys, about
/// a millisecond, so heartbeats and client requests interleave. Growing one slice's table also
/// rehashes only 1/256 of the keys.
pub const SLICES: usize = 256;

/// Source of slice stamps: every change to any store's slice takes the next number, so two equal
/// stamps of a slice mean no change happened between them (see [`Store::stamp`]).
static STAMPS: AtomicU64 = AtomicU64::new(1);

/// The slice of `key`: FNV-1a of its bytes (stable, cheap for short keys).
fn slice_of(key: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % SLICES
}

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
        self.order_key().cmp(&other.order_key())
    }

    /// The key of [`Version::total_cmp`].
    pub fn order_key(&self) -> (u64, u64, &str, u64) {
        (self.generation, self.clock.sum(), &self.origin, self.seq)
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

/// One key's stored state, compact: about 64 bytes plus the value, for memory at scale.
#[derive(Clone, Debug)]
struct Slot {
    seq: u64,
    value: Option<Arc<str>>,
    clock: PackedClock,
    generation: u32,
    origin: u32,
}

/// Keys → winning versions.
///
/// Versions are stored packed: origins are interned per store (node addresses, a handful) and
/// clocks are varint-encoded, and each key's slot is boxed so the table itself stays small.
/// Readers get decoded copies ([`Entry`]).
#[derive(Clone, Debug)]
pub struct Store {
    slices: Vec<TableMap<Box<str>, Box<Slot>>>,
    origins: Vec<Arc<str>>,
    origin_ids: TableMap<Arc<str>, u32>,
    live: usize,
    stamps: Vec<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            slices: vec![TableMap::default(); SLICES],
            origins: Vec::new(),
            origin_ids: TableMap::default(),
            live: 0,
            stamps: vec![0; SLICES],
        }
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self, key: &str) -> Option<&Slot> {
        self.slices[slice_of(key)].get(key).map(|b| &**b)
    }

    /// The id of an interned origin: a scan while there are a few (the usual shard), else the
    /// table (hashing the address costs more than comparing a handful).
    fn origin_id(&self, origin: &str) -> Option<u32> {
        if self.origins.len() <= 8 {
            return self
                .origins
                .iter()
                .position(|o| **o == *origin)
                .map(|i| i as u32);
        }
        self.origin_ids.get(origin).copied()
    }

    fn intern(&mut self, origin: &Arc<str>) -> u32 {
        if let Some(id) = self.origin_id(origin) {
            return id;
        }
        let id = u32::try_from(self.origins.len()).expect("fewer than 2^32 origins");
        self.origins.push(origin.clone());
        self.origin_ids.insert(origin.clone(), id);
        id
    }

    fn pack(&mut self, clock: &VectorClock) -> PackedClock {
        let mut out = PackedClock::new();
        for (origin, seq) in clock.iter() {
            let id = match self.origin_id(origin) {
                Some(id) => id,
                None => self.intern(&Arc::from(origin)),
            };
            put_varint(u64::from(id), &mut out);
            put_varint(seq, &mut out);
        }
        out
    }

    fn clock_sum(slot: &Slot) -> u64 {
        packed_pairs(&slot.clock).fold(0u64, |a, (_, s)| a.saturating_add(s))
    }

    fn version(&self, slot: &Slot) -> Version {
        Version {
            generation: u64::from(slot.generation),
            origin: self.origins[slot.origin as usize].clone(),
            seq: slot.seq,
            clock: VectorClock::from_entries(
                packed_pairs(&slot.clock)
                    .map(|(id, seq)| (self.origins[id as usize].to_string(), seq)),
            ),
        }
    }

    fn entry(&self, slot: &Slot) -> Entry {
        Entry {
            version: self.version(slot),
            value: slot.value.clone(),
        }
    }

    /// The stored entry of `key`, tombstones included.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.slot(key).map(|s| self.entry(s))
    }

    /// The live value of `key` (not a tombstone).
    pub fn live(&self, key: &str) -> Option<Entry> {
        self.slot(key)
            .filter(|s| s.value.is_some())
            .map(|s| self.entry(s))
    }

    /// True when `key` has a live value.
    pub fn is_live(&self, key: &str) -> bool {
        self.slot(key).is_some_and(|s| s.value.is_some())
    }

    /// Number of keys with a live value.
    pub fn live_count(&self) -> usize {
        self.live
    }

    /// Number of stored entries, tombstones included.
    pub fn len(&self) -> usize {
        self.slices.iter().map(TableMap::len).sum()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.slices.iter().all(TableMap::is_empty)
    }

    /// Applies a write if its version is greater than the stored one. A generation that does
    /// not fit the packed slot (2^32 or more; the wire boundary already refuses those) is never
    /// stored: the write counts as superseded rather than panicking.
    pub fn apply(&mut self, write: Write) -> Applied {
        let v = &write.version;
        let Ok(generation) = u32::try_from(v.generation) else {
            return Applied::Superseded;
        };
        let at = slice_of(&write.key);
        let Some(was_live) = self.loses_to(at, &write.key, v.order_key()) else {
            return Applied::Superseded;
        };
        let slot = Slot {
            seq: v.seq,
            value: write.value,
            clock: self.pack(&v.clock),
            generation,
            origin: self.intern(&v.origin),
        };
        self.put(at, write.key, slot, was_live)
    }

    /// `None` when the stored version of `key` (in slice `at`) is at least `incoming`, else
    /// whether the key had a live value.
    fn loses_to(&self, at: usize, key: &str, incoming: (u64, u64, &str, u64)) -> Option<bool> {
        match self.slices[at].get(key) {
            Some(slot) => {
                let stored = (
                    u64::from(slot.generation),
                    Self::clock_sum(slot),
                    &*self.origins[slot.origin as usize],
                    slot.seq,
                );
                (stored < incoming).then_some(slot.value.is_some())
            }
            None => Some(false),
        }
    }

    /// Stores `slot` as `key`'s winning version (the caller checked it wins).
    fn put(&mut self, at: usize, key: String, slot: Slot, was_live: bool) -> Applied {
        self.live = self.live + usize::from(slot.value.is_some()) - usize::from(was_live);
        self.stamps[at] = STAMPS.fetch_add(1, AtomicOrdering::Relaxed);
        match self.slices[at].get_mut(key.as_str()) {
            Some(old) => **old = slot,
            None => {
                self.slices[at].insert(key.into_boxed_str(), Box::new(slot));
            }
        }
        if was_live {
            Applied::Replaced
        } else {
            Applied::Created
        }
    }

    fn write_of(&self, key: &str, slot: &Slot) -> Write {
        Write {
            key: key.to_string(),
            version: self.version(slot),
            value: slot.value.clone(),
        }
    }
}

mod copy;

#[cfg(test)]
pub(crate) mod tests;
