//! Which lost writes the run itself explains. In memory, a write acknowledged by a node that is
//! killed before replication reaches any peer is lost by design (README "Limits"); the nodes
//! name every write they accept (`origin/generation/seq`) and report, just before a kill, how
//! many of their writes some peer had delivered. A lost write is explained when the node that
//! accepted it was killed (the first kill of that node after the write) before any peer had
//! reported it delivered. Every other lost write is unexplained: a failure.

use std::collections::HashMap;

use super::kills::KillRecord;
use crate::domain::write_id::WriteId;
use crate::tools::check::record::{OpKind, OpRecord, Outcome, canonical};

/// The lost writes of a run, split.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Lost with the node that accepted them, before any peer had them.
    pub explained: usize,
    /// Lost otherwise: failures.
    pub unexplained: usize,
    /// The longest time from an explained write's acknowledgement to its node's kill (ms).
    pub longest_ms: u64,
    /// Descriptions of the first few unexplained losses.
    pub examples: Vec<String>,
}

/// How many unexplained losses are described.
const EXAMPLES: usize = 5;

/// Splits the lost puts (by canonical value, as the checker reports them).
pub fn classify(ops: &[OpRecord], kills: &[KillRecord], lost_values: &[String]) -> Losses {
    let puts: HashMap<String, &OpRecord> = ops
        .iter()
        .filter(|o| o.kind == OpKind::Put && o.outcome == Outcome::Ok)
        .filter_map(|o| canonical(&o.value).map(|v| (v, o)))
        .collect();
    let mut losses = Losses::default();
    for value in lost_values {
        let op = puts.get(value).copied();
        match op.and_then(|op| explain(op, kills)) {
            Some(ms) => {
                losses.explained += 1;
                losses.longest_ms = losses.longest_ms.max(ms);
            }
            None => {
                losses.unexplained += 1;
                if losses.examples.len() < EXAMPLES {
                    losses.examples.push(match op {
                        Some(op) => format!(
                            "{} put {} = {value} at {:.3}s, accepted as {}",
                            op.session,
                            op.key,
                            op.invoke_ns as f64 / 1e9,
                            op.written.as_deref().unwrap_or("(unnamed)")
                        ),
                        None => format!("put of {value} (not in the history)"),
                    });
                }
            }
        }
    }
    losses
}

/// `Some(ms from acknowledgement to the kill)` when `op`'s write was lost with its node.
fn explain(op: &OpRecord, kills: &[KillRecord]) -> Option<u64> {
    let id: WriteId = op.written.as_deref()?.parse().ok()?;
    let kill = kills
        .iter()
        .filter(|k| k.addr == id.origin && k.at_ns >= op.invoke_ns)
        .min_by_key(|k| k.at_ns)?;
    let before = kill.before.as_ref()?;
    let unreplicated = before.generation == id.generation && id.seq > before.reached_a_peer;
    let acked = op.complete_ns.unwrap_or(op.invoke_ns);
    unreplicated.then(|| kill.at_ns.saturating_sub(acked) / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::nemesis::kills::OwnWrites;
    use serde_json::json;

    fn put(value: &str, written: &str, at_s: u64) -> OpRecord {
        OpRecord {
            session: "c0".into(),
            node: None,
            kind: OpKind::Put,
            key: "k".into(),
            value: json!(value),
            meta_in: None,
            meta_out: None,
            invoke_ns: at_s * 1_000_000_000,
            complete_ns: Some(at_s * 1_000_000_000 + 1_000_000),
            outcome: Outcome::Ok,
            status: Some(200),
            written: Some(written.into()),
        }
    }

    fn kill(addr: &str, at_s: u64, generation: u64, reached: u64) -> KillRecord {
        KillRecord {
            at_ns: at_s * 1_000_000_000,
            addr: addr.into(),
            before: Some(OwnWrites {
                generation,
                accepted: 100,
                reached_a_peer: reached,
            }),
        }
    }

    #[test]
    fn only_writes_no_peer_had_when_their_node_died_are_explained() {
        let ops = vec![
            put("a", "n1:1/1/50", 10), // beyond what peers had at n1's kill: explained
            put("b", "n1:1/1/30", 10), // a peer had it: unexplained
            put("c", "n2:1/1/50", 10), // n2 was never killed: unexplained
            put("d", "n1:1/2/99", 10), // another generation than the kill's report
            put("e", "n1:1/1/60", 20), // after n1's first kill; its second kill had no report
        ];
        let kills = vec![
            kill("n1:1", 12, 1, 40),
            KillRecord {
                at_ns: 25_000_000_000,
                addr: "n1:1".into(),
                before: None,
            },
        ];
        let lost: Vec<String> = ["a", "b", "c", "d", "e", "zzz"]
            .iter()
            .map(|v| canonical(&json!(v)).unwrap())
            .collect();
        let l = classify(&ops, &kills, &lost);
        assert_eq!((l.explained, l.unexplained), (1, 5));
        assert_eq!(l.longest_ms, 1_999);
        assert_eq!(l.examples.len(), 5);
        assert!(l.examples[0].contains("n1:1/1/30"), "{:?}", l.examples);
    }
}
