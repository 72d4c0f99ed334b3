//! Forwarding a client operation to the shard that owns its key: the members in the forwarder's
//! contact order, one after the other. A write is tried at the next member only when the last
//! one certainly did not apply it (refused connection, or an answer); after a deadline or a reset
//! it is reported as "Cannot forward request" (outcome unknown), never retried elsewhere: a second
//! member would apply it again as a new write (found by the simulation, `causalkv sim --seeds 832`).

use std::time::Duration;

use tracing::debug;

use super::Node;
use super::op::{ForwardOp, KvOp, OpReply, Outcome};
use crate::domain::metadata::CausalMetadata;
use crate::domain::shard::ShardId;

impl Node {
    /// Sends a client operation to the members of the owner shard `owner` in turn, until one
    /// answers (anything but "not the owner / starting").
    pub(super) async fn forward(
        &self,
        key: &str,
        op: KvOp,
        meta: &CausalMetadata,
        wait: Duration,
        owner: ShardId,
        targets: Vec<String>,
    ) -> OpReply {
        let mut last = format!("shard {owner} has no members");
        let write = !matches!(op, KvOp::Get);
        for target in targets {
            let fwd = ForwardOp {
                op: op.clone(),
                key: key.to_string(),
                metadata: meta.clone(),
                wait,
            };
            match self.peers.forward(&target, fwd).await {
                Ok(r) if !matches!(r.outcome, Outcome::Unavailable(_)) => return r,
                Ok(r) => last = format!("{target}: {:?}", r.outcome),
                Err(e) if write && e.outcome_unknown() => {
                    // The member may have applied the write. Sending it to the next member
                    // would apply it a second time, as a new write later in causal order (a
                    // client could then see its older value come back over a newer one):
                    // the outcome is unknown, and the client hears so.
                    last = format!("{target}: {e} (the write may have been applied there)");
                    debug!(node = %self.me, %target, %last, "forwarded write of unknown outcome");
                    break;
                }
                Err(e) => last = format!("{target}: {e}"),
            }
            debug!(node = %self.me, %target, %last, "forward attempt failed");
        }
        OpReply::bare(Outcome::CannotForward(last), owner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::peers::PeerError;
    use crate::cluster::scripted::ScriptedPeers;

    /// A node of a 4-node, 2-shard cluster; `owner` is a key of the other shard and its two
    /// members, in the order this node contacts them.
    fn forwarding_node() -> (Node, Arc<ScriptedPeers>, String, Vec<String>) {
        let cfg = crate::cluster::scripted::four_node_config();
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
    async fn a_forwarded_write_of_unknown_outcome_is_neither_failed_nor_retried_elsewhere() {
        let (node, peers, key, targets) = forwarding_node();
        assert_eq!(targets.len(), 2);
        let meta = CausalMetadata::empty();
        // the first member times out (it may have applied the write): unknown, and the second
        // member is not asked (it would apply the write a second time)
        peers.on_forward(&targets[0], Err(PeerError::Unreachable("deadline".into())));
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
        // ... and a DELETE likewise
        peers.on_forward(&targets[0], Err(PeerError::Unreachable("reset".into())));
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
        assert_eq!(
            *peers.forwarded_to.lock().unwrap(),
            vec![targets[0].clone(), targets[0].clone()],
            "never sent to a second member"
        );
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
        assert_eq!(peers.forwarded_to.lock().unwrap().len(), 6);
    }
}
