//! Big-value benchmark (issue 19): restart catch-up and reshard throughput of real release nodes
//! on loopback for values of 100 B, 16 KiB and 1 MiB, next to a loopback copy baseline measured
//! in the same run: one gRPC stream pushing the same bytes (byte-bounded `ReshardBatch`es) to a
//! server that only drains them, no store behind it.
//!
//! Per size: 4 nodes in one shard are loaded with K keys; one replica is killed and restarted
//! (time from spawn until it counts K keys: process start + full snapshot pull); then the store
//! is resharded 1→2 (time of the PUT /shard/reshard request). Every new owner of that shape was a
//! replica of the one old shard and already holds its keys, so that reshard copies (almost)
//! nothing: it measures a reshard's fixed steps. The copy itself is the last column: 6 nodes in
//! 2 shards are loaded with the same K keys and resharded 2→3, where a third of the keys change
//! shard and nodes change shards, so new owners are sent the keys they lack over the network.
//! MB/s is the bytes of values in the store per second. The restarted node's own timing of its
//! pulls is printed too (the copy without process start and the benchmark's polling). Run:
//! `cargo bench --bench bigvalues` (or `-- 100` for one value size, `-- spread` for the 2→3
//! reshard alone).

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causalkv::cluster::batch::{batches, message_limit};
use causalkv::domain::clock::VectorClock;
use causalkv::domain::store::{Version, Write};
use causalkv::rpc::convert::write_to_pb;
use causalkv::rpc::pb;
use causalkv::tools::node_process::{Log, NodeProcess, ServeCommand};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use tonic::{Request, Response, Status, Streaming};

/// (value bytes of JSON text, keys): about 64 MiB of values for the big sizes; fewer bytes for
/// 100 B values, whose cost is per key (loading 650k keys over HTTP would dominate the run), but
/// enough keys (20 MB) that the per-key cost, not a reshard's or a start-up's fixed steps, counts.
const SIZES: [(usize, usize); 3] = [(100, 200_000), (16 << 10, 4_000), (1 << 20, 64)];
/// Concurrent loaders (enough to keep 2 cores busy without overwhelming them).
const LOADERS: usize = 8;
/// Bound on every wait of the benchmark.
const WAIT: Duration = Duration::from_secs(180);

/// A node of a store of `shards` shards; dropping it kills it. `BIGVALUES_LOG_DIR=D` logs
/// each node at info level to `D/<addr>.log` (the reshard's phases with their times).
fn spawn(addr: &str, view: &[String], shards: u32) -> NodeProcess {
    let cmd = ServeCommand::new(Path::new(env!("CARGO_BIN_EXE_causalkv")), addr, view)
        .shards(Some(shards));
    match std::env::var_os("BIGVALUES_LOG_DIR") {
        Some(dir) => cmd
            .env("RUST_LOG", "info")
            .log(Log::File(Path::new(&dir).join(format!("{addr}.log")))),
        None => cmd.env("RUST_LOG", "warn"),
    }
    .spawn()
    .expect("spawn")
}

async fn key_count(http: &reqwest::Client, addr: &str, shard: u32) -> Option<u64> {
    let r = http
        .get(format!("http://{addr}/shard/key-count/{shard}"))
        .send()
        .await
        .ok()?;
    r.json::<Value>().await.ok()?["shard-key-count"].as_u64()
}

/// The value of the first sample of `metric` the node at `addr` exports.
async fn metric(http: &reqwest::Client, addr: &str, metric: &str) -> Option<f64> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(metric))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn wait_count(http: &reqwest::Client, addr: &str, keys: usize) {
    let deadline = Instant::now() + WAIT;
    while key_count(http, addr, 0).await != Some(keys as u64) {
        assert!(Instant::now() < deadline, "{addr} never held {keys} keys");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn text(k: usize, len: usize) -> String {
    let tag = format!("{k:07}");
    format!("{tag}{}", "x".repeat(len.saturating_sub(tag.len() + 2)))
}

/// Restart catch-up (from process spawn until it holds every key, and the pulls alone as the
/// node timed them) and reshard times for `keys` values of `len` bytes.
async fn run(len: usize, keys: usize, block: u8) -> (Duration, Duration, Duration) {
    let addrs: Vec<String> = (2..=5)
        .map(|h| format!("127.78.{block}.{h}:8090"))
        .collect();
    let mut nodes: Vec<NodeProcess> = addrs.iter().map(|a| spawn(a, &addrs, 1)).collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    for a in &addrs {
        let deadline = Instant::now() + WAIT;
        while key_count(&http, a, 0).await.is_none() {
            assert!(Instant::now() < deadline, "{a} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    load(&http, &addrs, len, keys).await;
    for a in &addrs {
        wait_count(&http, a, keys).await;
    }
    drop(nodes.remove(3));
    let t = Instant::now();
    nodes.push(spawn(&addrs[3], &addrs, 1));
    wait_count(&http, &addrs[3], keys).await;
    let restart = t.elapsed();
    // the pulls alone (full copy, then a delta from each member), as the restarted node timed them
    let pulls = metric(&http, &addrs[3], "causalkv_sync_duration")
        .await
        .map_or(Duration::ZERO, Duration::from_secs_f64);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reshard = reshard(&http, &addrs, 2, keys).await;
    (restart, pulls, reshard)
}

/// PUTs `keys` values of `len` bytes, spread over the nodes at `addrs`.
async fn load(http: &reqwest::Client, addrs: &[String], len: usize, keys: usize) {
    let loaded = futures::stream::iter(0..keys)
        .map(|k| {
            let url = format!("http://{}/kvs/key{k}", addrs[k % addrs.len()]);
            async move {
                let body = format!(r#"{{"value":"{}","causal-metadata":null}}"#, text(k, len));
                let r = http.put(url).body(body).send().await.expect("put");
                r.status().is_success()
            }
        })
        .buffer_unordered(LOADERS)
        .collect::<Vec<bool>>()
        .await;
    assert!(loaded.iter().all(|ok| *ok), "load failed");
}

/// Reshards the store of the nodes at `addrs` to `shards` shards; returns how long the request
/// took, after checking that every key is still there.
async fn reshard(http: &reqwest::Client, addrs: &[String], shards: u32, keys: usize) -> Duration {
    let t = Instant::now();
    let r = http
        .put(format!("http://{}/shard/reshard", addrs[0]))
        .json(&json!({"shard-count": shards}))
        .send()
        .await
        .expect("reshard");
    let took = t.elapsed();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let mut total = 0;
    for s in 0..shards {
        total += key_count(http, &addrs[0], s).await.unwrap_or(0);
    }
    assert_eq!(total as usize, keys, "keys lost in reshard");
    took
}

/// This node's shard.
async fn own_shard(http: &reqwest::Client, addr: &str) -> Option<u32> {
    let r = http
        .get(format!("http://{addr}/shard/node-shard-id"))
        .send()
        .await
        .ok()?;
    Some(r.json::<Value>().await.ok()?["node-shard-id"].as_u64()? as u32)
}

/// The copy of a reshard: 6 nodes in 2 shards hold `keys` values of `len` bytes and are
/// resharded 2→3. Returns the time of the reshard request and how many writes the nodes sent.
async fn run_spread(len: usize, keys: usize, block: u8) -> (Duration, u64) {
    let addrs: Vec<String> = (2..=7)
        .map(|h| format!("127.78.{block}.{h}:8090"))
        .collect();
    let _nodes: Vec<NodeProcess> = addrs.iter().map(|a| spawn(a, &addrs, 2)).collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let mut shards = Vec::new();
    for a in &addrs {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = own_shard(&http, a).await {
                shards.push(s);
                break;
            }
            assert!(Instant::now() < deadline, "{a} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    load(&http, &addrs, len, keys).await;
    // every replica holds its shard's keys, and the shards hold them all
    let deadline = Instant::now() + WAIT;
    loop {
        let mut counts = [None, None];
        let mut agree = true;
        for (a, s) in addrs.iter().zip(&shards) {
            // a member answers for its own shard from its own store
            let n = key_count(&http, a, *s).await;
            let seen = &mut counts[*s as usize];
            agree &= n.is_some() && seen.is_none_or(|c| Some(c) == n);
            *seen = n;
        }
        let total: u64 = counts.iter().map(|c| c.unwrap_or(0)).sum();
        if agree && total == keys as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shards never settled: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // `BIGVALUES_PAUSE_SECS=N`: announce the reshard on stderr and wait N seconds before and
    // after it (time to attach a profiler to the nodes, or to read their CPU times)
    let pause = std::env::var("BIGVALUES_PAUSE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    if let Some(p) = pause {
        eprintln!("reshard 2→3 of {keys} keys in {} s", p.as_secs());
        tokio::time::sleep(p).await;
    }
    let took = reshard(&http, &addrs, 3, keys).await;
    if let Some(p) = pause {
        eprintln!("reshard 2→3 done");
        tokio::time::sleep(p).await;
    }
    let mut moved = 0.0;
    for a in &addrs {
        moved += metric(&http, a, "causalkv_reshard_keys")
            .await
            .unwrap_or(0.0);
    }
    (took, moved as u64)
}

/// A StateTransfer server that drains `ReceiveReshardData` streams and does nothing else.
struct Sink;

type Chunks = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;
type Reports = Pin<Box<dyn Stream<Item = Result<pb::ReshardDataResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::state_transfer_server::StateTransfer for Sink {
    type SnapshotStream = Chunks;
    async fn snapshot(&self, _: Request<pb::SnapshotRequest>) -> Result<Response<Chunks>, Status> {
        Err(Status::unimplemented("sink"))
    }
    async fn prepare_reshard(&self, _: Request<pb::ShardMap>) -> Result<Response<pb::Ack>, Status> {
        Err(Status::unimplemented("sink"))
    }
    type SendReshardDataStream = Reports;
    async fn send_reshard_data(
        &self,
        _: Request<pb::ShardMap>,
    ) -> Result<Response<Reports>, Status> {
        Err(Status::unimplemented("sink"))
    }
    async fn receive_reshard_data(
        &self,
        req: Request<Streaming<pb::ReshardBatch>>,
    ) -> Result<Response<pb::ReshardReceipt>, Status> {
        let mut s = req.into_inner();
        while let Some(b) = s.next().await {
            std::hint::black_box(b?);
        }
        Ok(Response::new(pb::ReshardReceipt::default()))
    }
    async fn commit_reshard(&self, _: Request<pb::ShardMap>) -> Result<Response<pb::Ack>, Status> {
        Err(Status::unimplemented("sink"))
    }
    async fn abort_reshard(&self, _: Request<pb::ShardMap>) -> Result<Response<pb::Ack>, Status> {
        Err(Status::unimplemented("sink"))
    }
}

/// Baseline runs per size; the fastest counts (the machine is shared: the best run is the one
/// least disturbed).
const BASELINE_RUNS: usize = 3;

/// Loopback copy baseline: one gRPC stream of the same values, byte-bounded batches, no store;
/// the fastest of [`BASELINE_RUNS`].
async fn baseline(len: usize, keys: usize, block: u8) -> Duration {
    let addr: std::net::SocketAddr = format!("127.78.{block}.100:8091").parse().expect("addr");
    let limit = message_limit(8 << 20);
    let svc = pb::state_transfer_server::StateTransferServer::new(Sink)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let origin: Arc<str> = Arc::from("127.78.0.2:8090");
    let writes: Vec<Write> = (0..keys)
        .map(|k| Write {
            key: format!("key{k}"),
            version: Version {
                generation: 1,
                origin: origin.clone(),
                seq: k as u64 + 1,
                clock: VectorClock::from_entries([(origin.to_string(), k as u64 + 1)]),
            },
            value: Some(Arc::from(text(k, len))),
        })
        .collect();
    let msgs: Vec<pb::ReshardBatch> = batches(writes, 4_096)
        .iter()
        .map(|b| pb::ReshardBatch {
            epoch: 1,
            writes: b.iter().map(write_to_pb).collect(),
        })
        .collect();
    let mut client =
        pb::state_transfer_client::StateTransferClient::connect(format!("http://{addr}"))
            .await
            .expect("connect")
            .max_encoding_message_size(limit);
    let mut best = Duration::MAX;
    for _ in 0..BASELINE_RUNS {
        let msgs = msgs.clone();
        let t = Instant::now();
        client
            .receive_reshard_data(futures::stream::iter(msgs))
            .await
            .expect("stream");
        best = best.min(t.elapsed());
    }
    server.abort();
    best
}

fn rate(len: usize, keys: usize, d: Duration) -> (f64, f64) {
    let s = d.as_secs_f64().max(1e-9);
    ((len * keys) as f64 / 1e6 / s, keys as f64 / s)
}

fn main() {
    // `cargo test --all-targets` runs this binary without --bench: a benchmark is not a test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("big-value benchmark: run it with `cargo bench --bench bigvalues`");
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "| value | keys | store MB | baseline MB/s (keys/s) | restart catch-up MB/s (keys/s) | its pulls alone MB/s (keys/s) | reshard 1→2 MB/s (keys/s) | reshard 2→3 MB/s (keys/s) | writes sent in 2→3: count, MB/s (× baseline) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // `-- 100 16384` runs only those value sizes; `-- spread` only the 2→3 reshard
    let spread_only = std::env::args().any(|a| a == "spread");
    let only: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    for (i, (len, keys)) in SIZES.into_iter().enumerate() {
        if !only.is_empty() && !only.contains(&len) {
            continue;
        }
        let base = rt.block_on(baseline(len, keys, 40 + i as u8));
        let (restart, pulls, reshard) = if spread_only {
            (Duration::MAX, Duration::MAX, Duration::MAX)
        } else {
            rt.block_on(run(len, keys, 40 + i as u8))
        };
        let (spread, moved) = rt.block_on(run_spread(len, keys, 50 + i as u8));
        let (bm, bk) = rate(len, keys, base);
        let cell = |d: Duration| {
            let (m, k) = rate(len, keys, d);
            format!("{m:.1} ({k:.0}; {:.2}× baseline)", m / bm)
        };
        println!(
            "| {len} B | {keys} | {:.1} | {bm:.0} ({bk:.0}) | {} | {} | {} | {} | {moved}, {:.1} ({:.2}×) |",
            (len * keys) as f64 / 1e6,
            cell(restart),
            cell(pulls),
            cell(reshard),
            cell(spread),
            rate(len, moved as usize, spread).0,
            rate(len, moved as usize, spread).0 / bm,
        );
    }
}
