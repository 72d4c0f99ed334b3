//! One group commit's key updates, collected per partition and key (the last update of a key
//! wins) and turned into one atomic fjall batch.

use std::collections::HashMap;

use fjall::{Keyspace, PartitionHandle};

/// One group's key updates, the last one per key kept: fjall gives every item of a batch the
/// same sequence number, so two updates of one key in a batch (a key replicated twice in one
/// batch, the counters of every job of a group) would leave either one standing.
#[derive(Default)]
pub(in crate::storage::engine) struct Ops {
    parts: Vec<PartitionHandle>,
    /// (index in `parts`, key) → value, `None` = delete.
    keys: HashMap<(usize, Vec<u8>), Option<Vec<u8>>>,
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

    pub(super) fn put(&mut self, part: &PartitionHandle, key: impl AsRef<[u8]>, value: Vec<u8>) {
        let i = self.slot(part);
        self.bytes += (key.as_ref().len() + value.len()) as u64;
        self.keys.insert((i, key.as_ref().to_vec()), Some(value));
    }

    pub(super) fn del(&mut self, part: &PartitionHandle, key: impl AsRef<[u8]>) {
        let i = self.slot(part);
        self.bytes += key.as_ref().len() as u64;
        self.keys.insert((i, key.as_ref().to_vec()), None);
    }

    /// Key and value bytes of the updates.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The batch that stores every update at once.
    pub(super) fn into_batch(self, ks: &Keyspace) -> fjall::Batch {
        let mut batch = ks.batch();
        for ((i, key), value) in self.keys {
            match value {
                Some(v) => batch.insert(&self.parts[i], key, v),
                None => batch.remove(&self.parts[i], key),
            }
        }
        batch
    }
}
