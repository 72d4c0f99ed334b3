//! What a node knew about its own writes just before the nemesis killed it: how many it had
//! accepted, and how many of them some peer had reported delivered (Admin/Status). A write
//! lost with that node is explained (asynchronous replication, in-memory mode) only when no
//! peer had reported it delivered; every other lost write is a failure.

use std::time::Duration;

use crate::rpc::pb;
use crate::rpc::pb::admin_client::AdminClient;

/// Bound on asking the victim before the kill (it is healthy: faults are injected one at a
/// time), short enough not to shift the schedule.
const ASK_TIMEOUT: Duration = Duration::from_millis(300);

/// The victim's own writes as it reported them just before the kill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnWrites {
    /// The generation its writes were numbered in.
    pub generation: u64,
    /// How many writes it had accepted in that generation.
    pub accepted: u64,
    /// The most of them any peer had reported delivered.
    pub reached_a_peer: u64,
}

/// One SIGKILL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillRecord {
    /// When, in ns since the workload started.
    pub at_ns: u64,
    /// The node killed.
    pub addr: String,
    /// What it reported just before (`None`: it did not answer in time).
    pub before: Option<OwnWrites>,
}

/// Asks `addr` for its own-write numbers (Admin/Status); `None` when it does not answer in time.
pub async fn own_writes(addr: &str) -> Option<OwnWrites> {
    let ask = async {
        let mut c = AdminClient::connect(format!("http://{addr}")).await.ok()?;
        let st = c.status(pb::StatusRequest {}).await.ok()?.into_inner();
        Some(from_status(&st))
    };
    tokio::time::timeout(ASK_TIMEOUT, ask).await.ok().flatten()
}

fn from_status(st: &pb::StatusResponse) -> OwnWrites {
    OwnWrites {
        generation: st.generation,
        accepted: st
            .clock
            .iter()
            .find(|e| e.origin == st.address)
            .map_or(0, |e| e.seq),
        reached_a_peer: st
            .peers
            .iter()
            .map(|p| p.delivered_of_mine)
            .max()
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_entry_and_the_best_peer() {
        let st = pb::StatusResponse {
            address: "a:1".into(),
            generation: 2,
            clock: vec![
                pb::ClockEntry {
                    origin: "b:1".into(),
                    seq: 9,
                },
                pb::ClockEntry {
                    origin: "a:1".into(),
                    seq: 40,
                },
            ],
            peers: vec![
                pb::PeerStatus {
                    address: "b:1".into(),
                    delivered_of_mine: 38,
                    ..Default::default()
                },
                pb::PeerStatus {
                    address: "c:1".into(),
                    delivered_of_mine: 12,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let w = from_status(&st);
        assert_eq!((w.generation, w.accepted, w.reached_a_peer), (2, 40, 38));
    }
}
