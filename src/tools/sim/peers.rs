//! `Peers` over the simulated network: each call goes through [`Net::call`] and runs, at the
//! target, what the gRPC service (`rpc/service.rs`) would run for it, minus the wire: the same
//! `Node` methods, the same checks of pushed maps, errors mapped to `PeerError` as the gRPC
//! client maps statuses (a refusal is `Refused`, with the status code's name in front).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;

use super::net::Net;
use crate::cluster::Node;
use crate::cluster::op::{ForwardOp, OpReply};
use crate::cluster::peers::{
    AnnounceReply, ChangeKind, HeartbeatReply, Holding, PeerError, PeerResult, Peers, SendReports,
    SnapshotStream,
};
use crate::domain::clock::VectorClock;
use crate::domain::shard::{ShardId, ShardMap};
use crate::domain::store::Write;

/// A reshard batch may take longer to stage than a control call takes (as in `rpc/client.rs`).
const BULK_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a stream from the process `sender` at `to` to `from` still flows: the link is not
/// cut and that same process still lives there. Each chunk or report of a stream checks it.
fn stream_alive(net: Arc<Net>, from: String, to: String, sender: Node) -> impl Fn() -> bool {
    move || !net.is_cut(&to, &from) && net.node(&to).is_some_and(|x| Arc::ptr_eq(&x.0, &sender.0))
}

/// The `Peers` of one simulated process.
pub struct SimPeers {
    me: String,
    life: u64,
    net: Arc<Net>,
}

impl SimPeers {
    /// The peers of the process number `life` at `me`.
    pub fn new(net: Arc<Net>, me: &str, life: u64) -> Self {
        Self {
            me: me.to_string(),
            life,
            net,
        }
    }

    fn run<'a, T, F, Fut>(
        &'a self,
        to: &str,
        deadline: Duration,
        handler: F,
    ) -> BoxFuture<'a, PeerResult<T>>
    where
        T: Send + 'a,
        F: FnOnce(Node) -> Fut + Send + 'a,
        Fut: Future<Output = PeerResult<T>> + Send + 'a,
    {
        let to = to.to_string();
        Box::pin(async move {
            self.net
                .call(&self.me, self.life, &to, deadline, handler)
                .await
        })
    }
}

fn refused(code: &str, e: impl std::fmt::Display) -> PeerError {
    PeerError::Refused(format!("{code}: {e}"))
}

/// A pushed map as the gRPC service admits it.
fn pushed(node: &Node, map: &ShardMap) -> PeerResult<()> {
    node.check_pushed_map(map)
        .map_err(|e| refused("InvalidArgument", e))
}

impl Peers for SimPeers {
    fn replicate<'a>(&'a self, to: &str, writes: &'a [Write]) -> BoxFuture<'a, PeerResult<()>> {
        let me = self.me.clone();
        // the simulated receiver takes its own copy, as one decoded from the wire would be
        let writes = writes.to_vec();
        self.run(to, self.net.rpc_timeout, move |n| async move {
            n.receive_writes(&me, 0, writes);
            Ok(())
        })
    }

    fn heartbeat(
        &self,
        to: &str,
        incarnation: u64,
        map_epoch: u64,
    ) -> BoxFuture<'_, PeerResult<HeartbeatReply>> {
        let me = self.me.clone();
        self.run(to, self.net.rpc_timeout, move |n| async move {
            let a = n.on_heartbeat(&me, incarnation, map_epoch);
            Ok(HeartbeatReply {
                incarnation: n.incarnation,
                admitted: a.admitted,
                clock: a.clock,
                generation: a.generation,
                map_epoch: a.map_epoch,
                map: a.map,
            })
        })
    }

    fn announce(&self, to: &str, incarnation: u64) -> BoxFuture<'_, PeerResult<AnnounceReply>> {
        let me = self.me.clone();
        self.run(to, self.net.rpc_timeout, move |n| async move {
            let (view, map) = n.on_announce(&me, incarnation);
            Ok(AnnounceReply {
                view,
                map: if map.is_replicated() {
                    ShardMap::default()
                } else {
                    map
                },
            })
        })
    }

    fn view_change(
        &self,
        to: &str,
        kind: ChangeKind,
        node: &str,
        incarnation: u64,
    ) -> BoxFuture<'_, PeerResult<()>> {
        let (me, node) = (self.me.clone(), node.to_string());
        self.run(to, self.net.rpc_timeout, move |n| async move {
            n.on_view_change(&me, kind, &node, incarnation);
            Ok(())
        })
    }

    fn install_map(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        let map = map.clone();
        self.run(to, self.net.rpc_timeout, move |n| async move {
            pushed(&n, &map)?;
            n.install_map(map);
            Ok(())
        })
    }

    fn snapshot(
        &self,
        to: &str,
        generation: u64,
        known: Option<&VectorClock>,
    ) -> BoxFuture<'_, PeerResult<SnapshotStream>> {
        let known = known.cloned();
        let net = self.net.clone();
        let (from, to_addr) = (self.me.clone(), to.to_string());
        self.run(to, self.net.rpc_timeout, move |n| async move {
            let life_ok = stream_alive(net, from, to_addr, n.clone());
            // Each chunk crosses the link: a cut or a dead sender ends the stream with an error.
            let parts = n
                .snapshot_stream(generation, known)
                .map(move |p| match p {
                    Ok(_) if !life_ok() => Err(PeerError::Unreachable("sim: stream cut".into())),
                    Ok(part) => Ok(part),
                    Err(e) => Err(refused("Aborted", e)),
                })
                .boxed();
            Ok::<SnapshotStream, PeerError>(parts)
        })
    }

    fn forward(&self, to: &str, op: ForwardOp) -> BoxFuture<'_, PeerResult<OpReply>> {
        let deadline = self.net.rpc_timeout + op.wait;
        self.run(to, deadline, move |n| async move {
            let wait = op.wait.min(n.cfg.legacy_wait);
            Ok(n.execute_local(&op.key, op.op, op.metadata, wait).await)
        })
    }

    fn key_count(&self, to: &str, shard: ShardId) -> BoxFuture<'_, PeerResult<u64>> {
        self.run(to, self.net.rpc_timeout, move |n| async move {
            n.local_key_count(shard).ok_or_else(|| {
                refused(
                    "FailedPrecondition",
                    format!("not a member of shard {shard}"),
                )
            })
        })
    }

    fn prepare_reshard(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        let map = map.clone();
        self.run(to, self.net.rpc_timeout, move |n| async move {
            pushed(&n, &map)?;
            n.prepare_reshard(map)
                .map_err(|e| refused("FailedPrecondition", e))
        })
    }

    fn send_reshard_data(
        &self,
        to: &str,
        map: &ShardMap,
    ) -> BoxFuture<'_, PeerResult<SendReports>> {
        let map = map.clone();
        let net = self.net.clone();
        let (from, to_addr) = (self.me.clone(), to.to_string());
        self.run(to, self.net.rpc_timeout, move |n| async move {
            pushed(&n, &map)?;
            let life_ok = stream_alive(net, from, to_addr, n.clone());
            // Each report crosses the link: a cut or a dead sender ends the stream with an error.
            let reports = n
                .send_reshard_reports(map)
                .map(move |r| match r {
                    Ok(_) if !life_ok() => Err(PeerError::Unreachable("sim: stream cut".into())),
                    Ok(report) => Ok(report),
                    Err(e) => Err(refused("Aborted", e)),
                })
                .boxed();
            Ok::<SendReports, PeerError>(reports)
        })
    }

    fn receive_reshard_data(
        &self,
        to: &str,
        epoch: u64,
        writes: Vec<Write>,
    ) -> BoxFuture<'_, PeerResult<Holding>> {
        let slow = self.net.stage_delay();
        self.run(to, BULK_TIMEOUT, move |n| async move {
            // a slow disk at the receiver: each batch of keys takes this long to stage
            if !writes.is_empty() {
                tokio::time::sleep(slow).await;
            }
            n.stage(epoch, writes)
                .map_err(|e| refused("FailedPrecondition", e))?;
            Ok(n.holding())
        })
    }

    fn commit_reshard(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        let map = map.clone();
        self.run(to, self.net.rpc_timeout, move |n| async move {
            pushed(&n, &map)?;
            n.install_map(map);
            Ok(())
        })
    }

    fn abort_reshard(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        let map = map.clone();
        self.run(to, self.net.rpc_timeout, move |n| async move {
            n.abort_reshard(&map);
            Ok(())
        })
    }
}
