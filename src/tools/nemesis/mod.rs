//! The nemesis: a seeded fault-injection run against a real loopback cluster.
//!
//! It starts 6 node processes (2 shards × 3 replicas) plus a spare on a private loopback
//! block, runs concurrent client sessions that record a history, injects a seeded schedule
//! of faults (SIGKILL + restart, SIGSTOP/SIGCONT, iptables partitions, add-member of the
//! spare, a reshard to 3 shards), heals, waits for convergence, reads the final state and
//! runs the causal-consistency checker. Everything is bounded in time; dropping the run (or a
//! panic) kills every node and removes every iptables rule. It must never touch an address
//! outside 127.0.0.0/8.

pub mod campaign;
pub mod cli;
pub mod driver;
pub mod finals;
pub mod http;
pub mod kills;
pub mod losses;
pub mod net;
pub mod procs;
pub mod schedule;
pub mod summary;
pub mod workload;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::tools::check::record::{OpRecord, Record};
use crate::tools::check::{CheckError, check_history};
pub use summary::Summary;

/// Nodes in shards at start (2 shards × 3 replicas); one more node is the spare.
const MEMBERS: usize = 6;
/// Shards at start.
const SHARDS: u32 = 2;
/// Bound on convergence after healing (grace ~3 s + sync + a reshard's settling).
const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
/// Bound on every node's view listing all 7 nodes after start-up.
const VIEW_LIMIT: Duration = Duration::from_secs(10);

/// Errors that end a nemesis run early.
#[derive(Debug, Error)]
pub enum NemesisError {
    /// Spawning a node or writing the history failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// A node did not come up in time.
    #[error("node {0} did not come up")]
    NodeDown(String),
    /// The recorded history could not be checked.
    #[error("checker: {0}")]
    Check(#[from] CheckError),
    /// A record could not be serialized.
    #[error("history: {0}")]
    Json(#[from] serde_json::Error),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed of the fault schedule, the address block and the workload choices.
    pub seed: u64,
    /// Length of the workload phase.
    pub seconds: u64,
    /// Number of concurrent client sessions.
    pub sessions: usize,
    /// Third octet of the run's loopback addresses (251..=254 avoids the test harness).
    pub block: u8,
    /// Where to write the history (JSON lines), if anywhere.
    pub history: Option<PathBuf>,
    /// Directory for per-node logs (stderr), if any.
    pub logs: Option<PathBuf>,
    /// The `causalkv` executable to start nodes from.
    pub exe: PathBuf,
}

/// Runs one nemesis and returns its summary (the checker's report included).
pub async fn run(opts: &Options) -> Result<Summary, NemesisError> {
    let addrs = procs::addresses(opts.seed, opts.block, MEMBERS + 1);
    let http = http::client()?;
    let mut nodes = procs::Nodes::new(&opts.exe, opts.logs.clone(), &addrs, MEMBERS, SHARDS);
    start_cluster(&mut nodes, &http, &addrs).await?;
    let mut parts = net::Partitions::probe();
    let plan = schedule::plan(opts.seed, opts.seconds);
    tracing::info!(
        "nemesis seed {}: plan {}",
        opts.seed,
        plan.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );

    let t0 = Instant::now();
    let shared = Arc::new(workload::Shared {
        http: http.clone(),
        addrs: addrs.clone(),
        targets: AtomicUsize::new(MEMBERS),
        t0,
        stop: t0 + Duration::from_secs(opts.seconds),
    });
    let sessions: Vec<_> = (0..opts.sessions)
        .map(|w| tokio::spawn(workload::session(shared.clone(), opts.seed, w)))
        .collect();
    let mut stats = driver::run_plan(&plan, &mut nodes, &mut parts, &shared, t0).await;
    let mut ops: Vec<OpRecord> = Vec::new();
    for s in sessions {
        match s.await {
            Ok(records) => ops.extend(records),
            Err(e) => stats.notes.push(format!("a session task failed: {e}")),
        }
    }
    if !parts.available() {
        stats.notes.push(format!(
            "partitions skipped: iptables unusable: {}",
            parts.why_not()
        ));
    }

    driver::heal_all(&mut nodes, &mut parts, &http).await;
    let (finals, converged) = finals::converge(&http, &addrs, CONVERGE_LIMIT).await;
    drop(nodes);

    ops.sort_by_key(|o| o.invoke_ns);
    let mut text = Vec::new();
    for op in &ops {
        serde_json::to_writer(&mut text, &Record::Op(op.clone()))?;
        text.push(b'\n');
    }
    for f in finals {
        serde_json::to_writer(&mut text, &Record::Final(f))?;
        text.push(b'\n');
    }
    if let Some(path) = &opts.history {
        std::fs::File::create(path)?.write_all(&text)?;
    }
    let report = check_history(&text[..])?;
    Ok(Summary::new(opts, &ops, stats, converged, report))
}

/// Starts the 6 members, then the spare, and waits until every view lists all 7.
async fn start_cluster(
    nodes: &mut procs::Nodes,
    http: &reqwest::Client,
    addrs: &[String],
) -> Result<(), NemesisError> {
    for i in 0..MEMBERS {
        nodes.spawn(i)?;
    }
    for a in &addrs[..MEMBERS] {
        if !driver::wait_up(http, a, driver::UP_LIMIT).await {
            return Err(NemesisError::NodeDown(a.clone()));
        }
    }
    nodes.spawn(MEMBERS)?;
    if !driver::wait_up(http, &addrs[MEMBERS], driver::UP_LIMIT).await {
        return Err(NemesisError::NodeDown(addrs[MEMBERS].clone()));
    }
    nodes.set_restart_view(addrs);
    let deadline = Instant::now() + VIEW_LIMIT;
    for a in addrs {
        loop {
            let body = http::get_json(http, a, "/view", Duration::from_secs(1)).await;
            let n = body
                .as_ref()
                .and_then(|b| b.get("view"))
                .and_then(|v| v.as_array())
                .map_or(0, Vec::len);
            if n == addrs.len() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(NemesisError::NodeDown(format!("{a} (view has {n} nodes)")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
