//! An in-memory [`Storage`] for tests: keeps exactly what the engine keeps, synchronously, so
//! a cluster test can "restart" a node from it. It can be told to fail writes (a full disk).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Change, Fsync, Recovered, ReplicaMeta, Storage, StorageError, Ticket};
use crate::domain::shard::ShardMap;
use crate::domain::store::{Version, Write};

/// What is kept.
#[derive(Debug, Default)]
struct Kept {
    replica: Option<ReplicaMeta>,
    data: BTreeMap<String, Write>,
    map: Option<ShardMap>,
    staged: Option<(ShardMap, BTreeMap<String, Write>)>,
    incarnation: u64,
    token_keys: Vec<crate::domain::token_key::TokenKey>,
}

/// Storage in a map; see the module doc.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    kept: Mutex<Kept>,
    failing: AtomicBool,
}

fn newer(old: Option<&Write>, new: &Version) -> bool {
    old.is_none_or(|o| new.total_cmp(&o.version).is_gt())
}

impl MemoryStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// While `fail` is set every submit fails, as on a full disk.
    pub fn set_failing(&self, fail: bool) {
        self.failing.store(fail, Ordering::Release);
    }

    /// Number of keys kept for the replica.
    pub fn key_count(&self) -> usize {
        self.lock().data.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn submit(&self, changes: Vec<Change>) -> Ticket {
        if self.failing.load(Ordering::Acquire) {
            let (ticket, tx) = Ticket::pair();
            let _ = tx.send(Err(StorageError::Write("no space left (simulated)".into())));
            return ticket;
        }
        let mut k = self.lock();
        for change in changes {
            match change {
                Change::Applied(writes, meta) => {
                    for w in writes {
                        if newer(k.data.get(&w.key), &w.version) {
                            k.data.insert(w.key.clone(), w);
                        }
                    }
                    k.replica = Some(meta);
                }
                Change::Replaced(writes, meta) => {
                    k.data = writes.into_iter().map(|w| (w.key.clone(), w)).collect();
                    k.replica = Some(meta);
                }
                Change::Map(map) => k.map = Some(map),
                Change::Staged(map, writes) => {
                    let slot = match k.staged.take() {
                        Some((m, s)) if m.epoch == map.epoch => (m, s),
                        _ => (map, BTreeMap::new()),
                    };
                    let (m, mut s) = slot;
                    for w in writes {
                        if newer(s.get(&w.key), &w.version) {
                            s.insert(w.key.clone(), w);
                        }
                    }
                    k.staged = Some((m, s));
                }
                Change::Unstaged => k.staged = None,
                Change::Incarnation(n) => k.incarnation = n,
                Change::TokenKeys(keys) => k.token_keys = keys,
            }
        }
        Ticket::done()
    }

    fn recover(&self) -> Result<Recovered, StorageError> {
        let k = self.lock();
        Ok(Recovered {
            replica: k.replica.clone(),
            writes: k.data.values().cloned().collect(),
            map: k.map.clone(),
            staged: k
                .staged
                .as_ref()
                .map(|(m, s)| (m.clone(), s.values().cloned().collect())),
            incarnation: k.incarnation,
            token_keys: k.token_keys.clone(),
        })
    }

    fn writable(&self) -> Result<(), StorageError> {
        if self.failing.load(Ordering::Acquire) {
            return Err(StorageError::Write("no space left (simulated)".into()));
        }
        Ok(())
    }

    fn fsync(&self) -> Fsync {
        Fsync::Always
    }
}
