//! Smoke run of the load generator (seconds, not a benchmark): `causalkv bench` against a
//! 3-replica cluster and against the ceiling server, closed and open loop, with the lag probe
//! and a recorded history that the checker must find clean. Asserts what the numbers must be
//! (complete, consistent, error-free), never how fast they are.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Cluster, eventually};
use serde_json::Value;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_causalkv")
}

/// Runs `causalkv bench ARGS --json` and returns its summary.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(exe())
        .arg("bench")
        .args(args)
        .arg("--json")
        .stderr(Stdio::inherit())
        .output()
        .expect("run causalkv bench");
    assert!(out.status.success(), "bench {args:?} failed");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Checks the invariants every summary must satisfy.
fn sane(s: &Value, kinds: &[&str]) {
    assert_eq!(s["errors"], 0, "{s}");
    assert!(s["ops"].as_u64().unwrap() > 0, "{s}");
    assert!(s["throughput"].as_f64().unwrap() > 0.0, "{s}");
    let l = &s["latency_ms"];
    let (p50, p99, p999, max) = (
        l["p50"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["p999"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max * 1.001,
        "{s}"
    );
    for k in kinds {
        assert!(s[k]["ops"].as_u64().unwrap() > 0, "no {k} in {s}");
    }
    let by_status: u64 = s["status"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_status, s["ops"].as_u64().unwrap(), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_against_a_cluster_and_the_ceiling() {
    let c = Cluster::start(3, Some(1), &[]).await;
    let addrs = c.addrs();
    let mut targets = Vec::new();
    for a in &addrs {
        targets.extend(["--target", a.as_str()]);
    }
    let dir = std::env::temp_dir().join(format!("ckv-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let history = dir.join("history.jsonl");
    let history = history.to_str().unwrap();

    // closed loop, writes only, lag probe and a recorded history
    let common = ["--seconds", "1.5", "--warmup", "0.3", "--concurrency", "8"];
    let s = bench(
        &[
            &targets[..],
            &common[..],
            &["--mix", "put", "--lag"],
            &["--history", history],
        ]
        .concat(),
    );
    sane(&s, &["put"]);
    assert_eq!(s["mode"], "closed");
    let lag = &s["lag_ms"];
    assert!(lag["samples"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(lag["timeouts"], 0, "{s}");
    let check = Command::new(exe())
        .args(["check", history])
        .output()
        .expect("run causalkv check");
    assert!(
        check.status.success(),
        "history not clean: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    // open loop at a fixed rate, mostly reads (keys preloaded: every read finds its key)
    let s = bench(
        &[
            &targets[..],
            &common[..],
            &[
                "--mix", "read", "--mode", "open", "--rate", "400", "--keys", "200",
            ],
        ]
        .concat(),
    );
    sane(&s, &["put", "get"]);
    // 1.5 s at 400/s: 600 operations were due; each was either done or reported missed
    let done = s["ops"].as_u64().unwrap() + s["missed"].as_u64().unwrap();
    assert!(
        (595..=605).contains(&done),
        "open loop kept its schedule: {s}"
    );
    assert!(s["status"].get("404").is_none(), "{s}");

    // the ceiling server speaks the same API
    let ceiling = c.spare_addr(5);
    let mut child = Command::new(exe())
        .args(["ceiling", "--listen", &ceiling])
        .stderr(Stdio::null())
        .spawn()
        .expect("start ceiling");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(10), "ceiling up", || {
        let url = format!("http://{ceiling}/kvs/nothing");
        let http = http.clone();
        async move {
            match http.get(url).send().await {
                Ok(r) if r.status() == 404 => Some(()),
                _ => None,
            }
        }
    })
    .await;
    let s = bench(&[
        "--target",
        &ceiling,
        "--mix",
        "mixed",
        "--keys",
        "100",
        "--seconds",
        "1",
        "--warmup",
        "0",
    ]);
    sane(&s, &["put", "get"]);
    // an open loop far above what the server can do: it reports what was done in the window
    // (latency from the intended send times, so huge) and the rest as missed, never 0 ops
    let s = bench(&[
        "--target",
        &ceiling,
        "--mix",
        "put",
        "--keys",
        "100",
        "--mode",
        "open",
        "--rate",
        "2000000",
        "--concurrency",
        "2",
        "--seconds",
        "1",
        "--warmup",
        "1",
    ]);
    child.kill().ok();
    child.wait().ok();
    assert!(s["ops"].as_u64().unwrap() > 0, "overloaded open loop: {s}");
    assert!(s["missed"].as_u64().unwrap() > 0, "{s}");
    assert!(s["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}
