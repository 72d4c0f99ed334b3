//! Latency histograms and counters of a benchmark run, merged from every virtual client, and
//! the summary they turn into (printed as a table or as one JSON line).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, with 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Counters and latencies of one kind of operation.
#[derive(Clone)]
pub struct Tally {
    /// Operations answered with success (404 on a read counts: the store answered).
    pub ok: u64,
    /// Operations that failed (no answer, or an error status).
    pub errors: u64,
    latency: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            ok: 0,
            errors: 0,
            latency: histogram(),
        }
    }
}

impl Tally {
    /// Records one operation.
    pub fn record(&mut self, ok: bool, latency: Duration) {
        if ok {
            self.ok += 1;
        } else {
            self.errors += 1;
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.max(1));
    }

    /// Adds `other` into this tally.
    pub fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
    }

    /// The latency quantile `q` in milliseconds (0 when nothing was recorded).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn summary(&self, seconds: f64) -> KindSummary {
        KindSummary {
            ops: self.ok + self.errors,
            errors: self.errors,
            throughput: round(self.ok as f64 / seconds.max(1e-9)),
            p50: round(self.quantile_ms(0.5)),
            p99: round(self.quantile_ms(0.99)),
            p999: round(self.quantile_ms(0.999)),
        }
    }
}

/// Everything one virtual client measured.
#[derive(Clone, Default)]
pub struct ClientStats {
    /// Writes.
    pub put: Tally,
    /// Reads.
    pub get: Tally,
    /// Answers per HTTP status (`"none"` for no answer).
    pub status: BTreeMap<String, u64>,
    /// The first few distinct error answers (status and body, or why there was none).
    pub error_samples: Vec<String>,
}

/// Distinct error answers kept per run.
const ERROR_SAMPLES: usize = 5;

impl ClientStats {
    /// Keeps `error` as a sample if it is new and there is room.
    pub fn error_sample(&mut self, error: String) {
        if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&error) {
            self.error_samples.push(error);
        }
    }

    /// Counts an answer's status (or its absence).
    pub fn status(&mut self, status: Option<u16>) {
        let key = status.map_or_else(|| "none".to_string(), |s| s.to_string());
        *self.status.entry(key).or_default() += 1;
    }

    /// Adds `other` into these stats.
    pub fn merge(&mut self, other: &ClientStats) {
        self.put.merge(&other.put);
        self.get.merge(&other.get);
        for (k, v) in &other.status {
            *self.status.entry(k.clone()).or_default() += v;
        }
        for e in &other.error_samples {
            self.error_sample(e.clone());
        }
    }
}

/// Rounds to 3 decimals for readable output.
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Figures of one kind of operation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KindSummary {
    /// Operations measured.
    pub ops: u64,
    /// Of which failed.
    pub errors: u64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Median latency, ms.
    pub p50: f64,
    /// 99th percentile latency, ms.
    pub p99: f64,
    /// 99.9th percentile latency, ms.
    pub p999: f64,
}

/// Latency of all operations together, ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Replication lag figures, ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LagSummary {
    /// Probes that were seen at a replica.
    pub samples: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
    /// Probes not seen within the probe's bound.
    pub timeouts: u64,
}

impl LagSummary {
    /// Summarises lag samples (`timeouts` probes never became visible).
    pub fn from_tally(t: &Tally, timeouts: u64) -> Self {
        Self {
            samples: t.ok,
            p50: round(t.quantile_ms(0.5)),
            p99: round(t.quantile_ms(0.99)),
            max: round(t.latency.max() as f64 / 1000.0),
            timeouts,
        }
    }
}

/// What describes a run, as opposed to what it measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunInfo {
    /// Free-form name of the run.
    pub label: String,
    /// API spoken.
    pub api: String,
    /// `closed`, `open` or `fill`.
    pub mode: String,
    /// `put`, `mixed` or `read`.
    pub mix: String,
    /// Connections (virtual clients).
    pub concurrency: usize,
    /// Target rate of an open-loop run, ops/s.
    pub rate: Option<f64>,
    /// Bytes per value.
    pub value_size: usize,
    /// Size of the key space.
    pub keys: u64,
}

/// The result of a run (one JSON line with `--json`; the run's fields at the top level).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// What was run.
    #[serde(flatten)]
    pub run: RunInfo,
    /// Measured seconds (warm-up excluded).
    pub seconds: f64,
    /// Operations measured.
    pub ops: u64,
    /// Of which failed.
    pub errors: u64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Open loop: operations due in the measured window that were never started because the
    /// server fell behind (their latency is unknown and not in the percentiles).
    pub missed: Option<u64>,
    /// Latency of every operation.
    pub latency_ms: Latency,
    /// Writes.
    pub put: KindSummary,
    /// Reads.
    pub get: KindSummary,
    /// Replication lag, when probed.
    pub lag_ms: Option<LagSummary>,
    /// Answers per HTTP status.
    pub status: BTreeMap<String, u64>,
    /// The first few distinct error answers.
    pub error_samples: Vec<String>,
}

impl Summary {
    /// Builds the summary of `stats` measured over `seconds`.
    pub fn new(info: RunInfo, stats: &ClientStats, seconds: f64, lag: Option<LagSummary>) -> Self {
        let mut all = stats.put.clone();
        all.merge(&stats.get);
        let ok = all.ok;
        Self {
            run: info,
            seconds: round(seconds),
            ops: all.ok + all.errors,
            errors: all.errors,
            throughput: round(ok as f64 / seconds.max(1e-9)),
            missed: None,
            latency_ms: Latency {
                p50: round(all.quantile_ms(0.5)),
                p99: round(all.quantile_ms(0.99)),
                p999: round(all.quantile_ms(0.999)),
                max: round(all.latency.max() as f64 / 1000.0),
                mean: round(all.latency.mean() / 1000.0),
            },
            put: stats.put.summary(seconds),
            get: stats.get.summary(seconds),
            lag_ms: lag,
            status: stats.status.clone(),
            error_samples: stats.error_samples.clone(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let run = &self.run;
        let rate = run.rate.map_or(String::new(), |r| format!(" at {r} ops/s"));
        writeln!(
            f,
            "{} ({} api, {} loop{rate}, mix {}, {} connections, {} B values, {} keys, {:.1} s)",
            run.label,
            run.api,
            run.mode,
            run.mix,
            run.concurrency,
            run.value_size,
            run.keys,
            self.seconds
        )?;
        writeln!(
            f,
            "  {:<4} {:>9} {:>7} {:>11} {:>9} {:>9} {:>9}",
            "op", "ops", "errors", "ops/s", "p50 ms", "p99 ms", "p99.9 ms"
        )?;
        for (name, k) in [("put", &self.put), ("get", &self.get)] {
            if k.ops > 0 {
                writeln!(
                    f,
                    "  {:<4} {:>9} {:>7} {:>11.1} {:>9.3} {:>9.3} {:>9.3}",
                    name, k.ops, k.errors, k.throughput, k.p50, k.p99, k.p999
                )?;
            }
        }
        writeln!(
            f,
            "  {:<4} {:>9} {:>7} {:>11.1} {:>9.3} {:>9.3} {:>9.3}  (max {:.3} ms)",
            "all",
            self.ops,
            self.errors,
            self.throughput,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.p999,
            self.latency_ms.max
        )?;
        if let Some(m) = self.missed.filter(|m| *m > 0) {
            writeln!(
                f,
                "  OVERLOADED: {m} operations due in the window were never started"
            )?;
        }
        if let Some(l) = &self.lag_ms {
            writeln!(
                f,
                "  replication lag: {} samples, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {} not seen",
                l.samples, l.p50, l.p99, l.max, l.timeouts
            )?;
        }
        for e in &self.error_samples {
            writeln!(f, "  error: {e}")?;
        }
        write!(f, "  statuses: {:?}", self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge_and_summarise() {
        let mut a = ClientStats::default();
        for ms in 1..=100 {
            a.put.record(true, Duration::from_millis(ms));
        }
        a.get.record(false, Duration::from_millis(5));
        a.status(Some(200));
        a.status(None);
        let mut all = ClientStats::default();
        all.merge(&a);
        all.merge(&a);
        let info = RunInfo {
            label: "t".into(),
            api: "kvs".into(),
            mode: "closed".into(),
            mix: "put".into(),
            concurrency: 2,
            rate: None,
            value_size: 100,
            keys: 10,
        };
        let s = Summary::new(info, &all, 2.0, None);
        assert_eq!(s.ops, 202);
        assert_eq!(s.errors, 2);
        assert_eq!(s.put.throughput, 100.0);
        assert!((s.put.p50 - 50.0).abs() < 0.1, "{}", s.put.p50);
        assert!((s.put.p99 - 99.0).abs() < 0.1, "{}", s.put.p99);
        assert_eq!(s.status.get("none"), Some(&2));
        assert!(s.to_string().contains("put"));
    }
}
