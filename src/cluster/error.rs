//! The one error type of the cluster layer: why a shard operation, a reshard step or a state
//! transfer failed. Each variant's text is what operators read (the api layer maps variants to
//! status codes in one place, `api::current::shard_error`; the rpc layer carries the text).

use super::peers::PeerError;
use super::snapshot::SnapshotError;
use crate::domain::shard::{ShardError, ShardId};

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// No shard with that id.
    #[error("No shard with id {0}")]
    UnknownShard(ShardId),
    /// The node named is not in the view.
    #[error("Node {0} is not in the view")]
    NotInView(String),
    /// Fewer than two nodes per shard would remain.
    #[error("Not enough nodes to provide fault tolerance with requested shard count")]
    NotEnoughNodes,
    /// The node already serves another shard.
    #[error("Node {0} already belongs to shard {1}")]
    AlreadyAssigned(String, ShardId),
    /// A map change of this epoch or older was proposed after ours moved on.
    #[error("stale reshard epoch {got} (have {have})")]
    StaleEpoch {
        /// The epoch proposed.
        got: u64,
        /// Ours.
        have: u64,
    },
    /// Another map change (reshard or add-member) is prepared here: at most one at a time.
    #[error("another reshard is in progress")]
    ChangeInProgress,
    /// Keys arrived for a reshard this node has not prepared.
    #[error("no reshard of epoch {0} is prepared here")]
    NotPrepared(u64),
    /// The staging area would outgrow its byte bound.
    #[error("reshard staging over {0} bytes on this node")]
    StagingFull(usize),
    /// A reshard committed while data was being copied.
    #[error("the data generation changed during the reshard copy")]
    GenerationChanged,
    /// No live member of a shard could do its part.
    #[error("shard {0} has no live member")]
    NoLiveMember(ShardId),
    /// No member of a shard answered a query.
    #[error("no member of shard {0} answered")]
    NoMemberAnswered(ShardId),
    /// A peer call failed.
    #[error("{node}: {source}")]
    Peer {
        /// The peer.
        node: String,
        /// What happened.
        source: PeerError,
    },
    /// A copy of the store could not start or stopped.
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
    /// A node of the cluster refused a step (its reason, as it gave it).
    #[error("{node}: {reason}")]
    Refused {
        /// The node.
        node: String,
        /// Its reason.
        reason: String,
    },
    /// The task running a reshard ended abnormally (a panic).
    #[error("reshard task failed: {0}")]
    TaskFailed(String),
    /// A reshard or add-member failed; everything it had prepared was undone.
    #[error("Reshard failed and was rolled back: {0}")]
    RolledBack(Box<Error>),
    /// An add-member lost a race with another map change; nothing was changed.
    #[error("Membership change refused, nothing changed (retry): {0}")]
    Conflict(Box<Error>),
}

impl Error {
    /// A failed call to `node`.
    pub fn peer(node: &str, source: PeerError) -> Self {
        Error::Peer {
            node: node.to_string(),
            source,
        }
    }
}

impl From<ShardError> for Error {
    fn from(e: ShardError) -> Self {
        match e {
            ShardError::UnknownShard(id) => Error::UnknownShard(id),
            ShardError::NotEnoughNodes(_) => Error::NotEnoughNodes,
            ShardError::AlreadyAssigned(n, s) => Error::AlreadyAssigned(n, s),
        }
    }
}
