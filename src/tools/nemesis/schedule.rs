//! The fault schedule: a pure function of (seed, duration) so the same seed replays the same
//! faults in the same order at the same planned times. Execution lives in `driver.rs`.

use std::fmt;

use crate::tools::rng::Rng;

/// First fault this long after the workload starts (lets every session get going).
const FIRST_FAULT_MS: u64 = 1_000;
/// Quiet time before add-member and reshard: longer than the ~3 s re-admission grace of a
/// paused or partitioned node, so membership changes start from a settled cluster.
const SETTLE_MS: u64 = 3_500;
/// Quiet time after add-member and reshard (state transfer, key moves).
const AFTER_ADMIN_MS: u64 = 1_500;
/// No fault starts this close to the end of the workload.
const TAIL_MS: u64 = 1_500;

/// Number of nodes that belong to a shard before the spare is added.
pub const INITIAL_MEMBERS: usize = 6;

/// Kind of a single fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL, then restart with the full VIEW.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Drop every packet to and from the node's loopback address (iptables).
    Partition,
}

impl FaultKind {
    /// Short name used in summaries.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
        }
    }
}

/// One planned step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Inject `kind` on node `node` (index into the address list) for `hold_ms`, then heal it.
    Fault {
        /// The fault.
        kind: FaultKind,
        /// Node index.
        node: usize,
        /// How long the fault lasts.
        hold_ms: u64,
    },
    /// Add the spare (index 6) to shard `shard`.
    AddMember {
        /// Target shard.
        shard: u64,
    },
    /// Reshard from 2 to 3 shards.
    Reshard,
}

/// A step and its planned start, in ms after the workload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Planned start.
    pub at_ms: u64,
    /// What to do.
    pub step: Step,
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Step::Fault {
                kind,
                node,
                hold_ms,
            } => write!(f, "{}ms {} n{node} {hold_ms}ms", self.at_ms, kind.name()),
            Step::AddMember { shard } => write!(f, "{}ms add-member n6->{shard}", self.at_ms),
            Step::Reshard => write!(f, "{}ms reshard 3", self.at_ms),
        }
    }
}

/// Plans the faults of a run of `seconds`: one fault at a time (so every shard keeps a live
/// member), add-member of the spare at ~30 % and a reshard to 3 shards at ~60 % of the run.
pub fn plan(seed: u64, seconds: u64) -> Vec<Planned> {
    let mut rng = Rng::new(seed, 0x5EED);
    let end = seconds.saturating_mul(1000).saturating_sub(TAIL_MS);
    let add_at = seconds * 250;
    let reshard_at = seconds * 550;
    let (mut added, mut resharded) = (false, false);
    let mut members = INITIAL_MEMBERS;
    let mut out = Vec::new();
    let mut t = FIRST_FAULT_MS;
    while t < end {
        if !added && t >= add_at {
            t += SETTLE_MS;
            out.push(Planned {
                at_ms: t,
                step: Step::AddMember {
                    shard: rng.below(2),
                },
            });
            added = true;
            members += 1;
            t += AFTER_ADMIN_MS;
            continue;
        }
        if added && !resharded && t >= reshard_at {
            t += SETTLE_MS;
            out.push(Planned {
                at_ms: t,
                step: Step::Reshard,
            });
            resharded = true;
            t += AFTER_ADMIN_MS;
            continue;
        }
        let kind = match rng.below(3) {
            0 => FaultKind::Kill,
            1 => FaultKind::Pause,
            _ => FaultKind::Partition,
        };
        let hold_ms = rng.range(500, 2_500);
        let node = rng.below(members as u64) as usize;
        out.push(Planned {
            at_ms: t,
            step: Step::Fault {
                kind,
                node,
                hold_ms,
            },
        });
        t += hold_ms + rng.range(300, 1_200);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "prints plans; run with --ignored --nocapture"]
    fn print_plans() {
        for (seed, secs) in [(1, 20), (2, 20), (4, 20), (6, 20), (7, 20), (11, 60)] {
            let p: Vec<String> = plan(seed, secs).iter().map(|s| s.to_string()).collect();
            println!("seed {seed} ({secs} s): {}", p.join("; "));
        }
    }

    #[test]
    fn same_seed_same_plan() {
        assert_eq!(plan(7, 30), plan(7, 30));
        assert_ne!(plan(7, 30), plan(8, 30));
    }

    #[test]
    fn plan_has_faults_add_member_then_reshard() {
        let p = plan(3, 30);
        let add = p
            .iter()
            .position(|s| matches!(s.step, Step::AddMember { .. }));
        let re = p.iter().position(|s| s.step == Step::Reshard);
        assert!(add.is_some() && re.is_some() && add < re, "{p:?}");
        assert!(
            p.iter()
                .filter(|s| matches!(s.step, Step::Fault { .. }))
                .count()
                >= 3
        );
        assert!(p.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        for s in &p[..add.unwrap_or(0)] {
            if let Step::Fault { node, .. } = s.step {
                assert!(node < INITIAL_MEMBERS, "spare faulted before it joined");
            }
        }
    }
}
