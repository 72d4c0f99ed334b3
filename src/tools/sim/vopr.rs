//! Seeded randomized simulation (in the spirit of FoundationDB's simulator and TigerBeetle's
//! VOPR): a seed picks a cluster shape, link faults, client sessions and a fault schedule
//! (partitions, one-way cuts, isolated nodes, kills and restarts); the cluster runs it under
//! paused time, heals, converges, and the recorded history (with every node's final values)
//! goes through the causal checker. A seed that fails prints itself; running it again replays
//! the same schedule exactly (`causalkv sim --seeds N`).
//!
//! In memory, a write acknowledged by a node killed before replication reached any peer is lost
//! by design (README "Limits"), and a restarted node may then reuse its numbers: kills are
//! injected only at moments when every acknowledged write of the victim reached a live peer, so
//! anything the checker finds is a failure (lost writes are still classified as the nemesis
//! does, `nemesis::losses`, in case a schedule explains one).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::cluster::SimCluster;
use super::net::LinkFaults;
use crate::cluster::op::KvOp;
use crate::domain::metadata::CausalMetadata;
use crate::tools::check::record::{FinalRecord, OpRecord, Outcome, Record};
use crate::tools::check::{AnomalyKind, check_history};
use crate::tools::nemesis::kills::{KillRecord, OwnWrites};
use crate::tools::nemesis::losses::classify;
use crate::tools::nemesis::workload::{Session, record, request};
use crate::tools::rng::Rng;

/// Keys `k0..k11`: few, so sessions conflict and read each other's writes.
const KEYS: u64 = 12;
/// Attempts per operation while the answer is 503 (each PUT attempt writes a new value).
const ATTEMPTS: usize = 3;
/// How long after the last fault healing and convergence may take before final reads.
const SETTLE: Duration = Duration::from_secs(12);

/// What one seed did and found.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// One line describing the cluster and the schedule.
    pub shape: String,
    /// Client operations recorded (attempts).
    pub ops: usize,
    /// Of them, acknowledged.
    pub ok: usize,
    /// Faults injected.
    pub faults: usize,
    /// Anomalies the checker found, by name (explained losses excluded).
    pub failures: Vec<String>,
    /// Lost writes explained by a kill.
    pub explained_losses: usize,
    /// A digest of the history: equal for two runs of one seed (replay check).
    pub digest: u64,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// The history as checked (JSON lines).
    pub history: Vec<u8>,
}

impl SeedReport {
    /// True when the checker found nothing unexplained.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs seed `seed` on a fresh current-thread runtime with paused time.
pub fn run_seed(seed: u64) -> SeedReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(simulate(seed))
}

/// The schedule of one seed, drawn before it runs.
struct Plan {
    nodes: usize,
    shards: Option<u32>,
    sessions: usize,
    run_for: Duration,
    links: LinkFaults,
}

fn plan(rng: &mut Rng) -> Plan {
    let nodes = rng.range(3, 5) as usize;
    let shards = match rng.below(3) {
        0 => None,
        _ => Some(rng.range(1, (nodes / 2) as u64) as u32),
    };
    let links = LinkFaults {
        min_delay: Duration::from_micros(100),
        max_delay: Duration::from_millis(rng.range(1, 30)),
        loss: [0.0, 0.0, 0.01, 0.05][rng.below(4) as usize],
    };
    Plan {
        nodes,
        shards,
        sessions: rng.range(2, 4) as usize,
        run_for: Duration::from_secs(rng.range(6, 12)),
        links,
    }
}

/// Runs one seed (inside a paused current-thread runtime).
pub async fn simulate(seed: u64) -> SeedReport {
    let mut rng = Rng::new(seed, 1);
    let p = plan(&mut rng);
    let shape = format!(
        "{} nodes, {}, {} sessions, {:?} of load, links {:?}..{:?} loss {}",
        p.nodes,
        p.shards
            .map_or("replication-only".to_string(), |s| format!("{s} shards")),
        p.sessions,
        p.run_for,
        p.links.min_delay,
        p.links.max_delay,
        p.links.loss
    );
    let cluster = Arc::new(SimCluster::new(p.nodes, p.shards, seed, p.links));
    let mut report = SeedReport {
        seed,
        shape,
        ..SeedReport::default()
    };
    if !cluster.start_all().await {
        report.failures.push("cluster did not start".into());
        return report;
    }
    let t_start = tokio::time::Instant::now();
    let stop = t_start + p.run_for;
    let sessions: Vec<_> = (0..p.sessions)
        .map(|w| {
            tokio::spawn(session(
                cluster.clone(),
                Rng::new(seed, 100 + w as u64),
                w,
                stop,
            ))
        })
        .collect();
    let (kills, faults) = nemesis(&cluster, &mut rng, stop).await;
    report.faults = faults;
    let mut ops = Vec::new();
    for s in sessions {
        ops.extend(s.await.unwrap_or_default());
    }
    // heal, restart, converge
    cluster.heal();
    cluster.net.set_faults(LinkFaults::default());
    for i in 0..p.nodes {
        if cluster.node(i).is_none() {
            cluster.start(i);
        }
    }
    tokio::time::sleep(SETTLE).await;
    let finals = final_reads(&cluster).await;
    report.simulated = t_start.elapsed();
    report.ops = ops.len();
    report.ok = ops.iter().filter(|o| o.outcome == Outcome::Ok).count();
    let mut text = Vec::new();
    for r in ops
        .iter()
        .cloned()
        .map(Record::Op)
        .chain(finals.into_iter().map(Record::Final))
    {
        serde_json::to_writer(&mut text, &r).unwrap_or_else(|e| panic!("history: {e}"));
        text.push(b'\n');
    }
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    report.digest = h.finish();
    report.history = text.clone();
    match check_history(text.as_slice()) {
        Err(e) => report.failures.push(format!("history unreadable: {e}")),
        Ok(r) => {
            for kind in AnomalyKind::ALL {
                if kind != AnomalyKind::LostWrite && r.count(kind) > 0 {
                    report
                        .failures
                        .push(format!("{} × {}", r.count(kind), kind.name()));
                }
            }
            let losses = classify(&ops, &kills, &r.lost_values);
            report.explained_losses = losses.explained;
            if losses.unexplained > 0 {
                report.failures.push(format!(
                    "{} × lost_write unexplained: {:?}",
                    losses.unexplained, losses.examples
                ));
            }
        }
    }
    report
}

/// Injects random faults until `stop`; returns the kills (with what peers had of the killed
/// node's writes) and how many faults it injected. At most one node is down at a time, and the
/// next kill waits until every node is back and ready (a second kill before the first node
/// recovered could lose writes only two nodes held, which no in-memory design keeps).
async fn nemesis(
    cluster: &SimCluster,
    rng: &mut Rng,
    stop: tokio::time::Instant,
) -> (Vec<KillRecord>, usize) {
    let n = cluster.addrs.len();
    let mut kills = Vec::new();
    let mut faults = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(rng.range(300, 2500))).await;
        if tokio::time::Instant::now() >= stop {
            break;
        }
        faults += 1;
        let hold = Duration::from_millis(rng.range(200, 3000));
        match rng.below(5) {
            0 => {
                let mut side: Vec<usize> = (0..n).filter(|_| rng.below(2) == 0).collect();
                if side.is_empty() || side.len() == n {
                    side = vec![rng.below(n as u64) as usize];
                }
                let other: Vec<usize> = (0..n).filter(|i| !side.contains(i)).collect();
                cluster.partition(&side, &other);
                tokio::time::sleep(hold).await;
                cluster.heal();
            }
            1 => {
                cluster.isolate(rng.below(n as u64) as usize);
                tokio::time::sleep(hold).await;
                cluster.heal();
            }
            2 => {
                let (a, b) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
                if a != b {
                    cluster
                        .net
                        .cut_one_way(&cluster.addrs[a], &cluster.addrs[b]);
                    tokio::time::sleep(hold).await;
                    cluster.heal();
                }
            }
            _ => {
                let all_ready = (0..n).all(|i| cluster.node(i).is_some_and(|x| x.status().started));
                if !all_ready {
                    continue;
                }
                let victim = rng.below(n as u64) as usize;
                let record = kill_record(cluster, victim);
                // In memory, writes no peer holds die with their node, and a restarted node
                // numbers new writes from what its peers hold, so tokens that named the lost
                // writes are satisfied by others (README "Limits"; a data directory keeps
                // them). Kill only at moments when every acknowledged write of the victim
                // reached a live peer: then everything the checker finds is a bug.
                if record
                    .before
                    .as_ref()
                    .is_some_and(|b| b.accepted > b.reached_a_peer)
                {
                    continue;
                }
                kills.push(record);
                cluster.kill(victim);
                tokio::time::sleep(hold).await;
                let node = cluster.start(victim);
                node.wait_ready(Duration::from_secs(30)).await;
            }
        }
    }
    (kills, faults)
}

/// What the other live nodes held of `victim`'s own writes just before it is killed.
fn kill_record(cluster: &SimCluster, victim: usize) -> KillRecord {
    let addr = &cluster.addrs[victim];
    let before = cluster.node(victim).map(|v| {
        let s = v.status();
        let reached = (0..cluster.addrs.len())
            .filter(|&i| i != victim)
            .filter_map(|i| cluster.node(i))
            .map(|o| o.status())
            .filter(|o| o.data_generation == s.data_generation)
            .map(|o| o.clock.get(addr))
            .max()
            .unwrap_or(0);
        OwnWrites {
            generation: s.data_generation,
            accepted: s.clock.get(addr),
            reached_a_peer: reached,
        }
    });
    KillRecord {
        at_ns: cluster.ns(),
        addr: addr.clone(),
        before,
    }
}

/// One client session: random put/get/delete at random nodes, chaining metadata, recording
/// every attempt (the nemesis' sessions, `nemesis::workload`, in simulated time).
async fn session(
    cluster: Arc<SimCluster>,
    mut rng: Rng,
    worker: usize,
    stop: tokio::time::Instant,
) -> Vec<OpRecord> {
    let mut records = Vec::new();
    let mut session = Session::new(worker);
    while tokio::time::Instant::now() < stop {
        let (key, kind) = Session::next_op(&mut rng, KEYS);
        for _ in 0..ATTEMPTS {
            let node = rng.below(cluster.addrs.len() as u64) as usize;
            let value = session.value(kind);
            let (method, body) = request(kind, &value, session.meta());
            let invoke_ns = cluster.ns();
            let reply = cluster
                .http(node, method, &format!("/kvs/{key}"), Some(&body))
                .await;
            let at = (invoke_ns, cluster.ns());
            let rec = record(
                &session,
                &cluster.addrs[node],
                kind,
                &key,
                value,
                at,
                &reply,
            );
            session.absorb(&rec);
            let status = rec.status;
            records.push(rec);
            if status != Some(503) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(10, 80))).await;
    }
    records
}

/// Every live node's own value of every key its shard owns (no metadata, no forwarding).
async fn final_reads(cluster: &SimCluster) -> Vec<FinalRecord> {
    let mut out = Vec::new();
    for i in 0..cluster.addrs.len() {
        let Some(node) = cluster.node(i) else {
            continue;
        };
        let Some(shard) = node.node_shard() else {
            continue;
        };
        for k in 0..KEYS {
            let key = format!("k{k}");
            let r = node
                .execute_local(&key, KvOp::Get, CausalMetadata::empty(), Duration::ZERO)
                .await;
            if r.shard != shard {
                continue;
            }
            let value = r
                .value
                .as_deref()
                .map(|v| serde_json::from_str(v).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            out.push(FinalRecord {
                node: cluster.addrs[i].clone(),
                shard: u64::from(shard),
                key,
                value,
            });
        }
    }
    out
}

/// Runs seeds `seeds` on `threads` threads; calls `each` with every report as it finishes.
pub fn run_many(
    seeds: std::ops::Range<u64>,
    threads: usize,
    each: impl Fn(&SeedReport) + Sync,
) -> Vec<SeedReport> {
    let next = std::sync::atomic::AtomicU64::new(seeds.start);
    let out = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= seeds.end {
                        return;
                    }
                    let mut r = run_seed(seed);
                    each(&r);
                    r.history = Vec::new();
                    out.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                }
            });
        }
    });
    let mut v = out.into_inner().unwrap_or_else(|p| p.into_inner());
    v.sort_by_key(|r| r.seed);
    v
}
