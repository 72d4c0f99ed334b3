//! Committing a reshard without holding the node's lock for O(N).
//!
//! A reshard's commit installs the staged keys (sent by every old shard) joined with this node's
//! own keys of its new shard. That join is done ahead of the commit, one slice of the store at a
//! time under the lock ([`Node::premerge`]); each merged slice's stamp is recorded in the
//! staging area, and the commit itself ([`Node::install_map`]) re-merges only the slices whose
//! stamp moved since (writes still trickling in from before the reshard paused clients), then
//! swaps the stores. The store that is replaced, and a staging area that is dropped, are freed
//! off the lock too ([`drop_off_lock`]): freeing a million keys takes longer than a heartbeat may.

use super::{Node, State};
use crate::domain::shard::ShardMap;
use crate::domain::store::{SLICES, Store, Write};

/// Passes over the store [`Node::premerge`] makes at most (re-merging slices that changed
/// meanwhile) before it leaves the rest to the commit: client writes are held during a reshard,
/// so the replica's store only changes while replication of earlier writes drains.
const PREMERGE_PASSES: usize = 3;

/// Frees `store` without holding any lock: on a blocking thread when a runtime is running (so
/// no async worker stalls either), else here.
pub fn drop_off_lock(store: Option<Store>) {
    let Some(store) = store.filter(|s| !s.is_empty()) else {
        return;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(move || drop(store));
        }
        Err(_) => drop(store),
    }
}

/// Merges into the staging area the slices of the replica's store that changed since they were
/// last merged (or were never merged), limited to `at_most` slices; returns how many it merged.
/// Only keys of `map`'s shard for `me` are merged (a node in no new shard keeps nothing). The
/// writes that won in the staging area are pushed to `won` if given (for storage).
pub(super) fn merge_changed(
    st: &mut State,
    me: &str,
    map: &ShardMap,
    at_most: usize,
    mut won: Option<&mut Vec<Write>>,
) -> usize {
    let new_shard = map.shard_of(me);
    let State {
        replica, staging, ..
    } = st;
    let Some(staging) = staging.as_mut().filter(|s| s.map.epoch == map.epoch) else {
        return 0;
    };
    let mut merged = 0;
    for i in 0..SLICES {
        if merged >= at_most {
            break;
        }
        let stamp = replica.store.stamp(i);
        if staging.merged[i] == stamp {
            continue;
        }
        if let Some(s) = new_shard {
            replica.store.merge_slice_into(
                i,
                &mut staging.store,
                |k| map.shard_for_key(k) == s,
                won.as_deref_mut(),
            );
        }
        staging.merged[i] = stamp;
        merged += 1;
    }
    merged
}

impl Node {
    /// Merges this node's own keys of its new shard into the staging area of `map`'s reshard,
    /// one slice per lock hold, so the commit that follows has (almost) nothing left to merge.
    /// With storage the keys merged are staged there too, in the same lock hold, so the
    /// commit stores only what it merges itself. Does nothing unless `map` commits the reshard
    /// staged here.
    pub async fn premerge(&self, map: &ShardMap) {
        for _ in 0..PREMERGE_PASSES * SLICES {
            let merged = {
                let mut st = self.state();
                if map.generation <= st.replica.generation {
                    return;
                }
                let mut won = self.storage.is_some().then(Vec::new);
                let merged = merge_changed(&mut st, &self.me, map, 1, won.as_mut());
                if let Some(won) = won.filter(|w| !w.is_empty()) {
                    self.persist_staged(map, won);
                }
                merged
            };
            if merged == 0 {
                return;
            }
            // let heartbeats and clients at the lock between slices
            tokio::task::yield_now().await;
        }
    }

    /// Installs `map`, merging a reshard's staged keys ahead of the commit (see the module).
    pub async fn commit_map(&self, map: ShardMap) -> bool {
        self.premerge(&map).await;
        self.install_map(map)
    }

    /// True when `map` commits the reshard staged here (installing it merges staged keys).
    pub fn commits_staging(&self, map: &ShardMap) -> bool {
        let st = self.state();
        map.generation > st.replica.generation
            && st
                .staging
                .as_ref()
                .is_some_and(|s| s.map.epoch == map.epoch)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::scripted::ScriptedPeers;
    use crate::domain::store::Write;

    /// A write of generation 1 whose clock is its own sequence number.
    fn write(key: &str, origin: &str, seq: u64, value: &str) -> Write {
        crate::domain::store::tests::write(key, origin, seq, &[(origin, seq)], Some(value))
    }

    #[tokio::test]
    async fn the_commit_merges_own_keys_ahead_and_only_changed_slices_under_the_lock() {
        let view: Vec<String> = (2..6).map(|i| format!("127.0.0.{i}:8090")).collect();
        let cfg = crate::cluster::scripted::env_config(&view[0], &view, 1);
        let node = Node::new(cfg, Arc::new(ScriptedPeers::default()));
        let me = node.me.to_string();
        let map = {
            let mut st = node.state();
            for i in 0..2_000u64 {
                st.replica
                    .store
                    .apply(write(&format!("k{i}"), &view[1], i + 1, "\"own\""));
            }
            st.map.resharded(&view, 2).expect("reshard")
        };
        let mine = map.shard_of(&me).expect("a member of the new map");
        node.prepare_reshard(map.clone()).expect("prepared");
        // one key of ours arrives from the old shard's sender, newer than our copy
        let sent = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| map.shard_for_key(k) == mine)
            .expect("a key of the new shard");
        node.stage(map.epoch, vec![write(&sent, &view[1], 5_000, "\"sent\"")])
            .expect("staged");
        node.premerge(&map).await;
        assert_eq!(
            merge_changed(&mut node.state(), &me, &map, SLICES, None),
            0,
            "every slice merged ahead of the commit"
        );
        // a late replicated write changes one slice after the merge
        let late = (2_000u64..)
            .map(|i| format!("k{i}"))
            .find(|k| map.shard_for_key(k) == mine)
            .expect("a key of the new shard");
        node.state()
            .replica
            .store
            .apply(write(&late, &view[2], 1, "\"late\""));
        assert!(node.install_map(map.clone()));
        let st = node.state();
        let store = &st.replica.store;
        let expected = (0..2_000u64)
            .filter(|i| map.shard_for_key(&format!("k{i}")) == mine)
            .count();
        assert_eq!(
            store.live_count(),
            expected + 1,
            "own keys of the new shard, and the late one"
        );
        assert_eq!(store.get(&late).unwrap().value.as_deref(), Some("\"late\""));
        assert_eq!(store.get(&sent).unwrap().value.as_deref(), Some("\"sent\""));
        assert!(st.staging.is_none());
        assert_eq!(st.replica.generation, map.generation);
    }
}
