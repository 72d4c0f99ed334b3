//! Client key-value operations: route to the owning shard (forwarding over `Peers`), check
//! causal dependencies, apply locally, and hand the write to replication.

use std::time::Duration;

use tokio::time::Instant;

use super::op::{KvOp, OpReply, Outcome};
use super::{Node, scope};
use crate::domain::metadata::CausalMetadata;
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
    /// A write applied here: acknowledged once storage holds it, then replicated.
    Written(Box<Written>),
}

/// A write applied locally, waiting for storage before it is acknowledged and replicated.
struct Written {
    reply: OpReply,
    write: crate::domain::store::Write,
    targets: Vec<String>,
    stored: crate::storage::Ticket,
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
        let (owner, mine) = {
            let st = self.state();
            (st.map.shard_for_key(key), st.my_shard(&self.me))
        };
        if mine == Some(owner) {
            return self.execute_local(key, op, meta, wait).await;
        }
        // only a forwarded operation needs the owner's members in contact order
        let targets = self.state().contact_order(owner, &self.me);
        self.forward(key, op, &meta, wait, owner, targets).await
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
                Attempt::Written(w) => return self.acknowledge(*w).await,
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
        if !matches!(op, KvOp::Get) && st.resharding() {
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
                if let Err(e) = self.storage_writable() {
                    return Attempt::Done(OpReply::bare(Outcome::Unavailable(e), shard));
                }
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
                let stored = self.persist_replica(st, false);
                drop(guard);
                let written = Some(WriteId::from(&write.version));
                return Attempt::Written(Box::new(Written {
                    reply: OpReply {
                        outcome,
                        value: None,
                        metadata: Some(metadata),
                        shard,
                        written,
                    },
                    write,
                    targets,
                    stored,
                }));
            }
        };
        Attempt::Done(reply)
    }

    /// Acknowledges a local write once storage holds it (per the fsync policy) and only then
    /// replicates it: a peer never delivers a write its origin could lose in a crash, so the
    /// origin never numbers a later write the same. If storing failed the client is told
    /// (503, "storage ...") and the write is not replicated now: it stays applied here, is
    /// stored by the retry, and reaches peers by anti-entropy.
    async fn acknowledge(&self, w: Written) -> OpReply {
        self.bump_delivered();
        if let Err(e) = w.stored.wait().await {
            return OpReply::bare(Outcome::Unavailable(e.to_string()), w.reply.shard);
        }
        self.enqueue(w.write, &w.targets);
        w.reply
    }

    /// Waits until no reshard is in progress here; false on timeout.
    async fn wait_no_reshard(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut delivered = self.delivered.subscribe();
        loop {
            if !self.state().resharding() {
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
