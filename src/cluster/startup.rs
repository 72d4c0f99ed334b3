//! Start-up: announce to the nodes of `VIEW`, adopt the cluster's shard map (a peer's map of
//! the same epoch replaces the one dealt from `VIEW`), wait for a peer when the mode is not
//! known yet (no `SHARD_COUNT`), pull this shard's data, catch up with every live member, then
//! serve and start the background loops.

use std::time::Duration;

use tokio::time::Instant;

use futures::future::join_all;
use tracing::{info, warn};

use super::Node;
use crate::domain::shard::ShardMap;

/// How long a node started without `SHARD_COUNT` keeps announcing itself when no peer of its
/// `VIEW` answers, before it serves alone. Until one answers it cannot tell the first node of a
/// replication-only cluster (its peers start within a second or two) from a spare cut off from
/// a sharded cluster, which must not take writes as a store of its own. Client requests wait
/// for readiness meanwhile (up to 10 s, then 503).
const PEER_WAIT: Duration = Duration::from_secs(10);
/// Pause between announce rounds while waiting for a peer.
const ANNOUNCE_RETRY: Duration = Duration::from_millis(200);

impl Node {
    /// Joins the cluster: announce to every node of the start-up view, adopt the newest shard
    /// map, pull this shard's data from a live member, then serve and start background loops.
    /// A node without `SHARD_COUNT` first waits (bounded) until some peer answers.
    /// Fails (before serving) when the data directory proves to have lost acknowledged writes.
    pub async fn start(&self) -> Result<(), crate::storage::StorageError> {
        let targets: Vec<String> = self
            .cfg
            .view
            .iter()
            .filter(|p| **p != *self.me)
            .cloned()
            .collect();
        let started = Instant::now();
        while !self.announce(&targets).await
            && self.state().map.is_replicated()
            && started.elapsed() < PEER_WAIT
            && !self.is_shutting_down()
        {
            if started.elapsed() < ANNOUNCE_RETRY {
                info!(node = %self.me, "no peer of VIEW answers yet; waiting for one before serving");
            }
            tokio::time::sleep(ANNOUNCE_RETRY).await;
        }
        if !targets.is_empty() && started.elapsed() >= PEER_WAIT {
            warn!(node = %self.me, waited_s = PEER_WAIT.as_secs(), "no peer of VIEW answered; serving alone");
        }
        // A node restarted from its data directory holds its replica: a delta from each member
        // (below) is all it lacks. Otherwise it copies the shard from a member.
        if !(self.restarted_from_disk() && self.state().replica.complete) {
            self.full_sync().await;
        }
        // In memory, a restarted node knows its own write numbers only from its peers, and the
        // one it pulled from may lack its last writes before the crash that another delivered:
        // numbering on from there would reuse numbers, and those peers would ignore the new
        // writes as already delivered (nemesis seed 18). A delta from every live member of the
        // shard first makes it resume above anything they delivered.
        let own_on_disk = self.state().replica.clock.get(&self.me);
        self.catch_up_with_shard().await;
        if self.check_own_writes(own_on_disk)? {
            self.full_sync().await;
            self.catch_up_with_shard().await;
        }
        let _ = self.ready.send_replace(true);
        let st = self.state();
        let mode = super::shards::Mode::of(&st.map, &self.me);
        info!(node = %self.me, mode = mode.name(), view = ?st.liveness.view(),
              shard = ?st.my_shard(&self.me), keys = st.replica.store.live_count(), "node ready");
        drop(st);
        self.spawn_supervised("heartbeat", |node| node.heartbeat_loop());
        self.spawn_supervised("stall-watchdog", |node| node.stall_watchdog());
        Ok(())
    }

    /// Announces this node to `targets`, adds every node their views name, and installs the
    /// newest shard map among the replies. True when some target answered (or there is none).
    async fn announce(&self, targets: &[String]) -> bool {
        let calls = targets
            .iter()
            .map(|p| self.peers.announce(p, self.incarnation));
        let replies = join_all(calls).await;
        let mut maps: Vec<ShardMap> = Vec::new();
        let mut answered = targets.is_empty();
        for (peer, reply) in targets.iter().zip(replies) {
            let Ok(reply) = reply else { continue };
            answered = true;
            {
                let mut st = self.state();
                st.liveness.add(peer);
                for other in reply.view.iter().filter(|v| **v != *self.me) {
                    if st.liveness.get(other).is_none() {
                        st.liveness.add(other);
                    }
                }
            }
            if !reply.map.is_replicated() {
                maps.push(reply.map);
            }
        }
        if let Some(map) = cluster_map(maps) {
            self.adopt_start_map(map);
        }
        answered
    }

    /// Installs the cluster's map heard at start-up. One of the same epoch as ours replaces
    /// ours too: the map a node deals itself from `VIEW` is only a guess, and a node restarted
    /// with a `VIEW` that lists nodes added later (as the contract has it restart) deals a
    /// different map of epoch 1, which would otherwise never yield to the cluster's.
    fn adopt_start_map(&self, map: ShardMap) {
        {
            let mut st = self.state();
            if map.epoch == st.map.epoch && map.generation == st.map.generation && map != st.map {
                warn!(node = %self.me, epoch = map.epoch,
                      "the shard map dealt from VIEW differs from the cluster's; adopting the cluster's");
                st.map = map;
                self.persist_unwaited(vec![crate::storage::Change::Map(st.map.clone())]);
                return;
            }
        }
        self.install_map(map);
    }
}

/// The map to adopt among those peers answered with: the highest epoch, and among maps of that
/// epoch the one most peers hold (the first such on a tie).
fn cluster_map(maps: Vec<ShardMap>) -> Option<ShardMap> {
    let top = maps.iter().map(|m| m.epoch).max()?;
    let candidates: Vec<&ShardMap> = maps.iter().filter(|m| m.epoch == top).collect();
    candidates
        .iter()
        .max_by_key(|m| {
            let votes = candidates.iter().filter(|o| o == m).count();
            // on a tie in votes, prefer the earlier candidate (max_by_key keeps the last)
            let first = candidates.iter().position(|o| o == *m).unwrap_or(0);
            (votes, usize::MAX - first)
        })
        .map(|m| (*m).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.10.0.{}:8090", i + 2)).collect()
    }

    #[test]
    fn the_cluster_map_is_the_newest_then_the_most_held() {
        assert_eq!(cluster_map(Vec::new()), None);
        let a = ShardMap::initial(&nodes(6), 2);
        let b = ShardMap::initial(&nodes(7), 2); // same epoch, dealt from a longer VIEW
        let newer = a.with_member(1, "10.10.0.9:8090").expect("member");
        assert_eq!(
            cluster_map(vec![b.clone(), a.clone(), a.clone()]),
            Some(a.clone())
        );
        assert_eq!(cluster_map(vec![b.clone(), a.clone()]), Some(b.clone()));
        assert_eq!(cluster_map(vec![a.clone(), newer.clone(), b]), Some(newer));
    }
}
