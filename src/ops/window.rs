//! A rolling one-second window of REST request latencies, for the dashboard's live chart:
//! requests and p99 of the last complete second (Prometheus users compute these from the
//! histograms instead).
//!
//! Must not: grow with traffic (one fixed-size histogram per second, two kept).

use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Highest latency tracked: 60 s in microseconds (slower samples are clamped to it).
const MAX_MICROS: u64 = 60_000_000;
/// Two significant digits: p99 to within 1 %, a few KiB per histogram.
const SIGFIGS: u8 = 2;

/// Requests and p99 of one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SecondStats {
    /// Requests answered in that second.
    pub requests: u64,
    /// 99th percentile latency in milliseconds (0 when there were none).
    pub p99_ms: f64,
}

struct Inner {
    second: u64,
    current: Histogram<u64>,
    previous: Histogram<u64>,
}

/// The rolling window.
pub struct Window {
    origin: Instant,
    inner: Mutex<Option<Inner>>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            origin: Instant::now(),
            inner: Mutex::new(None),
        }
    }
}

fn empty() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGFIGS).ok()
}

impl Window {
    fn rotate(&self, inner: &mut Inner, now: u64) {
        if now == inner.second {
            return;
        }
        if now == inner.second + 1 {
            std::mem::swap(&mut inner.current, &mut inner.previous);
        } else {
            inner.previous.reset();
        }
        inner.current.reset();
        inner.second = now;
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Option<T> {
        let now = self.origin.elapsed().as_secs();
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(Inner {
                second: now,
                current: empty()?,
                previous: empty()?,
            });
        }
        let inner = guard.as_mut()?;
        self.rotate(inner, now);
        Some(f(inner))
    }

    /// Records one request that took `seconds`.
    pub fn record(&self, seconds: f64) {
        let micros = ((seconds * 1e6) as u64).clamp(1, MAX_MICROS);
        self.with(|i| i.current.saturating_record(micros));
    }

    /// Requests and p99 of the last complete second.
    pub fn last_second(&self) -> SecondStats {
        self.with(|i| SecondStats {
            requests: i.previous.len(),
            p99_ms: if i.previous.is_empty() {
                0.0
            } else {
                i.previous.value_at_quantile(0.99) as f64 / 1000.0
            },
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_completed_second() {
        let w = Window::default();
        assert_eq!(w.last_second().requests, 0);
        let mut inner = Inner {
            second: 5,
            current: empty().expect("histogram"),
            previous: empty().expect("histogram"),
        };
        for ms in 1..=100u64 {
            inner.current.saturating_record(ms * 1000);
        }
        w.rotate(&mut inner, 6);
        assert_eq!(inner.previous.len(), 100);
        let p99 = inner.previous.value_at_quantile(0.99) as f64 / 1000.0;
        assert!((98.0..=100.5).contains(&p99), "{p99}");
        w.rotate(&mut inner, 9);
        assert!(inner.previous.is_empty() && inner.current.is_empty());
    }
}
