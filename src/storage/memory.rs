//! An in-memory [`Storage`] for tests: keeps exactly what the engine keeps, synchronously, so
//! a cluster test can "restart" a node from it. It can be told to fail writes (a full disk).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Change, Fsync, Kept, Recovered, ReplicaMeta, Storage, StorageError, Ticket};
use crate::domain::shard::ShardMap;
use crate::domain::store::{Version, Write};

/// What is kept.
#[derive(Debug, Default)]
struct Held {
    replica: Option<ReplicaMeta>,
    data: BTreeMap<String, Write>,
    map: Option<ShardMap>,
    staged: Option<(ShardMap, BTreeMap<String, Write>)>,
    incarnation: u64,
    token_keys: Vec<crate::domain::token_key::TokenKey>,
    /// Writes handed over in all submits so far (what a commit costs).
    submitted: usize,
}

/// Storage in a map; see the module doc.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    kept: Mutex<Held>,
    failing: AtomicBool,
}

fn newer(old: Option<&Write>, new: &Version) -> bool {
    old.is_none_or(|o| new.total_cmp(&o.version).is_gt())
}

/// Applies `writes` to `data`, each where it is newer than the kept one.
fn apply(data: &mut BTreeMap<String, Write>, writes: Vec<Write>) {
    for w in writes {
        if newer(data.get(&w.key), &w.version) {
            data.insert(w.key.clone(), w);
        }
    }
}

/// Writes a change hands over.
fn count(change: &Change) -> usize {
    match change {
        Change::Applied(w, _) | Change::Replaced(w, _) | Change::Staged(_, w) => w.len(),
        Change::Promoted { writes, .. } => writes.len(),
        _ => 0,
    }
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

    /// Writes handed over by every submit so far (a commit's cost is the difference).
    pub fn writes_submitted(&self) -> usize {
        self.lock().submitted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
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
        k.submitted += changes.iter().map(count).sum::<usize>();
        for change in changes {
            match change {
                Change::Applied(writes, meta) => {
                    apply(&mut k.data, writes);
                    k.replica = Some(meta);
                }
                Change::Replaced(writes, meta) => {
                    k.data = writes.into_iter().map(|w| (w.key.clone(), w)).collect();
                    k.replica = Some(meta);
                }
                Change::Promoted {
                    epoch,
                    writes,
                    meta,
                } => {
                    // the engine refuses a promotion without its staging area the same way
                    let Some((_, staged)) = k.staged.take().filter(|(m, _)| m.epoch == epoch)
                    else {
                        let (ticket, tx) = Ticket::pair();
                        let _ = tx.send(Err(StorageError::Write(format!(
                            "no staging area of epoch {epoch} to promote"
                        ))));
                        return ticket;
                    };
                    k.data = staged;
                    apply(&mut k.data, writes);
                    k.replica = Some(meta);
                }
                Change::Map(map) => k.map = Some(map),
                Change::Staged(map, writes) => {
                    let (m, mut s) = match k.staged.take() {
                        Some((m, s)) if m.epoch == map.epoch => (m, s),
                        _ => (map, BTreeMap::new()),
                    };
                    apply(&mut s, writes);
                    k.staged = Some((m, s));
                }
                Change::Unstaged => k.staged = None,
                Change::Incarnation(n) => k.incarnation = n,
                Change::TokenKeys(keys) => k.token_keys = keys,
            }
        }
        Ticket::done()
    }

    fn recover(&self, sink: &mut dyn FnMut(Kept, Write)) -> Result<Recovered, StorageError> {
        let k = self.lock();
        k.data.values().for_each(|w| sink(Kept::Replica, w.clone()));
        if let Some((_, s)) = &k.staged {
            s.values().for_each(|w| sink(Kept::Staged, w.clone()));
        }
        Ok(Recovered {
            replica: k.replica.clone(),
            map: k.map.clone(),
            staged: k.staged.as_ref().map(|(m, _)| m.clone()),
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
