//! Delivering the causal buffer's backlog a slice per lock hold. One missing write, or a pull's
//! clock, can make the whole buffer deliverable (up to `replica::MAX_PENDING` writes, ~200k):
//! delivered in one lock hold that would stall heartbeats and clients for a fraction of a
//! second. The replica delivers at most `replica::DRAIN_SLICE` writes per drain and leaves the
//! rest as a backlog, which this delivers slice by slice, releasing the lock in between.

use super::{Node, scope};
use crate::domain::replica::DRAIN_SLICE;

impl Node {
    /// Delivers the replica's backlog, [`DRAIN_SLICE`] writes per lock hold, letting heartbeats
    /// and clients at the lock between slices. Returns when no backlog is left.
    pub async fn deliver_backlog(&self) {
        loop {
            let (delivered, more) = {
                let mut guard = self.state();
                let st = &mut *guard;
                let in_scope = scope(&st.map, &self.me);
                let n = st.replica.deliver_backlog(&in_scope, DRAIN_SLICE);
                drop(in_scope);
                self.persist_replica_unwaited(st, false);
                let more = st.replica.has_backlog();
                if !more {
                    st.replica.drain_finished();
                }
                (n, more)
            };
            if delivered > 0 {
                self.bump_delivered();
            }
            if !more {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Starts delivering the backlog in a task of its own when `scheduled` (the answer of
    /// `Replica::schedule_drain`, taken under the lock that left the backlog).
    pub fn drain_backlog_later(&self, scheduled: bool) {
        if scheduled {
            let node = self.clone();
            tokio::spawn(async move { node.deliver_backlog().await });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::scripted::ScriptedPeers;
    use crate::domain::clock::VectorClock;
    use crate::domain::store::{Version, Write};

    const ME: &str = "127.0.0.2:8090";
    const PEER: &str = "127.0.0.3:8090";

    fn write(seq: usize) -> Write {
        Write {
            key: format!("k{seq}"),
            version: Version {
                generation: 1,
                origin: PEER.into(),
                seq: seq as u64,
                clock: VectorClock::from_entries([(PEER.to_string(), seq as u64)]),
            },
            value: Some(Arc::from("\"v\"")),
        }
    }

    #[tokio::test]
    async fn a_big_backlog_is_delivered_a_slice_per_lock_hold() {
        let cfg = crate::cluster::scripted::env_config(ME, &[ME.into(), PEER.into()], 1);
        let node = Node::new(cfg, Arc::new(ScriptedPeers::default()));
        let n = 3 * DRAIN_SLICE + 17;
        let writes: Vec<Write> = (1..=n).map(write).collect();
        // everything but the first write arrives first: it all waits for the first
        node.receive_writes(PEER, 0, writes[1..].to_vec());
        assert_eq!(node.state().replica.pending_len(), n - 1);
        let (applied, _) = node.receive_writes(PEER, 0, writes[..1].to_vec());
        assert_eq!(
            applied as usize, DRAIN_SLICE,
            "one slice delivered under the lock the batch took"
        );
        assert!(node.state().replica.has_backlog());
        // the rest is delivered by a task of its own, a slice per lock hold
        for _ in 0..1_000 {
            if node.state().replica.clock.get(PEER) == n as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let st = node.state();
        assert_eq!(st.replica.clock.get(PEER), n as u64);
        assert_eq!(st.replica.store.live_count(), n);
        assert_eq!(st.replica.pending_len(), 0);
        assert!(!st.replica.has_backlog());
    }
}
