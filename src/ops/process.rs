//! Standard `process_*` metrics (RSS, open fds, CPU seconds, start time) read from `/proc`
//! at scrape time. On systems without `/proc` they are simply absent.
//!
//! Must not: fail a scrape because `/proc` is missing or odd.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Fields of `/proc/self/stat` after the command name: utime and stime are fields 14 and 15
/// (1-based), i.e. indexes 11 and 12 after the `)` that ends field 2; starttime is field 22.
const UTIME: usize = 11;
const STIME: usize = 12;
const STARTTIME: usize = 19;

/// What the process uses, as far as `/proc` tells.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    /// Resident set size in bytes.
    pub rss_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// User + system CPU time in seconds.
    pub cpu_seconds: Option<f64>,
    /// Start time in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// Reads the current process's figures.
pub fn read() -> ProcessStats {
    let mut s = ProcessStats::default();
    let page = sysconf(libc::_SC_PAGESIZE);
    let ticks = sysconf(libc::_SC_CLK_TCK).map(|t| t as f64);
    if let (Ok(statm), Some(page)) = (std::fs::read_to_string("/proc/self/statm"), page) {
        s.rss_bytes = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|p| p * page);
    }
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    if let (Ok(stat), Some(ticks)) = (std::fs::read_to_string("/proc/self/stat"), ticks) {
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(sy)) = (num(UTIME), num(STIME)) {
            s.cpu_seconds = Some((u + sy) / ticks);
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(start), Some(boot)) = (num(STARTTIME), boot) {
            s.start_time_seconds = Some(boot + start / ticks);
        }
    }
    s
}

/// Writes the `process_*` metrics that could be read.
pub fn encode(enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let s = read();
    if let Some(v) = s.rss_bytes {
        let m = enc.encode_descriptor(
            "process_resident_memory",
            "Resident memory size",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)?;
    }
    if let Some(v) = s.open_fds {
        let m = enc.encode_descriptor(
            "process_open_fds",
            "Open file descriptors",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)?;
    }
    if let Some(v) = s.cpu_seconds {
        let m = enc.encode_descriptor(
            "process_cpu",
            "User and system CPU time",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        ConstCounter::new(v).encode(m)?;
    }
    if let Some(v) = s.start_time_seconds {
        let m = enc.encode_descriptor(
            "process_start_time",
            "Start time since the Unix epoch",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(v).encode(m)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process_on_linux() {
        let s = read();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(s.rss_bytes.is_some_and(|r| r > 1_000_000), "{s:?}");
            assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
            assert!(s.cpu_seconds.is_some(), "{s:?}");
            assert!(s.start_time_seconds.is_some_and(|t| t > 1.6e9), "{s:?}");
        }
    }
}
