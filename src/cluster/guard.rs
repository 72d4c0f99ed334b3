//! Admission checks that need the node's state: which addresses are members (for the keyless
//! allow-list), and whether a shard map pushed by a peer is a plausible next step from ours.
//!
//! Structural validation of wire input is in `rpc/convert.rs`; this module must not parse wire
//! types and must not change state.

use std::net::{IpAddr, SocketAddr};

use super::Node;
use crate::domain::shard::ShardMap;

/// Largest epoch step a pushed map may take over ours. Legitimate maps step by one per change;
/// a node that missed some changes learns the newest map from heartbeat answers, not pushes.
/// Generous, but it keeps a forged epoch from blocking every later map.
pub const MAX_EPOCH_STEP: u64 = 1 << 16;

/// Peers a node keeps in its table at most: far above any cluster we run, and a bound on what
/// announcements from one host under many ports can make it heartbeat.
pub const MAX_PEERS: usize = 1024;

/// A down peer that is in no shard map and not in the start-up `VIEW` is forgotten (no more
/// probes) once we have not heard from it for this long: long enough that a restart or a
/// partition of a spare heals first, short enough that addresses that only ever announced
/// themselves do not keep a node probing them.
pub const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a pushed map was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapRefused {
    /// The epoch jumps too far ahead of ours.
    #[error("epoch {0} is more than {MAX_EPOCH_STEP} ahead of ours ({1})")]
    EpochJump(u64, u64),
    /// The generation is neither ours nor the next one.
    #[error("generation {0} is neither ours ({1}) nor the next")]
    GenerationJump(u64, u64),
}

/// The IP of an `IP:PORT` address.
fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>().ok().map(|a| a.ip())
}

impl Node {
    /// Whether a map pushed by a peer (`InstallShardMap`, `CommitReshard`) may be installed: its
    /// epoch at most [`MAX_EPOCH_STEP`] ahead, its generation ours or ours + 1 (a generation
    /// changes only by one reshard commit at a time; a node that missed one catches up from
    /// heartbeat answers, which carry the map of a member we asked).
    pub fn check_pushed_map(&self, map: &ShardMap) -> Result<(), MapRefused> {
        let st = self.state();
        let (epoch, generation) = (st.map.epoch, st.replica.generation);
        if map.epoch > epoch.saturating_add(MAX_EPOCH_STEP) {
            return Err(MapRefused::EpochJump(map.epoch, epoch));
        }
        if map.generation < generation || map.generation > generation.saturating_add(1) {
            return Err(MapRefused::GenerationJump(map.generation, generation));
        }
        Ok(())
    }

    /// True when `addr` is not known yet and the peer table is full: its announcement is
    /// refused.
    pub fn peer_table_full(&self, addr: &str) -> bool {
        let st = self.state();
        st.liveness.get(addr).is_none() && st.liveness.peers().count() >= MAX_PEERS
    }

    /// Forgets down peers that were never members (in no map, not in the start-up `VIEW`) and
    /// that we have not heard from for [`FORGET_AFTER`]; returns how many.
    pub fn forget_strangers(&self) -> usize {
        let mut guard = self.state();
        let st = &mut *guard;
        let now = tokio::time::Instant::now();
        let strangers: Vec<String> = st
            .liveness
            .peers()
            .filter(|(a, p)| {
                p.state == crate::domain::liveness::PeerState::Down
                    && !st.map.assignment.contains_key(*a)
                    && !self.cfg.view.iter().any(|v| v == a)
                    && st
                        .last_contact
                        .get(*a)
                        .is_none_or(|t| now.duration_since(*t) >= FORGET_AFTER)
            })
            .map(|(a, _)| a.to_string())
            .collect();
        for a in &strangers {
            st.liveness.forget(a);
            st.last_contact.remove(a);
            st.ahead.remove(a);
        }
        strangers.len()
    }

    /// True when `addr` may hand this node the cluster's token key (keyless clusters): a node of
    /// the start-up `VIEW` or of the shard map. A host that merely announced itself may call
    /// us, but must not replace the key every token depends on.
    pub fn is_key_source(&self, addr: &str) -> bool {
        self.cfg.view.iter().any(|v| v == addr) || self.state().map.assignment.contains_key(addr)
    }

    /// True when `ip` is the IP of a member: a node of the start-up `VIEW`, of the shard map, or
    /// of the peer table (which only admits nodes that announced themselves from their own
    /// address, or that a member told us about). Members named by host name are resolved
    /// (cached, see `net::resolve`).
    pub async fn is_member_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        // Every internal call asks: IP literals are checked under the lock without copying
        // anything; only members named by host name are collected, to be resolved.
        let names: Vec<String> = {
            let st = self.state();
            let mut names = Vec::new();
            let members = std::iter::once(&*self.me)
                .chain(self.cfg.view.iter().map(String::as_str))
                .chain(st.map.assignment.keys().map(String::as_str))
                .chain(st.liveness.peers().map(|(a, _)| a));
            for a in members {
                match ip_of(a) {
                    Some(a) if canonical(a) == ip => return true,
                    Some(_) => {}
                    None => names.push(a.to_string()),
                }
            }
            names
        };
        for name in names.iter() {
            if ips_of(name).await.contains(&ip) {
                return true;
            }
        }
        false
    }
}

/// The IPs `addr` (`IP:PORT` or `HOST:PORT`) stands for; none when a name does not resolve.
async fn ips_of(addr: &str) -> Vec<IpAddr> {
    crate::net::resolve(addr)
        .await
        .map(|v| v.into_iter().map(|a| canonical(a.ip())).collect())
        .unwrap_or_default()
}

/// An IPv4 address even when it arrived as IPv4-mapped IPv6 (a dual-stack listener).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// True when `claimed` (`IP:PORT`, or `HOST:PORT` resolved) is on `peer`'s IP.
pub async fn claims_own_ip(claimed: &str, peer: IpAddr) -> bool {
    match ip_of(claimed) {
        Some(ip) => canonical(ip) == canonical(peer),
        None => ips_of(claimed).await.contains(&canonical(peer)),
    }
}
