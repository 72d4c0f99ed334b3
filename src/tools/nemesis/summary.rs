//! The robustness summary of a nemesis run: one line for humans and CI logs, plus the
//! checker's report and any notes.

use std::fmt;
use std::time::Duration;

use super::Options;
use super::driver::FaultStats;
use super::losses::{Losses, classify};
use crate::tools::check::Report;
use crate::tools::check::record::{OpKind, OpRecord, Outcome};

/// An acknowledged put followed this soon by a SIGKILL (of any node) was at risk: async
/// replication may not have shipped it yet.
const AT_RISK_NS: u64 = 200_000_000;

/// Result of one run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Seed.
    pub seed: u64,
    /// Workload length in seconds.
    pub seconds: u64,
    /// What the driver injected and skipped.
    pub faults: FaultStats,
    /// Time from healing until all replicas agreed (`None`: they did not within the bound).
    pub convergence: Option<Duration>,
    /// Acknowledged puts completed within 200 ms before a SIGKILL.
    pub acked_before_kill: usize,
    /// The lost writes, split into explained (lost with their node) and unexplained.
    pub losses: Losses,
    /// The checker's report.
    pub report: Report,
}

impl Summary {
    /// Builds the summary.
    pub fn new(
        opts: &Options,
        ops: &[OpRecord],
        faults: FaultStats,
        convergence: Option<Duration>,
        report: Report,
    ) -> Summary {
        let acked_before_kill = ops
            .iter()
            .filter(|o| o.kind == OpKind::Put && o.outcome == Outcome::Ok)
            .filter(|o| {
                let done = o.complete_ns.unwrap_or(o.invoke_ns);
                faults
                    .kills
                    .iter()
                    .any(|k| k.at_ns >= done && k.at_ns - done <= AT_RISK_NS)
            })
            .count();
        let losses = classify(ops, &faults.kills, &report.lost_values);
        Summary {
            seed: opts.seed,
            seconds: opts.seconds,
            faults,
            convergence,
            acked_before_kill,
            losses,
            report,
        }
    }

    /// Number of faults injected (kills, pauses, partitions; not membership changes).
    pub fn faults_injected(&self) -> usize {
        ["kill", "pause", "partition"]
            .iter()
            .filter_map(|k| self.faults.injected.get(k))
            .sum()
    }

    /// Anomalies other than lost writes (those are judged by [`Summary::losses`]).
    pub fn anomalies(&self) -> usize {
        self.report.total_anomalies() - self.report.lost_writes
    }

    /// Clean: no anomaly, no unexplained lost write, and the replicas converged. A write lost
    /// with the node that accepted it, before any peer had it, is the in-memory mode's
    /// documented limit, not a failure.
    pub fn is_clean(&self) -> bool {
        self.anomalies() == 0 && self.losses.unexplained == 0 && self.convergence.is_some()
    }
}

fn counts(map: &std::collections::BTreeMap<&'static str, usize>) -> String {
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(",")
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conv = match self.convergence {
            Some(d) => format!("{:.1}s", d.as_secs_f64()),
            None => "never".to_string(),
        };
        writeln!(
            f,
            "nemesis seed={} seconds={} ops={} ok={} faults[{}] skipped[{}] anomalies={} \
             lost_writes={} (explained={} within {}ms, unexplained={}) divergent_keys={} \
             acked_before_kill={} convergence={} clean={}",
            self.seed,
            self.seconds,
            self.report.ops,
            self.report.ok_ops,
            counts(&self.faults.injected),
            counts(&self.faults.skipped),
            self.anomalies(),
            self.report.lost_writes,
            self.losses.explained,
            self.losses.longest_ms,
            self.losses.unexplained,
            self.report.divergent_keys,
            self.acked_before_kill,
            conv,
            self.is_clean()
        )?;
        for note in &self.faults.notes {
            writeln!(f, "note: {note}")?;
        }
        for k in &self.faults.kills {
            let before = match &k.before {
                Some(b) => format!(
                    "had accepted {} writes of generation {}, a peer had {}",
                    b.accepted, b.generation, b.reached_a_peer
                ),
                None => "did not report its writes".to_string(),
            };
            writeln!(
                f,
                "kill: {} at {:.3}s ({before})",
                k.addr,
                k.at_ns as f64 / 1e9
            )?;
        }
        for e in &self.losses.examples {
            writeln!(f, "unexplained lost write: {e}")?;
        }
        write!(f, "checker: {}", self.report)
    }
}
