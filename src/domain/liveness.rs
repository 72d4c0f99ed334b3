//! Peer liveness: who is in this node's view, with flap damping for peers that come back.
//!
//! A peer is `Up` (in the view), `Down` (suspected), or on `Probation` (reachable again, waiting
//! out the grace period). A peer that restarted (new incarnation) or that we never heard from
//! is admitted at once; a peer that was cut off and comes back with the same incarnation must
//! stay reachable for the grace period first. Time is passed in; pure.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Liveness of one peer as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// In the view.
    Up,
    /// Suspected down; probed, not in the view.
    Down,
    /// Reachable again since the instant given; admitted once the grace period has passed.
    Probation(Instant),
}

impl PeerState {
    /// Short name for logs and the admin service.
    pub fn name(&self) -> &'static str {
        match self {
            PeerState::Up => "up",
            PeerState::Down => "down",
            PeerState::Probation(_) => "probation",
        }
    }
}

/// What we know of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Liveness.
    pub state: PeerState,
    /// The peer's incarnation (its start time); 0 until we hear from it.
    pub incarnation: u64,
}

/// A state change worth logging and spreading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// The peer entered the view.
    Admitted,
    /// The peer left the view.
    Suspected,
    /// The peer started its grace period.
    OnProbation,
}

/// All peers of one node.
#[derive(Clone, Debug)]
pub struct PeerTable {
    me: String,
    grace: Duration,
    peers: BTreeMap<String, Peer>,
}

impl PeerTable {
    /// A table for node `me` whose start-up view is `view` (all assumed up).
    pub fn new(me: &str, view: &[String], grace: Duration) -> Self {
        let peers = view
            .iter()
            .filter(|p| p.as_str() != me)
            .map(|p| {
                (
                    p.clone(),
                    Peer {
                        state: PeerState::Up,
                        incarnation: 0,
                    },
                )
            })
            .collect();
        Self {
            me: me.to_string(),
            grace,
            peers,
        }
    }

    /// The view: this node and every peer that is up, sorted.
    pub fn view(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Up)
            .map(|(a, _)| a.clone())
            .collect();
        v.push(self.me.clone());
        v.sort();
        v
    }

    /// True when `addr` is this node or an up peer.
    pub fn in_view(&self, addr: &str) -> bool {
        addr == self.me
            || self
                .peers
                .get(addr)
                .is_some_and(|p| p.state == PeerState::Up)
    }

    /// True when `addr` is this node, an up peer or a peer on probation: one we hear from. Such a
    /// peer receives its shard's writes and may be pulled from (it is not yet forwarded to).
    pub fn reachable(&self, addr: &str) -> bool {
        addr == self.me
            || self
                .peers
                .get(addr)
                .is_some_and(|p| p.state != PeerState::Down)
    }

    /// Every known peer (not this node), whatever its state.
    pub fn peers(&self) -> impl Iterator<Item = (&str, &Peer)> {
        self.peers.iter().map(|(a, p)| (a.as_str(), p))
    }

    /// A call to the peer failed (refused or timed out), or another node reported it down.
    pub fn suspect(&mut self, addr: &str) -> Transition {
        match self.peers.get_mut(addr) {
            Some(p) if p.state != PeerState::Down => {
                let was_up = p.state == PeerState::Up;
                p.state = PeerState::Down;
                if was_up {
                    Transition::Suspected
                } else {
                    Transition::None
                }
            }
            _ => Transition::None,
        }
    }

    /// Whether a report that the peer is down, from a node that knew it as `incarnation`
    /// (0: never heard from it), is about an older process than the one we heard from: e.g. a
    /// node that tried the peer before it started listening, while we already heard from it.
    /// Such a report is ignored; any other is checked with a probe of our own before we act.
    pub fn report_is_stale(&self, addr: &str, incarnation: u64) -> bool {
        self.peers
            .get(addr)
            .is_some_and(|p| p.incarnation > incarnation)
    }

    /// The peer's incarnation as we know it (0 when we never heard from it).
    pub fn incarnation(&self, addr: &str) -> u64 {
        self.peers.get(addr).map_or(0, |p| p.incarnation)
    }

    /// We heard from the peer (it called us, or answered us) with `incarnation`.
    pub fn contact(&mut self, addr: &str, incarnation: u64, now: Instant) -> Transition {
        if addr == self.me {
            return Transition::None;
        }
        let grace = self.grace;
        let p = self.peers.entry(addr.to_string()).or_insert(Peer {
            state: PeerState::Down,
            incarnation: 0,
        });
        let restarted = incarnation != 0 && p.incarnation != incarnation;
        if incarnation != 0 {
            p.incarnation = incarnation;
        }
        match p.state {
            PeerState::Up => Transition::None,
            _ if restarted => {
                p.state = PeerState::Up;
                Transition::Admitted
            }
            PeerState::Down if grace.is_zero() => {
                p.state = PeerState::Up;
                Transition::Admitted
            }
            PeerState::Down => {
                p.state = PeerState::Probation(now);
                Transition::OnProbation
            }
            PeerState::Probation(since) if now.duration_since(since) >= grace => {
                p.state = PeerState::Up;
                Transition::Admitted
            }
            PeerState::Probation(_) => Transition::None,
        }
    }

    /// An operator added the peer to the view: up at once.
    pub fn add(&mut self, addr: &str) -> Transition {
        if addr == self.me {
            return Transition::None;
        }
        let p = self.peers.entry(addr.to_string()).or_insert(Peer {
            state: PeerState::Down,
            incarnation: 0,
        });
        if p.state == PeerState::Up {
            Transition::None
        } else {
            p.state = PeerState::Up;
            Transition::Admitted
        }
    }

    /// The state of a peer, if known.
    pub fn get(&self, addr: &str) -> Option<&Peer> {
        self.peers.get(addr)
    }

    /// Forgets a peer that is down (no more probes); true if it was forgotten. Peers in the
    /// view are kept.
    pub fn forget(&mut self, addr: &str) -> bool {
        if self
            .peers
            .get(addr)
            .is_some_and(|p| p.state == PeerState::Down)
        {
            self.peers.remove(addr);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "a:1";
    const B: &str = "b:1";

    fn table() -> PeerTable {
        PeerTable::new(ME, &[ME.to_string(), B.to_string()], Duration::from_secs(3))
    }

    #[test]
    fn a_down_report_about_an_older_incarnation_is_ignored() {
        let t0 = Instant::now();
        let mut t = PeerTable::new("me:1", &["a:1".to_string()], Duration::from_secs(3));
        t.contact("a:1", 7, t0);
        assert!(t.report_is_stale("a:1", 0));
        assert!(t.report_is_stale("a:1", 6));
        assert!(!t.report_is_stale("a:1", 7));
        assert!(!t.report_is_stale("never-heard-of:1", 0));
    }

    #[test]
    fn start_up_view_includes_everyone() {
        let t = table();
        assert_eq!(t.view(), vec![ME.to_string(), B.to_string()]);
        assert!(t.in_view(ME) && t.in_view(B) && !t.in_view("c:1"));
    }

    #[test]
    fn cut_off_peer_waits_out_the_grace_period() {
        let mut t = table();
        let t0 = Instant::now();
        assert_eq!(t.contact(B, 7, t0), Transition::None);
        assert_eq!(t.suspect(B), Transition::Suspected);
        assert!(!t.in_view(B) && !t.reachable(B));
        assert_eq!(t.contact(B, 7, t0), Transition::OnProbation);
        assert_eq!(
            t.contact(B, 7, t0 + Duration::from_secs(2)),
            Transition::None
        );
        assert!(!t.in_view(B));
        assert!(
            t.reachable(B),
            "on probation: receives writes, not forwarded to"
        );
        // failing again during probation restarts the grace period
        assert_eq!(t.suspect(B), Transition::None);
        assert_eq!(
            t.contact(B, 7, t0 + Duration::from_secs(4)),
            Transition::OnProbation
        );
        assert_eq!(
            t.contact(B, 7, t0 + Duration::from_secs(7)),
            Transition::Admitted
        );
        assert!(t.in_view(B));
    }

    #[test]
    fn restarted_or_new_peer_is_admitted_at_once() {
        let mut t = table();
        let t0 = Instant::now();
        t.contact(B, 7, t0);
        t.suspect(B);
        assert_eq!(t.contact(B, 8, t0), Transition::Admitted);
        assert_eq!(t.contact("c:1", 5, t0), Transition::Admitted);
        // a peer we never heard from before it failed is new, not flapping
        let mut t = table();
        t.suspect(B);
        assert_eq!(t.contact(B, 3, t0), Transition::Admitted);
    }

    #[test]
    fn only_down_peers_are_forgotten() {
        let mut t = table();
        assert!(!t.forget(B), "a peer in the view stays");
        t.suspect(B);
        assert!(t.forget(B));
        assert!(t.get(B).is_none() && !t.in_view(B));
        assert!(!t.forget(B));
    }

    #[test]
    fn operator_add() {
        let mut t = table();
        assert_eq!(t.add("c:1"), Transition::Admitted);
        assert_eq!(t.add("c:1"), Transition::None);
        assert!(t.in_view("c:1"));
    }
}
