//! Snapshot-under-load benchmark (issue 19): 3 release nodes in one shard hold N keys of 100 B
//! (default 1M); one replica is killed and restarted, so it pulls a full snapshot from a peer,
//! while 32 connections GET random keys from the two others. Prints GET latency (p50, p99, max)
//! before, during and after the copy, the copy's duration, and every "peer suspected" line the
//! nodes logged from the restart on (the target: none, and GET p99 ≤ 20 ms during the copy).
//!
//! Run: `cargo bench --bench snapshot_load` (or `-- 200000` for fewer keys). Bounded: every wait
//! has a deadline; nodes are killed on exit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use causalkv::tools::node_process::{Log, NodeProcess, ServeCommand};
use futures::StreamExt;
use serde_json::Value;

/// Value bytes (JSON text) per key.
const VALUE_LEN: usize = 100;
/// Connections of the GET load.
const CONNECTIONS: usize = 32;
/// Concurrent loaders while filling the store.
const LOADERS: usize = 32;
/// Length of the "before" and "after" windows.
const WINDOW: Duration = Duration::from_secs(5);
/// Bound on every wait of the benchmark.
const WAIT: Duration = Duration::from_secs(600);

/// A node of one shard logging (warnings and up) to `log`; dropping it kills it.
fn spawn(addr: &str, view: &[String], log: &Path) -> NodeProcess {
    ServeCommand::new(Path::new(env!("CARGO_BIN_EXE_causalkv")), addr, view)
        .shards(Some(1))
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .log(Log::File(log.to_path_buf()))
        .spawn()
        .expect("spawn")
}

async fn key_count(http: &reqwest::Client, addr: &str) -> Option<u64> {
    let r = http
        .get(format!("http://{addr}/shard/key-count/0"))
        .send()
        .await
        .ok()?;
    r.json::<Value>().await.ok()?["shard-key-count"].as_u64()
}

async fn wait_count(http: &reqwest::Client, addr: &str, keys: u64) {
    let deadline = Instant::now() + WAIT;
    while key_count(http, addr).await != Some(keys) {
        assert!(Instant::now() < deadline, "{addr} never held {keys} keys");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One GET: (start since `t0`, latency), or `None` for a failed request.
type Sample = (Duration, Option<Duration>);

/// 32 connections GETting random keys from `targets` until `stop`.
async fn get_load(
    targets: Vec<String>,
    keys: u64,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Sample> {
    let tasks = (0..CONNECTIONS).map(|c| {
        let (targets, stop) = (targets.clone(), stop.clone());
        tokio::spawn(async move {
            // one client per connection: each keeps its own keep-alive connection
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1);
            let mut out = Vec::new();
            let target = &targets[c % targets.len()];
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let url = format!("http://{target}/kvs/k{}", x % keys);
                let start = Instant::now();
                let ok = match http.get(url).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                out.push((start - t0, ok.then(|| start.elapsed())));
            }
            out
        })
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.expect("load task"))
        .collect()
}

fn summary(name: &str, samples: &[Sample], from: Duration, to: Duration) {
    let mut lat: Vec<Duration> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .filter_map(|(_, l)| *l)
        .collect();
    let failed = samples
        .iter()
        .filter(|(t, l)| *t >= from && *t < to && l.is_none())
        .count();
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let secs = (to - from).as_secs_f64().max(1e-9);
    println!(
        "| {name} | {:.1} | {:.0} | {:.2} | {:.2} | {:.1} | {failed} |",
        secs,
        lat.len() as f64 / secs,
        q(0.5),
        q(0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

/// The lines of `log` past byte `from` that contain `what`.
fn lines_with(log: &Path, from: usize, what: &str) -> Vec<String> {
    let text = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(text.get(from..).unwrap_or_default())
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_string)
        .collect()
}

fn log_len(log: &Path) -> usize {
    std::fs::metadata(log).map_or(0, |m| m.len() as usize)
}

async fn run(keys: u64) {
    let addrs: Vec<String> = (2..=4).map(|h| format!("127.79.0.{h}:8090")).collect();
    let dir = std::env::temp_dir().join(format!("ckv-snapshot-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("log dir");
    let logs: Vec<_> = (0..3).map(|i| dir.join(format!("node{i}.log"))).collect();
    let mut nodes: Vec<NodeProcess> = addrs
        .iter()
        .zip(&logs)
        .map(|(a, l)| spawn(a, &addrs, l))
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    for a in &addrs {
        let deadline = Instant::now() + WAIT;
        while key_count(&http, a).await.is_none() {
            assert!(Instant::now() < deadline, "{a} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let value = "x".repeat(VALUE_LEN - 2);
    let t = Instant::now();
    let failed = futures::stream::iter(0..keys)
        .map(|k| {
            let url = format!("http://{}/kvs/k{k}", addrs[k as usize % 3]);
            let body = format!(r#"{{"value":"{value}","causal-metadata":null}}"#);
            let http = &http;
            async move {
                match http.put(url).body(body).send().await {
                    Ok(r) => !r.status().is_success(),
                    Err(_) => true,
                }
            }
        })
        .buffer_unordered(LOADERS)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    assert_eq!(failed, 0, "load failed");
    for a in &addrs {
        wait_count(&http, a, keys).await;
    }
    println!(
        "loaded {keys} keys of {VALUE_LEN} B on 3 replicas in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(get_load(addrs[..2].to_vec(), keys, t0, stop.clone()));
    tokio::time::sleep(WINDOW).await;
    let before_end = t0.elapsed();
    drop(nodes.pop());
    // let the survivors notice, so what they log from the restart on is about the copy
    tokio::time::sleep(Duration::from_secs(2)).await;
    let marks: Vec<usize> = logs.iter().map(|l| log_len(l)).collect();
    let during_start = t0.elapsed();
    nodes.push(spawn(&addrs[2], &addrs, &logs[2]));
    wait_count(&http, &addrs[2], keys).await;
    let during_end = t0.elapsed();
    tokio::time::sleep(WINDOW).await;
    let after_end = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let samples = load.await.expect("load");

    println!(
        "full copy of {keys} keys to the restarted replica: {:.2} s (process start to all keys held)",
        (during_end - during_start).as_secs_f64()
    );
    println!(
        "| GET load, {CONNECTIONS} conns | seconds | GET/s | p50 ms | p99 ms | max ms | failed |"
    );
    println!("|---|---|---|---|---|---|---|");
    summary("before", &samples, Duration::ZERO, before_end);
    summary("during the copy", &samples, during_start, during_end);
    summary("after", &samples, during_end, after_end);
    let mut suspected = Vec::new();
    for (i, (l, from)) in logs.iter().zip(marks).enumerate() {
        suspected.extend(lines_with(l, from, "suspected"));
        let warnings = lines_with(l, from, "WARN");
        println!(
            "node {i} ({}): {} warnings from the restart on",
            addrs[i],
            warnings.len()
        );
        for w in warnings.iter().take(5) {
            println!("  {w}");
        }
    }
    println!(
        "peers suspected from the restart on: {}",
        if suspected.is_empty() {
            "none".to_string()
        } else {
            suspected.join("\n")
        }
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo test --all-targets` runs this binary without --bench: a benchmark is not a test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("snapshot-under-load benchmark: run it with `cargo bench --bench snapshot_load`");
        return;
    }
    let keys = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u64>().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(keys));
}
