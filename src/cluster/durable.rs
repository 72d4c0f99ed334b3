//! The node's side of durability: what changes under the lock is handed to `storage` there, in
//! the order it happened, and a node with a data directory is rebuilt from it at start-up
//! (replica data and counters, shard map, a prepared reshard's staged keys, incarnation).
//! Nothing here waits while holding the lock: callers get a [`Ticket`] to await after.

use std::sync::Arc;

use tracing::info;

use super::{Node, Staging, State, now_ms};
use crate::domain::replica::Replica;
use crate::domain::shard::ShardMap;
use crate::domain::store::Store;
use crate::domain::store::Write;
use crate::domain::token_key;
use crate::storage::{Change, Kept, Recovered, ReplicaMeta, Storage, StorageError, Ticket};

/// What installing a map did to the replica's data (see [`Node::persist_new_map`]).
pub(super) enum NewGeneration {
    /// Nothing: same generation.
    None,
    /// The staging area of `epoch` became the data, with `merged` merged into it at the commit.
    Promoted {
        /// Epoch of the committed reshard.
        epoch: u64,
        /// Own keys merged into the staged ones under the lock (stored with the promotion).
        merged: Vec<Write>,
    },
    /// A new generation starting empty (the node missed the reshard).
    Empty,
}

/// The replica's counters as storage keeps them.
pub fn replica_meta(r: &Replica) -> ReplicaMeta {
    ReplicaMeta {
        generation: r.generation,
        clock: r.clock.clone(),
        complete: r.complete,
    }
}

/// The incarnation of a run after one that recorded `previous`: its start time, but always
/// above the previous one (a clock that stepped back must not make a restart look older).
pub fn next_incarnation(previous: u64) -> u64 {
    now_ms().max(previous.saturating_add(1))
}

/// The writes storage recovered, applied to stores as they were read (no list of them all is
/// ever built: at a million keys that list alone outweighs the store).
#[derive(Default)]
pub(super) struct Loaded {
    /// The replica's data.
    store: Store,
    /// A prepared reshard's staged keys, and their size as the staging area counts it.
    staged: Store,
    staged_bytes: usize,
}

impl Loaded {
    /// Takes one recovered write.
    fn take(&mut self, kept: Kept, w: Write) {
        match kept {
            Kept::Replica => {
                self.store.apply(w);
            }
            Kept::Staged => {
                self.staged_bytes += crate::cluster::batch::write_bytes(&w);
                self.staged.apply(w);
            }
        }
    }
}

/// Puts what storage recovered into a new node's state and starts recording changes.
/// Returns whether there was replica data to recover (a used data directory).
pub(super) fn restore(st: &mut State, rec: Recovered, loaded: Loaded) -> bool {
    // Tokens issued before the restart stay valid (the oldest key is signed with again).
    for key in rec.token_keys.iter().rev() {
        token_key::adopt(*key);
    }
    if let Some(map) = rec.map.filter(|m| m.epoch >= st.map.epoch) {
        st.map = map;
    }
    let recovered = rec.replica.is_some();
    if let Some(meta) = rec.replica {
        st.replica
            .reset(meta.generation, loaded.store, meta.complete);
        st.replica.clock = meta.clock;
    }
    if let Some(map) = rec.staged.filter(|m| m.epoch > st.map.epoch) {
        let mut staging = Staging::new(map);
        staging.bytes = loaded.staged_bytes;
        staging.store = loaded.staged;
        st.staging = Some(staging);
    }
    st.replica.record_changes();
    recovered
}

impl Node {
    /// A node whose state is kept in `storage`: rebuilt from what it recovered. Fails when the
    /// data directory cannot be read (the error names it).
    pub fn with_storage(
        cfg: crate::config::Config,
        peers: Arc<dyn super::peers::Peers>,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, StorageError> {
        let mut loaded = Loaded::default();
        let rec = storage.recover(&mut |kept, w| loaded.take(kept, w))?;
        let incarnation = next_incarnation(rec.incarnation);
        let node = Self::build(cfg, peers, Some(storage), incarnation);
        let (recovered, keys, own) = {
            let mut st = node.state();
            let recovered = restore(&mut st, rec, loaded);
            let changes = vec![
                Change::Incarnation(incarnation),
                Change::Map(st.map.clone()),
                Change::Applied(Vec::new(), replica_meta(&st.replica)),
            ];
            node.persist_unwaited(changes);
            node.persist_token_keys();
            let own = st.replica.clock.get(&node.me);
            (recovered, st.replica.store.len(), own)
        };
        node.recovered
            .store(recovered, std::sync::atomic::Ordering::Release);
        info!(node = %node.me, recovered, keys, own_writes = own, incarnation, "state restored from the data directory");
        Ok(node)
    }

    /// True when this node restarted from a data directory that held its replica.
    pub fn restarted_from_disk(&self) -> bool {
        self.recovered.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Hands `changes` to storage (call under the lock, so they keep their order).
    pub(super) fn persist(&self, changes: Vec<Change>) -> Ticket {
        match &self.storage {
            Some(s) => s.submit(changes),
            None => Ticket::done(),
        }
    }

    /// [`Node::persist`] for changes nobody waits for (the storage may sync them a little later
    /// than a client's write: see [`Storage::submit_unwaited`]).
    pub(super) fn persist_unwaited(&self, changes: Vec<Change>) {
        if let Some(s) = &self.storage {
            s.submit_unwaited(changes);
        }
    }

    /// The replica's winning writes since the last call and its counters (call under the
    /// lock), if there is anything to store. With `force` the counters go even when no write
    /// changed (the clock was raised by a sync, or the replica became complete).
    fn replica_change(&self, st: &mut State, force: bool) -> Option<Change> {
        self.storage.as_ref()?;
        let writes = st.replica.take_changes();
        if writes.is_empty() && !force {
            return None;
        }
        Some(Change::Applied(writes, replica_meta(&st.replica)))
    }

    /// Hands the replica's winning writes since the last call and its counters to storage
    /// (call under the lock); see [`Node::replica_change`].
    pub(super) fn persist_replica(&self, st: &mut State, force: bool) -> Ticket {
        match self.replica_change(st, force) {
            Some(c) => self.persist(vec![c]),
            None => Ticket::done(),
        }
    }

    /// [`Node::persist_replica`] when nobody waits for it (a peer's writes applied, counters).
    pub(super) fn persist_replica_unwaited(&self, st: &mut State, force: bool) {
        if let Some(c) = self.replica_change(st, force) {
            self.persist_unwaited(vec![c]);
        }
    }

    /// The changes of a new map and, with it, of a new generation: a reshard committed here
    /// promotes its staging area (what storage holds of it already, plus the writes merged at
    /// the commit: O(changes) under the lock, never the whole store), or the node missed the
    /// reshard and starts empty.
    pub(super) fn persist_new_map(
        &self,
        st: &mut State,
        generation: NewGeneration,
        unstaged: bool,
    ) {
        if self.storage.is_none() {
            return;
        }
        let mut changes = Vec::new();
        let meta = replica_meta(&st.replica);
        // in a new generation, writes recorded before the reset were the old one's (stored)
        let recorded = st.replica.take_changes();
        match generation {
            NewGeneration::None => {
                changes.push(Change::Applied(recorded, meta));
                if unstaged {
                    changes.push(Change::Unstaged);
                }
            }
            NewGeneration::Promoted { epoch, merged } => changes.push(Change::Promoted {
                epoch,
                writes: merged,
                meta,
            }),
            NewGeneration::Empty => {
                changes.push(Change::Replaced(Vec::new(), meta));
                if unstaged {
                    changes.push(Change::Unstaged);
                }
            }
        }
        changes.push(Change::Map(st.map.clone()));
        self.persist_unwaited(changes);
    }

    /// Keeps a reshard's staged keys (the first call, with none, opens the staging area).
    pub(super) fn persist_staged(&self, map: &ShardMap, writes: Vec<crate::domain::store::Write>) {
        if self.storage.is_some() {
            self.persist_unwaited(vec![Change::Staged(map.clone(), writes)]);
        }
    }

    /// Keeps the metadata-token keys when the signing key changed since they were last kept
    /// (called at start and from every heartbeat round; cheap when nothing changed).
    pub(super) fn persist_token_keys(&self) {
        if self.storage.is_none() {
            return;
        }
        let current = token_key::current();
        let mut saved = self.token_saved.lock().unwrap_or_else(|p| p.into_inner());
        if *saved != Some(current) {
            *saved = Some(current);
            self.persist_unwaited(vec![Change::TokenKeys(token_key::known())]);
        }
    }

    /// After catching up at start-up: if peers held writes of ours numbered above what the data
    /// directory held (`own_on_disk`), they are back now and numbering goes on above them. In
    /// `always` mode this is either a directory that lost acknowledged writes (truncated, rolled
    /// back) or writes applied here but not yet stored when the process died, which a peer
    /// pulled by anti-entropy (never acknowledged); both end safe, so it is logged, not refused
    /// (a damaged directory the engine cannot read is refused at open). Returns whether the
    /// replica must copy the shard again (never, for now).
    pub(super) fn check_own_writes(&self, own_on_disk: u64) -> Result<bool, StorageError> {
        if self.storage.is_none() || !self.restarted_from_disk() {
            return Ok(false);
        }
        let own = self.state().replica.clock.get(&self.me);
        if own > own_on_disk {
            tracing::warn!(node = %self.me, own_on_disk, own,
                "the data directory lacked some of this node's own writes; recovered them from peers");
        }
        Ok(false)
    }

    /// `Err` with the reason while storage cannot take writes (a full disk): client writes are
    /// refused before they are applied, so nothing is acknowledged that is not stored.
    pub fn storage_writable(&self) -> Result<(), String> {
        match &self.storage {
            Some(s) => s.writable().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::op::{KvOp, Outcome};
    use crate::cluster::scripted::ScriptedPeers;
    use crate::domain::metadata::CausalMetadata;
    use crate::storage::memory::MemoryStorage;

    /// A member of a 4-node, 2-shard cluster kept in `storage`, serving at once.
    fn node(storage: &Arc<MemoryStorage>) -> Node {
        let cfg = crate::cluster::scripted::four_node_config();
        let node = Node::with_storage(cfg, Arc::new(ScriptedPeers::default()), storage.clone())
            .expect("recover");
        let _ = node.ready.send_replace(true);
        node
    }

    fn own_keys(n: &Node, count: usize) -> Vec<String> {
        let st = n.state();
        let mine = st.my_shard(&n.me);
        (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| Some(st.map.shard_for_key(k)) == mine)
            .take(count)
            .collect()
    }

    async fn put(n: &Node, key: &str, meta: CausalMetadata) -> crate::cluster::op::OpReply {
        n.execute_local(key, KvOp::Put("1".into()), meta, Duration::ZERO)
            .await
    }

    #[tokio::test]
    async fn a_restarted_node_has_its_writes_counters_and_serves_old_metadata() {
        let storage = Arc::new(MemoryStorage::new());
        let first = node(&storage);
        let keys = own_keys(&first, 20);
        let mut meta = CausalMetadata::empty();
        for k in &keys {
            let r = put(&first, k, meta.clone()).await;
            assert_eq!(r.outcome, Outcome::Created);
            meta = r.metadata.expect("metadata");
        }
        let incarnation = first.incarnation;
        drop(first);
        let again = node(&storage);
        assert!(again.restarted_from_disk());
        assert!(again.incarnation > incarnation);
        let get = again
            .execute_local(&keys[0], KvOp::Get, meta.clone(), Duration::ZERO)
            .await;
        assert_eq!(get.outcome, Outcome::Found, "old metadata is satisfied");
        let r = put(&again, &keys[1], meta).await;
        assert_eq!(r.outcome, Outcome::Replaced);
        let seq = r.written.expect("write id");
        assert_eq!(seq.seq, 21, "numbering goes on after the restart");
    }

    #[tokio::test]
    async fn a_write_storage_cannot_take_is_refused_and_not_applied() {
        let storage = Arc::new(MemoryStorage::new());
        let n = node(&storage);
        let key = own_keys(&n, 1).remove(0);
        storage.set_failing(true);
        let r = put(&n, &key, CausalMetadata::empty()).await;
        assert!(
            matches!(r.outcome, Outcome::Unavailable(ref m) if m.contains("storage")),
            "{r:?}"
        );
        assert!(n.state().replica.store.get(&key).is_none());
        storage.set_failing(false);
        let r = put(&n, &key, CausalMetadata::empty()).await;
        assert_eq!(r.outcome, Outcome::Created);
        assert_eq!(storage.key_count(), 1);
    }

    #[tokio::test]
    async fn a_reshard_commit_stores_only_what_it_merges_and_survives_a_restart() {
        let storage = Arc::new(MemoryStorage::new());
        let first = node(&storage);
        let mut meta = CausalMetadata::empty();
        for k in own_keys(&first, 300) {
            meta = put(&first, &k, meta).await.metadata.expect("metadata");
        }
        let view: Vec<String> = (2..6).map(|i| format!("127.0.0.{i}:8090")).collect();
        let map = first.state().map.resharded(&view, 1).expect("reshard");
        first.prepare_reshard(map.clone()).expect("prepared");
        // a key of the other old shard arrives from its sender
        let mine = first.node_shard();
        let old_map = first.state().map.clone();
        let other = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| Some(old_map.shard_for_key(k)) != mine)
            .expect("a key of the other shard");
        let sent = crate::domain::store::Write {
            key: other.clone(),
            version: crate::domain::store::Version {
                generation: 1,
                origin: view[2].as_str().into(),
                seq: 1,
                clock: crate::domain::clock::VectorClock::from_entries([(view[2].clone(), 1)]),
            },
            value: Some("\"sent\"".into()),
        };
        first.stage(map.epoch, vec![sent]).expect("staged");
        first.premerge(&map).await;
        // a late write of ours (replication draining) changes one slice after the merge
        let late = own_keys(&first, 301).pop().expect("a key");
        {
            let mut st = first.state();
            let (w, _) =
                st.replica
                    .local_write(&first.me, late.clone(), Some("\"late\"".into()), &meta);
            first.persist_replica_unwaited(&mut st, false);
            assert_eq!(w.key, late);
        }
        let before = storage.writes_submitted();
        assert!(first.install_map(map.clone()));
        assert_eq!(
            storage.writes_submitted() - before,
            1,
            "the commit hands storage the late write only, not the 302 keys"
        );
        let (keys, generation) = {
            let st = first.state();
            (
                st.replica.store.writes().collect::<Vec<_>>(),
                st.replica.generation,
            )
        };
        assert_eq!(keys.len(), 302);
        drop(first);
        let again = node(&storage);
        let st = again.state();
        assert_eq!(
            (st.replica.generation, st.map.epoch),
            (generation, map.epoch)
        );
        assert!(st.staging.is_none());
        assert_eq!(st.replica.store.len(), keys.len());
        for w in &keys {
            let kept = st.replica.store.get(&w.key).expect("kept");
            assert_eq!((&kept.version, &kept.value), (&w.version, &w.value));
        }
    }
}
