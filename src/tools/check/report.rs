//! Anomaly kinds, the collector used while checking, and the final [`Report`].

use std::collections::BTreeMap;
use std::fmt;

/// Maximum number of example descriptions kept in a report.
pub const MAX_EXAMPLES: usize = 20;
/// Maximum number of examples kept for a single anomaly kind.
const MAX_EXAMPLES_PER_KIND: usize = 5;

/// The kinds of anomalies the checker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    /// A read returned a value that no (ok or unknown-outcome) put of that key wrote.
    ThinAirRead,
    /// The causal order (so ∪ wr)+ has a cycle.
    CyclicCo,
    /// A read found nothing although a put of the key is causally before it and
    /// no delete can explain the absence.
    WriteCoInitRead,
    /// A read returned w1 although some write w2 of the key has w1 co< w2 co< read.
    WriteCoRead,
    /// A session read an older value than its own latest write of the key.
    ReadYourWrites,
    /// A session read a value causally older than one it read before.
    MonotonicReads,
    /// A session observed w2, then w1 of the same key, where w1 precedes w2 in w2's session.
    MonotonicWrites,
    /// A session observed w2, then w1 of the same key, where w1 co< w2 through a read.
    WritesFollowReads,
    /// Nodes disagree on the final value of a key of the same shard.
    Divergence,
    /// An acknowledged put vanished from the final state without being overwritten.
    LostWrite,
}

impl AnomalyKind {
    /// All kinds, in the order they are printed.
    pub const ALL: [AnomalyKind; 10] = [
        AnomalyKind::ThinAirRead,
        AnomalyKind::CyclicCo,
        AnomalyKind::WriteCoInitRead,
        AnomalyKind::WriteCoRead,
        AnomalyKind::ReadYourWrites,
        AnomalyKind::MonotonicReads,
        AnomalyKind::MonotonicWrites,
        AnomalyKind::WritesFollowReads,
        AnomalyKind::Divergence,
        AnomalyKind::LostWrite,
    ];

    /// The snake_case name used in reports and fixture file names.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::ThinAirRead => "thin_air_read",
            AnomalyKind::CyclicCo => "cyclic_co",
            AnomalyKind::WriteCoInitRead => "write_co_init_read",
            AnomalyKind::WriteCoRead => "write_co_read",
            AnomalyKind::ReadYourWrites => "read_your_writes",
            AnomalyKind::MonotonicReads => "monotonic_reads",
            AnomalyKind::MonotonicWrites => "monotonic_writes",
            AnomalyKind::WritesFollowReads => "writes_follow_reads",
            AnomalyKind::Divergence => "divergence",
            AnomalyKind::LostWrite => "lost_write",
        }
    }

    /// Looks a kind up by its name.
    pub fn from_name(name: &str) -> Option<AnomalyKind> {
        AnomalyKind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn index(self) -> usize {
        AnomalyKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or_default()
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Accumulates anomaly counts and a bounded number of examples while checking.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    counts: [usize; AnomalyKind::ALL.len()],
    examples: Vec<String>,
    lost_values: Vec<String>,
}

impl Findings {
    /// Records one anomaly; `describe` is only called when the example is kept.
    pub(crate) fn add(&mut self, kind: AnomalyKind, describe: impl FnOnce() -> String) {
        let slot = &mut self.counts[kind.index()];
        *slot += 1;
        if *slot <= MAX_EXAMPLES_PER_KIND && self.examples.len() < MAX_EXAMPLES {
            self.examples.push(format!("{kind}: {}", describe()));
        }
    }

    /// Records the value (canonical JSON) of an acknowledged put that was lost, besides the
    /// anomaly itself: a tool can then look the put up in its own records.
    pub(crate) fn lost_value(&mut self, value: String) {
        self.lost_values.push(value);
    }

    /// Number of anomalies of `kind` recorded so far.
    pub(crate) fn count(&self, kind: AnomalyKind) -> usize {
        self.counts[kind.index()]
    }

    /// Turns the findings into a report.
    pub(crate) fn into_report(self, ops: usize, ok_ops: usize, sessions: usize) -> Report {
        let anomalies = AnomalyKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), self.counts[k.index()]))
            .collect();
        Report {
            ops,
            ok_ops,
            sessions,
            lost_writes: self.count(AnomalyKind::LostWrite),
            divergent_keys: self.count(AnomalyKind::Divergence),
            anomalies,
            examples: self.examples,
            lost_values: self.lost_values,
        }
    }
}

/// Result of checking a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Number of operation records.
    pub ops: usize,
    /// Number of operation records with outcome `ok`.
    pub ok_ops: usize,
    /// Number of distinct sessions.
    pub sessions: usize,
    /// Anomaly counts by kind name (every kind is present, possibly 0).
    pub anomalies: BTreeMap<String, usize>,
    /// Up to [`MAX_EXAMPLES`] human-readable anomaly descriptions.
    pub examples: Vec<String>,
    /// Number of acknowledged puts lost from the final state.
    pub lost_writes: usize,
    /// Number of (shard, key) pairs whose final values differ across nodes.
    pub divergent_keys: usize,
    /// The value (canonical JSON) of every lost put, in history order.
    pub lost_values: Vec<String>,
}

impl Report {
    /// Count of anomalies of one kind.
    pub fn count(&self, kind: AnomalyKind) -> usize {
        self.anomalies.get(kind.name()).copied().unwrap_or(0)
    }

    /// Total number of anomalies of all kinds.
    pub fn total_anomalies(&self) -> usize {
        self.anomalies.values().sum()
    }

    /// True when no anomaly of any kind was found.
    pub fn is_clean(&self) -> bool {
        self.total_anomalies() == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ops={} ok={} sessions={} anomalies={} (",
            self.ops,
            self.ok_ops,
            self.sessions,
            self.total_anomalies()
        )?;
        for (i, kind) in AnomalyKind::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{kind}={}", self.count(*kind))?;
        }
        write!(
            f,
            ") lost_writes={} divergent_keys={}",
            self.lost_writes, self.divergent_keys
        )?;
        for example in &self.examples {
            write!(f, "\n  {example}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in AnomalyKind::ALL {
            assert_eq!(AnomalyKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(AnomalyKind::from_name("nope"), None);
    }

    #[test]
    fn display_is_one_summary_line_then_examples() {
        let mut findings = Findings::default();
        findings.add(AnomalyKind::LostWrite, || "put c1#0 lost".to_string());
        let report = findings.into_report(3, 2, 1);
        assert!(!report.is_clean());
        assert_eq!(report.lost_writes, 1);
        let text = report.to_string();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "ops=3 ok=2 sessions=1 anomalies=1 (thin_air_read=0 cyclic_co=0 \
                 write_co_init_read=0 write_co_read=0 read_your_writes=0 monotonic_reads=0 \
                 monotonic_writes=0 writes_follow_reads=0 divergence=0 lost_write=1) \
                 lost_writes=1 divergent_keys=0"
            )
        );
        assert_eq!(lines.next(), Some("  lost_write: put c1#0 lost"));
    }

    #[test]
    fn examples_are_bounded() {
        let mut findings = Findings::default();
        for kind in AnomalyKind::ALL {
            for _ in 0..10 {
                findings.add(kind, || "x".to_string());
            }
        }
        assert_eq!(findings.count(AnomalyKind::CyclicCo), 10);
        let report = findings.into_report(0, 0, 0);
        assert_eq!(report.examples.len(), MAX_EXAMPLES);
        assert_eq!(report.total_anomalies(), 100);
    }
}
