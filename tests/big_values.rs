//! Big values and big stores (issue 19): replication batches, snapshot chunks and reshard
//! batches are bounded in bytes, so megabyte values replicate, recover after a restart and move
//! in a reshard. Real nodes on loopback (tests/common), plus level tests of the cluster layer
//! over a scripted `Peers` (cancellation of a pull, splitting of refused batches).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causalkv::cluster::Node;
use causalkv::cluster::kv::OpReply;
use causalkv::cluster::peers::{
    AnnounceReply, ChangeKind, ForwardOp, HeartbeatReply, PeerError, PeerResult, Peers,
    SnapshotPart, SnapshotStream,
};
use causalkv::config::Config;
use causalkv::domain::clock::VectorClock;
use causalkv::domain::shard::{ShardId, ShardMap};
use causalkv::domain::store::{Version, Write};
use common::{Cluster, eventually};
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use serde_json::Value;

/// Concurrent clients loading or reading data (a few: the machine has 2 cores).
const CLIENTS: usize = 6;

/// A JSON string value whose JSON text is exactly `len` bytes, tagged with `k`.
fn value(k: usize, len: usize) -> String {
    let tag = format!("{k:07}");
    format!("{tag}{}", "x".repeat(len - tag.len() - 2))
}

async fn put_raw(c: &Cluster, i: usize, key: &str, v: &str) -> u16 {
    let body = format!(r#"{{"value":"{v}","causal-metadata":null}}"#);
    let r = c
        .http
        .put(c.url(i, &format!("/kvs/{key}")))
        .header("Content-Type", "application/json")
        .timeout(Duration::from_secs(30))
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    r.status().as_u16()
}

/// PUTs keys `{prefix}{k}` for `k` in `keys` at nodes of `nodes` that own them (in the initial
/// map of `shards` shards).
async fn load(
    c: &Cluster,
    shards: u32,
    nodes: &[usize],
    prefix: &str,
    keys: std::ops::Range<usize>,
    len: usize,
) {
    let statuses: Vec<u16> = stream::iter(keys)
        .map(|k| async move {
            put_raw(
                c,
                owner(c, shards, nodes, &format!("{prefix}{k}"), k),
                &format!("{prefix}{k}"),
                &value(k, len),
            )
            .await
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 200),
        "{statuses:?}"
    );
}

/// The node of `nodes` to send `key` to: a member of its shard in the initial map (no forwarding
/// hop, less CPU on a shared machine), else round robin.
fn owner(c: &Cluster, shards: u32, nodes: &[usize], key: &str, k: usize) -> usize {
    let map = ShardMap::initial(&c.addrs(), shards);
    let members = map.members(map.shard_for_key(key));
    let owned: Vec<usize> = nodes
        .iter()
        .copied()
        .filter(|&i| members.contains(&c.addr(i)))
        .collect();
    match owned.len() {
        0 => nodes[k % nodes.len()],
        n => owned[k % n],
    }
}

/// Reads every key back (no metadata) at nodes chosen round robin; returns the keys that are
/// missing or wrong.
async fn missing(
    c: &Cluster,
    nodes: &[usize],
    prefix: &str,
    keys: std::ops::Range<usize>,
    len: usize,
) -> Vec<usize> {
    let bad: Vec<Option<usize>> = stream::iter(keys)
        .map(|k| async move {
            let i = nodes[k % nodes.len()];
            let r = c
                .http
                .get(c.url(i, &format!("/kvs/{prefix}{k}")))
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            let ok = match r {
                Ok(r) if r.status().as_u16() == 200 => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|b| b["value"].as_str().map(|v| v == value(k, len)))
                    .unwrap_or(false),
                _ => false,
            };
            (!ok).then_some(k)
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let mut bad: Vec<usize> = bad.into_iter().flatten().collect();
    bad.sort_unstable();
    bad
}

async fn key_count(c: &Cluster, i: usize, shard: u64) -> u64 {
    let (s, b) = c
        .req(i, "GET", &format!("/shard/key-count/{shard}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    b["shard-key-count"].as_u64().unwrap_or(0)
}

/// Waits (bounded by `limit`) until every node in `nodes` counts `want` keys in `shard`.
async fn counts_reach(c: &Cluster, nodes: &[usize], shard: u64, want: u64, limit: Duration) {
    eventually(limit, &format!("every node holds {want} keys"), || async {
        for &i in nodes {
            if key_count(c, i, shard).await != want {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabyte_puts_reach_a_paused_replica() {
    let c = Cluster::start(3, Some(1), &[]).await;
    let mib = 1 << 20;
    c.pause(2);
    let resume_at = Instant::now() + Duration::from_secs(1);
    let statuses: Vec<u16> = futures::future::join_all((0..200).map(|k| {
        let c = &c;
        async move { put_raw(c, k % 2, &format!("big{k}"), &value(k, mib)).await }
    }))
    .await;
    tokio::time::sleep(resume_at.saturating_duration_since(Instant::now())).await;
    c.resume(2);
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let acked = Instant::now();
    eprintln!(
        "200 PUTs acked in {:?}",
        acked.duration_since(resume_at - Duration::from_secs(1))
    );
    counts_reach(&c, &[0, 1, 2], 0, 200, Duration::from_secs(10)).await;
    eprintln!(
        "all replicas hold 200 x 1 MiB {:?} after the last ack",
        acked.elapsed()
    );
    // every replica counts all 200; the paused one serves every value intact
    let t = Instant::now();
    assert_eq!(
        missing(&c, &[2], "big", 0..200, mib).await,
        Vec::<usize>::new()
    );
    eprintln!("read back 200 MiB in {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_size_value_replicates_and_a_bigger_one_is_refused() {
    let c = Cluster::start(3, Some(1), &[]).await;
    let max = causalkv::config::DEFAULT_MAX_VALUE_BYTES;
    assert_eq!(put_raw(&c, 0, "huge", &value(1, max)).await, 201);
    for i in 1..3 {
        eventually(
            Duration::from_secs(5),
            "the max-size value replicates",
            || async {
                let (s, b) = c.get(i, "huge", &Value::Null).await;
                (s == 200 && b["value"].as_str() == Some(value(1, max).as_str())).then_some(())
            },
        )
        .await;
    }
    let (s, b) = c
        .raw(
            0,
            "PUT",
            "/kvs/huger",
            &format!(r#"{{"value":"{}"}}"#, value(2, max + 1)),
        )
        .await;
    assert_eq!(s, 400, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_recovers_5000_keys_of_40k() {
    let mut c = Cluster::start(3, Some(1), &[]).await;
    let len = 40 << 10;
    let t = Instant::now();
    load(&c, 1, &[0, 1], "k", 0..5_000, len).await;
    eprintln!("loaded 5,000 x 40 KiB in {:?}", t.elapsed());
    counts_reach(&c, &[0, 1, 2], 0, 5_000, Duration::from_secs(20)).await;
    c.kill(2);
    let restarted = Instant::now();
    c.restart(2).await;
    counts_reach(
        &c,
        &[2],
        0,
        5_000,
        Duration::from_secs(10).saturating_sub(restarted.elapsed()),
    )
    .await;
    eprintln!(
        "restarted replica serves 5000 x 40 KiB {:?} after its start",
        restarted.elapsed()
    );
    assert_eq!(
        missing(&c, &[2], "k", 0..5_000, len).await,
        Vec::<usize>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_big_values_moves_every_key() {
    let c = Cluster::start(6, Some(2), &[]).await;
    let all: Vec<usize> = (0..6).collect();
    let (small, big) = (64 << 10, 1 << 20);
    let t = Instant::now();
    load(&c, 2, &all, "s", 0..10_000, small).await;
    load(&c, 2, &all, "b", 0..300, big).await;
    eprintln!("loaded 10,000 x 64 KiB + 300 x 1 MiB in {:?}", t.elapsed());
    let started = Instant::now();
    let r = c
        .http
        .put(c.url(1, "/shard/reshard"))
        .header("Content-Type", "application/json")
        .timeout(Duration::from_secs(120))
        .body(r#"{"shard-count": 3}"#)
        .send()
        .await
        .expect("reshard request");
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{}", r.text().await.unwrap_or_default());
    eprintln!(
        "reshard 2→3 of 10,000 x 64 KiB + 300 x 1 MiB took {:?}",
        started.elapsed()
    );
    let mut total = 0;
    for s in 0..3 {
        total += key_count(&c, 0, s).await;
    }
    assert_eq!(total, 10_300);
    let t = Instant::now();
    assert_eq!(
        missing(&c, &all, "s", 0..10_000, small).await,
        Vec::<usize>::new()
    );
    assert_eq!(
        missing(&c, &all, "b", 0..300, big).await,
        Vec::<usize>::new()
    );
    eprintln!("read every key back in {:?}", t.elapsed());
}

// ---- level tests: the cluster layer over a scripted `Peers` ----

/// A `Peers` that refuses replication batches above `max_batch` writes (as a decode limit
/// would), and whose first snapshot never answers (a stalled peer).
#[derive(Default)]
struct Scripted {
    max_batch: usize,
    snapshots: AtomicUsize,
    accepted: Mutex<Vec<String>>,
    attempts: Mutex<Vec<usize>>,
}

fn down<T: Send + 'static>() -> BoxFuture<'static, PeerResult<T>> {
    Box::pin(async { Err(PeerError::Unreachable("scripted".into())) })
}

impl Peers for Scripted {
    fn replicate(&self, _to: &str, writes: Vec<Write>) -> BoxFuture<'_, PeerResult<()>> {
        Box::pin(async move {
            self.attempts.lock().expect("lock").push(writes.len());
            if writes.len() > self.max_batch {
                return Err(PeerError::Refused("OutOfRange: message too large".into()));
            }
            let mut acc = self.accepted.lock().expect("lock");
            acc.extend(writes.into_iter().map(|w| w.key));
            Ok(())
        })
    }
    fn heartbeat(&self, _: &str, _: u64, _: u64) -> BoxFuture<'_, PeerResult<HeartbeatReply>> {
        down()
    }
    fn announce(&self, _: &str, _: u64) -> BoxFuture<'_, PeerResult<AnnounceReply>> {
        down()
    }
    fn view_change(
        &self,
        _: &str,
        _: ChangeKind,
        _: &str,
        _: u64,
    ) -> BoxFuture<'_, PeerResult<()>> {
        down()
    }
    fn install_map(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        down()
    }
    fn snapshot(
        &self,
        _: &str,
        generation: u64,
        _: Option<&VectorClock>,
    ) -> BoxFuture<'_, PeerResult<SnapshotStream>> {
        let first = self.snapshots.fetch_add(1, Ordering::SeqCst) == 0;
        Box::pin(async move {
            if first {
                std::future::pending::<()>().await;
            }
            let end = SnapshotPart::End {
                generation,
                clock: VectorClock::new(),
            };
            Ok(stream::iter([Ok(end)]).boxed())
        })
    }
    fn forward(&self, _: &str, _: ForwardOp) -> BoxFuture<'_, PeerResult<OpReply>> {
        down()
    }
    fn key_count(&self, _: &str, _: ShardId) -> BoxFuture<'_, PeerResult<u64>> {
        down()
    }
    fn prepare_reshard(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        down()
    }
    fn send_reshard_data(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<u64>> {
        down()
    }
    fn receive_reshard_data(
        &self,
        _: &str,
        _: u64,
        _: Vec<Write>,
    ) -> BoxFuture<'_, PeerResult<()>> {
        down()
    }
    fn commit_reshard(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        down()
    }
    fn abort_reshard(&self, _: &str, _: &ShardMap) -> BoxFuture<'_, PeerResult<()>> {
        down()
    }
}

const ME: &str = "127.250.0.2:8090";
const PEER: &str = "127.250.0.3:8090";

fn node(peers: Arc<Scripted>) -> Node {
    let cfg = Config::from_vars(|k| match k {
        "SOCKET_ADDRESS" => Some(ME.into()),
        "VIEW" => Some(format!("{ME},{PEER}")),
        "SHARD_COUNT" => Some("1".into()),
        _ => None,
    })
    .expect("config");
    Node::new(cfg, peers)
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
    let peers = Arc::new(Scripted::default());
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
    let peers = Arc::new(Scripted {
        max_batch: 8,
        ..Scripted::default()
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
    let peers = Arc::new(Scripted {
        max_batch: 0,
        ..Scripted::default()
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
