//! One group commit's key updates, collected per partition and key (the last update of a key
//! wins) and turned into one atomic fjall batch.

use std::collections::HashSet;

use fjall::{Keyspace, PartitionHandle};

/// Updates up to which duplicates are found by comparing each with the ones kept (cheaper than
/// hashing the keys of the usual commit: a write or a few, and the counters).
const SMALL: usize = 16;

/// One group's key updates, the last one per key kept: fjall gives every item of a batch the
/// same sequence number, so two updates of one key in a batch (a key replicated twice in one
/// batch, the counters of every submission of a group) would leave either one standing.
#[derive(Default)]
pub(in crate::storage::engine) struct Ops {
    parts: Vec<PartitionHandle>,
    /// (index in `parts`, key, value; `None` = delete), in the order they were made.
    updates: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
    /// Key and value bytes put, about what the journal takes.
    bytes: u64,
}

impl Ops {
    fn slot(&mut self, part: &PartitionHandle) -> usize {
        match self.parts.iter().position(|p| p.name == part.name) {
            Some(i) => i,
            None => {
                self.parts.push(part.clone());
                self.parts.len() - 1
            }
        }
    }

    pub(super) fn put(&mut self, part: &PartitionHandle, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        let (i, key) = (self.slot(part), key.into());
        self.bytes += (key.len() + value.len()) as u64;
        self.updates.push((i, key, Some(value)));
    }

    pub(super) fn del(&mut self, part: &PartitionHandle, key: impl Into<Vec<u8>>) {
        let (i, key) = (self.slot(part), key.into());
        self.bytes += key.len() as u64;
        self.updates.push((i, key, None));
    }

    /// Key and value bytes of the updates.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The batch that stores every update at once (the last one of each key).
    pub(super) fn into_batch(self, ks: &Keyspace) -> fjall::Batch {
        let mut batch = fjall::Batch::with_capacity(ks.clone(), self.updates.len());
        let mut seen: HashSet<(usize, &[u8])> = HashSet::new();
        let mut kept: Vec<(usize, &[u8])> = Vec::new();
        for (i, key, value) in self.updates.iter().rev() {
            let first = if self.updates.len() <= SMALL {
                let first = !kept.contains(&(*i, key.as_slice()));
                kept.push((*i, key));
                first
            } else {
                seen.insert((*i, key))
            };
            match value {
                Some(v) if first => batch.insert(&self.parts[*i], key.as_slice(), v.as_slice()),
                None if first => batch.remove(&self.parts[*i], key.as_slice()),
                _ => {}
            }
        }
        batch
    }
}
