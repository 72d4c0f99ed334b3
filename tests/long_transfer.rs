//! Long copies against deadlines (issue 19), over the simulated network with paused time: a
//! reshard whose copy takes far longer than the fixed deadlines it used to have (30 s on the
//! whole `SendReshardData`, 60 s from prepare to commit) completes while it keeps progressing,
//! and one whose batches stop being taken is rolled back with nothing lost.

use std::time::Duration;

use axum::http::Method;
use causalkv::tools::sim::cluster::{Reply, SimCluster};
use causalkv::tools::sim::net::LinkFaults;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Keys loaded: 100 KiB values, 40 to a 4 MiB reshard batch. The spare, a member of no old
/// shard, gets every key of its new shard (~400: ~10 batches); the others hold theirs already.
const KEYS: usize = 800;

fn value(k: usize) -> String {
    format!("{k}:{}", "v".repeat(100 << 10))
}

async fn put(c: &SimCluster, i: usize, key: &str, value: &str) -> Reply {
    let body = json!({"value": value, "causal-metadata": Value::Null});
    c.http(i, Method::PUT, &format!("/kvs/{key}"), Some(&body))
        .await
}

async fn get(c: &SimCluster, i: usize, key: &str) -> Reply {
    let body = json!({"causal-metadata": Value::Null});
    c.http(i, Method::GET, &format!("/kvs/{key}"), Some(&body))
        .await
}

/// Five nodes: four in one shard holding [`KEYS`] keys, the fifth a spare that coordinates the
/// reshard (so the copy runs at a member, reporting to it over the network).
async fn loaded_cluster(seed: u64) -> SimCluster {
    let c = SimCluster::with_spares(5, 4, Some(1), seed, LinkFaults::default());
    assert!(c.start_all().await);
    c.start(4);
    let mut waited = 0;
    while !(0..4).all(|i| c.node(i).is_some_and(|n| n.view().contains(&c.addrs[4]))) {
        assert!(waited < 200, "the spare never joined the view");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    for k in 0..KEYS {
        let r = put(&c, k % 4, &format!("k{k}"), &value(k)).await;
        assert_eq!(r.status(), Some(201), "{r:?}");
    }
    let mut waited = 0;
    while !(0..4).all(|i| c.node(i).and_then(|n| n.local_key_count(0)) == Some(KEYS as u64)) {
        assert!(waited < 200, "the members never converged");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    c
}

/// Every node reads every key back (forwarded to its owner if need be).
async fn everyone_reads_everything(c: &SimCluster) {
    for i in 0..5 {
        for k in 0..KEYS {
            let r = get(c, i, &format!("k{k}")).await;
            assert_eq!(
                r.body().get("value").and_then(Value::as_str),
                Some(value(k).as_str()),
                "node {i}, key k{k}: {:?}",
                r.status()
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_progressing_reshard_completes() {
    let c = loaded_cluster(31).await;
    // a slow disk everywhere: each batch takes 20 s to stage (under the 30 s bound on one
    // batch), so the copy takes minutes of simulated time
    c.net.set_stage_delay(Duration::from_secs(20));
    let coordinator = c.node(4).expect("the spare");
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(900), coordinator.reshard(2)).await;
    let took = started.elapsed();
    assert!(matches!(r, Ok(Ok(()))), "{r:?} after {took:?}");
    assert!(
        took > Duration::from_secs(60),
        "the copy outlasted the old fixed deadlines (30 s, 60 s): {took:?}"
    );
    c.net.set_stage_delay(Duration::ZERO);
    let maps: Vec<u64> = (0..5)
        .map(|i| c.node(i).expect("live").status().map_epoch)
        .collect();
    assert!(maps.iter().all(|e| *e == maps[0]), "one map: {maps:?}");
    let shards = coordinator.shard_ids();
    assert_eq!(shards.len(), 2);
    let mut total = 0;
    for s in shards {
        total += coordinator.shard_key_count(s).await.expect("count");
    }
    assert_eq!(total, KEYS as u64, "every key in exactly one new shard");
    everyone_reads_everything(&c).await;
}

#[tokio::test(start_paused = true)]
async fn a_reshard_whose_batches_stop_being_taken_rolls_back() {
    let c = loaded_cluster(32).await;
    // staging one batch takes longer than the bound on a batch: no progress at all
    c.net.set_stage_delay(Duration::from_secs(45));
    let coordinator = c.node(4).expect("the spare");
    let epoch = coordinator.status().map_epoch;
    let r = tokio::time::timeout(Duration::from_secs(900), coordinator.reshard(2)).await;
    assert!(matches!(r, Ok(Err(_))), "{r:?}");
    c.net.set_stage_delay(Duration::ZERO);
    assert_eq!(coordinator.status().map_epoch, epoch, "the old map stays");
    assert_eq!(coordinator.shard_ids().len(), 1);
    everyone_reads_everything(&c).await;
}

#[tokio::test(start_paused = true)]
async fn an_owner_of_the_same_old_shard_that_lacks_writes_gets_them() {
    let c = SimCluster::new(4, Some(1), 33, LinkFaults::default());
    assert!(c.start_all().await);
    for k in 0..20 {
        let r = put(&c, k % 4, &format!("a{k}"), &format!("a{k}")).await;
        assert_eq!(r.status(), Some(201), "{r:?}");
    }
    // node 3 misses node 0's next writes (the link between them is cut; both stay in the views
    // of nodes 1 and 2)...
    c.partition(&[0], &[3]);
    for k in 0..40 {
        let r = put(&c, 0, &format!("b{k}"), &format!("b{k}")).await;
        assert_eq!(r.status(), Some(201), "{r:?}");
    }
    // ...and the reshard starts (at node 1) before anti-entropy brought them to it
    let held = c.node(3).and_then(|n| n.local_key_count(0));
    assert!(
        held.is_some_and(|n| n < 60),
        "node 3 lacks writes: {held:?}"
    );
    let r = c.node(1).expect("node 1").reshard(2).await;
    assert!(r.is_ok(), "{r:?}");
    c.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..4 {
        for k in 0..40 {
            let r = get(&c, i, &format!("b{k}")).await;
            assert_eq!(
                r.body().get("value").and_then(Value::as_str),
                Some(format!("b{k}").as_str()),
                "node {i}"
            );
        }
    }
    // node 3's own copy of its new shard holds every key of it
    let n3 = c.node(3).expect("node 3");
    let shard = n3.node_shard().expect("a member");
    let mut total = 0;
    for s in n3.shard_ids() {
        total += n3.shard_key_count(s).await.expect("count");
    }
    assert_eq!(total, 60);
    for m in n3.shard_members(shard).expect("members") {
        let i = c.addrs.iter().position(|a| *a == m).expect("a node");
        assert_eq!(
            c.node(i).and_then(|n| n.local_key_count(shard)),
            n3.local_key_count(shard),
            "{m} and node 3 hold the same keys"
        );
    }
}
