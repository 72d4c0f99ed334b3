//! The legacy dialect end to end (API.md §3): a 6-node, 2-shard loopback cluster driven only
//! through `/key-value-store`, `/key-value-store-view` and `/key-value-store-shard/...`, a
//! blocking read at a node that missed writes while paused, both dialects on one store, and the
//! compatibility switch that renders lists and shard ids as strings.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Cluster, counts_agree, eventually, sorted};
use serde_json::{Value, json};

const KEYS: usize = 600;
const SHARD: &str = "/key-value-store-shard";
const VIEW: &str = "/key-value-store-view";
/// Bound of a legacy wait in these clusters: below the harness's 20 s HTTP timeout, so a
/// request that cannot complete comes back as a 503 rather than a client error.
const WAIT: (&str, &str) = ("CKV_LEGACY_WAIT_MS", "15000");

async fn ids(c: &Cluster, i: usize) -> Vec<u64> {
    let (s, b) = c.req(i, "GET", &format!("{SHARD}/shard-ids"), None).await;
    assert_eq!(
        (s, &b["message"]),
        (200, &json!("Shard IDs retrieved successfully"))
    );
    serde_json::from_value(b["shard-ids"].clone()).expect("ids")
}

async fn members(c: &Cluster, i: usize, shard: u64) -> Vec<String> {
    let path = format!("{SHARD}/shard-id-members/{shard}");
    let (s, b) = c.req(i, "GET", &path, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["message"],
        json!("Members of shard ID retrieved successfully")
    );
    sorted(serde_json::from_value(b["shard-id-members"].clone()).expect("members"))
}

async fn node_shard(c: &Cluster, i: usize) -> Value {
    let (s, b) = c
        .req(i, "GET", &format!("{SHARD}/node-shard-id"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["message"],
        json!("Shard ID of the node retrieved successfully")
    );
    b["shard-id"].clone()
}

async fn key_count(c: &Cluster, i: usize, shard: u64) -> u64 {
    let path = format!("{SHARD}/shard-id-key-count/{shard}");
    let (s, b) = c.req(i, "GET", &path, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["message"],
        json!("Key count of shard ID retrieved successfully")
    );
    b["shard-id-key-count"].as_u64().expect("count")
}

async fn view(c: &Cluster, i: usize) -> Vec<String> {
    let (s, b) = c.req(i, "GET", VIEW, None).await;
    assert_eq!(
        (s, &b["message"]),
        (200, &json!("View retrieved successfully"))
    );
    match &b["view"] {
        // the compatibility switch renders the view as one comma-separated string
        Value::String(listed) => sorted(listed.split(',').map(String::from).collect()),
        list => sorted(serde_json::from_value(list.clone()).expect("view list")),
    }
}

/// Waits until every running node lists all `n` nodes.
async fn views_full(c: &Cluster, n: usize) {
    for i in 0..c.nodes.len() {
        eventually(Duration::from_secs(10), "full view everywhere", || async {
            (view(c, i).await.len() == n).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_six_nodes_two_shards() {
    let mut c = Cluster::start(6, Some(2), &[WAIT]).await;
    views_full(&c, 6).await;
    // ids, members and node-shard-id agree everywhere
    let (m0, m1) = (members(&c, 0, 0).await, members(&c, 0, 1).await);
    assert!(m0.len() >= 2 && m1.len() >= 2);
    let mut shard_of = BTreeMap::new();
    for i in 0..6 {
        assert_eq!(ids(&c, i).await, vec![0, 1]);
        assert_eq!(
            (members(&c, i, 0).await, members(&c, i, 1).await),
            (m0.clone(), m1.clone())
        );
        let mine = node_shard(&c, i).await.as_u64().expect("integer shard id");
        assert!(if mine == 0 { &m0 } else { &m1 }.contains(&c.addr(i)));
        shard_of.insert(i, mine);
    }
    let everyone: BTreeSet<String> = m0.iter().chain(&m1).cloned().collect();
    assert_eq!(everyone.len(), 6);
    let (s, b) = c
        .req(0, "GET", &format!("{SHARD}/shard-id-members/7"), None)
        .await;
    assert_eq!((s, &b["message"]), (404, &json!("Error in GET")), "{b}");
    let (s, b) = c
        .req(1, "GET", &format!("{SHARD}/shard-id-key-count/x"), None)
        .await;
    assert_eq!((s, &b["message"]), (404, &json!("Error in GET")), "{b}");
    let stranger = Some(json!({"socket-address": "127.9.9.9:1"}));
    let (s, b) = c
        .req(2, "PUT", &format!("{SHARD}/add-member/0"), stranger)
        .await;
    assert_eq!((s, &b["message"]), (404, &json!("Error in PUT")), "{b}");

    // 600 chained PUTs rotated over the nodes: each blocks rather than answering 503
    let mut meta = json!("");
    let mut key_shard = Vec::new();
    for k in 0..KEYS {
        let (s, b) = c.lput(k % 6, &format!("key{k}"), json!(k), &meta).await;
        assert_eq!(
            (s, &b["message"]),
            (201, &json!("Added successfully")),
            "key{k}: {b}"
        );
        let shard = b["shard-id"].as_u64().filter(|s| *s < 2);
        key_shard.push(shard.unwrap_or_else(|| panic!("key{k}: shard-id {b}")));
        meta = b["causal-metadata"].clone();
    }
    // reads return the values, and the metadata sent (byte for byte) since it covers them
    for (k, shard) in key_shard.iter().enumerate() {
        let (s, b) = c.lget((k + 1) % 6, &format!("key{k}"), &meta).await;
        assert_eq!(s, 200, "key{k}: {b}");
        assert_eq!(b["message"], json!("Retrieved successfully"));
        assert_eq!((&b["value"], &b["doesExist"]), (&json!(k), &json!(true)));
        assert_eq!(b["causal-metadata"], meta, "key{k}: metadata changed");
        assert_eq!(b["shard-id"], json!(shard));
    }
    counts_agree(&c, &[0, 1], KEYS, async |i, s| key_count(&c, i, s).await).await;

    // an update, the error bodies, a GET without a body
    let (s, b) = c.lput(1, "key0", json!("zero"), &meta).await;
    assert_eq!(
        (s, &b["message"]),
        (200, &json!("Updated successfully")),
        "{b}"
    );
    meta = b["causal-metadata"].clone();
    // without metadata a read may come from a replica the update has not reached yet
    eventually(
        Duration::from_secs(1),
        "update readable without metadata",
        || async {
            let (s, b) = c.req(2, "GET", "/key-value-store/key0", None).await;
            (s == 200 && b["value"] == json!("zero")).then_some(())
        },
    )
    .await;
    let missing = c
        .req(
            0,
            "PUT",
            "/key-value-store/k",
            Some(json!({"causal-metadata": meta})),
        )
        .await;
    let value_missing = json!({"error": "Value is missing", "message": "Error in PUT"});
    assert_eq!(missing, (400, value_missing));
    let (s, b) = c.lput(0, &"k".repeat(51), json!(1), &meta).await;
    let too_long = json!({"error": "Key is too long", "message": "Error in PUT"});
    assert_eq!((s, b), (400, too_long));
    for (method, body) in [
        ("PUT", "{not json"),
        ("GET", r#"{"causal-metadata": "forged"}"#),
    ] {
        let (s, b) = c.raw(3, method, "/key-value-store/key1", body).await;
        assert_eq!(s, 400, "{method}: {b}");
        assert!(b["error"].is_string(), "{b}");
        assert_eq!(b["message"], json!(format!("Error in {method}")));
    }
    for (method, msg) in [("GET", "Error in GET"), ("DELETE", "Error in DELETE")] {
        let body = Some(json!({"causal-metadata": meta}));
        let got = c.req(4, method, "/key-value-store/nope", body).await;
        let miss = json!({"doesExist": false, "error": "Key does not exist", "message": msg});
        assert_eq!(got, (404, miss));
    }

    // both dialects on one store, metadata passed across
    let (s, b) = c.put_r(0, "xd-current", json!("from /kvs"), &meta).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = c.lget(3, "xd-current", &b["causal-metadata"]).await;
    assert_eq!((s, &b["value"]), (200, &json!("from /kvs")), "{b}");
    let (s, b) = c
        .lput(5, "xd-legacy", json!({"n": 1}), &b["causal-metadata"])
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = c.get_r(2, "xd-legacy", &b["causal-metadata"]).await;
    assert_eq!((s, &b["value"]), (200, &json!({"n": 1})), "{b}");
    meta = b["causal-metadata"].clone();
    for key in ["xd-current", "xd-legacy"] {
        let (s, b) = c.ldelete(1, key, &meta).await;
        assert_eq!(
            (s, &b["message"]),
            (200, &json!("Deleted successfully")),
            "{b}"
        );
        assert!(b["shard-id"].as_u64().is_some_and(|s| s < 2));
        meta = b["causal-metadata"].clone();
    }
    let (s, b) = c.lget(0, "xd-legacy", &meta).await;
    assert_eq!((s, &b["doesExist"]), (404, &json!(false)), "{b}");

    // a node that missed a write while paused blocks on it, then answers
    let a = 0;
    let bob = (1..6)
        .find(|i| shard_of[i] == shard_of[&a])
        .expect("a shard peer");
    let key = (1..KEYS)
        .find(|k| key_shard[*k] == shard_of[&a])
        .expect("a key");
    let key = format!("key{key}");
    c.pause(bob);
    let (s, b) = c.lput(a, &key, json!("while bob slept"), &meta).await;
    assert_eq!(s, 200, "{b}");
    meta = b["causal-metadata"].clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.resume(bob);
    // bob is on probation: until it has pulled the write (it may already have: a replica on
    // probation pulls what it missed) the current dialect refuses at once ...
    let (s, b) = c.get(bob, &key, &meta).await;
    assert!(
        s == 503 || (s == 200 && b["value"] == json!("while bob slept")),
        "{s} {b}"
    );
    // ... while a legacy request waits for it, pulling from the shard's peers
    let started = Instant::now();
    let (s, b) = c.lget(bob, &key, &meta).await;
    assert_eq!((s, &b["value"]), (200, &json!("while bob slept")), "{b}");
    let waited = started.elapsed();
    eprintln!("legacy GET at the resumed node answered after {waited:?}");
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    views_full(&c, 6).await;

    // view: GET, PUT of a present address, DELETE, DELETE again, PUT back
    assert_eq!(view(&c, 2).await, sorted(c.addrs()));
    let gone = json!({"socket-address": c.addr(5)});
    let (s, b) = c.req(0, "PUT", VIEW, Some(gone.clone())).await;
    let present =
        json!({"error": "Socket address already exists in the view", "message": "Error in PUT"});
    assert_eq!((s, b), (404, present));
    let (s, b) = c.req(0, "DELETE", VIEW, Some(gone.clone())).await;
    assert_eq!(
        (s, b),
        (
            200,
            json!({"message": "Replica deleted successfully from the view"})
        )
    );
    let (s, b) = c.req(0, "DELETE", VIEW, Some(gone.clone())).await;
    let absent =
        json!({"error": "Socket address does not exist in the view", "message": "Error in DELETE"});
    assert_eq!((s, b), (404, absent));
    let (s, b) = c.req(0, "PUT", VIEW, Some(gone)).await;
    assert_eq!(
        (s, b),
        (
            201,
            json!({"message": "Replica added successfully to the view"})
        )
    );
    views_full(&c, 6).await;

    // a 7th node joins the view, then add-member
    let grace_addr = c.spare_addr(6);
    let all: Vec<String> = c.addrs().into_iter().chain([grace_addr.clone()]).collect();
    let grace = c.start_extra(&grace_addr, &all, None).await;
    views_full(&c, 7).await;
    assert_eq!(node_shard(&c, grace).await, Value::Null);
    let path = format!("{SHARD}/add-member/1");
    let body = Some(json!({"socket-address": grace_addr}));
    let (s, b) = c.req(2, "PUT", &path, body).await;
    assert_eq!(
        (s, b),
        (200, json!({"message": "Node added to shard successfully"}))
    );
    eventually(
        Duration::from_secs(5),
        "everyone sees the new member",
        || async {
            for i in 0..7 {
                if !members(&c, i, 1).await.contains(&grace_addr) {
                    return None;
                }
            }
            (node_shard(&c, grace).await == json!(1)).then_some(())
        },
    )
    .await;

    // reshard: refused for 10 shards, done for 3, every key reads back with the old metadata
    let path = format!("{SHARD}/reshard");
    let (s, b) = c
        .req(0, "PUT", &path, Some(json!({"shard-count": 10})))
        .await;
    let refused = json!({"message": "Not enough nodes to provide fault-tolerance with the given shard count!"});
    assert_eq!((s, b), (400, refused));
    let (s, b) = c
        .req(3, "PUT", &path, Some(json!({"shard-count": 3})))
        .await;
    assert_eq!(
        (s, b),
        (200, json!({"message": "Resharding done successfully"}))
    );
    for i in 0..7 {
        assert_eq!(ids(&c, i).await, vec![0, 1, 2]);
    }
    counts_agree(&c, &[0, 1, 2], KEYS, async |i, s| key_count(&c, i, s).await).await;
    for k in 0..KEYS {
        let (s, b) = c.lget(k % 7, &format!("key{k}"), &meta).await;
        let want = if k == 0 {
            json!("zero")
        } else if format!("key{k}") == key {
            json!("while bob slept")
        } else {
            json!(k)
        };
        assert_eq!((s, &b["value"]), (200, &want), "key{k} after reshard: {b}");
        assert!(b["shard-id"].as_u64().is_some_and(|s| s < 3), "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatibility_switch_renders_strings() {
    let c = Cluster::start(4, Some(2), &[WAIT, ("CKV_LEGACY_STRINGS", "1")]).await;
    views_full(&c, 4).await;
    let (s, b) = c.req(0, "GET", &format!("{SHARD}/shard-ids"), None).await;
    assert_eq!((s, &b["shard-ids"]), (200, &json!("0,1")), "{b}");
    let mine = node_shard(&c, 1).await;
    let mine = mine.as_str().expect("shard id as a string");
    let path = format!("{SHARD}/shard-id-members/{mine}");
    let (s, b) = c.req(2, "GET", &path, None).await;
    assert_eq!(s, 200, "{b}");
    let listed = b["shard-id-members"]
        .as_str()
        .expect("members as one string");
    assert!(listed.split(',').any(|m| m == c.addr(1)), "{listed}");
    eventually(Duration::from_secs(5), "view as one string", || async {
        let (s, b) = c.req(3, "GET", VIEW, None).await;
        assert_eq!(s, 200);
        let listed = b["view"].as_str().expect("view as one string");
        let mut v: Vec<String> = listed.split(',').map(String::from).collect();
        v.sort();
        (v == sorted(c.addrs())).then_some(())
    })
    .await;
    let (s, b) = c.lput(0, "k", json!(1), &json!("")).await;
    assert_eq!(s, 201, "{b}");
    assert!(matches!(b["shard-id"].as_str(), Some("0" | "1")), "{b}");
    let (s, b) = c.lget(3, "k", &b["causal-metadata"]).await;
    assert_eq!((s, &b["value"]), (200, &json!(1)), "{b}");
    assert!(b["shard-id"].is_string(), "{b}");
    // the current dialect keeps its own types
    let (_, b) = c.req(0, "GET", "/shard/ids", None).await;
    assert_eq!(b["shard-ids"], json!([0, 1]));
}
