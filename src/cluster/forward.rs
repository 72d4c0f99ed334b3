//! Forwarding a client operation to the shard that owns its key: the members in the forwarder's
//! contact order, one after the other. A write that may have been applied by a member that did
//! not answer is never reported as failed afterwards (only a success, or "Cannot forward
//! request": outcome unknown).

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
        // A write forwarded to a member that did not answer may have been applied there: from
        // then on only a success may be reported, anything else is "Cannot forward request"
        // (outcome unknown), never a 503 or 404 that claims nothing changed.
        let mut maybe_applied = false;
        let write = !matches!(op, KvOp::Get);
        for target in targets {
            let fwd = ForwardOp {
                op: op.clone(),
                key: key.to_string(),
                metadata: meta.clone(),
                wait,
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::peers::PeerError;
    use crate::config::Config;
    use crate::sim::scripted::ScriptedPeers;

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
