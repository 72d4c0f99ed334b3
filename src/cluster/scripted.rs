//! A `Peers` whose answers a test scripts, for one node's behaviour in front of peers that answer
//! in a given way (forwarding after a timeout, batches refused above a size, a snapshot that
//! never answers). Every call not scripted fails as a refused connection. Test support, kept in
//! `cluster/` so the cluster's own unit tests and `tests/` share it; the simulated network
//! (`tools/sim/`) is for whole clusters, this is for one node and a precise answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;

use super::op::{ForwardOp, OpReply};
use super::peers::{
    AnnounceReply, ChangeKind, HeartbeatReply, Holding, PeerError, PeerResult, Peers, SendReports,
    SnapshotPart, SnapshotStream,
};
use crate::domain::clock::VectorClock;
use crate::domain::shard::{ShardId, ShardMap};
use crate::domain::store::Write;

/// Scripted peers: forward answers per target in call order; replication batches refused above
/// `max_batch` writes (as a decode limit would; `None`: every batch passes); snapshots that
/// answer with nothing, the first one stalling forever when `stall_first_snapshot`.
#[derive(Default)]
pub struct ScriptedPeers {
    /// Scripted forward answers per target (see [`ScriptedPeers::on_forward`]).
    pub forwards: Mutex<HashMap<String, VecDeque<PeerResult<OpReply>>>>,
    /// Targets of the forward calls made, in order.
    pub forwarded_to: Mutex<Vec<String>>,
    /// Replication batches above this many writes are refused.
    pub max_batch: Option<usize>,
    /// The first snapshot never answers (a stalled peer).
    pub stall_first_snapshot: bool,
    /// Snapshot calls made.
    pub snapshots: AtomicUsize,
    /// Keys of the replicated writes accepted, in order.
    pub accepted: Mutex<Vec<String>>,
    /// Sizes of the replication batches sent, in order.
    pub attempts: Mutex<Vec<usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn refused<T: Send + 'static>() -> BoxFuture<'static, PeerResult<T>> {
    Box::pin(async { Err(PeerError::NotSent("scripted: no such peer".into())) })
}

impl ScriptedPeers {
    /// The next `forward` to `to` answers `answer`.
    pub fn on_forward(&self, to: &str, answer: PeerResult<OpReply>) {
        lock(&self.forwards)
            .entry(to.to_string())
            .or_default()
            .push_back(answer);
    }
}

impl Peers for ScriptedPeers {
    fn replicate<'a>(&'a self, _: &str, writes: &'a [Write]) -> BoxFuture<'a, PeerResult<()>> {
        Box::pin(async move {
            lock(&self.attempts).push(writes.len());
            if self.max_batch.is_some_and(|max| writes.len() > max) {
                return Err(PeerError::Refused("OutOfRange: message too large".into()));
            }
            lock(&self.accepted).extend(writes.iter().map(|w| w.key.clone()));
            Ok(())
        })
    }
    fn heartbeat(&self, _: &str, _: u64, _: u64) -> BoxFuture<'_, PeerResult<HeartbeatReply>> {
        refused()
    }
    fn announce(&self, _: &str, _: u64) -> BoxFuture<'_, PeerResult<AnnounceReply>> {
        refused()
    }
    fn view_change(
        &self,
        _: &str,
        _: ChangeKind,
        _: &str,
        _: u64,
    ) -> BoxFuture<'_, PeerResult<()>> {
        refused()
    }
    fn install_map(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        refused()
    }
    fn snapshot(
        &self,
        _: &str,
        generation: u64,
        _: Option<&VectorClock>,
    ) -> BoxFuture<'_, PeerResult<SnapshotStream>> {
        let first = self.snapshots.fetch_add(1, Ordering::SeqCst) == 0;
        let stall = first && self.stall_first_snapshot;
        Box::pin(async move {
            if stall {
                std::future::pending::<()>().await;
            }
            let end = SnapshotPart::End {
                generation,
                clock: VectorClock::new(),
            };
            Ok(futures::stream::iter([Ok(end)]).boxed())
        })
    }
    fn forward(&self, to: &str, _: ForwardOp) -> BoxFuture<'_, PeerResult<OpReply>> {
        lock(&self.forwarded_to).push(to.to_string());
        let answer = lock(&self.forwards)
            .get_mut(to)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| Err(PeerError::NotSent("scripted: no answer".into())));
        Box::pin(async move { answer })
    }
    fn key_count(&self, _: &str, _: ShardId) -> BoxFuture<'_, PeerResult<u64>> {
        refused()
    }
    fn prepare_reshard(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        refused()
    }
    fn send_reshard_data(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<SendReports>> {
        refused()
    }
    fn receive_reshard_data(
        &self,
        _: &str,
        _: u64,
        _: Vec<Write>,
    ) -> BoxFuture<'_, PeerResult<Holding>> {
        refused()
    }
    fn commit_reshard(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        refused()
    }
    fn abort_reshard(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        refused()
    }
}

/// The configuration a node at `me` gets from the environment with `VIEW=view` and
/// `SHARD_COUNT=shards` (nothing else set): for tests that build nodes by hand.
pub fn env_config(me: &str, view: &[String], shards: u32) -> crate::config::Config {
    crate::config::Config::from_vars(|k| match k {
        "SOCKET_ADDRESS" => Some(me.to_string()),
        "VIEW" => Some(view.join(",")),
        "SHARD_COUNT" => Some(shards.to_string()),
        _ => None,
    })
    .expect("config")
}

/// The configuration of `127.0.0.2:8090` in a 4-node (`127.0.0.2..5:8090`), 2-shard cluster:
/// the cluster the unit tests of `cluster/` script peers for.
#[cfg(test)]
pub(crate) fn four_node_config() -> crate::config::Config {
    let view: Vec<String> = (2..6).map(|i| format!("127.0.0.{i}:8090")).collect();
    env_config(&view[0], &view, 2)
}
