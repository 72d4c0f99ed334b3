//! Bounded transfer at the level of the cluster layer (issue 19), over the scripted `Peers` of `cluster::scripted`: a
//! cancelled `SendReshardData` frees the one-pull-at-a-time guard, and replication batches a peer
//! refuses are split until they pass, or dropped to anti-entropy when they never do.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use causalkv::cluster::Node;
use causalkv::cluster::scripted::{ScriptedPeers, env_config};
use causalkv::domain::clock::VectorClock;
use causalkv::domain::shard::ShardMap;
use causalkv::domain::store::{Version, Write};
use common::eventually;

const ME: &str = "127.250.0.2:8090";
const PEER: &str = "127.250.0.3:8090";

fn node(peers: Arc<ScriptedPeers>) -> Node {
    Node::new(env_config(ME, &[ME.into(), PEER.into()], 1), peers)
}

fn write(k: usize) -> Write {
    Write {
        key: format!("k{k}"),
        version: Version {
            generation: 1,
            origin: ME.into(),
            seq: k as u64 + 1,
            clock: VectorClock::from_entries([(ME.to_string(), k as u64 + 1)]),
        },
        value: Some(Arc::from("\"v\"")),
    }
}

#[tokio::test]
async fn a_cancelled_send_reshard_data_leaves_the_node_able_to_pull() {
    let peers = Arc::new(ScriptedPeers {
        stall_first_snapshot: true,
        ..ScriptedPeers::default()
    });
    let n = node(peers.clone());
    assert_eq!(n.sync_sources(), vec![PEER.to_string()]);
    let map = ShardMap::initial(&[ME.to_string(), PEER.to_string()], 1);
    // the catch-up pull hangs on the stalled peer; the caller gives up (the gRPC handler's
    // future is dropped the same way when its client cancels)
    let r = tokio::time::timeout(Duration::from_millis(300), n.send_reshard_data(map)).await;
    assert!(r.is_err(), "the call was cancelled mid-way");
    assert_eq!(peers.snapshots.load(Ordering::SeqCst), 1, "it was pulling");
    assert!(
        !n.is_syncing(),
        "the pull flag was released by the cancellation"
    );
    assert!(n.sync_from(PEER).await, "the next pull happens");
    assert_eq!(peers.snapshots.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refused_batches_are_split_until_they_pass() {
    let peers = Arc::new(ScriptedPeers {
        max_batch: Some(8),
        ..ScriptedPeers::default()
    });
    let n = node(peers.clone());
    for k in 0..100 {
        n.enqueue(write(k), &[PEER.to_string()]);
    }
    eventually(Duration::from_secs(10), "every write delivered", || async {
        (peers.accepted.lock().expect("lock").len() >= 100).then_some(())
    })
    .await;
    let got: HashSet<String> = peers
        .accepted
        .lock()
        .expect("lock")
        .iter()
        .cloned()
        .collect();
    assert_eq!(got.len(), 100, "nothing lost");
    assert!(
        n.view().contains(&PEER.to_string()),
        "a refusal is not a failure of the peer"
    );
    assert!(
        peers.attempts.lock().expect("lock").iter().any(|&a| a > 8),
        "a batch was refused"
    );
}

#[tokio::test]
async fn a_batch_that_never_passes_falls_back_to_anti_entropy() {
    let peers = Arc::new(ScriptedPeers {
        max_batch: Some(0),
        ..ScriptedPeers::default()
    });
    let n = node(peers.clone());
    for k in 0..300 {
        n.enqueue(write(k), &[PEER.to_string()]);
    }
    eventually(Duration::from_secs(10), "the queue is dropped", || async {
        let singles = peers
            .attempts
            .lock()
            .expect("lock")
            .iter()
            .filter(|&&a| a == 1)
            .count();
        (singles >= 1 && n.queue_depth(PEER) == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        n.queue_depth(PEER),
        0,
        "nothing is resent after the fallback"
    );
    let attempts = peers.attempts.lock().expect("lock").clone();
    assert_eq!(attempts.first(), Some(&300), "{attempts:?}");
    assert!(
        attempts.contains(&1),
        "split down to single writes first: {attempts:?}"
    );
    assert!(
        attempts.windows(2).all(|w| w[1] <= w[0]),
        "never resent unchanged: {attempts:?}"
    );
    assert!(n.view().contains(&PEER.to_string()));
}

/// Loopback: node 0's `SendReshardData` is cancelled by its caller while its catch-up pull hangs
/// on a paused shard peer; later node 0 misses writes while it is itself paused (its peers drop
/// their queues to it), and it still gets them: only its own pull (anti-entropy) can bring them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cancelled_send_reshard_data_the_node_still_pulls() {
    use causalkv::rpc::convert::map_to_pb;
    use causalkv::rpc::pb::state_transfer_client::StateTransferClient;
    use common::Cluster;
    use serde_json::{Value, json};

    let c = Cluster::start(3, Some(1), &[]).await;
    c.pause(1);
    let map = ShardMap::initial(&c.addrs(), 1);
    let mut client = StateTransferClient::connect(c.url(0, ""))
        .await
        .expect("connect");
    let mut req = tonic::Request::new(map_to_pb(&map));
    req.set_timeout(Duration::from_millis(300));
    // the sender reports progress until it is done; the caller gives up before that
    let call = async {
        let mut reports = client.send_reshard_data(req).await?.into_inner();
        while let Some(r) = reports.message().await? {
            if r.done {
                return Ok(true);
            }
        }
        Ok::<bool, tonic::Status>(false)
    };
    let r = tokio::time::timeout(Duration::from_millis(400), call).await;
    assert!(
        !matches!(r, Ok(Ok(true))),
        "the call was cancelled before it finished"
    );
    c.resume(1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.pause(0);
    for k in 0..20 {
        let (s, b) = c.put(1, &format!("p{k}"), json!(k), &Value::Null).await;
        assert_eq!(s, 201, "{b}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.resume(0);
    eventually(
        Duration::from_secs(10),
        "node 0 pulls what it missed",
        || async {
            for k in 0..20 {
                let (s, b) = c.get(0, &format!("p{k}"), &Value::Null).await;
                if s != 200 || b["value"] != json!(k) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}
