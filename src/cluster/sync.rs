//! Anti-entropy and state transfer, the pulling side: pull from a peer of the same shard whatever
//! its state has that ours lacks (a delta against our clock, or everything), chunk by chunk, and
//! merge it. Used at start-up, by a new shard member, by a re-admitted peer, and whenever
//! heartbeats show persistent lag. At most one pull runs at a time, held by a [`SyncGuard`] that
//! a cancelled caller cannot leak. Serving snapshots is in `snapshot`.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::SemaphorePermit;
use tracing::{info, warn};

use super::peers::SnapshotPart;
use super::replication::batch_size;
use super::status::Counters;
use super::{Node, scope};

/// A pull whose peer sends nothing for this long is abandoned (the peer stalled or died) and
/// retried later. There is no bound on a whole pull: a full copy of a large shard streams for
/// as long as it takes (1M keys of 100 B took ~30 s on 2 busy cores while the peer served a GET
/// load; a slow disk or a bigger store takes longer) and is cut off only when it stops moving.
pub const PULL_IDLE: Duration = Duration::from_secs(10);

/// The node's one-pull-at-a-time permit, held: released when dropped, so a pull whose future
/// is cancelled (e.g. a `SendReshardData` call whose client gave up) frees it too.
pub type SyncGuard<'a> = SemaphorePermit<'a>;

impl Node {
    /// Pulls and merges a delta from `peer`. At most one pull runs at a time.
    pub async fn sync_from(&self, peer: &str) -> bool {
        match self.acquire_sync(false).await {
            Some(_guard) => self.pull(peer, false).await,
            None => false,
        }
    }

    /// True while a pull runs on this node.
    pub fn is_syncing(&self) -> bool {
        self.pulls.available_permits() == 0
    }

    /// Pulls a delta (or, with `full`, everything the peer stores: needed after a reshard,
    /// whose carried-over keys belong to the previous generation) and merges it as it streams.
    async fn pull(&self, peer: &str, full: bool) -> bool {
        let started = tokio::time::Instant::now();
        match self.pull_stream(peer, full).await {
            Ok((changed, writes, bytes)) => {
                self.stats.sync_done(writes, bytes, started.elapsed());
                if changed > 0 {
                    info!(node = %self.me, %peer, keys = changed, "caught up from peer");
                }
                self.bump_delivered();
                true
            }
            Err(e) => {
                Counters::add(&self.stats.syncs_failed, 1);
                warn!(node = %self.me, %peer, error = %e, "state pull failed");
                false
            }
        }
    }

    /// Streams one pull and merges it; returns (keys changed, writes and value bytes received).
    async fn pull_stream(&self, peer: &str, full: bool) -> Result<(usize, u64, u64), String> {
        let (generation, known) = {
            let st = self.state();
            (st.replica.generation, st.replica.clock.clone())
        };
        let mut parts = tokio::time::timeout(
            PULL_IDLE,
            self.peers
                .snapshot(peer, generation, (!full).then_some(&known)),
        )
        .await
        .map_err(|_| format!("no answer for {} s", PULL_IDLE.as_secs()))?
        .map_err(|e| e.to_string())?;
        let (mut changed, mut received, mut bytes) = (0, 0, 0);
        while let Some(part) = tokio::time::timeout(PULL_IDLE, parts.next())
            .await
            .map_err(|_| format!("no snapshot chunk for {} s", PULL_IDLE.as_secs()))?
        {
            let ended = {
                let mut guard = self.state();
                let st = &mut *guard;
                match part.map_err(|e| e.to_string())? {
                    SnapshotPart::Writes { generation: g, .. }
                    | SnapshotPart::End { generation: g, .. }
                        if g != generation || st.replica.generation != generation =>
                    {
                        return Err(format!("generation changed ({g} vs {generation})"));
                    }
                    SnapshotPart::Writes { writes, .. } => {
                        self.stats.moved(writes.len());
                        let (n, b) = batch_size(&writes);
                        (received, bytes) = (received + n, bytes + b);
                        changed += st.replica.absorb_writes(writes);
                        self.persist_replica_unwaited(st, false);
                        None
                    }
                    SnapshotPart::End { clock, .. } => {
                        st.replica.absorb_clock(&clock, &scope(&st.map, &self.me));
                        if full {
                            st.replica.complete = true;
                        }
                        self.persist_replica_unwaited(st, true);
                        Some(st.replica.schedule_drain())
                    }
                }
            };
            if let Some(backlog) = ended {
                // what the clock unblocked beyond one slice: delivered a slice per lock hold
                if backlog {
                    self.deliver_backlog().await;
                }
                return Ok((changed, received, bytes));
            }
        }
        Err("snapshot stream ended early".into())
    }

    /// Pulls from every live member of this node's shard (a legacy request waiting for
    /// dependencies, or a node that just joined its shard).
    pub async fn sync_from_shard_peers(&self) {
        for peer in self.sync_sources() {
            self.sync_from(&peer).await;
        }
    }

    /// Pulls a delta from every live member of the shard, waiting for a pull already running
    /// (for as long as it runs: each pull ends by itself once its peer stops sending) rather
    /// than skipping: a reshard's sender must hold every acknowledged write first.
    pub async fn catch_up_with_shard(&self) {
        let Some(_guard) = self.acquire_sync(true).await else {
            warn!(node = %self.me, "could not start catching up with the shard");
            return;
        };
        for peer in self.sync_sources() {
            self.pull(&peer, false).await;
        }
    }

    /// Start-up and new-member transfer: pull everything from the first live member of the shard
    /// that answers. Waits (bounded) for a pull already running rather than skipping.
    pub async fn full_sync(&self) {
        if let Some(_guard) = self.acquire_sync(true).await {
            self.pull_full_from_any().await;
        }
    }

    /// Like [`Node::full_sync`], but does nothing if a pull is running or the replica is already
    /// complete (called from every heartbeat while it is not).
    pub async fn try_full_sync(&self) {
        if self.state().replica.complete {
            return;
        }
        if let Some(_guard) = self.acquire_sync(false).await {
            self.pull_full_from_any().await;
        }
    }

    async fn pull_full_from_any(&self) {
        for peer in self.sync_sources() {
            if self.pull(&peer, true).await {
                break;
            }
        }
    }

    /// Takes the one-pull-at-a-time permit; with `wait`, waits for the pull running now to
    /// end (it is bounded by its own progress: [`PULL_IDLE`] per chunk), else gives up at once.
    /// `None` only without `wait`, or when the node is shutting down.
    async fn acquire_sync(&self, wait: bool) -> Option<SyncGuard<'_>> {
        if wait {
            self.pulls.acquire().await.ok()
        } else {
            self.pulls.try_acquire().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[test]
    fn the_guard_is_released_on_drop_and_on_cancellation() {
        let pulls = Semaphore::new(1);
        let g: SyncGuard<'_> = pulls.try_acquire().expect("free");
        assert!(pulls.try_acquire().is_err(), "one at a time");
        assert!(
            pulls.try_acquire().is_err(),
            "a failed take leaves the holder's permit held"
        );
        drop(g);
        assert_eq!(pulls.available_permits(), 1);
        // a future holding the guard, cancelled mid-way (dropped while pending)
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let held = async {
                let _g = pulls.try_acquire().expect("free");
                std::future::pending::<()>().await;
            };
            let r = tokio::time::timeout(Duration::from_millis(10), held).await;
            assert!(r.is_err(), "cancelled");
        });
        assert!(pulls.try_acquire().is_ok(), "not leaked");
    }
}
