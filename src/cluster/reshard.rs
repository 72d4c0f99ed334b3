//! Resharding with key transfer, coordinated by the node that received the request:
//! 1. prepare: every node in the view stops taking client writes and opens a staging area;
//! 2. transfer: one live member of each old shard catches up with its shard peers, then streams
//!    every key to the members of the key's new shard that lack it (`reshard_send`);
//! 3. commit: every node installs the new map with its staged keys (a node that misses the
//!    commit learns the map from heartbeats and pulls its data).
//!
//! Any failure before commit aborts everywhere: the old map and data stay in force.

use std::time::Duration;

use tokio::time::Instant;

use futures::future::join_all;
use tracing::{info, warn};

use super::reshard_watch::{SEND_IDLE, watch_sender};
use super::status::ReshardPhase;
use super::{Error, Node, Staging};
use crate::domain::replica::write_bytes;
use crate::domain::shard::ShardMap;
use crate::domain::store::Write;

/// A prepared reshard that hears nothing of its change for this long (no batch staged, no
/// keep-alive from its coordinator, no commit) is dropped: its coordinator died. An idle
/// timeout, so a long transfer that keeps going is never cut off (see `reshard_watch`).
pub const STAGING_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes one node may stage for a reshard (counted as in the causal buffer): far above any
/// shard this in-memory store holds on the machines we run on, and a hard stop for a transfer
/// that would otherwise grow without bound. Past it the reshard aborts; the old map stays.
pub const MAX_STAGING_BYTES: usize = 4 << 30;

impl Node {
    /// Reshards the store into `shard_count` shards over the nodes of the view. The reshard
    /// runs in a task of its own, to its end (commit or abort everywhere), even when the caller
    /// gives up waiting (the REST request timeout, a client that disconnects): cancelled half-way
    /// it would leave every node prepared, client writes held, until the staging timeout.
    pub async fn reshard(&self, shard_count: u32) -> Result<(), Error> {
        let node = self.clone();
        tokio::spawn(async move { node.run_reshard(shard_count).await })
            .await
            .unwrap_or_else(|e| Err(Error::TaskFailed(e.to_string())))
    }

    async fn run_reshard(&self, shard_count: u32) -> Result<(), Error> {
        let (old, new) = {
            let st = self.state();
            let new = st.map.resharded(&st.liveness.view(), shard_count)?;
            (st.map.clone(), new)
        };
        let started = Instant::now();
        info!(node = %self.me, from = old.shard_count, to = shard_count, epoch = new.epoch, "reshard started");
        let nodes: Vec<String> = new.assignment.keys().cloned().collect();
        self.enter_reshard_phase(ReshardPhase::Prepare, &new);
        let prepared = join_all(nodes.iter().map(|n| self.call_prepare(n, &new))).await;
        if let Some(e) = prepared.into_iter().find_map(Result::err) {
            return self.abort_everywhere(&nodes, &new, e).await;
        }
        self.enter_reshard_phase(ReshardPhase::Transfer, &new);
        let transfers = join_all(
            old.ids()
                .into_iter()
                .map(|s| self.transfer_shard(&old, s, &new)),
        );
        let sent = tokio::select! {
            sent = transfers => sent,
            e = self.keep_prepared(&nodes, &new) => {
                return self.abort_everywhere(&nodes, &new, e).await;
            }
        };
        let mut keys = 0;
        for r in sent {
            match r {
                Ok(n) => keys += n,
                Err(e) => return self.abort_everywhere(&nodes, &new, e).await,
            }
        }
        self.enter_reshard_phase(ReshardPhase::Commit, &new);
        join_all(nodes.iter().map(|n| self.call_commit(n, &new))).await;
        self.stats.set_reshard_phase(ReshardPhase::Idle);
        self.stats.reshard_done(keys, started.elapsed());
        info!(node = %self.me, keys_sent = keys, ms = started.elapsed().as_millis() as u64, "reshard committed");
        Ok(())
    }

    fn enter_reshard_phase(&self, phase: ReshardPhase, map: &ShardMap) {
        self.stats.set_reshard_phase(phase);
        info!(node = %self.me, epoch = map.epoch, phase = phase.name(), "reshard phase");
    }

    async fn abort_everywhere(
        &self,
        nodes: &[String],
        map: &ShardMap,
        e: Error,
    ) -> Result<(), Error> {
        super::status::Counters::add(&self.stats.reshards_failed, 1);
        self.stats.set_reshard_phase(ReshardPhase::Idle);
        warn!(node = %self.me, error = %e, "reshard aborted");
        self.drop_prepared_everywhere(nodes, map).await;
        Err(Error::RolledBack(Box::new(e)))
    }

    /// Drops the prepared change to `map` at every node of `nodes`, this one included
    /// (best effort: a node that does not answer drops it when its staging times out).
    pub(super) async fn drop_prepared_everywhere(&self, nodes: &[String], map: &ShardMap) {
        join_all(nodes.iter().map(|n| async move {
            if *n == *self.me {
                self.abort_reshard(map);
            } else {
                let _ = self.peers.abort_reshard(n, map).await;
            }
        }))
        .await;
    }

    pub(super) async fn call_prepare(&self, node: &str, map: &ShardMap) -> Result<(), Error> {
        if node == &*self.me {
            return self.prepare_reshard(map.clone());
        }
        self.peers
            .prepare_reshard(node, map)
            .await
            .map_err(|e| Error::peer(node, e))
    }

    async fn call_commit(&self, node: &str, map: &ShardMap) {
        if node == &*self.me {
            self.commit_map(map.clone()).await;
        } else if let Err(e) = self.peers.commit_reshard(node, map).await {
            warn!(node = %self.me, peer = %node, error = %e, "commit not delivered; it will learn the map by heartbeat");
        }
    }

    /// Has one live member of old shard `shard` send its keys; tries members in turn.
    async fn transfer_shard(
        &self,
        old: &ShardMap,
        shard: u32,
        new: &ShardMap,
    ) -> Result<u64, Error> {
        let mut members = { self.state().contact_order(shard, &self.me) };
        if old.shard_of(&self.me) == Some(shard) {
            members.insert(0, self.me.to_string());
        }
        let mut last = Error::NoLiveMember(shard);
        for m in members {
            let r = if m == *self.me {
                self.send_reshard_data(new.clone()).await
            } else {
                let reports = self.peers.send_reshard_data(&m, new).await;
                match reports {
                    Ok(reports) => watch_sender(reports, SEND_IDLE).await,
                    Err(e) => Err(e),
                }
                .map_err(|e| Error::peer(&m, e))
            };
            match r {
                Ok(n) => return Ok(n),
                Err(e @ Error::Peer { .. }) => last = e,
                Err(e) => {
                    last = Error::Refused {
                        node: m,
                        reason: e.to_string(),
                    }
                }
            }
        }
        Err(last)
    }

    /// Phase 1 here: open the staging area for the change to `map` (a reshard: client writes
    /// wait until commit or abort; an add-member: nothing waits). At most one change is prepared
    /// at a time: another map, even of the same epoch, is refused until the first commits,
    /// aborts or times out, so of two changes racing from different nodes at most one is
    /// prepared everywhere (the other's coordinator sees a refusal and aborts). Preparing the
    /// same map again is a no-op.
    pub fn prepare_reshard(&self, map: ShardMap) -> Result<(), Error> {
        let mut st = self.state();
        if map.epoch <= st.map.epoch {
            return Err(Error::StaleEpoch {
                got: map.epoch,
                have: st.map.epoch,
            });
        }
        if let Some(s) = &st.staging
            && s.since.elapsed() < STAGING_TIMEOUT
        {
            if s.map == map {
                return Ok(());
            }
            return Err(Error::ChangeInProgress);
        }
        self.persist_staged(&map, Vec::new());
        let reshard = map.generation > st.replica.generation;
        let replaced = st.staging.replace(Staging::new(map.clone()));
        drop(st);
        super::commit::drop_off_lock(replaced.map(|s| s.store));
        if reshard && tokio::runtime::Handle::try_current().is_ok() {
            // merge this node's own keys of its new shard while the keys are sent, so the
            // commit finds (almost) nothing left to merge (it stops if the change is dropped)
            let node = self.clone();
            tokio::spawn(async move { node.premerge(&map).await });
        }
        Ok(())
    }

    /// Stores keys received for the reshard of `epoch` (none: a keep-alive of the change). Past
    /// [`MAX_STAGING_BYTES`] the batch is refused: the sender's transfer fails and the
    /// coordinator aborts the reshard everywhere, so the old map and data stay in force
    /// (nothing is lost; the operator gets an error). Either way the change is alive: its
    /// staging timeout starts again.
    pub fn stage(&self, epoch: u64, writes: Vec<Write>) -> Result<(), Error> {
        let mut st = self.state();
        match st.staging.as_mut() {
            Some(s) if s.map.epoch == epoch => {
                s.since = Instant::now();
                if writes.is_empty() {
                    return Ok(());
                }
                self.stats.moved(writes.len());
                let bytes: usize = writes.iter().map(write_bytes).sum();
                if s.bytes.saturating_add(bytes) > MAX_STAGING_BYTES {
                    return Err(Error::StagingFull(MAX_STAGING_BYTES));
                }
                s.bytes += bytes;
                if self.storage.is_none() {
                    for w in writes {
                        s.store.apply(w);
                    }
                    return Ok(());
                }
                let map = s.map.clone();
                for w in &writes {
                    s.store.apply(w.clone());
                }
                self.persist_staged(&map, writes);
                Ok(())
            }
            _ => Err(Error::NotPrepared(epoch)),
        }
    }

    /// Abort here: drop staged keys, let client writes through again. Only the change to
    /// exactly `map` is dropped: the abort of a change that lost a race must not undo the
    /// winner's.
    pub fn abort_reshard(&self, map: &ShardMap) {
        let dropped = {
            let mut st = self.state();
            let matches = st.staging.as_ref().is_some_and(|s| s.map == *map);
            if matches {
                self.persist_unwaited(vec![crate::storage::Change::Unstaged]);
            }
            matches.then(|| st.staging.take()).flatten()
        };
        if let Some(staging) = dropped {
            super::commit::drop_off_lock(Some(staging.store));
            info!(node = %self.me, epoch = map.epoch, "reshard aborted here");
            self.bump_delivered();
        }
    }

    /// Drops a prepared reshard whose coordinator never committed or aborted it.
    pub fn check_staging_timeout(&self) {
        let expired = {
            let st = self.state();
            st.staging
                .as_ref()
                .filter(|s| s.since.elapsed() >= STAGING_TIMEOUT)
                .map(|s| s.map.clone())
        };
        if let Some(map) = expired {
            warn!(node = %self.me, epoch = map.epoch, "prepared reshard timed out");
            self.abort_reshard(&map);
        }
    }
}
