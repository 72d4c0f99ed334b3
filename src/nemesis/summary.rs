//! The robustness summary of a nemesis run: one line for humans and CI logs, plus the
//! checker's report and any notes.

use std::fmt;
use std::time::Duration;

use super::Options;
use super::driver::FaultStats;
use crate::check::Report;
use crate::check::record::{OpKind, OpRecord, Outcome};

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
                    .any(|(k, _)| *k >= done && *k - done <= AT_RISK_NS)
            })
            .count();
        Summary {
            seed: opts.seed,
            seconds: opts.seconds,
            faults,
            convergence,
            acked_before_kill,
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

    /// Clean: no anomaly, no lost write, and the replicas converged.
    pub fn is_clean(&self) -> bool {
        self.report.is_clean() && self.convergence.is_some()
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
             lost_writes={} divergent_keys={} acked_before_kill={} convergence={} clean={}",
            self.seed,
            self.seconds,
            self.report.ops,
            self.report.ok_ops,
            counts(&self.faults.injected),
            counts(&self.faults.skipped),
            self.report.total_anomalies(),
            self.report.lost_writes,
            self.report.divergent_keys,
            self.acked_before_kill,
            conv,
            self.is_clean()
        )?;
        for note in &self.faults.notes {
            writeln!(f, "note: {note}")?;
        }
        for (at, addr) in &self.faults.kills {
            writeln!(f, "kill: {addr} at {:.3}s", *at as f64 / 1e9)?;
        }
        write!(f, "checker: {}", self.report)
    }
}
