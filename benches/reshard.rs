//! Reshard benchmark: 6 nodes in 2 shards plus a spare (real release processes on loopback),
//! loaded with K keys of 100-byte values; the spare is added to shard 0, then the store is
//! resharded 2→3, 3→2, 2→3. Prints the median reshard time per K, and the ratio to the
//! smallest K, so scaling is visible. Run: `cargo bench --bench reshard` (optionally
//! `-- 100000` to choose sizes).

use std::path::Path;
use std::time::{Duration, Instant};

use causalkv::tools::node_process::{NodeProcess, ServeCommand};
use serde_json::{Value, json};

/// Concurrent loaders (enough to keep 2 cores busy without overwhelming them).
const LOADERS: usize = 32;

/// A node; dropping it kills it.
fn spawn(addr: &str, view: &[String], shards: Option<u32>) -> NodeProcess {
    ServeCommand::new(Path::new(env!("CARGO_BIN_EXE_causalkv")), addr, view)
        .shards(shards)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn")
}

async fn wait_ready(http: &reqwest::Client, addr: &str) {
    for _ in 0..400 {
        if let Ok(r) = http
            .get(format!("http://{addr}/kvs/__probe__"))
            .send()
            .await
            && matches!(r.status().as_u16(), 200 | 404)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} did not start");
}

async fn put(http: &reqwest::Client, url: String, body: Value) -> reqwest::Response {
    http.put(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request")
}

async fn run(keys: usize, block: u8) -> Vec<Duration> {
    let addrs: Vec<String> = (2..=8)
        .map(|h| format!("127.77.{block}.{h}:8090"))
        .collect();
    let mut nodes: Vec<NodeProcess> = addrs[..6]
        .iter()
        .map(|a| spawn(a, &addrs[..6], Some(2)))
        .collect();
    nodes.push(spawn(&addrs[6], &addrs, None));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    for a in &addrs {
        wait_ready(&http, a).await;
    }
    let value = "v".repeat(98); // 100 bytes of JSON text with the quotes
    let started = Instant::now();
    let tasks: Vec<_> = (0..LOADERS)
        .map(|l| {
            let (http, addrs, value) = (http.clone(), addrs.clone(), value.clone());
            tokio::spawn(async move {
                for k in (l..keys).step_by(LOADERS) {
                    let url = format!("http://{}/kvs/key{k}", addrs[k % 6]);
                    let r = put(&http, url, json!({"value": value, "causal-metadata": null})).await;
                    assert!(r.status().is_success(), "load failed: {}", r.status());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("loader");
    }
    eprintln!(
        "loaded {keys} keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = put(
        &http,
        format!("http://{}/shard/add-member/0", addrs[0]),
        json!({"socket-address": addrs[6]}),
    )
    .await;
    assert!(r.status().is_success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut times = Vec::new();
    for n in [3, 2, 3] {
        let t = Instant::now();
        let r = put(
            &http,
            format!("http://{}/shard/reshard", addrs[1]),
            json!({"shard-count": n}),
        )
        .await;
        let took = t.elapsed();
        assert_eq!(
            r.status().as_u16(),
            200,
            "reshard to {n}: {}",
            r.text().await.unwrap_or_default()
        );
        times.push(took);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // sanity: the counts add up
    let mut total = 0;
    for s in 0..3 {
        let r = http
            .get(format!("http://{}/shard/key-count/{s}", addrs[0]))
            .send()
            .await
            .expect("count");
        total += r.json::<Value>().await.expect("json")["shard-key-count"]
            .as_u64()
            .unwrap_or(0);
    }
    assert_eq!(total as usize, keys, "keys lost in reshard");
    drop(nodes);
    times
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and a
    // benchmark is not a test: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("reshard benchmark: run it with `cargo bench --bench reshard`");
        return;
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![25_000, 50_000, 100_000]
    } else {
        sizes
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut base: Option<f64> = None;
    println!("keys\treshard_median_ms\truns_ms\tratio_to_first");
    for (i, keys) in sizes.into_iter().enumerate() {
        let times = rt.block_on(run(keys, 10 + i as u8));
        let runs: Vec<u128> = times.iter().map(|d| d.as_millis()).collect();
        let m = median(times).as_secs_f64() * 1000.0;
        let ratio = m / *base.get_or_insert(m);
        println!("{keys}\t{m:.0}\t{runs:?}\t{ratio:.2}");
    }
}
