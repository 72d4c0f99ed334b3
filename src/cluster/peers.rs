//! The `Peers` trait: everything the cluster layer asks of other nodes, in domain types.
//! The gRPC client implements it; tests may implement it over an in-memory network.

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::op::{ForwardOp, OpReply};
use crate::domain::clock::VectorClock;
use crate::domain::shard::{ShardId, ShardMap};
use crate::domain::store::Write;

/// A failed call to a peer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// Connection refused, reset, or deadline exceeded: the peer may be down.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with an error.
    #[error("peer refused: {0}")]
    Refused(String),
    /// No connection could be made (refused): the call certainly had no effect there.
    #[error("peer not reached: {0}")]
    NotSent(String),
}

impl PeerError {
    /// True when the call may have taken effect at the peer although it failed here (a
    /// deadline, a reset connection, an unknown error): only a refused connection, or an
    /// answer, tells that it did not.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, PeerError::Unreachable(_))
    }
}

/// Result of a peer call.
pub type PeerResult<T> = Result<T, PeerError>;

/// A heartbeat answer.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatReply {
    /// The responder's incarnation.
    pub incarnation: u64,
    /// Whether the responder holds the caller in its view.
    pub admitted: bool,
    /// The responder's delivered clock (empty unless admitted).
    pub clock: VectorClock,
    /// The responder's data generation.
    pub generation: u64,
    /// The responder's map epoch.
    pub map_epoch: u64,
    /// The responder's map, when the caller's epoch was older.
    pub map: Option<ShardMap>,
}

/// An announce answer.
#[derive(Clone, Debug, Default)]
pub struct AnnounceReply {
    /// The responder's view.
    pub view: Vec<String>,
    /// The responder's shard map (epoch 0 when it has none).
    pub map: ShardMap,
}

/// One part of a streamed snapshot: writes the caller lacked, a byte-bounded chunk at a time,
/// then the responder's clock. The clock is the one the responder held when it started, so it
/// never covers a write the stream did not carry (the chunks may carry newer writes too).
#[derive(Clone, Debug)]
pub enum SnapshotPart {
    /// A chunk of writes, of the responder's data generation `generation`.
    Writes {
        /// The responder's generation (a chunk of another generation than the caller's is not
        /// merged).
        generation: u64,
        /// The writes.
        writes: Vec<Write>,
    },
    /// The last part: the responder's generation and delivered clock.
    End {
        /// The responder's generation.
        generation: u64,
        /// The responder's delivered clock when the snapshot started.
        clock: VectorClock,
    },
}

/// A snapshot as it streams in.
pub type SnapshotStream = BoxStream<'static, PeerResult<SnapshotPart>>;

/// What a node's own replica holds, as a reshard's receiver reports it: its store holds every
/// write of `generation` that `clock` covers, and with `complete` its shard's data of earlier
/// generations (see `reshard`: a sender of the same old shard sends it only what it lacks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    /// The replica's data generation.
    pub generation: u64,
    /// The replica's delivered clock.
    pub clock: VectorClock,
    /// Whether the replica holds its shard's data of earlier generations.
    pub complete: bool,
}

/// What a reshard's sender reports to its coordinator while it copies (see `reshard_watch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendReport {
    /// Still copying: the sender's copy progress, which grows while it gets anywhere.
    Progress(u64),
    /// Done: this many keys went to their new owners.
    Done(u64),
}

/// A reshard sender's reports as they stream in.
pub type SendReports = BoxStream<'static, PeerResult<SendReport>>;

/// A membership change spread by the node that saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The node failed.
    Down,
    /// An operator added the node.
    Added,
    /// An operator removed the node.
    Removed,
}

/// What other nodes do for this one. Every call has a deadline.
pub trait Peers: Send + Sync + 'static {
    /// Sends a batch of writes (stamped with the send time on the wire, so the receiver can drop
    /// batches the sender gave up on). Borrowed: the sender keeps the batch to resend it, and the
    /// wire encoding reads it once, so no write is copied per call.
    fn replicate<'a>(&'a self, to: &str, writes: &'a [Write]) -> BoxFuture<'a, PeerResult<()>>;
    /// Heartbeat carrying our incarnation and map epoch.
    fn heartbeat(
        &self,
        to: &str,
        incarnation: u64,
        map_epoch: u64,
    ) -> BoxFuture<'_, PeerResult<HeartbeatReply>>;
    /// Announces this node (fresh start or restart).
    fn announce(&self, to: &str, incarnation: u64) -> BoxFuture<'_, PeerResult<AnnounceReply>>;
    /// Spreads a view change.
    fn view_change(
        &self,
        to: &str,
        kind: ChangeKind,
        node: &str,
        incarnation: u64,
    ) -> BoxFuture<'_, PeerResult<()>>;
    /// Asks the peer to install a shard map.
    fn install_map(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>>;
    /// Pulls what the peer has that `known` does not cover (`None`: everything it stores), as a
    /// stream of chunks; the future resolves once the peer starts answering.
    fn snapshot(
        &self,
        to: &str,
        generation: u64,
        known: Option<&VectorClock>,
    ) -> BoxFuture<'_, PeerResult<SnapshotStream>>;
    /// Runs a client operation on the peer (which owns the key).
    fn forward(&self, to: &str, op: ForwardOp) -> BoxFuture<'_, PeerResult<OpReply>>;
    /// The peer's live key count for its shard.
    fn key_count(&self, to: &str, shard: ShardId) -> BoxFuture<'_, PeerResult<u64>>;
    /// Reshard phase 1 on the peer.
    fn prepare_reshard(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>>;
    /// Reshard phase 2 on the peer: it sends its keys to their new owners, reporting progress
    /// as it goes; the future resolves once the peer starts answering.
    fn send_reshard_data(&self, to: &str, map: &ShardMap)
    -> BoxFuture<'_, PeerResult<SendReports>>;
    /// Sends one batch of keys to a new owner during a reshard (an empty batch keeps the
    /// owner's prepared change alive, or fails if it is not prepared); answers what the
    /// owner's own replica holds.
    fn receive_reshard_data(
        &self,
        to: &str,
        epoch: u64,
        writes: Vec<Write>,
    ) -> BoxFuture<'_, PeerResult<Holding>>;
    /// Reshard phase 3 on the peer.
    fn commit_reshard(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>>;
    /// Reshard abort on the peer.
    fn abort_reshard(&self, to: &str, map: &ShardMap) -> BoxFuture<'_, PeerResult<()>>;
}
