//! Checks of the final (converged) state: divergence between replicas and
//! acknowledged puts that were lost.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::graph::History;
use super::record::{FinalRecord, OpKind, Outcome, canonical};
use super::report::{AnomalyKind, Findings};

fn show(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("nothing")
}

/// Reports (shard, key) pairs whose final values differ across nodes.
pub(crate) fn check_divergence(finals: &[(usize, FinalRecord)], findings: &mut Findings) {
    type Values<'a> = BTreeMap<Option<String>, Vec<&'a str>>;
    let mut by_shard_key: BTreeMap<(u64, &str), Values<'_>> = BTreeMap::new();
    for (_, f) in finals {
        by_shard_key
            .entry((f.shard, &f.key))
            .or_default()
            .entry(canonical(&f.value))
            .or_default()
            .push(&f.node);
    }
    for ((shard, key), values) in &by_shard_key {
        if values.len() > 1 {
            findings.add(AnomalyKind::Divergence, || {
                let parts: Vec<String> = values
                    .iter()
                    .map(|(v, nodes)| format!("{} on {}", show(v), nodes.join(",")))
                    .collect();
                format!(
                    "key {key} (shard {shard}) has different final values: {}",
                    parts.join("; ")
                )
            });
        }
    }
}

/// Reports acknowledged puts missing from the final state although nothing
/// visible in the final state overwrote them. A put is lost only when every
/// final value of its key is strictly co-before it (an absent key counts as
/// co-before only when every delete of the key is co-before the put). Keys
/// without final records are not judged.
pub(crate) fn check_lost_writes(
    h: &History,
    finals: &[(usize, FinalRecord)],
    findings: &mut Findings,
) {
    let mut by_key: HashMap<usize, BTreeSet<Option<String>>> = HashMap::new();
    for (_, f) in finals {
        if let Some(&key) = h.key_ids.get(&f.key) {
            by_key.entry(key).or_default().insert(canonical(&f.value));
        }
    }
    for p in 0..h.ops.len() {
        let op = &h.ops[p];
        if op.kind != OpKind::Put || op.outcome != Outcome::Ok {
            continue;
        }
        let Some(values) = by_key.get(&op.key) else {
            continue;
        };
        if is_lost(h, p, values) {
            if let Some(v) = &op.value {
                findings.lost_value(v.clone());
            }
            findings.add(AnomalyKind::LostWrite, || {
                let shown: Vec<&str> = values.iter().map(show).collect();
                format!(
                    "acknowledged {} is missing from the final state ({}) and no write visible there follows it",
                    h.describe(p),
                    shown.join(", ")
                )
            });
        }
    }
}

fn is_lost(h: &History, p: usize, values: &BTreeSet<Option<String>>) -> bool {
    let key = h.ops[p].key;
    if values.contains(&h.ops[p].value) {
        return false;
    }
    values.iter().all(|v| match v {
        Some(v) => h
            .puts_by_value
            .get(v)
            .is_some_and(|&wf| h.ops[wf].key == key && h.lt(wf, p)),
        None => (0..h.width()).all(|q| {
            h.lanes(key, q)
                .deletes
                .last()
                .is_none_or(|&i| h.lt(h.op_at(q, i), p))
        }),
    })
}
