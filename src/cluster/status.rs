//! What a node can tell an operator about itself, as plain values: readiness, a status
//! snapshot (view, shards, peers, queues, keys) and monotonic counters of replication, sync
//! and reshard work. The api and rpc layers read these; they never reach into `State`.
//!
//! Must not: hold the node's lock across anything but copying, or depend on an exporter crate
//! (the REST layer turns these values into Prometheus text).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::Node;
use super::shards::Mode;
use crate::domain::clock::VectorClock;
use crate::domain::shard::{ShardId, ShardMap};

/// Monotonic counters bumped by the cluster's background work (relaxed atomics: each is read
/// on its own, by a scrape, and no decision depends on two of them agreeing).
#[derive(Debug, Default)]
pub struct Counters {
    /// Replication batches a peer acknowledged.
    pub batches_sent: AtomicU64,
    /// Replication batches given up on (after retries).
    pub batches_failed: AtomicU64,
    /// Writes inside acknowledged batches.
    pub writes_sent: AtomicU64,
    /// Value bytes (JSON text) inside acknowledged batches.
    pub bytes_sent: AtomicU64,
    /// Completed state pulls (start-up, anti-entropy, new member).
    pub syncs: AtomicU64,
    /// State pulls that failed.
    pub syncs_failed: AtomicU64,
    /// Writes received by state pulls.
    pub sync_writes: AtomicU64,
    /// Value bytes received by state pulls.
    pub sync_bytes: AtomicU64,
    /// Total time of completed state pulls, in microseconds.
    pub sync_micros: AtomicU64,
    /// Reshards this node coordinated and committed.
    pub reshards: AtomicU64,
    /// Reshards this node coordinated that were aborted.
    pub reshards_failed: AtomicU64,
    /// Keys moved by reshards this node coordinated.
    pub reshard_keys: AtomicU64,
    /// Total time of committed reshards, in microseconds.
    pub reshard_micros: AtomicU64,
    /// Set once this node has compared its data with a live member of its shard (a pull
    /// succeeded, or a heartbeat showed no lag): before that a restarted node may lack data.
    pub synced: AtomicBool,
    /// The phase of the reshard this node coordinates ([`ReshardPhase`] as a number).
    pub reshard_phase: std::sync::atomic::AtomicU8,
    /// Progress of this node's copies (pulls, reshard sends): +1 per chunk, batch or slice
    /// read, plus the writes it held. Only its growth means anything: a long copy that keeps
    /// growing it is not cut off by an idle timeout (see `reshard`).
    pub copy_progress: AtomicU64,
}

/// Where a reshard is, as seen by the node that coordinates it (or takes part in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReshardPhase {
    /// No reshard here.
    Idle = 0,
    /// Coordinator: asking every node to stop client writes and open a staging area.
    Prepare = 1,
    /// Coordinator: one member per old shard streams its keys to their new owners.
    Transfer = 2,
    /// Coordinator: every node installs the new map with its staged keys.
    Commit = 3,
    /// Participant: staging keys, client writes held, waiting for the coordinator's commit.
    Prepared = 4,
}

impl ReshardPhase {
    /// The name in logs, `Admin/Status` and the dashboard ("" when idle).
    pub fn name(self) -> &'static str {
        match self {
            ReshardPhase::Idle => "",
            ReshardPhase::Prepare => "prepare",
            ReshardPhase::Transfer => "transfer",
            ReshardPhase::Commit => "commit",
            ReshardPhase::Prepared => "prepared",
        }
    }

    fn from_u8(n: u8) -> Self {
        match n {
            1 => ReshardPhase::Prepare,
            2 => ReshardPhase::Transfer,
            3 => ReshardPhase::Commit,
            4 => ReshardPhase::Prepared,
            _ => ReshardPhase::Idle,
        }
    }
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one completed pull of `writes` writes and `bytes` value bytes taking `took`.
    pub fn sync_done(&self, writes: u64, bytes: u64, took: Duration) {
        Self::add(&self.syncs, 1);
        Self::add(&self.sync_writes, writes);
        Self::add(&self.sync_bytes, bytes);
        Self::add(&self.sync_micros, took.as_micros() as u64);
        self.synced.store(true, Ordering::Relaxed);
    }

    /// Records progress of a copy: a chunk, batch or slice of `writes` writes.
    pub fn moved(&self, writes: usize) {
        Self::add(&self.copy_progress, 1 + writes as u64);
    }

    /// The progress of this node's copies so far (see [`Counters::copy_progress`]).
    pub fn copy_progress(&self) -> u64 {
        self.copy_progress.load(Ordering::Relaxed)
    }

    /// Records the phase of the reshard this node coordinates.
    pub fn set_reshard_phase(&self, phase: ReshardPhase) {
        self.reshard_phase.store(phase as u8, Ordering::Relaxed);
    }

    /// The phase of the reshard this node coordinates.
    pub fn coordinated_phase(&self) -> ReshardPhase {
        ReshardPhase::from_u8(self.reshard_phase.load(Ordering::Relaxed))
    }

    /// Records a committed reshard that moved `keys` keys in `took`.
    pub fn reshard_done(&self, keys: u64, took: Duration) {
        Self::add(&self.reshards, 1);
        Self::add(&self.reshard_keys, keys);
        Self::add(&self.reshard_micros, took.as_micros() as u64);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> CounterValues {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterValues {
            batches_sent: g(&self.batches_sent),
            batches_failed: g(&self.batches_failed),
            writes_sent: g(&self.writes_sent),
            bytes_sent: g(&self.bytes_sent),
            syncs: g(&self.syncs),
            syncs_failed: g(&self.syncs_failed),
            sync_writes: g(&self.sync_writes),
            sync_bytes: g(&self.sync_bytes),
            sync_seconds: g(&self.sync_micros) as f64 / 1e6,
            reshards: g(&self.reshards),
            reshards_failed: g(&self.reshards_failed),
            reshard_keys: g(&self.reshard_keys),
            reshard_seconds: g(&self.reshard_micros) as f64 / 1e6,
        }
    }
}

/// Counter values at one instant (see [`Counters`] for each meaning).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[allow(missing_docs)]
pub struct CounterValues {
    pub batches_sent: u64,
    pub batches_failed: u64,
    pub writes_sent: u64,
    pub bytes_sent: u64,
    pub syncs: u64,
    pub syncs_failed: u64,
    pub sync_writes: u64,
    pub sync_bytes: u64,
    pub sync_seconds: f64,
    pub reshards: u64,
    pub reshards_failed: u64,
    pub reshard_keys: u64,
    pub reshard_seconds: f64,
}

/// Whether the node should receive traffic (the `/readyz` probe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Synced and serving.
    Ready,
    /// Not yet: the reason, for the operator.
    NotReady(String),
}

/// One peer as this node sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerInfo {
    /// The peer's address.
    pub address: String,
    /// `up`, `down` or `probation`.
    pub state: &'static str,
    /// The peer's incarnation as last heard.
    pub incarnation: u64,
    /// Writes queued for it.
    pub queue_depth: u64,
    /// Estimated bytes of those writes.
    pub queue_bytes: u64,
    /// This node's own writes (of its generation) the peer had not reported delivered at its
    /// last heartbeat answer: replication lag in writes (0 for a peer of another shard).
    pub lag_writes: u64,
    /// Its shard, `None` for a spare.
    pub shard: Option<ShardId>,
    /// The most of this node's own writes (of its generation) the peer ever reported delivered.
    #[serde(skip)]
    pub delivered_of_mine: u64,
}

/// One shard of the map in force.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShardInfo {
    /// Its id.
    pub id: ShardId,
    /// Its members.
    pub members: Vec<String>,
}

/// A plain snapshot of the node for operators (metrics, dashboard, admin status).
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    /// This node's address.
    pub address: String,
    /// This node's incarnation.
    pub incarnation: u64,
    /// Start-up transfer done.
    pub started: bool,
    /// `None` when ready, else why not.
    pub not_ready: Option<String>,
    /// The view.
    pub view: Vec<String>,
    /// This node's shard, `None` for a spare.
    pub shard: Option<ShardId>,
    /// Epoch of the map in force.
    pub map_epoch: u64,
    /// Data generation of the map in force.
    pub generation: u64,
    /// Shards and members.
    pub shards: Vec<ShardInfo>,
    /// Every known peer.
    pub peers: Vec<PeerInfo>,
    /// Live keys held here (this node's shard).
    pub keys: u64,
    /// Writes in the causal buffer (received, not yet deliverable).
    pub causal_buffer: u64,
    /// A reshard is staged on this node.
    pub resharding: bool,
    /// The reshard phase here: the coordinator's, else `Prepared` while staging, else `Idle`.
    pub reshard_phase: ReshardPhase,
    /// Counters.
    pub counters: CounterValues,
    /// How this node takes part (`replicated`, `sharded`, `spare`).
    #[serde(skip)]
    pub mode: Mode,
    /// The generation of the data this node holds.
    #[serde(skip)]
    pub data_generation: u64,
    /// The delivered clock.
    #[serde(skip)]
    pub clock: VectorClock,
    /// The shard map in force.
    #[serde(skip)]
    pub map: ShardMap,
}

impl Node {
    /// Readiness: start-up transfer done, and, for a shard member with peers, the replica is
    /// complete (not catching up after a join or reshard) and was compared with a live peer.
    pub fn readiness(&self) -> Readiness {
        if !*self.ready.borrow() {
            return Readiness::NotReady("starting: start-up state transfer not done".into());
        }
        let st = self.state();
        let Some(shard) = st.my_shard(&self.me) else {
            return Readiness::Ready;
        };
        if !st.replica.complete {
            return Readiness::NotReady("catching up: replica of this shard is incomplete".into());
        }
        if st.resharding() {
            return Readiness::NotReady("resharding: keys are being moved".into());
        }
        let has_peers = st.map.members(shard).iter().any(|m| *m != *self.me);
        if has_peers && !self.stats.synced.load(Ordering::Relaxed) {
            return Readiness::NotReady(
                "catching up: no member of this shard has answered a sync yet".into(),
            );
        }
        Readiness::Ready
    }

    /// The reshard phase here: the one this node coordinates, else `Prepared` while it stages
    /// keys for another coordinator, else `Idle`.
    pub fn reshard_phase(&self) -> ReshardPhase {
        match self.stats.coordinated_phase() {
            ReshardPhase::Idle if self.state().resharding() => ReshardPhase::Prepared,
            phase => phase,
        }
    }

    /// A plain snapshot for operators (copies under the lock, nothing else).
    pub fn status(&self) -> NodeStatus {
        let not_ready = match self.readiness() {
            Readiness::Ready => None,
            Readiness::NotReady(why) => Some(why),
        };
        let reshard_phase = self.reshard_phase();
        let mut s = {
            let st = self.state();
            NodeStatus {
                address: self.me.to_string(),
                incarnation: self.incarnation,
                started: *self.ready.borrow(),
                not_ready,
                view: st.liveness.view(),
                shard: st.my_shard(&self.me),
                map_epoch: st.map.epoch,
                generation: st.map.generation,
                shards: st
                    .map
                    .ids()
                    .into_iter()
                    .map(|id| ShardInfo {
                        id,
                        members: st.members(id),
                    })
                    .collect(),
                peers: st
                    .liveness
                    .peers()
                    .map(|(a, p)| PeerInfo {
                        address: a.to_string(),
                        state: p.state.name(),
                        incarnation: p.incarnation,
                        queue_depth: 0,
                        queue_bytes: 0,
                        lag_writes: if st.map.shard_of(a) == st.my_shard(&self.me) {
                            st.replica
                                .clock
                                .get(&self.me)
                                .saturating_sub(st.has_mine.get(a).copied().unwrap_or(0))
                        } else {
                            0
                        },
                        shard: st.map.shard_of(a),
                        delivered_of_mine: st.has_mine.get(a).copied().unwrap_or(0),
                    })
                    .collect(),
                keys: st.replica.store.live_count() as u64,
                causal_buffer: st.replica.pending_len() as u64,
                resharding: st.resharding(),
                reshard_phase,
                counters: CounterValues::default(),
                mode: Mode::of(&st.map, &self.me),
                data_generation: st.replica.generation,
                clock: st.replica.clock.clone(),
                map: st.map.clone(),
            }
        };
        for p in &mut s.peers {
            p.queue_depth = self.queue_depth(&p.address) as u64;
            p.queue_bytes = self.queue_bytes(&p.address) as u64;
        }
        s.peers.sort_by(|a, b| a.address.cmp(&b.address));
        s.counters = self.stats.snapshot();
        s
    }
}
