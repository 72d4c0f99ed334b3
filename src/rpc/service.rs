//! Thin tonic service implementations: authenticate the sender, convert (validating), call the
//! cluster layer, convert back.

use futures::{Stream, StreamExt};
use std::pin::Pin;
use tonic::{Request, Response, Status, Streaming};

use super::auth::Caller;
use super::convert::{
    self, adopt_token_key, change_kind_from_pb, check_values, clock_from_pb, clock_to_pb,
    forward_from_pb, map_from_pb, map_to_pb, reply_to_pb, token_key_to_pb, write_into_pb,
    writes_from_pb,
};
use super::pb;
use crate::cluster::Node;
use crate::cluster::guard::claims_own_ip;
use crate::cluster::peers::{SendReport, SnapshotPart};
use crate::domain::shard::ShardMap;

/// Implements every causalkv gRPC service over one node.
#[derive(Clone)]
pub struct Services(pub Node);

/// Checks that `sender` is who the transport says called: the sender signed with the cluster
/// key, or (without a key) an address on the caller's own IP. A request that did not pass the
/// auth middleware is refused.
async fn check_sender<T>(req: &Request<T>, sender: &str) -> Result<(), Status> {
    convert::address("sender", sender)?;
    let Some(caller) = req.extensions().get::<Caller>() else {
        return Err(Status::unauthenticated("unauthenticated internal call"));
    };
    let ok = match (&caller.signed_sender, caller.ip) {
        (Some(signed), _) => signed == sender,
        (None, Some(ip)) => claims_own_ip(sender, ip).await,
        (None, None) => false,
    };
    if !ok {
        return Err(Status::unauthenticated(
            "sender does not match the authenticated caller",
        ));
    }
    Ok(())
}

/// Whether the caller may learn the token key: keyless clusters only (with a key every node
/// derives it), and only a caller that passed the member check.
async fn shares_token_key<T>(node: &Node, req: &Request<T>) -> bool {
    let ip = req.extensions().get::<Caller>().and_then(|c| c.ip);
    match ip {
        Some(ip) if node.cfg.cluster_key.is_none() => node.is_member_ip(ip).await,
        _ => false,
    }
}

impl Services {
    /// Accepts (and, if older, signs with) the token key of a caller that is a key source:
    /// keyless clusters only, `sender` already checked against the caller.
    fn learn_token_key(&self, sender: &str, key: Option<pb::TokenKey>) {
        if self.0.cfg.cluster_key.is_none() && self.0.is_key_source(sender) {
            adopt_token_key(key);
        }
    }

    /// A map pushed by a peer: structurally valid and a plausible next step from ours.
    fn pushed_map(&self, m: pb::ShardMap) -> Result<ShardMap, Status> {
        let map = map_from_pb(m)?;
        self.0
            .check_pushed_map(&map)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(map)
    }
}

#[tonic::async_trait]
impl pb::replication_server::Replication for Services {
    async fn replicate(
        &self,
        req: Request<pb::ReplicateRequest>,
    ) -> Result<Response<pb::ReplicateResponse>, Status> {
        check_sender(&req, &req.get_ref().sender).await?;
        let r = req.into_inner();
        let writes = writes_from_pb(r.writes)?;
        check_values(&writes, self.0.cfg.max_value_bytes)?;
        // A node replicates only the writes it accepted itself.
        if writes.iter().any(|w| *w.version.origin != *r.sender) {
            return Err(Status::invalid_argument(
                "replicated write of another origin than the sender",
            ));
        }
        let (applied, buffered) = self.0.receive_writes(&r.sender, r.sent_at_ms, writes);
        Ok(Response::new(pb::ReplicateResponse { applied, buffered }))
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let f = forward_from_pb(
            req.into_inner(),
            self.0.cfg.max_value_bytes,
            self.0.cfg.legacy_wait,
        )?;
        let reply = self.0.execute_local(&f.key, f.op, f.metadata, f.wait).await;
        Ok(Response::new(reply_to_pb(reply)))
    }

    async fn forward_batch(
        &self,
        req: Request<pb::ForwardBatchRequest>,
    ) -> Result<Response<pb::ForwardBatchResponse>, Status> {
        let ops = req.into_inner().ops;
        if ops.len() > super::forward_batch::MAX_OPS {
            return Err(Status::invalid_argument("too many operations in one batch"));
        }
        // Each operation is validated and run as a `Forward` would be; they run concurrently
        // and are answered in order. One invalid operation fails alone.
        let replies = futures::future::join_all(ops.into_iter().map(|r| async move {
            let max_bytes = self.0.cfg.max_value_bytes;
            match forward_from_pb(r, max_bytes, self.0.cfg.legacy_wait) {
                Ok(f) => reply_to_pb(self.0.execute_local(&f.key, f.op, f.metadata, f.wait).await),
                Err(s) => convert::bad_request_reply(s.message()),
            }
        }))
        .await;
        Ok(Response::new(pb::ForwardBatchResponse { replies }))
    }
}

#[tonic::async_trait]
impl pb::membership_server::Membership for Services {
    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        check_sender(&req, &req.get_ref().sender).await?;
        let share = shares_token_key(&self.0, &req).await;
        let mut r = req.into_inner();
        self.learn_token_key(&r.sender, r.token_key.take());
        let a = self.0.on_heartbeat(&r.sender, r.incarnation, r.map_epoch);
        Ok(Response::new(pb::HeartbeatResponse {
            responder: self.0.me.to_string(),
            incarnation: self.0.incarnation,
            admitted: a.admitted,
            clock: clock_to_pb(&a.clock),
            generation: a.generation,
            map: a.map.as_ref().map(map_to_pb),
            map_epoch: a.map_epoch,
            token_key: share.then(token_key_to_pb),
        }))
    }

    async fn announce(
        &self,
        req: Request<pb::AnnounceRequest>,
    ) -> Result<Response<pb::AnnounceResponse>, Status> {
        check_sender(&req, &req.get_ref().sender).await?;
        if self.0.peer_table_full(&req.get_ref().sender) {
            return Err(Status::resource_exhausted("peer table full"));
        }
        let mut r = req.into_inner();
        self.learn_token_key(&r.sender, r.token_key.take());
        let (view, map) = self.0.on_announce(&r.sender, r.incarnation);
        // The announcer announced from the address it claims: it is a member now.
        let share = self.0.cfg.cluster_key.is_none();
        Ok(Response::new(pb::AnnounceResponse {
            responder: self.0.me.to_string(),
            view,
            map: (!map.is_replicated()).then(|| map_to_pb(&map)),
            token_key: share.then(token_key_to_pb),
        }))
    }

    async fn view_change(
        &self,
        req: Request<pb::ViewChangeRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        check_sender(&req, &req.get_ref().sender).await?;
        let r = req.into_inner();
        convert::address("node", &r.node)?;
        let kind = change_kind_from_pb(r.kind)?;
        self.0
            .on_view_change(&r.sender, kind, &r.node, r.incarnation);
        Ok(Response::new(pb::Ack {}))
    }

    async fn install_shard_map(
        &self,
        req: Request<pb::ShardMap>,
    ) -> Result<Response<pb::Ack>, Status> {
        self.0.commit_map(self.pushed_map(req.into_inner())?).await;
        Ok(Response::new(pb::Ack {}))
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;
type ReportStream = Pin<Box<dyn Stream<Item = Result<pb::ReshardDataResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::state_transfer_server::StateTransfer for Services {
    type SnapshotStream = ChunkStream;
    type SendReshardDataStream = ReportStream;

    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        check_sender(&req, &req.get_ref().requester).await?;
        let r = req.into_inner();
        let generation = convert::generation(r.generation)?;
        let known = if r.full {
            None
        } else {
            Some(clock_from_pb(r.known)?)
        };
        let chunks = self
            .0
            .snapshot_stream(generation, known)
            .map(|part| match part {
                Ok(SnapshotPart::Writes { generation, writes }) => Ok(pb::SnapshotChunk {
                    writes: writes.into_iter().map(write_into_pb).collect(),
                    last: false,
                    generation,
                    clock: Vec::new(),
                }),
                Ok(SnapshotPart::End { generation, clock }) => Ok(pb::SnapshotChunk {
                    writes: Vec::new(),
                    last: true,
                    generation,
                    clock: clock_to_pb(&clock),
                }),
                Err(e) => Err(Status::aborted(e.to_string())),
            });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn prepare_reshard(
        &self,
        req: Request<pb::ShardMap>,
    ) -> Result<Response<pb::Ack>, Status> {
        let map = self.pushed_map(req.into_inner())?;
        self.0
            .prepare_reshard(map)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(pb::Ack {}))
    }

    async fn send_reshard_data(
        &self,
        req: Request<pb::ShardMap>,
    ) -> Result<Response<ReportStream>, Status> {
        let map = self.pushed_map(req.into_inner())?;
        let reports = self.0.send_reshard_reports(map).map(|r| match r {
            Ok(SendReport::Progress(progress)) => Ok(pb::ReshardDataResponse {
                progress,
                ..Default::default()
            }),
            Ok(SendReport::Done(keys_sent)) => Ok(pb::ReshardDataResponse {
                keys_sent,
                done: true,
                progress: 0,
            }),
            Err(e) => Err(Status::aborted(e.to_string())),
        });
        Ok(Response::new(Box::pin(reports)))
    }

    async fn receive_reshard_data(
        &self,
        req: Request<Streaming<pb::ReshardBatch>>,
    ) -> Result<Response<pb::ReshardReceipt>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let writes = writes_from_pb(batch.writes)?;
            check_values(&writes, self.0.cfg.max_value_bytes)?;
            self.0
                .stage(batch.epoch, writes)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
        }
        let held = self.0.holding();
        Ok(Response::new(pb::ReshardReceipt {
            generation: held.generation,
            clock: clock_to_pb(&held.clock),
            complete: held.complete,
        }))
    }

    async fn commit_reshard(
        &self,
        req: Request<pb::ShardMap>,
    ) -> Result<Response<pb::Ack>, Status> {
        self.0.commit_map(self.pushed_map(req.into_inner())?).await;
        Ok(Response::new(pb::Ack {}))
    }

    async fn abort_reshard(&self, req: Request<pb::ShardMap>) -> Result<Response<pb::Ack>, Status> {
        self.0.abort_reshard(&map_from_pb(req.into_inner())?);
        Ok(Response::new(pb::Ack {}))
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for Services {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let n = &self.0;
        let s = n.status();
        let peers = s
            .peers
            .into_iter()
            .map(|p| pb::PeerStatus {
                queue_depth: p.queue_depth,
                address: p.address,
                state: p.state.to_string(),
                incarnation: p.incarnation,
                delivered_of_mine: p.delivered_of_mine,
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            address: s.address,
            incarnation: s.incarnation,
            ready: s.started,
            view: s.view,
            peers,
            clock: clock_to_pb(&s.clock),
            pending_writes: s.causal_buffer,
            key_count: s.keys,
            map: Some(map_to_pb(&s.map)),
            shard_id: s.shard,
            mode: s.mode.name().to_string(),
            generation: s.data_generation,
            reshard_phase: s.reshard_phase.name().to_string(),
            reshard_keys_moved: s.counters.reshard_keys,
        }))
    }

    async fn key_count(
        &self,
        req: Request<pb::KeyCountRequest>,
    ) -> Result<Response<pb::KeyCountResponse>, Status> {
        let id = req.into_inner().shard_id;
        match self.0.local_key_count(id) {
            Some(key_count) => Ok(Response::new(pb::KeyCountResponse { key_count })),
            None => Err(Status::failed_precondition(format!(
                "not a member of shard {id}"
            ))),
        }
    }
}
