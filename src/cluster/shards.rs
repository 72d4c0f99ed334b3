//! Shard maps on a running node: installing a newer map (and what it implies for the local
//! replica), shard queries answered for any shard, and add-member.

use futures::future::join_all;
use tracing::{info, warn};

use super::durable::NewGeneration;
use super::peers::PeerError;
use super::{Error, Node};
use crate::domain::shard::{ShardId, ShardMap};
use crate::domain::store::{SLICES, Store};

/// How a node takes part in the cluster, decided by the shard map it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Replication-only: no node was given `SHARD_COUNT`; every node of the view holds every key.
    Replicated,
    /// A member of one shard of a sharded store.
    Sharded,
    /// In the view of a sharded store, but in no shard (until an add-member assigns it).
    Spare,
}

impl Mode {
    /// The name used in logs and `Admin/Status`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Replicated => "replicated",
            Mode::Sharded => "sharded",
            Mode::Spare => "spare",
        }
    }

    /// The mode a node `me` holding `map` is in.
    pub fn of(map: &ShardMap, me: &str) -> Self {
        if map.is_replicated() {
            Mode::Replicated
        } else if map.shard_of(me).is_some() {
            Mode::Sharded
        } else {
            Mode::Spare
        }
    }
}

impl Node {
    /// Installs `map` if it is newer than ours. A new generation either commits the keys staged
    /// by a reshard or, if this node missed the reshard, restarts its replica empty and pulls its
    /// new shard's data; joining a shard pulls that shard's data. Returns true if installed.
    /// A reshard's commit should come through [`Node::commit_map`], which merges this node's
    /// own keys into the staged ones a slice at a time first; here only the slices changed
    /// since are merged under the lock.
    pub fn install_map(&self, map: ShardMap) -> bool {
        let mut replaced = None;
        let (need_sync, shard, keys, was) = {
            let mut guard = self.state();
            let st = &mut *guard;
            if map.epoch <= st.map.epoch {
                return false;
            }
            let was = Mode::of(&st.map, &self.me);
            let generation_before = st.replica.generation;
            let old_shard = st.my_shard(&self.me);
            let new_shard = map.shard_of(&self.me);
            let unstaged = st.staging.is_some() && map.generation > st.replica.generation;
            let mut generation = NewGeneration::None;
            let need_sync = if map.generation > st.replica.generation {
                // the slices not merged ahead of the commit (see `commit`); all of them when
                // the map was learned without `commit_map`
                let mut won = self.storage.is_some().then(Vec::new);
                super::commit::merge_changed(st, &self.me, &map, SLICES, won.as_mut());
                let staged = st.staging.take().filter(|s| s.map.epoch == map.epoch);
                replaced = Some(std::mem::take(&mut st.replica.store));
                match staged {
                    Some(staging) => {
                        st.replica.reset(map.generation, staging.store, true);
                        generation = NewGeneration::Promoted {
                            epoch: map.epoch,
                            merged: won.unwrap_or_default(),
                        };
                        false
                    }
                    None => {
                        st.replica.reset(map.generation, Store::new(), false);
                        generation = NewGeneration::Empty;
                        new_shard.is_some()
                    }
                }
            } else {
                // A prepared add-member of this epoch or older can never commit now.
                if st
                    .staging
                    .as_ref()
                    .is_some_and(|s| s.map.epoch <= map.epoch)
                {
                    st.staging = None;
                }
                let joined = old_shard != new_shard && new_shard.is_some();
                if joined {
                    st.replica.complete = false;
                }
                joined
            };
            for node in map.assignment.keys() {
                if *node != *self.me && st.liveness.get(node).is_none() {
                    st.liveness.add(node);
                }
            }
            st.map = map;
            self.persist_new_map(st, generation, unstaged);
            st.ahead.clear();
            if st.replica.generation != generation_before {
                st.has_mine.clear();
            }
            (need_sync, new_shard, st.replica.store.live_count(), was)
        };
        super::commit::drop_off_lock(replaced);
        let (epoch, mode) = {
            let st = self.state();
            (st.map.epoch, Mode::of(&st.map, &self.me))
        };
        info!(node = %self.me, epoch, shard = ?shard, keys, mode = mode.name(), "installed shard map");
        if was == Mode::Replicated {
            info!(node = %self.me, mode = mode.name(),
                  "the cluster is sharded now (a reshard, or peers that were given SHARD_COUNT)");
        }
        self.bump_delivered();
        if need_sync {
            let node = self.clone();
            tokio::spawn(async move { node.full_sync().await });
        }
        true
    }

    /// Shard ids of the current map.
    pub fn shard_ids(&self) -> Vec<ShardId> {
        self.state().map.ids()
    }

    /// How this node takes part in the cluster now.
    pub fn mode(&self) -> Mode {
        Mode::of(&self.state().map, &self.me)
    }

    /// This node's shard (`None` for a spare).
    pub fn node_shard(&self) -> Option<ShardId> {
        self.state().my_shard(&self.me)
    }

    /// Members of shard `id` that are in the view; `None` for an unknown shard.
    pub fn shard_members(&self, id: ShardId) -> Option<Vec<String>> {
        let st = self.state();
        st.map.has_shard(id).then(|| {
            st.members(id)
                .into_iter()
                .filter(|m| st.liveness.in_view(m))
                .collect()
        })
    }

    /// Live keys stored in shard `id`, asked of another member when this node is not one (or
    /// does not hold the shard's full data yet).
    pub async fn shard_key_count(&self, id: ShardId) -> Result<u64, Error> {
        let (mine, count, targets) = {
            let st = self.state();
            if !st.map.has_shard(id) {
                return Err(Error::UnknownShard(id));
            }
            (
                st.my_shard(&self.me) == Some(id) && st.replica.complete,
                st.replica.store.live_count() as u64,
                st.contact_order(id, &self.me),
            )
        };
        if mine {
            return Ok(count);
        }
        for t in targets {
            if let Ok(n) = self.peers.key_count(&t, id).await {
                return Ok(n);
            }
        }
        Err(Error::NoMemberAnswered(id))
    }

    /// Live keys this node stores, if it is a member of `id` holding the shard's full data (a
    /// member still pulling it after joining or a reshard declines, and the asker tries another).
    pub fn local_key_count(&self, id: ShardId) -> Option<u64> {
        let st = self.state();
        (st.my_shard(&self.me) == Some(id) && st.replica.complete)
            .then(|| st.replica.store.live_count() as u64)
    }

    /// Adds `addr` (a node in the view) to shard `id`: prepares the new map on every node of
    /// the view (this one first), then installs it everywhere. A node that has another change
    /// prepared (an add-member or reshard racing from another node) refuses, and then this one
    /// is undone everywhere and refused with [`Error::Conflict`] (nothing changed; retry), so
    /// two changes never install different maps of the same epoch. A node whose port refuses
    /// connections is down (it learns the map when it comes back); one that does not answer
    /// may be cut off with a change of its own, so it fails the add-member too.
    pub async fn add_member(&self, id: ShardId, addr: &str) -> Result<(), Error> {
        let (map, others) = {
            let st = self.state();
            if !st.map.has_shard(id) {
                return Err(Error::UnknownShard(id));
            }
            if !st.liveness.in_view(addr) {
                return Err(Error::NotInView(addr.to_string()));
            }
            let others: Vec<String> = st.view_peers(&self.me);
            let map = st.map.with_member(id, addr)?;
            if map.epoch == st.map.epoch {
                // already a member (in a replication-only cluster every node of the view is)
                return Ok(());
            }
            (map, others)
        };
        info!(node = %self.me, shard = id, member = %addr, epoch = map.epoch, "adding member to shard");
        let nodes: Vec<String> = std::iter::once(self.me.to_string())
            .chain(others.iter().cloned())
            .collect();
        let prepared = join_all(nodes.iter().map(|n| self.call_prepare(n, &map))).await;
        let refused = prepared.into_iter().find_map(|r| match r {
            Err(Error::Peer {
                source: PeerError::NotSent(_),
                ..
            })
            | Ok(()) => None,
            Err(e) => Some(e),
        });
        if let Some(e) = refused {
            warn!(node = %self.me, shard = id, member = %addr, error = %e, "add-member refused; undoing it");
            self.drop_prepared_everywhere(&nodes, &map).await;
            return Err(Error::Conflict(Box::new(e)));
        }
        self.install_map(map.clone());
        join_all(others.iter().map(|o| self.peers.install_map(o, &map))).await;
        Ok(())
    }
}
