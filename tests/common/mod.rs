//! Test harness: real `causalkv` processes on loopback addresses, driven over HTTP only.
//! Every cluster gets its own 127.x.y.0/24 block so concurrent tests never collide; every
//! wait is bounded; dropping a cluster kills its processes.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use causalkv::tools::node_process::{Log, NodeProcess, ServeCommand};
use serde_json::{Value, json};

static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);

/// A node: its address (where the test reaches it), how it is started, and its process.
pub struct NodeProc {
    pub addr: String,
    cmd: ServeCommand,
    child: Option<NodeProcess>,
}

/// A loopback cluster of real processes.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    pub http: reqwest::Client,
    base: String,
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_causalkv"))
}

/// Node logs go to the test's stderr with `CKV_TEST_LOGS` set, nowhere otherwise.
fn log() -> Log {
    if std::env::var("CKV_TEST_LOGS").is_ok() {
        Log::Inherit
    } else {
        Log::Null
    }
}

impl Cluster {
    /// Address of node `i` (0-based) in this cluster's block.
    pub fn addr_in(base: &str, i: usize) -> String {
        format!("{base}.{}:8090", i + 2)
    }

    /// Starts `n` nodes with `SHARD_COUNT=shards` (none: a replication-only cluster) plus extra
    /// environment, and waits until each serves key-value requests (bounded).
    pub async fn start(n: usize, shards: Option<u32>, extra: &[(&str, &str)]) -> Cluster {
        let mut c = Self::prepare(n, shards, extra);
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_up(i, Duration::from_secs(20)).await;
        }
        c
    }

    /// Configures `n` nodes (one `VIEW` naming all of them) without starting any: the test
    /// starts them with [`Cluster::spawn`] in the order and at the times it chooses.
    pub fn prepare(n: usize, shards: Option<u32>, extra: &[(&str, &str)]) -> Cluster {
        let block = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
        let base = format!("127.{}.{}", 20 + std::process::id() % 200, block % 250 + 1);
        let view: Vec<String> = (0..n).map(|i| Self::addr_in(&base, i)).collect();
        let mut c = Cluster {
            nodes: Vec::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            base,
        };
        for addr in &view {
            let mut cmd = ServeCommand::new(exe(), addr, &view)
                .shards(shards)
                .env("RUST_LOG", "info")
                .log(log());
            for (k, v) in extra {
                cmd.set(k, v);
            }
            c.nodes.push(NodeProc {
                addr: addr.clone(),
                cmd,
                child: None,
            });
        }
        c
    }

    /// Address for a node that is not started yet (e.g. a spare added later).
    pub fn spare_addr(&self, i: usize) -> String {
        Self::addr_in(&self.base, i)
    }

    /// Starts an extra node `addr` with the given VIEW and optional SHARD_COUNT.
    pub async fn start_extra(&mut self, addr: &str, view: &[String], shards: Option<u32>) -> usize {
        self.nodes.push(NodeProc {
            addr: addr.to_string(),
            cmd: ServeCommand::new(exe(), addr, view)
                .shards(shards)
                .log(log()),
            child: None,
        });
        let i = self.nodes.len() - 1;
        self.spawn(i);
        self.wait_up(i, Duration::from_secs(20)).await;
        i
    }

    /// Starts the process of node `i` (configured already) and returns at once.
    pub fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.child = Some(node.cmd.spawn().expect("spawn causalkv"));
    }

    /// Waits until node `i` serves key-value requests (start-up transfer done): a probe read
    /// answers 404 or 200 rather than 503 or nothing.
    pub async fn wait_up(&self, i: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = self
                .http
                .get(self.url(i, "/kvs/__probe__"))
                .timeout(Duration::from_millis(1500))
                .send()
                .await
                && matches!(r.status().as_u16(), 200 | 404)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not come up",
                self.nodes[i].addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn addr(&self, i: usize) -> String {
        self.nodes[i].addr.clone()
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{}", self.nodes[i].addr, path)
    }

    fn running(&self, i: usize) -> &NodeProcess {
        self.nodes[i].child.as_ref().expect("running")
    }

    /// SIGSTOP.
    pub fn pause(&self, i: usize) {
        self.running(i).pause().expect("SIGSTOP");
    }

    /// SIGCONT.
    pub fn resume(&self, i: usize) {
        self.running(i).resume().expect("SIGCONT");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].child = None;
    }

    /// Starts node `i` again with its original environment, without waiting for it to serve.
    pub fn respawn(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Sets (or replaces) one environment variable of node `i` for its next start.
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        self.nodes[i].cmd.set(key, value);
    }

    /// Starts node `i` again with its original environment (full VIEW).
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_up(i, Duration::from_secs(20)).await;
    }

    /// Sends a request with a JSON body (or none); returns status and JSON body.
    pub async fn req(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rb = self.http.request(m, self.url(i, path));
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.addr(i)));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Raw request body (for malformed-input tests).
    pub async fn raw(&self, i: usize, method: &str, path: &str, body: &str) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = self
            .http
            .request(m, self.url(i, path))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn put(&self, i: usize, key: &str, value: Value, meta: &Value) -> (u16, Value) {
        self.req(
            i,
            "PUT",
            &format!("/kvs/{key}"),
            Some(json!({"value": value, "causal-metadata": meta})),
        )
        .await
    }

    pub async fn get(&self, i: usize, key: &str, meta: &Value) -> (u16, Value) {
        self.req(
            i,
            "GET",
            &format!("/kvs/{key}"),
            Some(json!({"causal-metadata": meta})),
        )
        .await
    }

    pub async fn delete(&self, i: usize, key: &str, meta: &Value) -> (u16, Value) {
        self.req(
            i,
            "DELETE",
            &format!("/kvs/{key}"),
            Some(json!({"causal-metadata": meta})),
        )
        .await
    }

    /// Retries a request while it answers 503 "dependencies not satisfied", for at most about
    /// 1.3 s, as course clients do (replication to another node takes a few milliseconds).
    pub async fn retry(&self, i: usize, method: &str, key: &str, body: Value) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_millis(1300);
        loop {
            let (s, b) = self
                .req(i, method, &format!("/kvs/{key}"), Some(body.clone()))
                .await;
            if s != 503 || Instant::now() >= deadline {
                return (s, b);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn put_r(&self, i: usize, key: &str, value: Value, meta: &Value) -> (u16, Value) {
        self.retry(
            i,
            "PUT",
            key,
            json!({"value": value, "causal-metadata": meta}),
        )
        .await
    }

    pub async fn get_r(&self, i: usize, key: &str, meta: &Value) -> (u16, Value) {
        self.retry(i, "GET", key, json!({"causal-metadata": meta}))
            .await
    }

    pub async fn delete_r(&self, i: usize, key: &str, meta: &Value) -> (u16, Value) {
        self.retry(i, "DELETE", key, json!({"causal-metadata": meta}))
            .await
    }

    /// Legacy `PUT /key-value-store/<key>` (blocks on unmet dependencies: no retry needed).
    pub async fn lput(&self, i: usize, key: &str, value: Value, meta: &Value) -> (u16, Value) {
        self.req(
            i,
            "PUT",
            &format!("/key-value-store/{key}"),
            Some(json!({"value": value, "causal-metadata": meta})),
        )
        .await
    }

    /// Legacy `GET /key-value-store/<key>`.
    pub async fn lget(&self, i: usize, key: &str, meta: &Value) -> (u16, Value) {
        self.req(
            i,
            "GET",
            &format!("/key-value-store/{key}"),
            Some(json!({"causal-metadata": meta})),
        )
        .await
    }

    /// Legacy `DELETE /key-value-store/<key>`.
    pub async fn ldelete(&self, i: usize, key: &str, meta: &Value) -> (u16, Value) {
        self.req(
            i,
            "DELETE",
            &format!("/key-value-store/{key}"),
            Some(json!({"causal-metadata": meta})),
        )
        .await
    }

    /// `GET /view` of node `i`, sorted.
    pub async fn view(&self, i: usize) -> Vec<String> {
        let (s, b) = self.req(i, "GET", "/view", None).await;
        assert_eq!(s, 200, "{b}");
        let mut v: Vec<String> = serde_json::from_value(b["view"].clone()).expect("view list");
        v.sort();
        v
    }
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`; panics with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks every node of `c` for the key count of each shard in `shard_ids` (through `count`,
/// which picks the dialect), and checks that all nodes agree, that the counts sum to `keys`, and
/// that each stays strictly within ±25 % of the ideal. Returns the agreed counts.
pub async fn counts_agree(
    c: &Cluster,
    shard_ids: &[u64],
    keys: usize,
    count: impl AsyncFn(usize, u64) -> u64,
) -> Vec<u64> {
    let mut first: Option<Vec<u64>> = None;
    for i in 0..c.nodes.len() {
        let mut counts = Vec::new();
        for s in shard_ids {
            counts.push(count(i, *s).await);
        }
        match &first {
            None => first = Some(counts),
            Some(f) => assert_eq!(f, &counts, "node {i} disagrees on key counts"),
        }
    }
    let counts = first.expect("nodes");
    assert_eq!(counts.iter().sum::<u64>(), keys as u64, "{counts:?}");
    let ideal = keys as f64 / shard_ids.len() as f64;
    for n in &counts {
        let n = *n as f64;
        assert!(
            n > 0.75 * ideal && n < 1.25 * ideal,
            "unbalanced {counts:?}"
        );
    }
    counts
}

/// Sorted list of strings.
pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A loopback cluster whose nodes are known by host name (`alice:8090`, `bob:8090`, …): a hosts
/// file of its own (`CKV_HOSTS_FILE`) maps each name to the node's 127.x address, which the node
/// listens on (`LISTEN_ADDRESS`). `SOCKET_ADDRESS` and `VIEW` hold only names. The test talks to
/// the nodes by IP (`Cluster::url`); the nodes talk to each other by name. Their DNS
/// configuration (`CKV_RESOLV_CONF`) names no server, so a name missing from the hosts file fails
/// to resolve without any query leaving the machine.
pub struct NamedCluster {
    pub c: Cluster,
    /// `name:8090` of each node, its identity.
    pub names: Vec<String>,
    /// The hosts file the nodes read.
    pub hosts: std::path::PathBuf,
    ips: Vec<String>,
    /// Nodes left out of the hosts file (a pod not scheduled yet).
    hidden: Vec<bool>,
    resolv: std::path::PathBuf,
}

/// Host names of named-cluster nodes, in order.
pub const NODE_NAMES: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

impl NamedCluster {
    /// Configures and starts `n` named nodes (see [`NamedCluster`]), waiting until each serves.
    pub async fn start(n: usize, shards: Option<u32>) -> NamedCluster {
        let mut nc = Self::prepare(n, shards);
        for i in 0..n {
            nc.c.spawn(i);
        }
        for i in 0..n {
            nc.c.wait_up(i, Duration::from_secs(20)).await;
        }
        nc
    }

    /// Configures `n` named nodes and writes the hosts file, starting none.
    pub fn prepare(n: usize, shards: Option<u32>) -> NamedCluster {
        let mut c = Cluster::prepare(n, shards, &[]);
        let names: Vec<String> = (0..n).map(|i| format!("{}:8090", NODE_NAMES[i])).collect();
        let ips: Vec<String> = (0..n).map(|i| format!("{}.{}", c.base, i + 2)).collect();
        let tag = c.base.replace('.', "-");
        let hosts = std::env::temp_dir().join(format!("ckv-names-{tag}.hosts"));
        let resolv = std::env::temp_dir().join(format!("ckv-names-{tag}.resolv"));
        std::fs::write(
            &resolv,
            "# no name server: names come from the hosts file only\n",
        )
        .expect("write resolv.conf");
        for (i, node) in c.nodes.iter_mut().enumerate() {
            node.addr = format!("{}:8090", ips[i]);
            node.cmd.set("SOCKET_ADDRESS", &names[i]);
            node.cmd.set("VIEW", &names.join(","));
            node.cmd.set("LISTEN_ADDRESS", &node.addr);
            node.cmd.set("CKV_HOSTS_FILE", &hosts.display().to_string());
            node.cmd
                .set("CKV_RESOLV_CONF", &resolv.display().to_string());
        }
        let nc = NamedCluster {
            c,
            names,
            hosts,
            ips,
            hidden: vec![false; n],
            resolv,
        };
        nc.write_hosts();
        nc
    }

    /// Leaves node `i` out of the hosts file (`false` puts it back): its name stops resolving.
    pub fn hide(&mut self, i: usize, hidden: bool) {
        self.hidden[i] = hidden;
        self.write_hosts();
    }

    fn write_hosts(&self) {
        let mut text =
            String::from("# written by tests/common NamedCluster\n127.0.0.1 localhost\n");
        for (i, ip) in self.ips.iter().enumerate() {
            if !self.hidden[i] {
                text.push_str(&format!("{ip} {}\n", NODE_NAMES[i]));
            }
        }
        std::fs::write(&self.hosts, text).expect("write hosts file");
    }

    /// Gives node `i` (stopped) a new 127.x address under the same name, as a restarted pod or
    /// container gets: the hosts file and its `LISTEN_ADDRESS` change, its identity does not.
    pub fn move_node(&mut self, i: usize) {
        let new_ip = format!("{}.{}", self.c.base, i + 102);
        self.ips[i] = new_ip.clone();
        self.write_hosts();
        let node = &mut self.c.nodes[i];
        node.addr = format!("{new_ip}:8090");
        node.cmd.set("LISTEN_ADDRESS", &node.addr);
    }

    /// The current 127.x address of node `i`.
    pub fn ip(&self, i: usize) -> &str {
        &self.ips[i]
    }
}

impl Drop for NamedCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.hosts);
        let _ = std::fs::remove_file(&self.resolv);
    }
}
