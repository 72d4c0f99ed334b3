//! Executes a fault schedule against the running nodes, one step at a time, and heals
//! everything afterwards. Counts what it actually injected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::http::{Reply, call, get_json};
use super::kills::{KillRecord, own_writes};
use super::net::Partitions;
use super::procs::Nodes;
use super::schedule::{FaultKind, Planned, Step};
use super::workload::Shared;

/// Bound on a node coming back up after a (re)start.
pub const UP_LIMIT: Duration = Duration::from_secs(20);
/// Attempts of an add-member or reshard request that did not answer 200.
const ADMIN_ATTEMPTS: usize = 3;
/// Bound on one add-member or reshard request (reshard moves keys between nodes).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// What the driver did.
#[derive(Debug, Default, Clone)]
pub struct FaultStats {
    /// Injected events by kind (`kill`, `pause`, `partition`, `add-member`, `reshard`).
    pub injected: BTreeMap<&'static str, usize>,
    /// Planned events that could not be injected, by kind.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Every SIGKILL, with what the victim reported about its own writes just before.
    pub kills: Vec<KillRecord>,
    /// Human-readable notes (failed admin requests, skipped partitions).
    pub notes: Vec<String>,
}

/// Polls `GET /view` on `addr` until it answers, for at most `limit`.
pub async fn wait_up(http: &reqwest::Client, addr: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if get_json(http, addr, "/view", Duration::from_millis(500))
            .await
            .is_some()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Runs `plan` (times relative to `start`); returns the counts.
pub async fn run_plan(
    plan: &[Planned],
    nodes: &mut Nodes,
    parts: &mut Partitions,
    shared: &Arc<Shared>,
    start: Instant,
) -> FaultStats {
    let mut stats = FaultStats::default();
    for p in plan {
        let at = start + Duration::from_millis(p.at_ms);
        tokio::time::sleep_until(at.into()).await;
        match p.step {
            Step::Fault {
                kind,
                node,
                hold_ms,
            } => fault(kind, node, hold_ms, nodes, parts, shared, &mut stats).await,
            Step::AddMember { shard } => {
                let spare = nodes.addr(nodes.len() - 1).to_string();
                let path = format!("/shard/add-member/{shard}");
                let body = json!({"socket-address": spare});
                if admin(shared, nodes, &path, &body, "add-member", &mut stats).await {
                    shared.targets.store(nodes.len(), Ordering::Relaxed);
                }
            }
            Step::Reshard => {
                let body = json!({"shard-count": 3});
                admin(
                    shared,
                    nodes,
                    "/shard/reshard",
                    &body,
                    "reshard",
                    &mut stats,
                )
                .await;
            }
        }
    }
    stats
}

async fn fault(
    kind: FaultKind,
    node: usize,
    hold_ms: u64,
    nodes: &mut Nodes,
    parts: &mut Partitions,
    shared: &Shared,
    stats: &mut FaultStats,
) {
    let hold = Duration::from_millis(hold_ms);
    let addr = nodes.addr(node).to_string();
    tracing::info!("nemesis: {} {addr} for {hold_ms} ms", kind.name());
    let injected = match kind {
        FaultKind::Kill => {
            let before = own_writes(&addr).await;
            let at_ns = u64::try_from(shared.t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            nodes.kill(node);
            stats.kills.push(KillRecord {
                at_ns,
                addr: addr.clone(),
                before,
            });
            tokio::time::sleep(hold).await;
            if let Err(e) = nodes.spawn(node) {
                stats.notes.push(format!("restart of {addr} failed: {e}"));
            } else if !wait_up(&shared.http, &addr, UP_LIMIT).await {
                stats.notes.push(format!("{addr} did not come back up"));
            }
            true
        }
        FaultKind::Pause => {
            let ok = nodes.pause(node).is_ok();
            tokio::time::sleep(hold).await;
            let _ = nodes.resume(node);
            ok
        }
        FaultKind::Partition if parts.available() => {
            let ok = match parts.isolate(&addr) {
                Ok(()) => true,
                Err(e) => {
                    stats.notes.push(format!("partition of {addr} failed: {e}"));
                    false
                }
            };
            tokio::time::sleep(hold).await;
            parts.heal();
            ok
        }
        FaultKind::Partition => {
            tokio::time::sleep(hold).await;
            false
        }
    };
    let counter = if injected {
        &mut stats.injected
    } else {
        &mut stats.skipped
    };
    *counter.entry(kind.name()).or_default() += 1;
}

/// Sends an add-member or reshard request to a node of the original shards (retrying a few
/// times); returns whether it was answered 200.
async fn admin(
    shared: &Shared,
    nodes: &Nodes,
    path: &str,
    body: &serde_json::Value,
    what: &'static str,
    stats: &mut FaultStats,
) -> bool {
    for attempt in 0..ADMIN_ATTEMPTS {
        let addr = nodes.addr(attempt % (nodes.len() - 1));
        let reply = call(
            &shared.http,
            addr,
            Method::PUT,
            path,
            Some(body),
            ADMIN_TIMEOUT,
        )
        .await;
        tracing::info!("nemesis: {what} via {addr}: {reply:?}");
        if let Reply::Answer { status: 200, .. } = reply {
            *stats.injected.entry(what).or_default() += 1;
            return true;
        }
        stats
            .notes
            .push(format!("{what} via {addr} attempt {attempt}: {reply:?}"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    *stats.skipped.entry(what).or_default() += 1;
    false
}

/// Heals every fault: resumes paused nodes, removes partitions, restarts killed nodes.
pub async fn heal_all(nodes: &mut Nodes, parts: &mut Partitions, http: &reqwest::Client) {
    nodes.resume_all();
    parts.heal();
    for i in 0..nodes.len() {
        if !nodes.is_running(i) && nodes.spawn(i).is_ok() {
            wait_up(http, nodes.addr(i), UP_LIMIT).await;
        }
    }
}
