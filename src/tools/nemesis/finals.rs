//! After healing: waits (bounded) until every live member of every shard holds the same value
//! for every key, then returns the `final` records of the last round read. Reads use
//! `causal-metadata: null`, and a read counts for a node only when the node owns the key
//! itself (the response's `shard-id` equals the node's `/shard/node-shard-id`), so forwarded
//! answers never masquerade as the node's own state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use super::http::{Reply, call, get_json};
use super::workload::KEYS;
use crate::tools::check::record::FinalRecord;

/// Pause between convergence rounds.
const ROUND_PAUSE: Duration = Duration::from_millis(300);
/// Bound on one read of a round.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// One node's view of every key, or `None` if it could not answer completely.
async fn read_node(http: &reqwest::Client, addr: &str) -> Option<Vec<FinalRecord>> {
    let sid = get_json(http, addr, "/shard/node-shard-id", READ_TIMEOUT).await?;
    let Some(shard) = sid.get("node-shard-id").and_then(Value::as_u64) else {
        return Some(Vec::new()); // a spare owns nothing
    };
    let mut out = Vec::new();
    let body = json!({"causal-metadata": null});
    for k in 0..KEYS {
        let key = format!("k{k}");
        let path = format!("/kvs/{key}");
        let reply = call(http, addr, Method::GET, &path, Some(&body), READ_TIMEOUT).await;
        let Reply::Answer { status, body, .. } = reply else {
            return None;
        };
        let value = match status {
            200 => body.get("value").cloned().unwrap_or_default(),
            404 => Value::Null,
            _ => return None,
        };
        let owner = body.get("shard-id").and_then(Value::as_u64);
        if owner.is_none_or(|o| o == shard) {
            out.push(FinalRecord {
                node: addr.to_string(),
                shard,
                key,
                value,
            });
        }
    }
    Some(out)
}

/// True when every key is held by ≥ 2 nodes of exactly one shard, all with the same value.
fn agreed(finals: &[FinalRecord]) -> bool {
    let mut by_key: BTreeMap<&str, BTreeMap<u64, Vec<&Value>>> = BTreeMap::new();
    for f in finals {
        by_key
            .entry(&f.key)
            .or_default()
            .entry(f.shard)
            .or_default()
            .push(&f.value);
    }
    by_key.len() == KEYS as usize
        && by_key.values().all(|shards| {
            shards.len() == 1
                && shards
                    .values()
                    .all(|vals| vals.len() >= 2 && vals.iter().all(|v| *v == vals[0]))
        })
}

/// Reads every key from every node in `addrs` until they agree or `limit` passes. Returns the
/// finals of the last complete round and the time until agreement (`None`: no agreement).
pub async fn converge(
    http: &reqwest::Client,
    addrs: &[String],
    limit: Duration,
) -> (Vec<FinalRecord>, Option<Duration>) {
    let start = Instant::now();
    let mut last = Vec::new();
    loop {
        let rounds = join_all(addrs.iter().map(|a| read_node(http, a))).await;
        let complete = rounds.iter().all(Option::is_some);
        let finals: Vec<FinalRecord> = rounds.into_iter().flatten().flatten().collect();
        if complete && agreed(&finals) {
            return (finals, Some(start.elapsed()));
        }
        if !finals.is_empty() {
            last = finals;
        }
        if start.elapsed() >= limit {
            return (last, None);
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(node: &str, shard: u64, key: &str, value: Value) -> FinalRecord {
        FinalRecord {
            node: node.into(),
            shard,
            key: key.into(),
            value,
        }
    }

    #[test]
    fn agreement_needs_every_key_twice_with_one_value() {
        let mut all = Vec::new();
        for k in 0..KEYS {
            all.push(f("a", 0, &format!("k{k}"), json!(k)));
            all.push(f("b", 0, &format!("k{k}"), json!(k)));
        }
        assert!(agreed(&all));
        all[1].value = json!("other");
        assert!(!agreed(&all));
        all[1].value = json!(0);
        all.pop();
        assert!(!agreed(&all));
    }
}
