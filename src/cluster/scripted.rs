//! Test support: a `Peers` whose answers a test scripts per call, for cluster behaviour that
//! depends on what peers answer (forwarding after a timeout, ...). Every call not scripted
//! fails as a refused connection. Compiled for tests only.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use futures::future::BoxFuture;

use super::op::{ForwardOp, OpReply};
use super::peers::{
    AnnounceReply, ChangeKind, HeartbeatReply, PeerError, PeerResult, Peers, SnapshotStream,
};
use crate::domain::clock::VectorClock;
use crate::domain::shard::{ShardId, ShardMap};
use crate::domain::store::Write;

/// Scripted answers to `forward`, per target, in call order; records every forward call.
#[derive(Default)]
pub struct ScriptedPeers {
    forwards: Mutex<HashMap<String, VecDeque<PeerResult<OpReply>>>>,
    /// Targets of the forward calls made, in order.
    pub forwarded_to: Mutex<Vec<String>>,
}

fn refused<T: Send + 'static>() -> BoxFuture<'static, PeerResult<T>> {
    Box::pin(async { Err(PeerError::NotSent("scripted: no such peer".into())) })
}

impl ScriptedPeers {
    /// The next `forward` to `to` answers `answer`.
    pub fn on_forward(&self, to: &str, answer: PeerResult<OpReply>) {
        let mut f = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
        f.entry(to.to_string()).or_default().push_back(answer);
    }
}

impl Peers for ScriptedPeers {
    fn replicate(&self, _: &str, _: Vec<Write>) -> BoxFuture<'_, PeerResult<()>> {
        refused()
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
        _: u64,
        _: Option<&VectorClock>,
    ) -> BoxFuture<'_, PeerResult<SnapshotStream>> {
        refused()
    }
    fn forward(&self, to: &str, _: ForwardOp) -> BoxFuture<'_, PeerResult<OpReply>> {
        self.forwarded_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(to.to_string());
        let answer = self
            .forwards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
    fn send_reshard_data(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<u64>> {
        refused()
    }
    fn receive_reshard_data(
        &self,
        _: &str,
        _: u64,
        _: Vec<Write>,
    ) -> BoxFuture<'_, PeerResult<()>> {
        refused()
    }
    fn commit_reshard(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        refused()
    }
    fn abort_reshard(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        refused()
    }
}
