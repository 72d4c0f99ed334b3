//! A cluster of simulated nodes in one process: start, kill, restart, partition and heal them,
//! and talk to them the way a client does, through each node's real REST router (axum, called
//! in-process), so the status codes and bodies are exactly those of `API.md`.
//!
//! Meant for a current-thread tokio runtime with paused time (`#[tokio::test(start_paused =
//! true)]`, or [`super::vopr`]): every wait here is in simulated time.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::net::{LinkFaults, Net};
use super::peers::SimPeers;
use crate::cluster::Node;
use crate::config::Config;

/// Heartbeat period of simulated nodes (as a test cluster runs them).
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// RPC deadline of simulated nodes.
pub const RPC_TIMEOUT: Duration = Duration::from_millis(1000);
/// Flap-damping grace of simulated nodes.
pub const GRACE: Duration = Duration::from_millis(1500);
/// Bound on one client request; past it the outcome is unknown (as the nemesis clients).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The cluster key every simulated node derives its token key from.
const SIM_CLUSTER_KEY: &[u8] = b"causalkv simulated cluster key";
/// The key of every table of a simulation (see `domain::table_hash`).
const SIM_TABLE_KEY: u64 = 0x5eed;
/// Incarnations count simulated milliseconds from here (any fixed value above zero).
const INCARNATION_BASE: u64 = 1_000_000;

pub use crate::tools::nemesis::http::Reply;

/// A simulated cluster.
pub struct SimCluster {
    /// The network between the nodes.
    pub net: Arc<Net>,
    /// Node addresses, in start-up `VIEW` order.
    pub addrs: Vec<String>,
    shard_count: Option<u32>,
    /// Nodes `0..founders` start with a `VIEW` of just themselves; later ones (spares) with
    /// every address.
    founders: usize,
    /// Time origin, on tokio's millisecond grid (see [`SimCluster::start_all`]).
    t0: std::sync::OnceLock<tokio::time::Instant>,
    /// Flap-damping grace of the nodes ([`GRACE`] unless set by [`SimCluster::with_grace`]).
    grace: Duration,
}

impl SimCluster {
    /// `n` nodes (`10.0.0.1:8090`, ...) with `SHARD_COUNT=shards` (`None`: replication-only),
    /// not started yet; the network's PRNG is seeded with `seed`.
    pub fn new(n: usize, shards: Option<u32>, seed: u64, faults: LinkFaults) -> Self {
        // Metadata tokens carry a MAC under the process's token key: one fixed key makes the
        // tokens, and with them a history, the same in every run (and lets several simulated
        // clusters share a process).
        crate::domain::token_key::derive_from_cluster_key(SIM_CLUSTER_KEY);
        // Table order decides the order of writes in snapshots and deliveries: fixed too.
        crate::domain::table_hash::fix_key(SIM_TABLE_KEY);
        Self {
            net: Net::new(seed, RPC_TIMEOUT, faults),
            addrs: (1..=n).map(|i| format!("10.0.0.{i}:8090")).collect(),
            shard_count: shards,
            founders: n,
            t0: std::sync::OnceLock::new(),
            grace: GRACE,
        }
    }

    /// Like [`SimCluster::new`], but only nodes `0..founders` form the cluster at first; the
    /// others, once started (`start(i)`), announce themselves and join the view as spares.
    pub fn with_spares(
        n: usize,
        founders: usize,
        shards: Option<u32>,
        seed: u64,
        faults: LinkFaults,
    ) -> Self {
        Self {
            founders: founders.min(n),
            ..Self::new(n, shards, seed, faults)
        }
    }

    /// The same cluster with another flap-damping grace period (`CKV_GRACE_MS`).
    pub fn with_grace(self, grace: Duration) -> Self {
        Self { grace, ..self }
    }

    /// The configuration of node `i`, as the environment would give it.
    pub fn config(&self, i: usize) -> Config {
        let view = if i < self.founders {
            self.addrs[..self.founders].join(",")
        } else {
            self.addrs.join(",")
        };
        let vars = [
            ("SOCKET_ADDRESS", self.addrs[i].clone()),
            ("VIEW", view),
            ("CKV_HEARTBEAT_MS", HEARTBEAT.as_millis().to_string()),
            ("CKV_RPC_TIMEOUT_MS", RPC_TIMEOUT.as_millis().to_string()),
            ("CKV_GRACE_MS", self.grace.as_millis().to_string()),
        ];
        let shards = self.shard_count.map(|n| n.to_string());
        Config::from_vars(|k| {
            if k == "SHARD_COUNT" {
                return shards.clone();
            }
            vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|e| panic!("simulated config: {e}"))
    }

    /// Starts a process at node `i` (a first start or a restart); returns at once, it joins
    /// in the background.
    pub fn start(&self, i: usize) -> Node {
        let addr = &self.addrs[i];
        let incarnation = INCARNATION_BASE + self.ns() / 1_000_000;
        let life = self.net.next_life(addr);
        let peers = Arc::new(SimPeers::new(self.net.clone(), addr, life));
        let node = Node::with_incarnation(self.config(i), peers, incarnation);
        self.net.attach(addr, node.clone(), life);
        let starter = node.clone();
        tokio::spawn(async move { starter.start().await });
        node
    }

    /// Starts every founding node and waits (bounded) until all are ready; false on timeout.
    pub async fn start_all(&self) -> bool {
        // Tokio's timers tick in whole milliseconds from the moment the runtime was built, and a
        // paused clock starts a fraction of a millisecond off that grid (a fraction that differs
        // per run): which sub-millisecond delays share a tick would differ too. The first sleep
        // lands on the grid; from there every run sees the same ticks.
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.t0.get_or_init(tokio::time::Instant::now);
        let nodes: Vec<Node> = (0..self.founders).map(|i| self.start(i)).collect();
        for n in nodes {
            if !n.wait_ready(Duration::from_secs(30)).await {
                return false;
            }
        }
        true
    }

    /// The process living at node `i`, if any.
    pub fn node(&self, i: usize) -> Option<Node> {
        self.net.node(&self.addrs[i])
    }

    /// Kills node `i` (SIGKILL: in-memory state gone, in-flight calls fail).
    pub fn kill(&self, i: usize) {
        if let Some(n) = self.net.detach(&self.addrs[i]) {
            n.shutdown();
        }
    }

    /// Cuts the nodes `a` off from the nodes `b` (both directions).
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let names = |s: &[usize]| s.iter().map(|&i| self.addrs[i].clone()).collect::<Vec<_>>();
        self.net.partition(&names(a), &names(b));
    }

    /// Cuts node `i` off from every other node.
    pub fn isolate(&self, i: usize) {
        let others: Vec<usize> = (0..self.addrs.len()).filter(|&j| j != i).collect();
        self.partition(&[i], &others);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.net.heal();
    }

    /// Simulated nanoseconds since the cluster was made (history timestamps).
    pub fn ns(&self) -> u64 {
        self.t0
            .get_or_init(tokio::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    }

    /// Sends one REST request to node `i` as a client would (JSON body, `REQUEST_TIMEOUT`).
    pub async fn http(&self, i: usize, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let addr = &self.addrs[i];
        let Some(node) = self.node(i) else {
            return Reply::NotSent("no node listens there".into());
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.map(Value::to_string).unwrap_or_default()))
            .unwrap_or_else(|e| panic!("request: {e}"));
        let router = crate::api::router(node.clone());
        let call = async {
            let resp = router.oneshot(req).await.ok()?;
            let status = resp.status().as_u16();
            let written = resp
                .headers()
                .get(crate::api::WRITTEN_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = resp.into_body().collect().await.ok()?.to_bytes();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Some((status, body, written))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(Some((status, body, written)))
                if self.net.node(addr).is_some_and(|n| same(&n, &node)) =>
            {
                Reply::Answer {
                    status,
                    body,
                    written,
                }
            }
            _ => Reply::Unknown("no answer in time, or the node died meanwhile".into()),
        }
    }
}

fn same(a: &Node, b: &Node) -> bool {
    Arc::ptr_eq(&a.0, &b.0)
}
