//! Durability end to end (issue 12): nodes with data directories on loopback, killed with
//! SIGKILL, restarted. Every acknowledged write must come back with its metadata, at every node.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Cluster, eventually};
use futures::future::join_all;
use serde_json::{Value, json};

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("ckv-dur-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Self(p)
    }

    fn node(&self, i: usize) -> PathBuf {
        self.0.join(format!("node{i}"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cluster of `n` nodes, each with its own data directory under `dirs`.
async fn durable_cluster(
    n: usize,
    shards: Option<u32>,
    dirs: &Scratch,
    extra: &[(&str, &str)],
) -> Cluster {
    let mut c = Cluster::prepare(n, shards, extra);
    for i in 0..n {
        c.set_env(i, "DATA_DIR", dirs.node(i).to_str().expect("utf-8 path"));
        c.spawn(i);
    }
    for i in 0..n {
        c.wait_up(i, Duration::from_secs(30)).await;
    }
    c
}

/// One client's acknowledged writes: key → value, and its metadata after the last one.
struct Session {
    acked: Vec<(String, Value)>,
    meta: Value,
}

/// `clients` concurrent sessions, each writing `per_client` PUTs (to `node_of(client)`) over
/// 25 keys of its own, threading its metadata; returns what each got acknowledged.
async fn write_load(
    c: &Cluster,
    clients: usize,
    per_client: usize,
    node_of: impl Fn(usize) -> usize,
) -> Vec<Session> {
    write_load_as("c", c, clients, per_client, node_of).await
}

/// [`write_load`] with keys named after `tag` (so two loads never overwrite each other).
async fn write_load_as(
    tag: &str,
    c: &Cluster,
    clients: usize,
    per_client: usize,
    node_of: impl Fn(usize) -> usize,
) -> Vec<Session> {
    let sessions = (0..clients).map(|cl| {
        let node = node_of(cl);
        async move {
            let mut s = Session {
                acked: Vec::new(),
                meta: Value::Null,
            };
            for i in 0..per_client {
                let key = format!("{tag}{cl}-k{}", i % 25);
                let value = json!(format!("{cl}-{i}"));
                let (st, b) = c.put_r(node, &key, value.clone(), &s.meta).await;
                assert!(st == 200 || st == 201, "PUT {key} at node {node}: {st} {b}");
                s.meta = b["causal-metadata"].clone();
                s.acked.retain(|(k, _)| *k != key);
                s.acked.push((key, value));
            }
            s
        }
    });
    join_all(sessions).await
}

/// Every acknowledged write reads back at node `i` with its session's metadata (retrying 503
/// while the node catches up, bounded).
async fn all_readable(c: &Cluster, i: usize, sessions: &[Session]) {
    for s in sessions {
        for (key, value) in &s.acked {
            let got = eventually(
                Duration::from_secs(20),
                &format!("{key} at node {i}"),
                || async {
                    let (st, b) = c.get(i, key, &s.meta).await;
                    (st != 503).then_some((st, b))
                },
            )
            .await;
            assert_eq!(
                (got.0, &got.1["value"]),
                (200, value),
                "{key} at node {i}: {}",
                got.1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_killed_at_once_loses_no_acknowledged_write() {
    let dirs = Scratch::new("all");
    let mut c = durable_cluster(3, None, &dirs, &[]).await;
    let sessions = write_load(&c, 8, 250, |cl| cl % 3).await;
    assert_eq!(
        sessions.iter().map(|s| s.acked.len()).sum::<usize>(),
        8 * 25
    );
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_up(i, Duration::from_secs(30)).await;
    }
    for i in 0..3 {
        all_readable(&c, i, &sessions).await;
    }
    // and the cluster takes writes again, numbered on (no reuse: they replicate)
    let (st, b) = c
        .put_r(0, "after", json!("restart"), &sessions[0].meta)
        .await;
    assert_eq!(st, 201, "{b}");
    let meta = b["causal-metadata"].clone();
    for i in 1..3 {
        let got = eventually(Duration::from_secs(10), "new write replicates", || async {
            let (st, b) = c.get(i, "after", &meta).await;
            (st == 200).then_some(b)
        })
        .await;
        assert_eq!(got["value"], json!("restart"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_right_after_acknowledging_keeps_its_writes() {
    let dirs = Scratch::new("one");
    let mut c = durable_cluster(3, None, &dirs, &[]).await;
    for round in 0..3u64 {
        let sessions = write_load(&c, 4, 50, |_| 0).await;
        // 0-5 ms after the last acknowledgement
        tokio::time::sleep(Duration::from_micros(round * 2_500)).await;
        c.kill(0);
        c.spawn(0);
        c.wait_up(0, Duration::from_secs(30)).await;
        for i in 0..3 {
            all_readable(&c, i, &sessions).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_data_directory_is_refused_or_recovered_from_peers() {
    let dirs = Scratch::new("trunc");
    let mut c = durable_cluster(3, None, &dirs, &[]).await;
    let mut sessions = write_load(&c, 4, 100, |cl| cl % 3).await;
    // the journal's tail: writes node 2 accepted itself (its peers hold them)
    let tail = write_load_as("tail", &c, 1, 40, |_| 2).await;
    // The premise: the peers received the tail before the crash (replication is asynchronous;
    // on a busy machine it can lag the acknowledgement), so what the damaged disk lost is
    // still held elsewhere.
    all_readable(&c, 0, &tail).await;
    all_readable(&c, 1, &tail).await;
    sessions.extend(tail);
    c.kill(2);
    truncate_journal_tail(&dirs.node(2));
    // Started plainly it either refuses, naming the directory, or starts from what the engine
    // recovered (a consistent prefix) and pulls the rest from its peers; either way it never
    // serves less than what was acknowledged.
    let log = dirs.0.join("plain.log");
    let mut child = c.nodes[2]
        .cmd
        .clone()
        .log(causalkv::tools::node_process::Log::File(log.clone()))
        .spawn()
        .expect("run causalkv");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        if child.has_exited() {
            break true;
        }
        if let Ok(r) = c.http.get(c.url(2, "/kvs/__probe__")).send().await
            && matches!(r.status().as_u16(), 200 | 404)
        {
            break false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 2 neither started nor refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if refused {
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(err.contains(dirs.node(2).to_str().unwrap()), "{err}");
        // with --recover-from-peers it starts and copies its shard back
        c.set_env(2, "CKV_RECOVER_FROM_PEERS", "1");
        c.spawn(2);
        c.wait_up(2, Duration::from_secs(30)).await;
    }
    all_readable(&c, 2, &sessions).await;
    drop(child);
}

/// Cuts the last 4 KiB of what was written to the newest journal file under `dir` (the engine
/// preallocates journal files, so the written part ends at the last non-zero byte): the last
/// acknowledged writes are gone, as after a torn or rolled-back disk.
fn truncate_journal_tail(dir: &std::path::Path) {
    let journals = dir.join("journals");
    let newest = std::fs::read_dir(&journals)
        .expect("journals dir")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u64>().ok()?, e.path())))
        .max()
        .expect("a journal file")
        .1;
    let bytes = std::fs::read(&newest).expect("read journal");
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    assert!(end > 8192, "journal {} holds {end} bytes", newest.display());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .expect("open");
    f.set_len((end - 4096) as u64).expect("truncate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_resharded_to_three_keep_map_and_data_through_a_whole_cluster_crash() {
    let dirs = Scratch::new("reshard");
    let mut c = durable_cluster(6, Some(2), &dirs, &[]).await;
    let sessions = write_load(&c, 6, 100, |cl| cl).await;
    let (s, b) = c
        .req(0, "PUT", "/shard/reshard", Some(json!({"shard-count": 3})))
        .await;
    assert_eq!((s, b), (200, json!({"result": "resharded"})));
    for i in 0..6 {
        c.kill(i);
    }
    for i in 0..6 {
        c.spawn(i);
    }
    for i in 0..6 {
        c.wait_up(i, Duration::from_secs(30)).await;
    }
    for i in 0..6 {
        let (s, b) = c.req(i, "GET", "/shard/ids", None).await;
        assert_eq!((s, &b["shard-ids"]), (200, &json!([0, 1, 2])), "node {i}");
    }
    for i in 0..6 {
        all_readable(&c, i, &sessions[i..=i]).await;
    }
}

/// Mounts a tmpfs of `mb` MiB at `dir` (root only: CI runs as root), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, mb: u32) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mounting a tmpfs at {} needs root", dir.display());
        Self(dir.to_path_buf())
    }

    fn resize(&self, mb: u32) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.0)
            .status()
            .expect("remount")
            .success();
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_cleanly_keeps_reads_and_loses_nothing() {
    let dirs = Scratch::new("full");
    let disk = Tmpfs::mount(&dirs.node(2), 16);
    let mut c = Cluster::prepare(3, None, &[("CKV_MIN_FREE_MB", "4")]);
    for i in 0..3 {
        c.set_env(i, "DATA_DIR", dirs.node(i).to_str().expect("utf-8 path"));
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_up(i, Duration::from_secs(30)).await;
    }
    let big = json!("x".repeat(64 << 10));
    let mut acked = Vec::new();
    let mut meta = Value::Null;
    let mut refused = None;
    for i in 0..400 {
        let key = format!("big{i}");
        let (s, b) = c.put(2, &key, big.clone(), &meta).await;
        if s == 201 {
            meta = b["causal-metadata"].clone();
            acked.push(key);
            continue;
        }
        refused = Some((s, b));
        break;
    }
    let (s, b) = refused.expect("a 16 MiB disk fills up within 400 writes of 64 KiB");
    assert!(s == 507 || s == 503, "{s} {b}");
    assert!(
        b["error"].as_str().is_some_and(|e| e.contains("storage")),
        "{b}"
    );
    assert!(!acked.is_empty());
    // reads go on
    for key in &acked {
        let (s, b) = c.get(2, key, &meta).await;
        assert_eq!(s, 200, "{key}: {b}");
    }
    // space returns: writes succeed again, and nothing acknowledged is lost across a restart
    disk.resize(256);
    let (s, b) = eventually(Duration::from_secs(20), "writes succeed again", || async {
        let (s, b) = c.put(2, "after", json!("space"), &meta).await;
        (s == 201).then_some((s, b))
    })
    .await;
    assert_eq!(s, 201, "{b}");
    meta = b["causal-metadata"].clone();
    acked.push("after".into());
    c.kill(2);
    c.spawn(2);
    c.wait_up(2, Duration::from_secs(30)).await;
    for key in &acked {
        let (s, b) = c.get(2, key, &meta).await;
        assert_eq!(s, 200, "{key} after the restart: {b}");
    }
    for i in 0..3 {
        c.kill(i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_data_directory_refuses_to_start_naming_it() {
    let dirs = Scratch::new("locked");
    let mut c = durable_cluster(2, None, &dirs, &[]).await;
    let meta = json!(null);
    let (code, body) = c.put(0, "before", json!("1"), &meta).await;
    assert!(matches!(code, 200 | 201), "{code} {body}");
    // another node (its own address) given node 0's data directory
    let log = dirs.0.join("second.log");
    let taken = dirs.node(0);
    let mut second = c.nodes[1]
        .cmd
        .clone()
        .env("SOCKET_ADDRESS", &c.spare_addr(5))
        .env("DATA_DIR", taken.to_str().expect("utf-8 path"))
        .log(causalkv::tools::node_process::Log::File(log.clone()))
        .spawn()
        .expect("run causalkv");
    eventually(Duration::from_secs(30), "the second process exits", || {
        let exited = second.has_exited();
        async move { exited.then_some(()) }
    })
    .await;
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        err.contains(taken.to_str().unwrap()) && err.contains("in use by another process"),
        "{err}"
    );
    // the first one never noticed
    let (code, body) = c.get(0, "before", &body["causal-metadata"]).await;
    assert_eq!(code, 200, "{body}");
    // the lock dies with its process, however it ends
    c.kill(0);
    c.spawn(0);
    c.wait_up(0, Duration::from_secs(30)).await;
}
