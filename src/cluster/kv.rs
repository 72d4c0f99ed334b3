//! Client key-value operations: route to the owning shard (forwarding over `Peers`), check
//! causal dependencies, apply locally, and hand the write to replication.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::peers::ForwardOp;
use super::{Node, scope};
use crate::domain::metadata::CausalMetadata;
use crate::domain::shard::ShardId;
use crate::domain::store::Applied;
use crate::domain::write_id::WriteId;

/// How long a client write waits for a reshard in progress to finish before giving up; a
/// reshard of 100k keys takes a few seconds on a small machine.
const RESHARD_WAIT: Duration = Duration::from_secs(15);
/// How long a request waits for the node to finish its start-up state transfer.
const READY_WAIT: Duration = Duration::from_secs(10);

/// The result of one attempt at a local operation.
enum Attempt {
    /// Finished (successfully or not).
    Done(OpReply),
    /// Dependencies not delivered yet.
    Unsatisfied,
    /// A write while a reshard is prepared here.
    Frozen,
}

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
    fn bare(outcome: Outcome, shard: ShardId) -> Self {
        Self {
            outcome,
            value: None,
            metadata: None,
            shard,
            written: None,
        }
    }
}

impl Node {
    /// Runs a client operation from any node: forwards it when another shard owns the key.
    /// `wait` bounds how long to wait for missing dependencies (zero = answer at once).
    pub async fn execute(
        &self,
        key: &str,
        op: KvOp,
        meta: CausalMetadata,
        wait: Duration,
    ) -> OpReply {
        if !self.wait_ready(READY_WAIT).await {
            return OpReply::bare(Outcome::Unavailable("node is still starting".into()), 0);
        }
        if matches!(op, KvOp::Put(_) | KvOp::Delete) && !self.wait_no_reshard(RESHARD_WAIT).await {
            return OpReply::bare(Outcome::Unavailable("resharding in progress".into()), 0);
        }
        let (owner, mine, targets) = {
            let st = self.state();
            let owner = st.map.shard_for_key(key);
            (
                owner,
                st.my_shard(&self.me),
                st.contact_order(owner, &self.me),
            )
        };
        if mine == Some(owner) {
            return self.execute_local(key, op, meta, wait).await;
        }
        self.forward(key, op, &meta, wait, owner, targets).await
    }

    async fn forward(
        &self,
        key: &str,
        op: KvOp,
        meta: &CausalMetadata,
        wait: Duration,
        owner: ShardId,
        targets: Vec<String>,
    ) -> OpReply {
        let mut last = format!("shard {owner} has no members");
        // A write forwarded to a member that did not answer may have been applied there: from
        // then on only a success may be reported, anything else is "Cannot forward request"
        // (outcome unknown), never a 503 or 404 that claims nothing changed.
        let mut maybe_applied = false;
        let write = !matches!(op, KvOp::Get);
        for target in targets {
            let fwd = ForwardOp {
                op: op.clone(),
                key: key.to_string(),
                metadata: if meta.is_empty() {
                    String::new()
                } else {
                    meta.encode()
                },
                wait_ms: wait.as_millis() as u64,
            };
            match self.peers.forward(&target, fwd).await {
                Ok(r) if maybe_applied && !r.outcome.is_success() => {
                    last = format!(
                        "{target}: {:?} after an attempt of unknown outcome",
                        r.outcome
                    );
                    break;
                }
                Ok(r) if !matches!(r.outcome, Outcome::Unavailable(_)) => return r,
                Ok(r) => last = format!("{target}: {:?}", r.outcome),
                Err(e) => {
                    maybe_applied |= write && e.outcome_unknown();
                    last = format!("{target}: {e}");
                }
            }
            debug!(node = %self.me, %target, %last, "forward attempt failed");
        }
        OpReply::bare(Outcome::CannotForward(last), owner)
    }

    /// Runs a client operation on a key this node's shard owns (also the target of forwards).
    pub async fn execute_local(
        &self,
        key: &str,
        op: KvOp,
        meta: CausalMetadata,
        wait: Duration,
    ) -> OpReply {
        let deadline = Instant::now() + wait;
        let mut delivered = self.delivered.subscribe();
        let mut asked_peers = false;
        loop {
            match self.try_local(key, &op, &meta) {
                Attempt::Done(reply) => return reply,
                Attempt::Frozen => {
                    // A reshard was prepared after routing: wait for it, like a new request.
                    if !self.wait_no_reshard(RESHARD_WAIT).await {
                        let shard = self.state().map.shard_for_key(key);
                        return OpReply::bare(
                            Outcome::Unavailable("resharding in progress".into()),
                            shard,
                        );
                    }
                    continue;
                }
                Attempt::Unsatisfied => {}
            }
            let now = Instant::now();
            if now >= deadline {
                let shard = self.state().map.shard_for_key(key);
                return OpReply::bare(Outcome::Unsatisfied, shard);
            }
            if !asked_peers {
                // Do not only wait for retries: pull what we miss from the shard's peers.
                asked_peers = true;
                let node = self.clone();
                tokio::spawn(async move { node.sync_from_shard_peers().await });
            }
            let _ = tokio::time::timeout(deadline - now, delivered.changed()).await;
        }
    }

    /// One attempt under the lock.
    fn try_local(&self, key: &str, op: &KvOp, meta: &CausalMetadata) -> Attempt {
        let mut guard = self.state();
        let st = &mut *guard;
        let shard = st.map.shard_for_key(key);
        if st.my_shard(&self.me) != Some(shard) {
            return Attempt::Done(OpReply::bare(
                Outcome::Unavailable("not the owner".into()),
                shard,
            ));
        }
        if !st.replica.satisfies(meta, scope(&st.map, &self.me)) {
            return Attempt::Unsatisfied;
        }
        // Checked under the lock: no write is applied once a reshard is prepared here, so the
        // reshard's catch-up sees every acknowledged write.
        if !matches!(op, KvOp::Get) && st.staging.is_some() {
            return Attempt::Frozen;
        }
        let reply = match op {
            KvOp::Get => match st.replica.store.live(key) {
                Some(e) => OpReply {
                    outcome: Outcome::Found,
                    value: e.value.clone(),
                    metadata: Some(st.replica.metadata_after(meta, Some(&e.version))),
                    shard,
                    written: None,
                },
                None => OpReply::bare(Outcome::NotFound, shard),
            },
            KvOp::Delete if !st.replica.store.is_live(key) => {
                OpReply::bare(Outcome::NotFound, shard)
            }
            KvOp::Put(_) | KvOp::Delete => {
                let value = match op {
                    KvOp::Put(v) => Some(v.clone()),
                    _ => None,
                };
                let (write, applied) =
                    st.replica
                        .local_write(&self.me, key.to_string(), value, meta);
                let outcome = match (op, applied) {
                    (KvOp::Delete, _) => Outcome::Deleted,
                    (_, Applied::Replaced) => Outcome::Replaced,
                    _ => Outcome::Created,
                };
                let metadata =
                    st.replica
                        .metadata_after_write(meta, &write.version, scope(&st.map, &self.me));
                let targets = st.shard_peers(&self.me);
                drop(guard);
                let written = Some(WriteId::from(&write.version));
                self.enqueue(write, &targets);
                self.bump_delivered();
                return Attempt::Done(OpReply {
                    outcome,
                    value: None,
                    metadata: Some(metadata),
                    shard,
                    written,
                });
            }
        };
        Attempt::Done(reply)
    }

    /// Waits until no reshard is in progress here; false on timeout.
    async fn wait_no_reshard(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut delivered = self.delivered.subscribe();
        loop {
            if self.state().staging.is_none() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let step = (deadline - now).min(Duration::from_millis(50));
            let _ = tokio::time::timeout(step, delivered.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::peers::PeerError;
    use crate::cluster::scripted::ScriptedPeers;
    use crate::config::Config;

    /// A node of a 4-node, 2-shard cluster; `owner` is a key of the other shard and its two
    /// members, in the order this node contacts them.
    fn forwarding_node() -> (Node, Arc<ScriptedPeers>, String, Vec<String>) {
        let view: Vec<String> = (2..6).map(|i| format!("127.0.0.{i}:8090")).collect();
        let cfg = Config::from_vars(|k| match k {
            "SOCKET_ADDRESS" => Some(view[0].clone()),
            "VIEW" => Some(view.join(",")),
            "SHARD_COUNT" => Some("2".into()),
            _ => None,
        })
        .expect("config");
        let peers = Arc::new(ScriptedPeers::default());
        let node = Node::new(cfg, peers.clone());
        let st = node.state();
        let mine = st.my_shard(&node.me).expect("member");
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| st.map.shard_for_key(k) != mine)
            .expect("a key of the other shard");
        let targets = st.contact_order(st.map.shard_for_key(&key), &node.me);
        drop(st);
        (node, peers, key, targets)
    }

    fn answer(outcome: Outcome) -> Result<OpReply, PeerError> {
        Ok(OpReply::bare(outcome, 1))
    }

    #[tokio::test]
    async fn a_forwarded_write_that_may_have_been_applied_is_never_reported_as_failed() {
        let (node, peers, key, targets) = forwarding_node();
        assert_eq!(targets.len(), 2);
        // the first member times out (it may have applied the write), the second says 503
        peers.on_forward(&targets[0], Err(PeerError::Unreachable("deadline".into())));
        peers.on_forward(&targets[1], answer(Outcome::Unsatisfied));
        let meta = CausalMetadata::empty();
        let r = node
            .forward(
                &key,
                KvOp::Put("1".into()),
                &meta,
                Duration::ZERO,
                1,
                targets.clone(),
            )
            .await;
        assert!(matches!(r.outcome, Outcome::CannotForward(_)), "{r:?}");
        // ... and a DELETE's 404 likewise
        peers.on_forward(&targets[0], Err(PeerError::Unreachable("reset".into())));
        peers.on_forward(&targets[1], answer(Outcome::NotFound));
        let r = node
            .forward(
                &key,
                KvOp::Delete,
                &meta,
                Duration::ZERO,
                1,
                targets.clone(),
            )
            .await;
        assert!(matches!(r.outcome, Outcome::CannotForward(_)), "{r:?}");
        // a success from the next member stands
        peers.on_forward(&targets[0], Err(PeerError::Unreachable("deadline".into())));
        peers.on_forward(&targets[1], answer(Outcome::Created));
        let r = node
            .forward(
                &key,
                KvOp::Put("2".into()),
                &meta,
                Duration::ZERO,
                1,
                targets.clone(),
            )
            .await;
        assert_eq!(r.outcome, Outcome::Created);
        // a refused connection did nothing: the next member's answer stands, whatever it is
        peers.on_forward(&targets[0], Err(PeerError::NotSent("refused".into())));
        peers.on_forward(&targets[1], answer(Outcome::Unsatisfied));
        let r = node
            .forward(
                &key,
                KvOp::Put("3".into()),
                &meta,
                Duration::ZERO,
                1,
                targets.clone(),
            )
            .await;
        assert_eq!(r.outcome, Outcome::Unsatisfied);
        // reads may always be retried elsewhere
        peers.on_forward(&targets[0], Err(PeerError::Unreachable("deadline".into())));
        peers.on_forward(&targets[1], answer(Outcome::NotFound));
        let r = node
            .forward(&key, KvOp::Get, &meta, Duration::ZERO, 1, targets.clone())
            .await;
        assert_eq!(r.outcome, Outcome::NotFound);
        assert_eq!(peers.forwarded_to.lock().unwrap().len(), 10);
    }
}
