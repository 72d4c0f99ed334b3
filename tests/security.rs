//! Issue 13, end to end on loopback: every reported gRPC attack against real nodes, with and
//! without a cluster key. Each attack is refused, and 2 s later keys, views and shard maps are
//! unchanged. Also: forged tokens get 400, tokens survive restarts and reshards, and hostile
//! maps from a member's address are `invalid_argument`. HTTP-level attacks: `http_limits.rs`.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use causalkv::rpc::pb;
use common::Cluster;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// A cluster key for the keyed runs (any 16+ bytes).
const KEY: &str = "test-cluster-key-0123456789";
/// Keys written before the attacks.
const KEYS: usize = 50;

fn grpcurl() -> String {
    std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into())
}

/// A gRPC channel to `addr`, from `from` (a member's IP, to impersonate it) or from the
/// kernel's choice (127.0.0.1: not a member).
fn channel(addr: &str, from: Option<IpAddr>) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .local_address(from)
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

fn ip(addr: &str) -> IpAddr {
    addr.parse::<std::net::SocketAddr>().expect("addr").ip()
}

/// The map: epoch 1000, generation 7, one shard of every node.
fn wipe_map(c: &Cluster) -> pb::ShardMap {
    pb::ShardMap {
        epoch: 1000,
        generation: 7,
        shard_count: 1,
        shards: vec![pb::ShardEntry {
            id: 0,
            members: c.addrs(),
        }],
    }
}

/// What the attacks must not change: every key at every node, every view, every map.
async fn snapshot_state(c: &Cluster) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..c.nodes.len() {
        let mut keys = Vec::new();
        for k in 0..KEYS {
            let (s, b) = c.get(i, &format!("k{k}"), &Value::Null).await;
            keys.push(json!([s, b["value"].clone()]));
        }
        let (_, ids) = c.req(i, "GET", "/shard/ids", None).await;
        let (_, members) = c.req(i, "GET", "/shard/members/0", None).await;
        // the shard map itself, through the open read-only Admin/Status
        let mut admin = pb::admin_client::AdminClient::new(channel(&c.addr(i), None));
        let map = admin
            .status(pb::StatusRequest {})
            .await
            .expect("Admin/Status stays open")
            .into_inner()
            .map
            .expect("map");
        let map = json!([
            map.epoch,
            map.generation,
            map.shard_count,
            format!("{:?}", map.shards)
        ]);
        out.push(json!({"view": c.view(i).await, "keys": keys, "ids": ids, "members": members, "map": map}));
    }
    out
}

async fn loaded(n: usize, extra: &[(&str, &str)]) -> (Cluster, Vec<Value>) {
    let c = Cluster::start(n, Some(1), extra).await;
    for k in 0..KEYS {
        let (s, b) = c
            .put_r(k % n, &format!("k{k}"), json!(k), &Value::Null)
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let before = common::eventually(Duration::from_secs(5), "replicated", || async {
        let st = snapshot_state(&c).await;
        st.iter()
            .all(|n| {
                n["keys"]
                    .as_array()
                    .is_some_and(|k| k.iter().all(|e| e[0] == 200))
            })
            .then_some(st)
    })
    .await;
    (c, before)
}

fn expect_code<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>, code: Code) {
    match r {
        Ok(v) => panic!("{what}: accepted ({v:?}), expected {code:?}"),
        Err(s) => assert_eq!(s.code(), code, "{what}: {s:?}"),
    }
}

/// Every reported gRPC attack, from `from`; each must fail with `code`.
async fn attack(c: &Cluster, from: Option<IpAddr>, code: Code) {
    let target = c.addr(0);
    let ch = channel(&target, from);
    let mut m = pb::membership_client::MembershipClient::new(ch.clone());
    expect_code(
        "InstallShardMap",
        m.install_shard_map(wipe_map(c)).await,
        code,
    );
    let view_change = pb::ViewChangeRequest {
        sender: "1.2.3.4:1".into(),
        kind: pb::ChangeKind::Removed as i32,
        node: c.addr(1),
        incarnation: 0,
    };
    expect_code("ViewChange", m.view_change(view_change).await, code);
    let mut st = pb::state_transfer_client::StateTransferClient::new(ch.clone());
    let snap = pb::SnapshotRequest {
        requester: "1.2.3.4:1".into(),
        full: true,
        ..Default::default()
    };
    expect_code("Snapshot", st.snapshot(snap).await.map(|_| ()), code);
    expect_code("CommitReshard", st.commit_reshard(wipe_map(c)).await, code);
    let mut r = pb::replication_client::ReplicationClient::new(ch);
    let origin = c.addr(1);
    let write = pb::Write {
        key: "k0".into(),
        version: Some(pb::Version {
            generation: 1,
            origin: origin.clone(),
            seq: 1_000_000,
            clock: vec![pb::ClockEntry {
                origin: origin.clone(),
                seq: 1_000_000,
            }],
        }),
        value: "\"owned\"".into(),
        tombstone: false,
    };
    let batch = pb::ReplicateRequest {
        sender: origin,
        writes: vec![write],
        sent_at_ms: 0,
    };
    expect_code("Replicate as another node", r.replicate(batch).await, code);
}

/// The first call, through the real grpcurl; returns its stderr.
fn grpcurl_install(c: &Cluster) -> String {
    let body = serde_json::to_string(&json!({
        "epoch": 1000, "generation": 7, "shard_count": 1,
        "shards": [{"id": 0, "members": c.addrs()}]
    }))
    .expect("json");
    let out = std::process::Command::new(grpcurl())
        .args(["-plaintext", "-d", &body, &c.addr(0)])
        .arg("causalkv.v1.Membership/InstallShardMap")
        .output()
        .expect("grpcurl must be installed (scripts/test.sh installs it; or set GRPCURL)");
    assert!(!out.status.success(), "grpcurl call was accepted");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_non_members_are_refused_and_nothing_changes() {
    let (c, before) = loaded(3, &[]).await;
    attack(&c, None, Code::Unauthenticated).await;
    assert!(grpcurl_install(&c).contains("Unauthenticated"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(snapshot_state(&c).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_calls_without_it_are_refused_even_from_a_member_address() {
    let (c, before) = loaded(3, &[("CKV_CLUSTER_KEY", KEY)]).await;
    attack(&c, None, Code::Unauthenticated).await;
    // The address check alone would let these through: the key must not.
    attack(&c, Some(ip(&c.addr(2))), Code::Unauthenticated).await;
    assert!(grpcurl_install(&c).contains("Unauthenticated"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(snapshot_state(&c).await, before);
    // Open by design: health, reflection, read-only status.
    let mut a = pb::admin_client::AdminClient::new(channel(&c.addr(0), None));
    assert!(a.status(pb::StatusRequest {}).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_maps_and_writes_from_a_member_address_are_invalid() {
    let (c, before) = loaded(3, &[]).await;
    // Without a key the member's address is all it takes to be heard: validation must hold.
    let from = Some(ip(&c.addr(1)));
    let mut m = pb::membership_client::MembershipClient::new(channel(&c.addr(0), from));
    let members = c.addrs();
    let hostile = |epoch: u64, generation: u64, shard_count: u32| pb::ShardMap {
        epoch,
        generation,
        shard_count,
        shards: vec![pb::ShardEntry {
            id: 0,
            members: members.clone(),
        }],
    };
    for (what, map) in [
        ("generation 2^40", hostile(2, 1 << 40, 1)),
        ("shard_count 2^32-1", hostile(2, 1, u32::MAX)),
        ("epoch u64::MAX", hostile(u64::MAX, 1, 1)),
        ("generation jump", wipe_map(&c)),
    ] {
        expect_code(what, m.install_shard_map(map).await, Code::InvalidArgument);
    }
    // Replicate claiming another node's origin, from a member: refused.
    let mut r = pb::replication_client::ReplicationClient::new(channel(&c.addr(0), from));
    let other = c.addr(2);
    let batch = pb::ReplicateRequest {
        sender: c.addr(1),
        writes: vec![pb::Write {
            key: "k0".into(),
            version: Some(pb::Version {
                generation: 1,
                origin: other.clone(),
                seq: 1_000,
                clock: vec![pb::ClockEntry {
                    origin: other,
                    seq: 1_000,
                }],
            }),
            value: "1".into(),
            tombstone: false,
        }],
        sent_at_ms: 0,
    };
    expect_code("Replicate", r.replicate(batch).await, Code::InvalidArgument);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(snapshot_state(&c).await, before);
    let (s, b) = c.put(0, "after", json!("still works"), &Value::Null).await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = c.get_r(2, "after", &b["causal-metadata"]).await;
    assert_eq!(s, 200);
}

fn forged_token(tail: &[u8]) -> String {
    // generation 1, one entry "127.0.0.9:8090" with a huge counter, then the seal
    let origin = b"127.0.0.9:8090";
    let mut p = vec![1, 1, origin.len() as u8];
    p.extend_from_slice(origin);
    p.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    p.extend_from_slice(tail);
    format!("ckv2-{}", URL_SAFE_NO_PAD.encode(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_get_400() {
    for extra in [&[][..], &[("CKV_CLUSTER_KEY", KEY)][..]] {
        let c = Cluster::start(2, Some(1), extra).await;
        let (s, b) = c.put(0, "x", json!(1), &Value::Null).await;
        assert_eq!(s, 201, "{b}");
        let good = b["causal-metadata"].as_str().expect("token").to_string();
        let mut altered: Vec<char> = good.chars().collect();
        let mid = altered.len() / 2;
        altered[mid] = if altered[mid] == 'A' { 'B' } else { 'A' };
        let altered: String = altered.into_iter().collect();
        for bad in [forged_token(&[0u8; 16]), forged_token(&[7u8; 16]), altered] {
            let (s, b) = c.get(1, "x", &json!(bad)).await;
            assert_eq!(s, 400, "{bad}: {b}");
            let (s, b) = c.put(0, "x", json!(2), &json!(bad)).await;
            assert_eq!(s, 400, "{bad}: {b}");
        }
        let (s, _) = c.get(1, "x", &json!(good)).await;
        assert!(s == 200 || s == 503, "a genuine token is accepted ({s})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_survive_a_node_restart_and_a_reshard() {
    let mut c = Cluster::start(4, Some(2), &[]).await;
    let (s, b) = c.put_r(0, "a", json!(1), &Value::Null).await;
    assert_eq!(s, 201, "{b}");
    let token = b["causal-metadata"].clone();
    // Replicated everywhere first: the store is in memory, and a write its only holder loses in
    // a crash is lost (README), which is not what this test is about.
    for i in 0..4 {
        let (s, b) = c.get_r(i, "a", &token).await;
        assert_eq!(s, 200, "node {i} before the restart: {b}");
    }
    c.kill(1);
    c.restart(1).await;
    for i in 0..4 {
        let (s, b) = c.get_r(i, "a", &token).await;
        assert_eq!(s, 200, "node {i} after a restart: {b}");
    }
    let (s, b) = c
        .req(0, "PUT", "/shard/reshard", Some(json!({"shard-count": 1})))
        .await;
    assert_eq!(s, 200, "{b}");
    for i in 0..4 {
        let (s, b) = c.get_r(i, "a", &token).await;
        assert_eq!(s, 200, "node {i} after a reshard: {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_tokens_survive_a_whole_cluster_restart() {
    let mut c = Cluster::start(2, Some(1), &[("CKV_CLUSTER_KEY", KEY)]).await;
    let (s, b) = c.put_r(0, "a", json!(1), &Value::Null).await;
    assert_eq!(s, 201, "{b}");
    let token = b["causal-metadata"].clone();
    c.kill(0);
    c.kill(1);
    c.restart(0).await;
    c.restart(1).await;
    // The data was in memory only (README: limits), so the write the token depends on is gone
    // and the answer is 503; what matters here is that the token is still recognised as ours
    // (a token of an unknown key would get 400).
    for i in 0..2 {
        let (s, b) = c.get(i, "a", &token).await;
        assert_eq!(s, 503, "node {i}: {b}");
        let (s, b) = c.get(i, "a", &Value::Null).await;
        assert_eq!(s, 404, "node {i}: {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_issued_right_after_start_are_valid_everywhere() {
    // Keyless: every node starts with its own random key; they exchange keys in Announce
    // requests and answers before serving, so no token is ever refused as foreign.
    let c = Cluster::start(3, Some(1), &[]).await;
    for i in 0..3 {
        let (s, b) = c.put(i, &format!("s{i}"), json!(i), &Value::Null).await;
        assert_eq!(s, 201, "{b}");
        for j in 0..3 {
            let (s, b) = c.get(j, &format!("s{i}"), &b["causal-metadata"]).await;
            assert!(s == 200 || s == 503, "node {j}, token of node {i}: {s} {b}");
        }
    }
}
