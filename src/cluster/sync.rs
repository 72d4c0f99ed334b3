//! Anti-entropy and state transfer: pull from a peer of the same shard whatever its state has
//! that ours lacks (a delta against our clock), and merge it. Used at start-up, by a new shard
//! member, by a re-admitted peer, and whenever heartbeats show persistent lag.

use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::replication::batch_size;
use super::status::Counters;
use super::{Node, scope};
use crate::domain::clock::VectorClock;
use crate::domain::store::Write;

impl Node {
    /// Pulls and merges a delta from `peer`. At most one pull runs at a time.
    pub async fn sync_from(&self, peer: &str) -> bool {
        if self.syncing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let ok = self.pull(peer, false).await;
        self.syncing.store(false, Ordering::Release);
        ok
    }

    /// Pulls a delta (or, with `full`, everything the peer stores: needed after a reshard,
    /// whose carried-over keys belong to the previous generation) and merges it.
    async fn pull(&self, peer: &str, full: bool) -> bool {
        let started = std::time::Instant::now();
        let (generation, known) = {
            let st = self.state();
            (st.replica.generation, st.replica.clock.clone())
        };
        let snap = match self
            .peers
            .snapshot(peer, generation, (!full).then_some(&known))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                Counters::add(&self.stats.syncs_failed, 1);
                warn!(node = %self.me, %peer, error = %e, "state pull failed");
                return false;
            }
        };
        let changed = {
            let mut guard = self.state();
            let st = &mut *guard;
            if snap.generation != st.replica.generation {
                return false;
            }
            let in_scope = scope(&st.map, &self.me);
            let (writes, bytes) = batch_size(&snap.writes);
            self.stats.sync_done(writes, bytes, started.elapsed());
            let changed = st.replica.absorb(snap.writes, &snap.clock, &in_scope);
            if full {
                st.replica.complete = true;
            }
            changed
        };
        if changed > 0 {
            info!(node = %self.me, %peer, keys = changed, "caught up from peer");
        }
        self.bump_delivered();
        true
    }

    /// Pulls from every live member of this node's shard (a legacy request waiting for
    /// dependencies, or a node that just joined its shard).
    pub async fn sync_from_shard_peers(&self) {
        for peer in self.sync_sources() {
            self.sync_from(&peer).await;
        }
    }

    /// Pulls a delta from every live member of the shard, waiting for a pull already running
    /// rather than skipping (a reshard's sender must hold every acknowledged write first).
    pub async fn catch_up_with_shard(&self) {
        if !self.acquire_sync(true).await {
            warn!(node = %self.me, "could not start catching up with the shard");
            return;
        }
        for peer in self.sync_sources() {
            self.pull(&peer, false).await;
        }
        self.syncing.store(false, Ordering::Release);
    }

    /// Start-up and new-member transfer: pull everything from the first live member of the shard
    /// that answers. Waits (bounded) for a pull already running rather than skipping.
    pub async fn full_sync(&self) {
        if self.acquire_sync(true).await {
            self.pull_full_from_any().await;
        }
    }

    /// Like [`Node::full_sync`], but does nothing if a pull is running or the replica is already
    /// complete (called from every heartbeat while it is not).
    pub async fn try_full_sync(&self) {
        if !self.state().replica.complete && self.acquire_sync(false).await {
            self.pull_full_from_any().await;
        }
    }

    async fn pull_full_from_any(&self) {
        for peer in self.sync_sources() {
            if self.pull(&peer, true).await {
                break;
            }
        }
        self.syncing.store(false, Ordering::Release);
    }

    /// Takes the one-pull-at-a-time flag, waiting up to about 10 s if `wait`.
    async fn acquire_sync(&self, wait: bool) -> bool {
        for _ in 0..if wait { 50 } else { 1 } {
            if !self.syncing.swap(true, Ordering::AcqRel) {
                return true;
            }
            if wait {
                self.pause().await;
            }
        }
        false
    }

    /// Answers a snapshot request: writes the requester lacks (everything when `known` is
    /// `None` or of another generation), our generation and clock.
    pub fn snapshot_for(
        &self,
        generation: u64,
        known: Option<&VectorClock>,
    ) -> (Vec<Write>, u64, VectorClock) {
        let st = self.state();
        let r = &st.replica;
        let writes = match known {
            Some(known) if generation == r.generation => r.store.delta(generation, known),
            _ => r.store.writes().collect(),
        };
        (writes, r.generation, r.clock.clone())
    }
}
