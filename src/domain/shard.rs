//! Keys → shards, and the versioned shard map (shard → assigned nodes).
//!
//! The key function is part of the on-disk/over-the-wire contract: FNV-1a 64 of the key's UTF-8
//! bytes, then Lamping & Veach's jump consistent hash onto `0..shard_count`. It never changes
//! between releases, balances keys, and moves only ~1/N of them when a shard is added. Pure.
//!
//! Two kinds of map:
//! - the **replicated** map (epoch 0): what a node started without `SHARD_COUNT` holds. One
//!   shard, 0, whose members are the view, whatever it is: every node is a replica of every
//!   key. It lists no nodes itself.
//! - a **sharded** map (epoch ≥ 1): computed from `VIEW` and `SHARD_COUNT`, or made by a
//!   reshard. Nodes absent from its assignment are spares.
//!
//! A sharded map always supersedes the replicated one (higher epoch wins), so nodes decide the
//! mode without a coordinator: a cluster none of whose nodes was given `SHARD_COUNT` stays
//! replicated; a node without it that hears of a sharded map (at start-up from its peers, or
//! later from a heartbeat) installs that map and is a spare.

use std::collections::BTreeMap;

/// FNV-1a, 64-bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// Jump consistent hash (Lamping & Veach 2014).
fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as u32
}

/// The shard that owns `key` among `shard_count` shards (0 when there are none).
pub fn key_shard(key: &str, shard_count: u32) -> u32 {
    if shard_count == 0 {
        return 0;
    }
    jump(fnv1a(key.as_bytes()), shard_count)
}

/// Shard id type (integers `0..N-1`).
pub type ShardId = u32;

/// A versioned assignment of nodes to shards. Higher epoch wins; `generation` changes only when
/// the shard count changes (a reshard), which is what invalidates causal clocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    /// Version of this map; every change increments it.
    pub epoch: u64,
    /// Data generation: incremented by every reshard.
    pub generation: u64,
    /// Number of shards.
    pub shard_count: u32,
    /// Node address → shard. Nodes absent here are spares.
    pub assignment: BTreeMap<String, ShardId>,
}

/// Why a map change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    /// No such shard id.
    #[error("no shard with id {0}")]
    UnknownShard(ShardId),
    /// Fewer than two nodes per shard would remain.
    #[error("not enough nodes for {0} shards")]
    NotEnoughNodes(u32),
    /// The node already serves another shard.
    #[error("node {0} already belongs to shard {1}")]
    AlreadyAssigned(String, ShardId),
}

impl Default for ShardMap {
    fn default() -> Self {
        Self::replicated()
    }
}

impl ShardMap {
    /// The replication-only map (epoch 0, generation 0): one shard whose members are the view.
    pub fn replicated() -> Self {
        Self {
            epoch: 0,
            generation: 0,
            shard_count: 1,
            assignment: BTreeMap::new(),
        }
    }

    /// True for the replication-only map: every node of the view is a member of shard 0.
    pub fn is_replicated(&self) -> bool {
        self.epoch == 0
    }

    /// The start-up map every node computes alone from the same `VIEW` and `SHARD_COUNT`:
    /// nodes sorted by address, dealt round-robin, epoch 1, generation 1.
    pub fn initial(view: &[String], shard_count: u32) -> Self {
        Self::dealt(view, shard_count, 1, 1)
    }

    fn dealt(nodes: &[String], shard_count: u32, epoch: u64, generation: u64) -> Self {
        let mut sorted: Vec<&String> = nodes.iter().collect();
        sorted.sort();
        sorted.dedup();
        let assignment = if shard_count == 0 {
            BTreeMap::new()
        } else {
            sorted
                .iter()
                .enumerate()
                .map(|(i, n)| ((*n).clone(), (i as u32) % shard_count))
                .collect()
        };
        Self {
            epoch,
            generation,
            shard_count,
            assignment,
        }
    }

    /// All shard ids.
    pub fn ids(&self) -> Vec<ShardId> {
        (0..self.shard_count).collect()
    }

    /// True when `id` names a shard of this map.
    pub fn has_shard(&self, id: ShardId) -> bool {
        id < self.shard_count
    }

    /// The shard of `node`, or `None` for a spare. In the replicated map every node is in
    /// shard 0 (whether it is a member is a question of the view).
    pub fn shard_of(&self, node: &str) -> Option<ShardId> {
        if self.is_replicated() {
            return Some(0);
        }
        self.assignment.get(node).copied()
    }

    /// Nodes assigned to shard `id`, sorted. Empty for the replicated map, whose members are
    /// the view (see `cluster::State::members`).
    pub fn members(&self, id: ShardId) -> Vec<String> {
        self.assignment
            .iter()
            .filter(|(_, s)| **s == id)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The shard owning `key`.
    pub fn shard_for_key(&self, key: &str) -> ShardId {
        key_shard(key, self.shard_count)
    }

    /// The map with `node` added to shard `id` (idempotent when it is already there; in the
    /// replicated map every node already is).
    pub fn with_member(&self, id: ShardId, node: &str) -> Result<Self, ShardError> {
        if !self.has_shard(id) {
            return Err(ShardError::UnknownShard(id));
        }
        match self.shard_of(node) {
            Some(s) if s == id => return Ok(self.clone()),
            Some(s) => return Err(ShardError::AlreadyAssigned(node.to_string(), s)),
            None => {}
        }
        let mut next = self.clone();
        next.epoch += 1;
        next.assignment.insert(node.to_string(), id);
        Ok(next)
    }

    /// A new map of `shard_count` shards over `nodes` (the live view), next epoch and generation.
    pub fn resharded(&self, nodes: &[String], shard_count: u32) -> Result<Self, ShardError> {
        if shard_count == 0 || nodes.len() < 2 * shard_count as usize {
            return Err(ShardError::NotEnoughNodes(shard_count));
        }
        Ok(Self::dealt(
            nodes,
            shard_count,
            self.epoch + 1,
            self.generation + 1,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.10.0.{}:8090", i + 2)).collect()
    }

    #[test]
    fn key_function_is_stable() {
        // Pinned values: changing them breaks every deployed cluster's data placement.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let placed: Vec<u32> = ["alpha", "beta", "gamma", "key0", "key1"]
            .iter()
            .map(|k| key_shard(k, 3))
            .collect();
        assert_eq!(placed, placed.iter().map(|s| *s % 3).collect::<Vec<_>>());
        assert!((0..1000).all(|i| key_shard(&format!("k{i}"), 1) == 0));
    }

    #[test]
    fn keys_are_balanced_within_25_percent() {
        for shards in [2u32, 3, 4] {
            let k = 600;
            let mut counts = vec![0usize; shards as usize];
            for i in 0..k {
                counts[key_shard(&format!("key{i}"), shards) as usize] += 1;
            }
            let ideal = k as f64 / f64::from(shards);
            for c in counts {
                assert!(
                    (c as f64) > 0.75 * ideal && (c as f64) < 1.25 * ideal,
                    "{shards}: {c}"
                );
            }
        }
    }

    #[test]
    fn growing_the_shard_count_moves_few_keys() {
        let moved = (0..10_000)
            .filter(|i| {
                let k = format!("key{i}");
                key_shard(&k, 2) != key_shard(&k, 3)
            })
            .count();
        // ideal is 1/3 of the keys
        assert!(moved > 2_800 && moved < 3_900, "{moved}");
    }

    #[test]
    fn initial_map_is_deterministic_and_fault_tolerant() {
        let mut shuffled = nodes(6);
        shuffled.reverse();
        let m = ShardMap::initial(&shuffled, 2);
        assert_eq!(m, ShardMap::initial(&nodes(6), 2));
        assert_eq!(m.ids(), vec![0, 1]);
        assert!(m.ids().iter().all(|s| m.members(*s).len() == 3));
        assert_eq!(m.shard_of("10.10.0.2:8090"), Some(0));
        assert_eq!(m.shard_of("10.10.0.9:8090"), None);
    }

    #[test]
    fn replicated_map_puts_every_node_in_shard_zero_and_yields_to_any_sharded_map() {
        let r = ShardMap::default();
        assert!(r.is_replicated());
        assert_eq!((r.epoch, r.generation, r.ids()), (0, 0, vec![0]));
        assert_eq!(r.shard_of("10.10.0.9:8090"), Some(0));
        assert!((0..200).all(|i| r.shard_for_key(&format!("k{i}")) == 0));
        assert!(r.members(0).is_empty());
        assert_eq!(r.with_member(0, "10.10.0.9:8090").unwrap(), r);
        assert_eq!(r.with_member(1, "x"), Err(ShardError::UnknownShard(1)));
        let sharded = ShardMap::initial(&nodes(4), 1);
        assert!(!sharded.is_replicated() && sharded.epoch > r.epoch);
        assert_eq!(sharded.shard_of("10.10.0.9:8090"), None);
        // a replicated cluster of 4 resharded into 2: the first sharded map
        let m = r.resharded(&nodes(4), 2).unwrap();
        assert_eq!((m.epoch, m.generation, m.shard_count), (1, 1, 2));
        assert!(m.ids().iter().all(|s| m.members(*s).len() == 2));
        assert_eq!(
            r.resharded(&nodes(3), 2),
            Err(ShardError::NotEnoughNodes(2))
        );
    }

    #[test]
    fn add_member_and_reshard() {
        let m = ShardMap::initial(&nodes(6), 2);
        let spare = "10.10.0.8:8090";
        let m2 = m.with_member(1, spare).unwrap();
        assert_eq!((m2.epoch, m2.generation), (2, 1));
        assert_eq!(m2.shard_of(spare), Some(1));
        assert_eq!(m2.with_member(1, spare).unwrap(), m2);
        assert!(matches!(
            m2.with_member(0, spare),
            Err(ShardError::AlreadyAssigned(..))
        ));
        assert_eq!(m.with_member(5, spare), Err(ShardError::UnknownShard(5)));
        let all = nodes(7);
        assert_eq!(m2.resharded(&all, 10), Err(ShardError::NotEnoughNodes(10)));
        let m3 = m2.resharded(&all, 3).unwrap();
        assert_eq!((m3.epoch, m3.generation, m3.shard_count), (3, 2, 3));
        assert!(m3.ids().iter().all(|s| m3.members(*s).len() >= 2));
        assert_eq!(m3.assignment.len(), 7);
    }
}
