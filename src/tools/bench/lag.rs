//! Replication-lag probe: every few milliseconds, write a fresh key at the first target; once
//! that write is acknowledged, read it back (without causal metadata, so nothing waits) at every
//! other target, back to back, until the value is there. Lag is acknowledgement → first read
//! that returned the value, an upper bound by at most one read's round trip.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::Value;

use super::client::{Api, Conn, read_value};
use super::stats::{LagSummary, Tally};

/// Pause between probes.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// A probe not visible after this long counts as not seen.
const PROBE_BOUND: Duration = Duration::from_secs(2);

/// Probes until `end`; samples taken before `measure_from` are not counted.
pub async fn probe(targets: Vec<String>, measure_from: Instant, end: Instant) -> LagSummary {
    let mut writer = Conn::new(&targets[0], Api::Kvs, false);
    let mut readers: Vec<Conn> = targets[1..]
        .iter()
        .map(|t| Conn::new(t, Api::Kvs, false))
        .collect();
    let mut tally = Tally::default();
    let mut timeouts = 0;
    let nonce = std::process::id();
    let mut n = 0u64;
    while Instant::now() + PROBE_EVERY < end {
        tokio::time::sleep(PROBE_EVERY).await;
        n += 1;
        let key = format!("lag-{nonce}-{n}");
        let value = format!("probe-{nonce}-{n}");
        match writer.put(&key, &value).await {
            Ok(a) if (200..300).contains(&a.status) => {}
            _ => continue,
        }
        let acked = Instant::now();
        let expected = Value::String(value);
        let seen = join_all(
            readers
                .iter_mut()
                .map(|r| visible_after(r, &key, &expected, acked)),
        )
        .await;
        if acked < measure_from {
            continue;
        }
        for s in seen {
            match s {
                Some(lag) => tally.record(true, lag),
                None => timeouts += 1,
            }
        }
    }
    LagSummary::from_tally(&tally, timeouts)
}

/// Reads `key` at `reader` until it holds `expected`; the time since `acked`, or `None` after
/// the probe's bound.
async fn visible_after(
    reader: &mut Conn,
    key: &str,
    expected: &Value,
    acked: Instant,
) -> Option<Duration> {
    while acked.elapsed() < PROBE_BOUND {
        match reader.get(key).await {
            Ok(a) if a.status == 200 && read_value(Api::Kvs, &a) == *expected => {
                return Some(acked.elapsed());
            }
            Ok(_) => {}
            // no answer: do not spin on a refused connection
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    None
}
