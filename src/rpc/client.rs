//! The gRPC client side: implements `Peers` with one lazily connected channel per peer and a
//! deadline on every call.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, join_all};
use tonic::transport::{Channel, Endpoint};

use super::auth::SignedChannel;
use super::convert::{adopt_token_key, token_key_to_pb};
use super::convert::{
    change_kind_to_pb, clock_from_pb, clock_to_pb, forward_to_pb, map_from_pb, map_to_pb,
    reply_from_pb, write_into_pb, write_to_pb, writes_from_pb,
};
use super::forward_batch::{FLIGHT_WAIT, Lanes, Turn, Waiting, abandoned, chunks, deliver};
use super::pb;
use super::pb::admin_client::AdminClient;
use super::pb::membership_client::MembershipClient;
use super::pb::replication_client::ReplicationClient;
use super::pb::state_transfer_client::StateTransferClient;
use crate::cluster::batch::message_limit;
use crate::cluster::now_ms;
use crate::cluster::op::{ForwardOp, OpReply};
use crate::cluster::peers::{
    AnnounceReply, ChangeKind, HeartbeatReply, Holding, PeerError, PeerResult, Peers, SendReport,
    SendReports, SnapshotPart, SnapshotStream,
};
use crate::domain::clock::VectorClock;
use crate::domain::shard::{ShardId, ShardMap};
use crate::domain::store::Write;
use crate::net::NodeAddr;
use crate::net::connect::name_connector;

/// Connection attempts give up after this; a refused port fails at once anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A reshard batch (at most a few MiB) may take longer to stage than a control call takes.
const BULK_TIMEOUT: Duration = Duration::from_secs(30);

/// `Peers` over gRPC.
pub struct GrpcPeers {
    me: String,
    timeout: Duration,
    max_message: usize,
    source_ip: Option<IpAddr>,
    channels: Mutex<HashMap<String, Channel>>,
    /// Signs every call when set (see `rpc::auth`).
    cluster_key: Option<std::sync::Arc<[u8]>>,
    /// Mutual TLS to peers, when configured.
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// Which responders' metadata-token keys may be adopted (keyless clusters); none until set.
    key_sources: std::sync::OnceLock<KeySourceFilter>,
    /// Forwarded operations waiting to share a call, per member.
    lanes: Lanes,
}

/// True when an error's cause chain holds a refused TCP connection (nothing was sent).
fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Decides whether a responder is trusted to hand out the cluster's token key.
pub type KeySourceFilter = Box<dyn Fn(&str) -> bool + Send + Sync>;

fn status_to_error(s: tonic::Status) -> PeerError {
    if s.code() == tonic::Code::Unavailable && connection_refused(&s) {
        return PeerError::NotSent(s.message().to_string());
    }
    match s.code() {
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Cancelled
        | tonic::Code::Unknown => PeerError::Unreachable(s.message().to_string()),
        _ => PeerError::Refused(format!("{:?}: {}", s.code(), s.message())),
    }
}

impl GrpcPeers {
    /// A client for node `me` whose calls time out after `timeout`, for the default largest
    /// value (see [`GrpcPeers::with_max_value`]).
    pub fn new(me: &str, timeout: Duration) -> Self {
        Self {
            me: me.to_string(),
            timeout,
            max_message: message_limit(crate::config::DEFAULT_MAX_VALUE_BYTES),
            source_ip: loopback_ip(me),
            channels: Mutex::new(HashMap::new()),
            cluster_key: None,
            tls: None,
            key_sources: std::sync::OnceLock::new(),
            lanes: Lanes::default(),
        }
    }

    /// Sizes the message limits (sent and accepted) for values up to `max_value_bytes`.
    pub fn with_max_value(mut self, max_value_bytes: usize) -> Self {
        self.max_message = message_limit(max_value_bytes);
        self
    }

    /// Connects from `ip` when it is a loopback address (a node named by host name that listens
    /// on a 127.x address, as in the loopback tests); otherwise the kernel's choice stands.
    pub fn with_source_ip(mut self, ip: IpAddr) -> Self {
        if ip.is_loopback() {
            self.source_ip = Some(ip);
        }
        self
    }

    /// Calls peers over TLS with this configuration (our certificate, the cluster CA).
    pub fn with_tls(mut self, tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// Sets which responders' token keys may be adopted (once; later calls are ignored).
    pub fn set_key_sources(&self, filter: KeySourceFilter) {
        let _ = self.key_sources.set(filter);
    }

    /// Our token key, sent to the peers we call in keyless clusters (with a cluster key every
    /// node derives the same one).
    fn own_token_key(&self) -> Option<pb::TokenKey> {
        self.cluster_key.is_none().then(token_key_to_pb)
    }

    fn adopt_key_from(&self, responder: &str, key: Option<pb::TokenKey>) {
        if self
            .key_sources
            .get()
            .is_some_and(|trusted| trusted(responder))
        {
            adopt_token_key(key);
        }
    }

    /// Signs every call with `key` (the cluster key).
    pub fn with_cluster_key(mut self, key: Option<&[u8]>) -> Self {
        self.cluster_key = key.map(std::sync::Arc::from);
        self
    }

    fn channel(&self, to: &str) -> PeerResult<SignedChannel> {
        let signed =
            |c: Channel| SignedChannel::new(c, self.cluster_key.clone(), self.me.as_str().into());
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(to) {
            return Ok(signed(c.clone()));
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{to}"))
            .map_err(|e| PeerError::Refused(format!("bad address {to}: {e}")))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| PeerError::Refused(format!("TLS to {to}: {e}")))?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            // On loopback, connect from our own 127.x address, as a container would from its
            // IP: the kernel would otherwise pick 127.0.0.1, and a partition by address (the
            // nemesis' iptables rules) could not cut our outgoing traffic. Elsewhere the
            // kernel's choice stands (our address may not be bindable behind NAT).
            .local_address(self.source_ip)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        // A peer named by host name is resolved on every (re)connection (net::connect); an IP
        // literal goes through tonic's own connector exactly as before.
        let channel = match NodeAddr::parse(to) {
            Ok(a) if a.is_name() => endpoint.connect_with_connector_lazy(name_connector(
                to,
                self.source_ip,
                CONNECT_TIMEOUT,
            )),
            _ => endpoint.connect_timeout(CONNECT_TIMEOUT).connect_lazy(),
        };
        channels.insert(to.to_string(), channel.clone());
        Ok(signed(channel))
    }

    /// What sends forwarded operations to `to` (owned: a batch is sent by a spawned task).
    fn batch_sender(&self, to: &str) -> PeerResult<BatchSender> {
        Ok(BatchSender {
            channel: self.channel(to)?,
            timeout: self.timeout,
            max_message: self.max_message,
        })
    }

    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        r
    }

    async fn deadline<T, F>(&self, timeout: Duration, f: F) -> PeerResult<T>
    where
        F: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        match tokio::time::timeout(timeout, f).await {
            Ok(r) => r.map_err(status_to_error),
            Err(_) => Err(PeerError::Unreachable("deadline exceeded".into())),
        }
    }
}

/// Sends forwarded operations to one member: alone (`Forward`) or batched (`ForwardBatch`).
#[derive(Clone)]
struct BatchSender {
    channel: SignedChannel,
    timeout: Duration,
    max_message: usize,
}

impl BatchSender {
    fn client(&self) -> ReplicationClient<SignedChannel> {
        ReplicationClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message)
    }

    /// One operation, one `Forward` call.
    async fn one(&self, msg: pb::ForwardRequest) -> PeerResult<OpReply> {
        let timeout = self.timeout + Duration::from_millis(msg.wait_ms);
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        let r = with_deadline(timeout, self.client().forward(r))
            .await?
            .into_inner();
        reply_from_pb(r).map_err(status_to_error)
    }

    /// Sends `ops` (cut into messages of bounded size) and hands every operation its answer.
    /// A member that does not know `ForwardBatch` (an older version) gets them one by one.
    async fn batch(self, ops: Vec<Waiting>) {
        let sends = chunks(ops).into_iter().map(|chunk| {
            let (reqs, answers): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
            let this = self.clone();
            async move {
                let mut r = tonic::Request::new(pb::ForwardBatchRequest { ops: reqs.clone() });
                r.set_timeout(this.timeout);
                let answer = match with_deadline(this.timeout, this.client().forward_batch(r)).await
                {
                    Err(PeerError::Refused(m)) if m.starts_with("Unimplemented") => {
                        let each = reqs.into_iter().map(|q| this.one(q));
                        for (tx, r) in answers.into_iter().zip(join_all(each).await) {
                            let _ = tx.send(r);
                        }
                        return;
                    }
                    a => a.map(|r| r.into_inner().replies),
                };
                deliver(answers, answer, |r| {
                    if r.outcome == pb::Outcome::BadRequest as i32 {
                        return Err(PeerError::Refused(format!("InvalidArgument: {}", r.detail)));
                    }
                    reply_from_pb(r).map_err(status_to_error)
                });
            }
        });
        join_all(sends).await;
    }
}

/// Bounds `f` by `timeout` (besides the `grpc-timeout` the server enforces).
async fn with_deadline<T, F>(timeout: Duration, f: F) -> PeerResult<T>
where
    F: std::future::Future<Output = Result<T, tonic::Status>>,
{
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(status_to_error),
        Err(_) => Err(PeerError::Unreachable("deadline exceeded".into())),
    }
}

impl Peers for GrpcPeers {
    fn replicate<'a>(&'a self, to: &str, writes: &'a [Write]) -> BoxFuture<'a, PeerResult<()>> {
        let to = to.to_string();
        Box::pin(async move {
            let mut c = ReplicationClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            let msg = pb::ReplicateRequest {
                sender: self.me.clone(),
                writes: writes.iter().map(write_to_pb).collect(),
                sent_at_ms: now_ms(),
            };
            self.deadline(self.timeout, c.replicate(self.request(msg, self.timeout)))
                .await
                .map(|_| ())
        })
    }

    fn heartbeat(
        &self,
        to: &str,
        incarnation: u64,
        map_epoch: u64,
    ) -> BoxFuture<'_, PeerResult<HeartbeatReply>> {
        let to = to.to_string();
        Box::pin(async move {
            let mut c = MembershipClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            let msg = pb::HeartbeatRequest {
                sender: self.me.clone(),
                incarnation,
                map_epoch,
                token_key: self.own_token_key(),
            };
            let mut r = self
                .deadline(self.timeout, c.heartbeat(self.request(msg, self.timeout)))
                .await?
                .into_inner();
            self.adopt_key_from(&to, r.token_key.take());
            Ok(HeartbeatReply {
                incarnation: r.incarnation,
                admitted: r.admitted,
                clock: clock_from_pb(r.clock).map_err(status_to_error)?,
                generation: r.generation,
                map_epoch: r.map_epoch,
                map: r
                    .map
                    .map(map_from_pb)
                    .transpose()
                    .map_err(status_to_error)?,
            })
        })
    }

    fn announce(&self, to: &str, incarnation: u64) -> BoxFuture<'_, PeerResult<AnnounceReply>> {
        let to = to.to_string();
        Box::pin(async move {
            let mut c = MembershipClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            let msg = pb::AnnounceRequest {
                sender: self.me.clone(),
                incarnation,
                token_key: self.own_token_key(),
            };
            let mut r = self
                .deadline(self.timeout, c.announce(self.request(msg, self.timeout)))
                .await?
                .into_inner();
            self.adopt_key_from(&to, r.token_key.take());
            Ok(AnnounceReply {
                view: r.view,
                map: r
                    .map
                    .map(map_from_pb)
                    .transpose()
                    .map_err(status_to_error)?
                    .unwrap_or_default(),
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
        let (to, node) = (to.to_string(), node.to_string());
        Box::pin(async move {
            let mut c = MembershipClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            let msg = pb::ViewChangeRequest {
                sender: self.me.clone(),
                kind: change_kind_to_pb(kind) as i32,
                node,
                incarnation,
            };
            self.deadline(self.timeout, c.view_change(self.request(msg, self.timeout)))
                .await
                .map(|_| ())
        })
    }

    fn install_map(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        let (to, msg) = (to.to_string(), map_to_pb(map));
        Box::pin(async move {
            let mut c = MembershipClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            self.deadline(
                self.timeout,
                c.install_shard_map(self.request(msg, self.timeout)),
            )
            .await
            .map(|_| ())
        })
    }

    fn snapshot(
        &self,
        to: &str,
        generation: u64,
        known: Option<&VectorClock>,
    ) -> BoxFuture<'_, PeerResult<SnapshotStream>> {
        let to = to.to_string();
        let msg = pb::SnapshotRequest {
            requester: self.me.clone(),
            generation,
            known: known.map(clock_to_pb).unwrap_or_default(),
            full: known.is_none(),
        };
        Box::pin(async move {
            let mut c = StateTransferClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            // A peer that does not start answering within the RPC deadline is skipped (it may be
            // paused); once it streams, the caller bounds each chunk (a copy may take minutes:
            // no deadline on the whole call).
            let stream = self
                .deadline(self.timeout, c.snapshot(tonic::Request::new(msg)))
                .await?
                .into_inner();
            let parts = stream.map(|chunk| {
                let chunk = chunk.map_err(status_to_error)?;
                if chunk.last {
                    return Ok(SnapshotPart::End {
                        generation: chunk.generation,
                        clock: clock_from_pb(chunk.clock).map_err(status_to_error)?,
                    });
                }
                Ok(SnapshotPart::Writes {
                    generation: chunk.generation,
                    writes: writes_from_pb(chunk.writes).map_err(status_to_error)?,
                })
            });
            Ok(parts.boxed())
        })
    }

    fn forward(&self, to: &str, op: ForwardOp) -> BoxFuture<'_, PeerResult<OpReply>> {
        let to = to.to_string();
        Box::pin(async move {
            let msg = forward_to_pb(op);
            let sender = self.batch_sender(&to)?;
            if msg.wait_ms > 0 {
                return sender.one(msg).await;
            }
            let orphaned = sender.clone();
            let orphans = Box::new(move |ops: Vec<Waiting>| {
                tokio::spawn(orphaned.batch(ops));
            });
            match self.lanes.join(&to, msg, orphans) {
                Turn::Follow(answer) => answer.await.unwrap_or_else(|_| Err(abandoned())),
                Turn::Lead(leader, answer) => {
                    // let every other ready task queue its operation behind this one, and
                    // what arrives during the round trip of the call in flight
                    tokio::task::yield_now().await;
                    leader.wait_for_flight(FLIGHT_WAIT).await;
                    let (mut ops, flight) = leader.take();
                    if ops.len() == 1
                        && let Some((msg, _)) = ops.pop()
                    {
                        let r = sender.one(msg).await;
                        drop(flight);
                        return r;
                    }
                    tokio::spawn(async move {
                        sender.batch(ops).await;
                        drop(flight);
                    });
                    answer.await.unwrap_or_else(|_| Err(abandoned()))
                }
            }
        })
    }

    fn key_count(&self, to: &str, shard: ShardId) -> BoxFuture<'_, PeerResult<u64>> {
        let to = to.to_string();
        Box::pin(async move {
            let mut c = AdminClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            let msg = pb::KeyCountRequest { shard_id: shard };
            let r = self
                .deadline(self.timeout, c.key_count(self.request(msg, self.timeout)))
                .await?;
            Ok(r.into_inner().key_count)
        })
    }

    fn prepare_reshard(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        let (to, msg) = (to.to_string(), map_to_pb(map));
        Box::pin(async move {
            let mut c = StateTransferClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            self.deadline(
                self.timeout,
                c.prepare_reshard(self.request(msg, self.timeout)),
            )
            .await
            .map(|_| ())
        })
    }

    fn send_reshard_data(
        &self,
        to: &str,
        map: &ShardMap,
    ) -> BoxFuture<'_, PeerResult<SendReports>> {
        let (to, msg) = (to.to_string(), map_to_pb(map));
        Box::pin(async move {
            let mut c = StateTransferClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            // No deadline on the whole call (a copy may take minutes): the caller follows the
            // sender's progress reports and gives up when they stop growing.
            let reports = self
                .deadline(self.timeout, c.send_reshard_data(tonic::Request::new(msg)))
                .await?
                .into_inner()
                .map(|r| {
                    let r = r.map_err(status_to_error)?;
                    Ok(if r.done {
                        SendReport::Done(r.keys_sent)
                    } else {
                        SendReport::Progress(r.progress)
                    })
                });
            Ok(reports.boxed())
        })
    }

    fn receive_reshard_data(
        &self,
        to: &str,
        epoch: u64,
        writes: Vec<Write>,
    ) -> BoxFuture<'_, PeerResult<Holding>> {
        let to = to.to_string();
        Box::pin(async move {
            let mut c = StateTransferClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            let batch = pb::ReshardBatch {
                epoch,
                writes: writes.into_iter().map(write_into_pb).collect(),
            };
            let stream = futures::stream::iter(vec![batch]);
            self.deadline(
                BULK_TIMEOUT,
                c.receive_reshard_data(self.request(stream, BULK_TIMEOUT)),
            )
            .await
            .and_then(|r| {
                let r = r.into_inner();
                Ok(Holding {
                    generation: r.generation,
                    clock: clock_from_pb(r.clock).map_err(status_to_error)?,
                    complete: r.complete,
                })
            })
        })
    }

    fn commit_reshard(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        let (to, msg) = (to.to_string(), map_to_pb(map));
        Box::pin(async move {
            let mut c = StateTransferClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            self.deadline(
                self.timeout,
                c.commit_reshard(self.request(msg, self.timeout)),
            )
            .await
            .map(|_| ())
        })
    }

    fn abort_reshard(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        let (to, msg) = (to.to_string(), map_to_pb(map));
        Box::pin(async move {
            let mut c = StateTransferClient::new(self.channel(&to)?)
                .max_decoding_message_size(self.max_message)
                .max_encoding_message_size(self.max_message);
            self.deadline(
                self.timeout,
                c.abort_reshard(self.request(msg, self.timeout)),
            )
            .await
            .map(|_| ())
        })
    }
}

/// The IP of `me` (`IP:PORT`) when it is a loopback address, else `None`.
fn loopback_ip(me: &str) -> Option<IpAddr> {
    me.parse::<SocketAddr>()
        .ok()
        .map(|a| a.ip())
        .filter(IpAddr::is_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put() -> ForwardOp {
        ForwardOp {
            op: crate::cluster::op::KvOp::Put("1".into()),
            key: "k".into(),
            metadata: crate::domain::metadata::CausalMetadata::empty(),
            wait: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent_and_a_silent_peer_is_of_unknown_outcome() {
        // a port nobody listens on: refused, the write certainly did not happen there
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let refused = closed.local_addr().expect("addr").to_string();
        drop(closed);
        let peers = GrpcPeers::new("127.0.0.1:1", Duration::from_millis(300));
        let e = peers.forward(&refused, put()).await.expect_err("refused");
        assert!(matches!(e, PeerError::NotSent(_)), "{e:?}");
        assert!(!e.outcome_unknown());
        // a listener that accepts and never answers: the write may have happened
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = silent.accept().await {
                held.push(sock);
            }
        });
        let e = peers.forward(&addr, put()).await.expect_err("silent");
        assert!(e.outcome_unknown(), "{e:?}");
        hold.abort();
    }

    #[test]
    fn binds_only_loopback_addresses() {
        assert_eq!(
            loopback_ip("127.30.252.2:8090"),
            Some("127.30.252.2".parse().expect("ip"))
        );
        assert_eq!(loopback_ip("10.10.0.2:8090"), None);
        assert_eq!(loopback_ip("alice:8090"), None);
    }
}
