//! Client operations as the cluster layer sees them (what to do, what happened) and the
//! forwarded form a node hands to `Peers`. Domain types only: encoding to the wire is
//! `rpc/convert.rs`'s job. Depends on nothing that implements or uses `Peers`, so `kv`, `peers`
//! and `forward` all import from here and never from each other.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::metadata::CausalMetadata;
use crate::domain::shard::ShardId;
use crate::domain::write_id::WriteId;

/// A client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Write the JSON text given.
    Put(Arc<str>),
    /// Read.
    Get,
    /// Delete.
    Delete,
}

/// The outcome of a client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// PUT of a key that had no live value.
    Created,
    /// PUT over a live value.
    Replaced,
    /// GET hit.
    Found,
    /// DELETE hit.
    Deleted,
    /// GET or DELETE of a key with no live value.
    NotFound,
    /// The node has not applied writes the metadata depends on.
    Unsatisfied,
    /// No member of the owning shard answered.
    CannotForward(String),
    /// The node is not in a state to serve (starting, resharding, not the owner).
    Unavailable(String),
}

/// The reply to a client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpReply {
    /// What happened.
    pub outcome: Outcome,
    /// The value read (GET hit), as JSON text.
    pub value: Option<Arc<str>>,
    /// The metadata to hand back to the client (success outcomes).
    pub metadata: Option<CausalMetadata>,
    /// The shard that owns the key.
    pub shard: ShardId,
    /// The write this operation made (PUT, DELETE hit).
    pub written: Option<WriteId>,
}

impl Outcome {
    /// True for the outcomes of an operation that took place (a write applied, a read done).
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::Created | Outcome::Replaced | Outcome::Found | Outcome::Deleted
        )
    }
}

impl OpReply {
    /// A reply with no value or metadata.
    pub fn bare(outcome: Outcome, shard: ShardId) -> Self {
        Self {
            outcome,
            value: None,
            metadata: None,
            shard,
            written: None,
        }
    }
}

/// A client operation forwarded to the owning shard.
#[derive(Clone, Debug)]
pub struct ForwardOp {
    /// What to do.
    pub op: KvOp,
    /// The key.
    pub key: String,
    /// The client's causal metadata (empty for none).
    pub metadata: CausalMetadata,
    /// How long the owner may wait for dependencies.
    pub wait: Duration,
}
