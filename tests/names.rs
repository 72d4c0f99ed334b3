//! Nodes named by host name (issue 15): `SOCKET_ADDRESS` and `VIEW` hold `name:port`, resolved
//! through a hosts file the test writes (`CKV_HOSTS_FILE`, never the system's /etc/hosts) to
//! 127.x addresses the nodes listen on. Real processes, HTTP only, as tests/replication.rs.

mod common;

use std::time::{Duration, Instant};

use common::{NamedCluster, eventually, sorted};
use serde_json::{Value, json};

/// No `SHARD_COUNT`: one replicated store, every node holds every key.
const REPLICATED: Option<u32> = None;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_nodes_serve_the_kv_flows_and_replicate_everywhere() {
    let nc = NamedCluster::start(3, REPLICATED).await;
    let c = &nc.c;
    let names = sorted(nc.names.clone());
    // every view lists the names, not the addresses
    for i in 0..3 {
        let v = eventually(Duration::from_secs(5), "views list the names", || async {
            let v = c.view(i).await;
            (v == names).then_some(v)
        })
        .await;
        assert_eq!(v, names);
    }
    let (s, b) = c.put(0, "x", json!(1), &Value::Null).await;
    assert_eq!((s, &b["result"]), (201, &json!("created")), "{b}");
    let m = b["causal-metadata"].clone();
    let (s, b) = c.put_r(1, "x", json!({"v": [2, "two"]}), &m).await;
    assert_eq!((s, &b["result"]), (200, &json!("replaced")), "{b}");
    let m = b["causal-metadata"].clone();
    let (s, b) = c.get_r(2, "x", &m).await;
    assert_eq!((s, &b["value"]), (200, &json!({"v": [2, "two"]})), "{b}");
    let m = b["causal-metadata"].clone();
    let (s, b) = c.delete_r(2, "x", &m).await;
    assert_eq!((s, &b["result"]), (200, &json!("deleted")), "{b}");
    let m = b["causal-metadata"].clone();
    let (s, b) = c.get_r(0, "x", &m).await;
    assert_eq!((s, &b["error"]), (404, &json!("Key does not exist")), "{b}");
    // a write at each node reaches every node (with no metadata: replication, not a retry
    // on 503, must bring it) within a second
    for w in 0..3 {
        let key = format!("k{w}");
        let (s, b) = c.put(w, &key, json!(w), &Value::Null).await;
        assert_eq!(s, 201, "{b}");
        let at = Instant::now();
        for r in 0..3 {
            eventually(
                Duration::from_secs(1),
                "write replicated by name",
                || async {
                    let (s, b) = c.get(r, &key, &Value::Null).await;
                    (s == 200 && b["value"] == json!(w)).then_some(())
                },
            )
            .await;
        }
        assert!(at.elapsed() < Duration::from_secs(2));
    }
    // PUT /view accepts a name (an add-member by name, as on Kubernetes), GET shows it, and
    // DELETE removes it again; a malformed one is refused
    let (s, b) = c
        .req(
            0,
            "PUT",
            "/view",
            Some(json!({"socket-address": "alice:8090"})),
        )
        .await;
    assert_eq!((s, &b["result"]), (200, &json!("already present")), "{b}");
    let (s, _) = c
        .req(
            0,
            "PUT",
            "/view",
            Some(json!({"socket-address": "not a name:80"})),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_node_killed_and_restarted_at_a_new_address_comes_back() {
    let mut nc = NamedCluster::start(3, REPLICATED).await;
    let carol = 2;
    let mut meta = Value::Null;
    for k in 0..20 {
        let (s, b) = nc.c.put_r(k % 2, &format!("key{k}"), json!(k), &meta).await;
        assert_eq!(s, 201, "{b}");
        meta = b["causal-metadata"].clone();
    }
    nc.c.kill(carol);
    let survivors = sorted(vec![nc.names[0].clone(), nc.names[1].clone()]);
    for i in 0..2 {
        let c = &nc.c;
        eventually(
            Duration::from_secs(5),
            "killed node leaves the view",
            || async { (c.view(i).await == survivors).then_some(()) },
        )
        .await;
    }
    // the same name comes back at another address: peers must re-resolve it
    let old_ip = nc.ip(carol).to_string();
    nc.move_node(carol);
    assert_ne!(old_ip, nc.ip(carol));
    let started = Instant::now();
    nc.c.spawn(carol);
    nc.c.wait_up(carol, Duration::from_secs(5)).await;
    let all = sorted(nc.names.clone());
    for i in 0..3 {
        let c = &nc.c;
        eventually(
            Duration::from_secs(5),
            "restarted node in every view",
            || async { (c.view(i).await == all).then_some(()) },
        )
        .await;
    }
    for k in 0..20 {
        let (s, b) = nc.c.get(carol, &format!("key{k}"), &meta).await;
        assert_eq!((s, &b["value"]), (200, &json!(k)), "key{k}: {b}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "back and serving after {:?}",
        started.elapsed()
    );
    // and it replicates in both directions under its name at the new address
    let (s, b) = nc.c.put(carol, "after", json!("restart"), &meta).await;
    assert_eq!(s, 201, "{b}");
    let m = b["causal-metadata"].clone();
    for i in 0..2 {
        let (s, b) = nc.c.get_r(i, "after", &m).await;
        assert_eq!((s, &b["value"]), (200, &json!("restart")), "{b}");
    }
    let (s, b) = nc.c.put(0, "from-alice", json!(1), &Value::Null).await;
    assert_eq!(s, 201, "{b}");
    let c = &nc.c;
    eventually(
        Duration::from_secs(1),
        "alice's write reaches carol",
        || async {
            let (s, _) = c.get(carol, "from-alice", &Value::Null).await;
            (s == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_sharded_cluster_routes_by_name() {
    let nc = NamedCluster::start(4, Some(2)).await;
    let c = &nc.c;
    let mut meta = Value::Null;
    for k in 0..40 {
        let (s, b) = c.put_r(k % 4, &format!("s{k}"), json!(k), &meta).await;
        assert_eq!(s, 201, "{b}");
        meta = b["causal-metadata"].clone();
    }
    for k in 0..40 {
        let (s, b) = c.get_r((k + 1) % 4, &format!("s{k}"), &meta).await;
        assert_eq!((s, &b["value"]), (200, &json!(k)), "{b}");
    }
    let (s, b) = c.req(0, "GET", "/shard/ids", None).await;
    assert_eq!(s, 200, "{b}");
    let mut members = Vec::new();
    for id in [0, 1] {
        let (s, b) = c.req(0, "GET", &format!("/shard/members/{id}"), None).await;
        assert_eq!(s, 200, "{b}");
        let m: Vec<String> = serde_json::from_value(b["shard-members"].clone()).expect("members");
        assert_eq!(m.len(), 2, "{b}");
        members.extend(m);
    }
    assert_eq!(sorted(members), sorted(nc.names.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_yet_is_retried_not_fatal() {
    // carol is in everyone's VIEW but her name does not resolve (a pod not scheduled yet)
    let mut nc = NamedCluster::prepare(3, REPLICATED);
    let carol = 2;
    nc.hide(carol, true);
    nc.c.spawn(0);
    nc.c.spawn(1);
    nc.c.wait_up(0, Duration::from_secs(20)).await;
    nc.c.wait_up(1, Duration::from_secs(20)).await;
    let two = sorted(vec![nc.names[0].clone(), nc.names[1].clone()]);
    for i in 0..2 {
        let c = &nc.c;
        eventually(
            Duration::from_secs(5),
            "unresolvable carol out of the view",
            || async { (c.view(i).await == two).then_some(()) },
        )
        .await;
    }
    let (s, b) =
        nc.c.put(0, "early", json!("before carol"), &Value::Null)
            .await;
    assert_eq!(s, 201, "{b}");
    let meta = b["causal-metadata"].clone();
    // a few failed lookups later both nodes still run and serve
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, b) = nc.c.get_r(1, "early", &meta).await;
    assert_eq!((s, &b["value"]), (200, &json!("before carol")), "{b}");
    // the name appears, carol starts: in every view and serving within 5 s
    nc.hide(carol, false);
    let started = Instant::now();
    nc.c.spawn(carol);
    nc.c.wait_up(carol, Duration::from_secs(5)).await;
    let all = sorted(nc.names.clone());
    for i in 0..3 {
        let c = &nc.c;
        eventually(Duration::from_secs(5), "carol in every view", || async {
            (c.view(i).await == all).then_some(())
        })
        .await;
    }
    let (s, b) = nc.c.get(carol, "early", &meta).await;
    assert_eq!((s, &b["value"]), (200, &json!("before carol")), "{b}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
