//! `causalkv nemesis --seeds A..B --parallel P`: many seeded runs, P at a time (the CPU
//! contention between them is itself a fault), one table at the end, and the histories and
//! node logs of every seed that was not clean kept for replay.

use std::path::PathBuf;
use std::sync::Mutex;

use futures::StreamExt;

use super::{Options, Summary};

/// Address blocks (third octet) a campaign hands out, one per run in flight: with at most this
/// many runs at once, no two use the same addresses (127.(30 + seed % 100).BLOCK.x).
pub const BLOCKS: [u8; 4] = [251, 252, 253, 254];

/// What to run.
#[derive(Clone, Debug)]
pub struct Campaign {
    /// Seeds, in order.
    pub seeds: Vec<u64>,
    /// Runs at once (1..=4).
    pub parallel: usize,
    /// Options of every run (seed, block, history and logs are set per run).
    pub base: Options,
    /// Directory for the failing seeds' histories and logs (`seed-N/`).
    pub keep: PathBuf,
}

/// The outcome of one seed.
#[derive(Debug)]
pub struct Row {
    /// The seed.
    pub seed: u64,
    /// Its summary, or why the run could not finish.
    pub result: Result<Summary, String>,
}

impl Row {
    /// True when the run finished clean.
    pub fn is_clean(&self) -> bool {
        self.result.as_ref().is_ok_and(Summary::is_clean)
    }
}

/// Runs every seed, `parallel` at a time; `on_done` is called as each one finishes.
pub async fn run(c: &Campaign, on_done: impl Fn(&Row)) -> Vec<Row> {
    let blocks = Mutex::new(BLOCKS[..c.parallel.clamp(1, BLOCKS.len())].to_vec());
    let runs = c.seeds.iter().map(|&seed| {
        let blocks = &blocks;
        async move {
            let block = blocks.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let row = run_seed(c, seed, block.unwrap_or(BLOCKS[0])).await;
            if let Some(b) = block {
                blocks.lock().unwrap_or_else(|p| p.into_inner()).push(b);
            }
            row
        }
    });
    let mut rows: Vec<Row> = futures::stream::iter(runs)
        .buffer_unordered(c.parallel.clamp(1, BLOCKS.len()))
        .inspect(|row| on_done(row))
        .collect()
        .await;
    rows.sort_by_key(|r| r.seed);
    rows
}

async fn run_seed(c: &Campaign, seed: u64, block: u8) -> Row {
    let dir = c.keep.join(format!("seed-{seed}"));
    let result = match std::fs::create_dir_all(&dir) {
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
        Ok(()) => {
            let opts = Options {
                seed,
                block,
                history: Some(dir.join("history.jsonl")),
                logs: Some(dir.join("logs")),
                ..c.base.clone()
            };
            super::run(&opts).await.map_err(|e| e.to_string())
        }
    };
    let row = Row { seed, result };
    if row.is_clean() {
        let _ = std::fs::remove_dir_all(&dir);
    } else if let Ok(s) = &row.result {
        let _ = std::fs::write(dir.join("summary.txt"), s.to_string());
    }
    row
}

/// The campaign's table: one line per seed, then the totals.
pub fn table(rows: &[Row], keep: &std::path::Path) -> String {
    let mut out = format!(
        "{:>6} {:>7} {:>6} {:>9} {:>14} {:>9} {:>11} {:>6}\n",
        "seed", "ops", "faults", "anomalies", "lost(expl/un)", "divergent", "convergence", "clean"
    );
    for r in rows {
        match &r.result {
            Ok(s) => out.push_str(&format!(
                "{:>6} {:>7} {:>6} {:>9} {:>14} {:>9} {:>11} {:>6}\n",
                r.seed,
                s.report.ops,
                s.faults_injected(),
                s.anomalies(),
                format!("{}/{}", s.losses.explained, s.losses.unexplained),
                s.report.divergent_keys,
                s.convergence
                    .map_or("never".to_string(), |d| format!("{:.1}s", d.as_secs_f64())),
                if s.is_clean() { "yes" } else { "NO" },
            )),
            Err(e) => out.push_str(&format!("{:>6} run failed: {e}\n", r.seed)),
        }
    }
    let clean = rows.iter().filter(|r| r.is_clean()).count();
    let explained: usize = rows
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .map(|s| s.losses.explained)
        .sum();
    out.push_str(&format!(
        "campaign: {} seeds, {clean} clean, {} not clean; {explained} writes lost with their node \
         before any peer had them (in-memory limit)",
        rows.len(),
        rows.len() - clean
    ));
    if clean < rows.len() {
        out.push_str(&format!(
            "; histories and logs of the others in {}",
            keep.display()
        ));
    }
    out.push('\n');
    out.push_str(&format!("{clean} passed, {} failed\n", rows.len() - clean));
    out
}
