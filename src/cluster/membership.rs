//! Membership: heartbeats that detect failures and drive anti-entropy, view changes (a reported
//! failure is verified by our own probe), and the flap-damped re-admission of peers that were
//! cut off. Start-up is in `startup`.

use std::time::Duration;

use tokio::time::Instant;

use futures::future::join_all;
use tracing::{info, warn};

use super::Node;
use super::peers::{ChangeKind, HeartbeatReply};
use crate::domain::clock::VectorClock;
use crate::domain::liveness::Transition;
use crate::domain::shard::ShardMap;

/// Period of the stall watchdog.
const STALL_TICK: Duration = Duration::from_millis(100);
/// A watchdog tick this late means the process did not run (far above scheduling jitter on a
/// loaded 2-core machine, far below the RPC deadline).
const STALL_THRESHOLD: Duration = Duration::from_millis(600);

/// What a heartbeat handler answers.
#[derive(Debug, Default)]
pub struct HeartbeatAnswer {
    /// Whether we hear from the caller (it is in our view or on probation): then our clock
    /// tells it what to pull from us.
    pub admitted: bool,
    /// Our clock (when `admitted`).
    pub clock: VectorClock,
    /// Our generation.
    pub generation: u64,
    /// Our map epoch.
    pub map_epoch: u64,
    /// Our map, when the caller's epoch is older.
    pub map: Option<ShardMap>,
}

impl Node {
    /// Notices when this process itself did not run for a while (SIGSTOP, a paused VM): the
    /// calls it had in flight then timed out through no fault of their peers.
    pub(super) async fn stall_watchdog(self) {
        let mut shutdown = self.shutdown.subscribe();
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(STALL_TICK) => {}
                _ = shutdown.changed() => return,
            }
            let now = Instant::now();
            let gap = now.duration_since(last);
            last = now;
            if gap > STALL_THRESHOLD {
                self.state().stall_end = Some(now);
                warn!(node = %self.me, stalled_ms = gap.as_millis() as u64,
                      "this process was stalled; failures of calls in flight are ignored");
            }
        }
    }

    pub(super) async fn heartbeat_loop(self) {
        let mut tick = tokio::time::interval(self.cfg.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let (peers, epoch) = {
                let st = self.state();
                let peers: Vec<String> = st.liveness.peers().map(|(a, _)| a.to_string()).collect();
                (peers, st.map.epoch)
            };
            let node = &self;
            let started = Instant::now();
            let calls = peers.iter().map(|p| async move {
                let r = node.peers.heartbeat(p, node.incarnation, epoch).await;
                (p, r)
            });
            for (peer, result) in join_all(calls).await {
                match result {
                    Ok(reply) => self.on_heartbeat_reply(peer, reply),
                    Err(e) => self.peer_failed(peer, &e.to_string(), started),
                }
            }
            self.check_staging_timeout();
            self.forget_strangers();
            self.persist_token_keys();
        }
    }

    fn log_transition(&self, peer: &str, t: Transition, why: &str) {
        match t {
            Transition::Admitted => info!(node = %self.me, %peer, why, "peer admitted to view"),
            Transition::Suspected => {
                warn!(node = %self.me, %peer, why, "peer suspected, removed from view")
            }
            Transition::OnProbation => {
                info!(node = %self.me, %peer, grace_ms = self.cfg.grace.as_millis() as u64, "peer reachable again, on probation")
            }
            Transition::None => {}
        }
    }

    fn on_heartbeat_reply(&self, peer: &str, reply: HeartbeatReply) {
        let t = self.state().contact(peer, reply.incarnation);
        self.log_transition(peer, t, "heartbeat answered");
        if let Some(map) = reply.map {
            if self.commits_staging(&map) {
                // a reshard's commit that missed us: merge the staged keys off the lock first
                let node = self.clone();
                tokio::spawn(async move { node.commit_map(map).await });
            } else {
                self.install_map(map);
            }
        }
        let sync = {
            let mut guard = self.state();
            let st = &mut *guard;
            if reply.generation == st.replica.generation {
                let mine = reply.clock.get(&self.me);
                let known = st.has_mine.entry(peer.to_string()).or_default();
                *known = (*known).max(mine);
            }
            let same_shard =
                st.my_shard(&self.me).is_some() && st.map.shard_of(peer) == st.my_shard(&self.me);
            let usable = reply.admitted
                && same_shard
                && st.liveness.reachable(peer)
                && reply.generation == st.replica.generation
                && !st.resharding();
            // Sync only when we still lack what the peer had delivered one heartbeat ago:
            // writes in flight under steady load do not count as lag.
            let in_scope = super::scope(&st.map, &self.me);
            let lagging = usable
                && st
                    .ahead
                    .get(peer)
                    .is_some_and(|before| !before.le_within(&st.replica.clock, &in_scope));
            if usable && st.ahead.contains_key(peer) && !lagging {
                // Two heartbeats show we hold what this shard peer had: caught up.
                self.stats
                    .synced
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if usable {
                st.ahead.insert(peer.to_string(), reply.clock);
            } else {
                st.ahead.remove(peer);
            }
            lagging
        };
        if sync {
            let node = self.clone();
            let peer = peer.to_string();
            tokio::spawn(async move { node.sync_from(&peer).await });
        }
        // A replica that could not get its shard's full data yet keeps trying.
        let incomplete = {
            let st = self.state();
            !st.replica.complete && st.shard_peers(&self.me).iter().any(|p| p == peer)
        };
        if incomplete {
            let node = self.clone();
            tokio::spawn(async move { node.try_full_sync().await });
        }
    }

    /// Answers a heartbeat from `sender`.
    pub fn on_heartbeat(&self, sender: &str, incarnation: u64, map_epoch: u64) -> HeartbeatAnswer {
        let (t, answer) = {
            let mut st = self.state();
            let t = st.contact(sender, incarnation);
            let admitted = st.liveness.reachable(sender);
            let answer = HeartbeatAnswer {
                admitted,
                clock: if admitted {
                    st.replica.clock.clone()
                } else {
                    VectorClock::new()
                },
                generation: st.replica.generation,
                map_epoch: st.map.epoch,
                map: (map_epoch < st.map.epoch).then(|| st.map.clone()),
            };
            (t, answer)
        };
        self.log_transition(sender, t, "heartbeat received");
        answer
    }

    /// Answers an announcement: a restarted or new node is admitted at once.
    pub fn on_announce(&self, sender: &str, incarnation: u64) -> (Vec<String>, ShardMap) {
        let (t, view, map) = {
            let mut st = self.state();
            let t = st.contact(sender, incarnation);
            let t = match t {
                Transition::None | Transition::Admitted => t,
                _ => st.liveness.add(sender),
            };
            (t, st.liveness.view(), st.map.clone())
        };
        self.log_transition(sender, t, "announced itself");
        self.drop_queue(sender);
        (view, map)
    }

    /// A call to `peer` started at `started` failed: suspect it, drop its queue, and tell the
    /// others, unless we heard from the peer after the call started (a start-up race).
    pub fn peer_failed(&self, peer: &str, why: &str, started: Instant) {
        let (t, others) = {
            let mut st = self.state();
            if st.last_contact.get(peer).is_some_and(|t| *t > started)
                || st.stall_end.is_some_and(|t| t > started)
            {
                return;
            }
            let t = st.liveness.suspect(peer);
            st.ahead.remove(peer);
            let others: Vec<String> = st.view_peers(&self.me);
            (t, others)
        };
        if t != Transition::Suspected {
            return;
        }
        self.log_transition(peer, t, why);
        self.drop_queue(peer);
        self.spread(ChangeKind::Down, peer, others);
    }

    /// Tells `others` about a view change (fire and forget, each call bounded).
    pub fn spread(&self, kind: ChangeKind, node: &str, others: Vec<String>) {
        let incarnation = self.state().liveness.incarnation(node);
        for other in others.into_iter().filter(|o| o != node) {
            let me = self.clone();
            let node = node.to_string();
            tokio::spawn(async move {
                let _ = me.peers.view_change(&other, kind, &node, incarnation).await;
            });
        }
    }

    /// Applies a view change reported by another node.
    /// `incarnation` is `node`'s as the sender knew it. A report that `node` is down is a hint,
    /// not evidence: the reporter may be the one that was cut off (its reports of everyone
    /// arrive when the partition heals), so we probe `node` ourselves and suspect it only if
    /// that fails. A report about an older process than the one we heard from is ignored.
    pub fn on_view_change(&self, sender: &str, kind: ChangeKind, node: &str, incarnation: u64) {
        if node == &*self.me {
            return;
        }
        let t = {
            let mut st = self.state();
            match kind {
                ChangeKind::Down => {
                    let check = st.liveness.in_view(node)
                        && !st.liveness.report_is_stale(node, incarnation);
                    drop(st);
                    if check {
                        self.verify_down_report(sender, node);
                    }
                    return;
                }
                ChangeKind::Removed => st.liveness.suspect(node),
                ChangeKind::Added => st.liveness.add(node),
            }
        };
        if t == Transition::Suspected {
            self.drop_queue(node);
        }
        self.log_transition(node, t, &format!("reported by {sender}"));
    }

    /// Probes `node`, reported down by `sender`: suspects it (and tells the others) only if our
    /// own heartbeat fails and we did not hear from it meanwhile.
    fn verify_down_report(&self, sender: &str, node: &str) {
        let me = self.clone();
        let (sender, node) = (sender.to_string(), node.to_string());
        tokio::spawn(async move {
            let epoch = me.state().map.epoch;
            let started = Instant::now();
            match me.peers.heartbeat(&node, me.incarnation, epoch).await {
                Ok(reply) => me.on_heartbeat_reply(&node, reply),
                Err(e) => {
                    let why = format!("reported by {sender}, and our probe failed: {e}");
                    me.peer_failed(&node, &why, started);
                }
            }
        });
    }

    /// Operator `PUT /view`: true when the node was not in the view.
    pub fn add_to_view(&self, addr: &str) -> bool {
        let (t, others) = {
            let mut st = self.state();
            let t = if st.liveness.in_view(addr) {
                Transition::None
            } else {
                st.liveness.add(addr)
            };
            (t, st.view_peers(&self.me))
        };
        if t == Transition::Admitted {
            self.log_transition(addr, t, "added by operator");
            self.spread(ChangeKind::Added, addr, others);
        }
        t == Transition::Admitted
    }

    /// Operator `DELETE /view`: true when the node was in the view.
    pub fn remove_from_view(&self, addr: &str) -> bool {
        let (present, others) = {
            let mut st = self.state();
            let present = st.liveness.in_view(addr);
            if present && addr != &*self.me {
                st.liveness.suspect(addr);
            }
            (present, st.view_peers(&self.me))
        };
        if present {
            info!(node = %self.me, peer = %addr, "removed from view by operator");
            self.drop_queue(addr);
            self.spread(ChangeKind::Removed, addr, others);
        }
        present
    }

    /// Stops background loops.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send_replace(true);
    }

    /// Peers to ask for state, in order: live members of this node's shard.
    pub fn sync_sources(&self) -> Vec<String> {
        self.state().shard_peers(&self.me)
    }

    /// Sleeps for one heartbeat period, at most 200 ms (while waiting for a running pull).
    pub async fn pause(&self) {
        tokio::time::sleep(self.cfg.heartbeat.min(Duration::from_millis(200))).await;
    }
}
