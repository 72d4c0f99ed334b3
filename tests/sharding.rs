//! The sharded store end to end: 6 nodes, 2 shards, a spare, add-member and reshard, on loopback.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Cluster, counts_agree, eventually, sorted};
use serde_json::{Value, json};

const KEYS: usize = 600;

async fn members(c: &Cluster, i: usize, shard: u64) -> Vec<String> {
    let (s, b) = c
        .req(i, "GET", &format!("/shard/members/{shard}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    sorted(serde_json::from_value(b["shard-members"].clone()).expect("members"))
}

async fn ids(c: &Cluster, i: usize) -> Vec<u64> {
    let (s, b) = c.req(i, "GET", "/shard/ids", None).await;
    assert_eq!(s, 200);
    serde_json::from_value(b["shard-ids"].clone()).expect("ids")
}

async fn key_count(c: &Cluster, i: usize, shard: u64) -> u64 {
    let (s, b) = c
        .req(i, "GET", &format!("/shard/key-count/{shard}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    b["shard-key-count"].as_u64().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_two_shards_add_member_and_reshard() {
    let mut c = Cluster::start(6, Some(2), &[]).await;
    // ids, members and node-shard-id agree everywhere; each shard has >= 2 members
    let mut all_members = BTreeSet::new();
    for i in 0..6 {
        assert_eq!(ids(&c, i).await, vec![0, 1]);
        let (m0, m1) = (members(&c, i, 0).await, members(&c, i, 1).await);
        assert!(m0.len() >= 2 && m1.len() >= 2);
        assert_eq!(
            (m0.clone(), m1.clone()),
            (members(&c, 0, 0).await, members(&c, 0, 1).await)
        );
        let (s, b) = c.req(i, "GET", "/shard/node-shard-id", None).await;
        assert_eq!(s, 200);
        let mine = b["node-shard-id"].as_u64().expect("integer shard id");
        let list = if mine == 0 { &m0 } else { &m1 };
        assert!(list.contains(&c.addr(i)));
        all_members.extend(m0.into_iter().chain(m1));
    }
    assert_eq!(all_members.len(), 6);
    // unknown shard ids
    for path in ["/shard/members/7", "/shard/key-count/7", "/shard/members/x"] {
        let (s, b) = c.req(0, "GET", path, None).await;
        assert_eq!(s, 404, "{path}");
        assert!(b["error"].is_string());
    }

    // 600 PUTs rotated over all nodes with one chained metadata value
    let mut meta = Value::Null;
    for k in 0..KEYS {
        let (s, b) = c.put_r(k % 6, &format!("key{k}"), json!(k), &meta).await;
        assert_eq!(s, 201, "key{k}: {b}");
        assert!(b["shard-id"].as_u64().is_some_and(|s| s < 2));
        meta = b["causal-metadata"].clone();
    }
    // every key reads back from a different node
    for k in 0..KEYS {
        let (s, b) = c.get_r((k + 1) % 6, &format!("key{k}"), &meta).await;
        assert_eq!((s, &b["value"]), (200, &json!(k)), "key{k}: {b}");
        meta = b["causal-metadata"].clone();
    }
    counts_agree(&c, &[0, 1], KEYS, async |i, s| key_count(&c, i, s).await).await;

    // a spare joins the view, then add-member
    let view: Vec<String> = c.addrs().into_iter().chain([c.spare_addr(6)]).collect();
    let grace_addr = c.spare_addr(6);
    let grace = c.start_extra(&grace_addr, &view, None).await;
    for i in 0..7 {
        eventually(Duration::from_secs(5), "spare in every view", || async {
            (c.view(i).await.len() == 7).then_some(())
        })
        .await;
    }
    let (_, b) = c.req(grace, "GET", "/shard/node-shard-id", None).await;
    assert_eq!(b["node-shard-id"], Value::Null);
    let (s, b) = c
        .req(
            0,
            "PUT",
            "/shard/add-member/9",
            Some(json!({"socket-address": grace_addr})),
        )
        .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = c
        .req(
            0,
            "PUT",
            "/shard/add-member/1",
            Some(json!({"socket-address": "127.9.9.9:1"})),
        )
        .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = c
        .req(
            2,
            "PUT",
            "/shard/add-member/1",
            Some(json!({"socket-address": grace_addr})),
        )
        .await;
    assert_eq!((s, b), (200, json!({"result": "node added to shard"})));
    let expected = key_count(&c, 0, 1).await;
    eventually(
        Duration::from_secs(5),
        "everyone agrees on the new member",
        || async {
            for i in 0..7 {
                if !members(&c, i, 1).await.contains(&grace_addr) {
                    return None;
                }
            }
            let (_, b) = c.req(grace, "GET", "/shard/node-shard-id", None).await;
            (b["node-shard-id"] == json!(1)).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "new member holds the shard's data",
        || async {
            let (_, b) = c.req(grace, "GET", "/shard/key-count/1", None).await;
            (b["shard-key-count"] == json!(expected)).then_some(())
        },
    )
    .await;

    // reshard
    let (s, b) = c
        .req(0, "PUT", "/shard/reshard", Some(json!({"shard-count": 10})))
        .await;
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "Not enough nodes to provide fault tolerance with requested shard count"})
        )
    );
    let (s, b) = c
        .req(3, "PUT", "/shard/reshard", Some(json!({"shard-count": 3})))
        .await;
    assert_eq!((s, b), (200, json!({"result": "resharded"})));
    let mut everyone = BTreeSet::new();
    for i in 0..7 {
        assert_eq!(ids(&c, i).await, vec![0, 1, 2]);
        for s in 0..3 {
            let m = members(&c, i, s).await;
            assert!(m.len() >= 2, "shard {s}: {m:?}");
            everyone.extend(m);
        }
    }
    assert_eq!(everyone.len(), 7);
    counts_agree(&c, &[0, 1, 2], KEYS, async |i, s| key_count(&c, i, s).await).await;
    // every key reads back with the old chained metadata
    for k in 0..KEYS {
        let (s, b) = c.get_r(k % 7, &format!("key{k}"), &meta).await;
        assert_eq!(
            (s, &b["value"]),
            (200, &json!(k)),
            "key{k} after reshard: {b}"
        );
        assert!(b["shard-id"].as_u64().is_some_and(|s| s < 3));
    }
    // and writes go on in the new layout
    let (s, b) = c.put_r(6, "after-reshard", json!("yes"), &meta).await;
    assert_eq!(s, 201, "{b}");
    let m = b["causal-metadata"].clone();
    let (s, b) = c.get_r(0, "after-reshard", &m).await;
    assert_eq!((s, &b["value"]), (200, &json!("yes")));

    // Regression (nemesis seed 11): a node restarted after a reshard starts from the start-up
    // map, must adopt the new one and pull its new shard's data, including the keys carried
    // over from the previous generation.
    let victim = 4;
    let (_, b) = c.req(victim, "GET", "/shard/node-shard-id", None).await;
    let shard = b["node-shard-id"].as_u64().expect("member");
    let expected = key_count(&c, 0, shard).await;
    c.kill(victim);
    c.restart(victim).await;
    eventually(
        Duration::from_secs(5),
        "restarted node holds its new shard",
        || async {
            let (_, b) = c
                .req(victim, "GET", &format!("/shard/key-count/{shard}"), None)
                .await;
            (b["shard-key-count"] == json!(expected)).then_some(())
        },
    )
    .await;
    for k in (0..KEYS).filter(|k| k % 10 == 0) {
        let (s, b) = c.get_r(victim, &format!("key{k}"), &meta).await;
        assert_eq!(
            (s, &b["value"]),
            (200, &json!(k)),
            "key{k} at the restarted node: {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_delete_and_unreachable_owner() {
    let c = Cluster::start(4, Some(2), &[]).await;
    let shard1 = members(&c, 0, 1).await;
    let outsider = (0..4)
        .find(|i| !shard1.contains(&c.addr(*i)))
        .expect("a shard-0 node");
    // find a key owned by shard 1
    let mut meta = Value::Null;
    let mut key = String::new();
    for k in 0..50 {
        let (s, b) = c.put_r(outsider, &format!("f{k}"), json!(k), &meta).await;
        assert!(s == 201, "{b}");
        meta = b["causal-metadata"].clone();
        if b["shard-id"] == json!(1) {
            key = format!("f{k}");
            break;
        }
    }
    assert!(!key.is_empty());
    let (s, b) = c.delete_r(outsider, &key, &meta).await;
    assert_eq!((s, &b["result"]), (200, &json!("deleted")), "{b}");
    assert_eq!(b["shard-id"], json!(1));
    let meta = b["causal-metadata"].clone();
    let (s, _) = c.get_r(outsider, &key, &meta).await;
    assert_eq!(s, 404);
    // pause the whole owning shard: forwarding fails with 503 in bounded time
    let owners: Vec<usize> = (0..4).filter(|i| shard1.contains(&c.addr(*i))).collect();
    for i in &owners {
        c.pause(*i);
    }
    let started = std::time::Instant::now();
    let (s, b) = c.get(outsider, &key, &meta).await;
    for i in &owners {
        c.resume(*i);
    }
    assert_eq!(
        (s, &b["error"]),
        (503, &json!("Cannot forward request")),
        "{b}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_with_a_view_that_lists_a_later_node_keeps_the_clusters_map() {
    // Members at .3-.6 (2 shards), then a spare at .2: it sorts first, so a map dealt from a
    // VIEW that lists it assigns every member differently.
    let mut c = Cluster::prepare(0, None, &[]);
    let addrs: Vec<String> = (1..5).map(|i| c.spare_addr(i)).collect();
    for m in &addrs {
        c.start_extra(m, &addrs, Some(2)).await;
    }
    let spare = c.spare_addr(0);
    let everyone: Vec<String> = addrs.iter().cloned().chain([spare.clone()]).collect();
    let s = c.start_extra(&spare, &everyone, None).await;
    let before: Vec<Vec<String>> = vec![members(&c, 0, 0).await, members(&c, 0, 1).await];
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), 4, "{before:?}");
    let mut m = Value::Null;
    for k in 0..40 {
        let (st, b) = c.put_r(k % 4, &format!("key{k}"), json!(k), &m).await;
        assert_eq!(st, 201, "{b}");
        m = b["causal-metadata"].clone();
    }
    // restart a member the documented way: with the full VIEW, the spare included
    let victim = 1;
    c.kill(victim);
    c.set_env(victim, "VIEW", &everyone.join(","));
    c.restart(victim).await;
    for i in 0..5 {
        let now = vec![members(&c, i, 0).await, members(&c, i, 1).await];
        assert_eq!(now, before, "node {i} after the restart");
    }
    let (_, b) = c.req(s, "GET", "/shard/node-shard-id", None).await;
    assert_eq!(
        b["node-shard-id"],
        Value::Null,
        "the spare is still a spare"
    );
    for k in 0..40 {
        let (st, b) = c.get_r(victim, &format!("key{k}"), &m).await;
        assert_eq!((st, &b["value"]), (200, &json!(k)), "key{k}: {b}");
    }
}

/// Sum of `causalkv_grpc_requests_total` for `method` (any code) in a node's /metrics.
async fn grpc_calls(c: &Cluster, i: usize, method: &str) -> u64 {
    let text = reqwest::get(c.url(i, "/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let needle = format!("method=\"{method}\"");
    text.lines()
        .filter(|l| l.starts_with("causalkv_grpc_requests_total{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_forwards_share_calls_and_each_gets_its_own_answer() {
    let c = Cluster::start(4, Some(2), &[]).await;
    let shard1 = members(&c, 0, 1).await;
    let outsider = (0..4)
        .find(|i| !shard1.contains(&c.addr(*i)))
        .expect("a shard-0 node");
    let owners: Vec<usize> = (0..4).filter(|i| shard1.contains(&c.addr(*i))).collect();
    let batch_path = "/causalkv.v1.Replication/ForwardBatch";
    let mut batched = 0;
    for round in 0..5 {
        // 64 writes at once at a node of shard 0: about half are forwarded to shard 1
        let puts = (0..64).map(|k| {
            let key = format!("cf{round}-{k}");
            let c = &c;
            async move {
                let value = json!({"k": k, "round": round, "s": "x".repeat(k)});
                let (s, b) = c.put(outsider, &key, value.clone(), &Value::Null).await;
                (key, value, s, b)
            }
        });
        let written = futures::future::join_all(puts).await;
        let mut forwarded = 0;
        for (key, _, s, b) in &written {
            assert_eq!(s, &201, "{key}: {b}");
            assert!(b["causal-metadata"].is_string(), "{key}: {b}");
            forwarded += usize::from(b["shard-id"] == json!(1));
        }
        assert!(forwarded > 0, "no key of shard 1 among 64");
        // each reads back its own value, through the forwarder too, all at once
        let gets = written.iter().map(|(key, value, _, b)| {
            let c = &c;
            let meta = b["causal-metadata"].clone();
            async move {
                let (s, got) = c.get(outsider, key, &meta).await;
                assert_eq!((s, &got["value"]), (200, value), "{key}: {got}");
            }
        });
        futures::future::join_all(gets).await;
        for i in &owners {
            batched += grpc_calls(&c, *i, batch_path).await;
        }
        if batched > 0 {
            break;
        }
    }
    assert!(
        batched > 0,
        "5 rounds of 64 concurrent requests and no forward shared a ForwardBatch call"
    );
}
