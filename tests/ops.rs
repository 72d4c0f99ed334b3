//! Operations endpoints against live loopback clusters: /metrics parsed by the reference
//! Python parser (prometheus_client, installed into target/tools-venv by scripts/test.sh),
//! /readyz across a restart, /openapi.json checked by openapi-spec-validator, `causalkv status`,
//! and the dashboard rendered by headless Chromium.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, eventually};
use futures::future::join_all;
use serde_json::{Value, json};

/// Parses OpenMetrics text with prometheus_client's parser; prints one JSON sample per line.
const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        print(json.dumps([s.name, s.labels, s.value]))
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    std::env::var_os("CKV_TOOLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/tools-venv/bin/python"))
}

/// One parsed sample: name, labels, value.
type Sample = (String, HashMap<String, String>, f64);

/// Scrapes node `i` and parses the text with the reference parser (which rejects malformed
/// exposition: a parse failure fails the test).
async fn scrape(c: &Cluster, i: usize) -> Vec<Sample> {
    let r = c
        .http
        .get(c.url(i, "/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status().as_u16(), 200);
    let ctype = r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let text = r.text().await.expect("body");
    let mut child = Command::new(python())
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "python of target/tools-venv (scripts/test.sh creates it; or set CKV_TOOLS_PYTHON)",
        );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "prometheus_client rejected /metrics (is it installed? scripts/test.sh does): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Sample>(l).expect("sample json"))
        .collect()
}

/// The value of the sample `name` whose labels include all of `labels` (0 when absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

fn kvs(samples: &[Sample], method: &str, status: &str) -> f64 {
    let labels = [
        ("route", "/kvs/{key}"),
        ("method", method),
        ("status", status),
    ];
    value(samples, "causalkv_http_requests_total", &labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_requests_and_follow_a_paused_peers_queue() {
    // A long RPC deadline: a paused peer is suspected (and its queue dropped) only after 4 s,
    // so the queue visibly builds up first.
    let c = Cluster::start(3, Some(1), &[("CKV_RPC_TIMEOUT_MS", "4000")]).await;
    let before = scrape(&c, 0).await;
    let null = Value::Null;
    for k in 0..20 {
        assert_eq!(c.put(0, &format!("m{k}"), json!(k), &null).await.0, 201);
    }
    for k in 0..10 {
        assert_eq!(c.get(0, &format!("m{k}"), &null).await.0, 200);
    }
    for k in 0..5 {
        assert_eq!(c.get(0, &format!("absent{k}"), &null).await.0, 404);
    }
    let after = scrape(&c, 0).await;
    let diff = |m: &str, s: &str| kvs(&after, m, s) - kvs(&before, m, s);
    assert_eq!(diff("PUT", "201"), 20.0);
    assert_eq!(diff("GET", "200"), 10.0);
    assert_eq!(diff("GET", "404"), 5.0);
    let hist = |s: &[Sample]| {
        let l = [("route", "/kvs/{key}"), ("method", "PUT")];
        value(s, "causalkv_http_request_duration_seconds_count", &l)
    };
    assert_eq!(hist(&after) - hist(&before), 20.0);
    assert!(
        value(
            &after,
            "causalkv_grpc_requests_total",
            &[("method", "/causalkv.v1.Membership/Heartbeat")]
        ) > 0.0
    );
    assert_eq!(value(&after, "causalkv_keys", &[("shard", "0")]), 20.0);
    assert_eq!(value(&after, "causalkv_peers", &[("state", "up")]), 2.0);
    assert_eq!(value(&after, "causalkv_shard_map_epoch", &[]), 1.0);
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 0.0);

    let peer = c.addr(1);
    let depth = |s: &[Sample]| value(s, "causalkv_replication_queue_depth", &[("peer", &peer)]);
    assert_eq!(depth(&after), 0.0);
    c.pause(1);
    let writes = (0..100).map(|k| {
        let c = &c;
        async move { c.put(0, &format!("q{k}"), json!(k), &Value::Null).await.0 }
    });
    assert!(join_all(writes).await.iter().all(|s| *s == 201));
    let paused = scrape(&c, 0).await;
    c.resume(1);
    assert!(
        depth(&paused) > 0.0,
        "queue to the paused peer did not grow"
    );
    eventually(
        Duration::from_secs(20),
        "queue to the resumed peer drains",
        || async { (depth(&scrape(&c, 0).await) == 0.0).then_some(()) },
    )
    .await;
    let end = scrape(&c, 0).await;
    let batches = value(&end, "causalkv_replication_batches_total", &[]);
    assert!(batches > value(&before, "causalkv_replication_batches_total", &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_503_until_a_restarted_node_has_pulled_its_shard() {
    const KEYS: u64 = 600;
    let mut c = Cluster::start(3, Some(1), &[]).await;
    // At a fresh start a node whose first pull met a peer not yet listening is ready after
    // two heartbeats show no lag.
    for i in 0..3 {
        assert_eq!(c.req(i, "GET", "/healthz", None).await.0, 200);
        let c = &c;
        eventually(
            Duration::from_secs(10),
            "fresh node becomes ready",
            || async move {
                let (s, b) = c.req(i, "GET", "/readyz", None).await;
                (s == 200 && b["status"] == json!("ready")).then_some(())
            },
        )
        .await;
    }
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(50) {
        let puts = chunk.iter().map(|k| {
            let c = &c;
            async move {
                c.put(0, &format!("r{k}"), json!("x".repeat(200)), &Value::Null)
                    .await
                    .0
            }
        });
        assert!(join_all(puts).await.iter().all(|s| *s == 201));
    }
    for i in 1..3 {
        eventually(
            Duration::from_secs(10),
            "replicas hold every key",
            || async { (keys_at(&c, i).await == Some(KEYS)).then_some(()) },
        )
        .await;
    }
    c.kill(2);
    // With both sources paused, the restarted node cannot pull: it must not claim readiness.
    c.pause(0);
    c.pause(1);
    c.respawn(2);
    let probe = |c: &Cluster| {
        let url = c.url(2, "/readyz");
        let http = c.http.clone();
        async move {
            let r = http
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            let s = r.status().as_u16();
            Some((s, r.json::<Value>().await.ok()?))
        }
    };
    let (_, body) = eventually(
        Duration::from_secs(15),
        "restarted node answers /readyz",
        || async { probe(&c).await },
    )
    .await;
    assert!(body["error"].is_string(), "{body}");
    // Past every start-up deadline (announce, two snapshot attempts), still not ready.
    let hold = Instant::now() + Duration::from_secs(4);
    let mut answers = 0;
    let mut last = Value::Null;
    while Instant::now() < hold {
        if let Some((s, b)) = probe(&c).await {
            assert_eq!(s, 503, "ready without its shard's data: {b}");
            answers += 1;
            last = b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answers >= 5, "only {answers} answers from /readyz in 4 s");
    eprintln!(
        "readyz: {answers} answers of 503 while the shard's other members were paused; last {last}"
    );
    c.resume(0);
    c.resume(1);
    eventually(
        Duration::from_secs(40),
        "restarted node becomes ready",
        || async { matches!(probe(&c).await, Some((200, _))).then_some(()) },
    )
    .await;
    assert_eq!(
        keys_at(&c, 2).await,
        Some(KEYS),
        "ready before its pull finished"
    );
}

/// Live keys node `i` holds (its own shard), from its dashboard data.
async fn keys_at(c: &Cluster, i: usize) -> Option<u64> {
    let (_, b) = c.req(i, "GET", "/dashboard/data", None).await;
    b["node"]["keys"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_document_validates() {
    let c = Cluster::start(2, Some(1), &[]).await;
    let r = c
        .http
        .get(c.url(0, "/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let doc: Value = r.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/kvs/{key}",
        "/key-value-store/{key}",
        "/metrics",
        "/readyz",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
    let file = repo().join(format!("target/openapi-{}.json", std::process::id()));
    std::fs::write(&file, doc.to_string()).expect("write");
    let validator = python().with_file_name("openapi-spec-validator");
    let out = Command::new(&validator)
        .arg(&file)
        .output()
        .expect("openapi-spec-validator of target/tools-venv (scripts/test.sh installs it)");
    let _ = std::fs::remove_file(&file);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
}

fn run_status(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_causalkv"))
        .arg("status")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run causalkv status");
    assert!(out.status.success(), "causalkv status {args:?} failed");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_command_prints_every_node() {
    let c = Cluster::start(4, Some(2), &[]).await;
    assert_eq!(c.put(0, "s", json!(1), &Value::Null).await.0, 201);
    let table = run_status(&["--node", &c.addr(1)]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(lines[0].starts_with("NODE"), "{table}");
    for a in c.addrs() {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&a))
            .unwrap_or_else(|| panic!("{a} missing:\n{table}"));
        let want = if a == c.addr(1) { "self" } else { "up" };
        assert!(line.split_whitespace().any(|w| w == want), "{line}");
    }
    // the key's two replicas both report it once replication (milliseconds) is done
    let rows = eventually(
        Duration::from_secs(10),
        "status --json shows both replicas",
        || async {
            let out = run_status(&["--node", &c.addr(0), "--json"]);
            let rows: Vec<Value> = serde_json::from_str(&out).expect("json");
            let keys: u64 = rows.iter().map(|r| r["keys"].as_u64().unwrap_or(0)).sum();
            (keys == 2).then_some(rows)
        },
    )
    .await;
    assert_eq!(rows.len(), 4);
    let mut shards: Vec<u64> = rows
        .iter()
        .map(|r| r["shard"].as_u64().expect("shard"))
        .collect();
    shards.sort();
    assert_eq!(shards, vec![0, 0, 1, 1]);
    assert!(rows.iter().all(|r| r["ready"] == json!(true)), "{rows:?}");
}

/// Chromium, if installed (scripts/test.sh installs the Debian package).
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(PathBuf::from)
}

/// Runs headless Chromium on `url` with `args`, bounded; returns stdout.
fn headless(bin: &PathBuf, url: &str, args: &[&str]) -> String {
    let profile = repo().join(format!("target/chromium-profile-{}", std::process::id()));
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--window-size=1280,800", "--virtual-time-budget=5000"])
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait chromium").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_renders_every_node_and_shard() {
    let Some(bin) = chromium() else {
        eprintln!(
            "\n!!!!!!!! SKIPPED dashboard_renders_every_node_and_shard: chromium is not installed"
        );
        eprintln!(
            "!!!!!!!! (scripts/test.sh installs the Debian package `chromium`; or set CHROMIUM)\n"
        );
        return;
    };
    let c = Cluster::start(4, Some(2), &[]).await;
    let null = Value::Null;
    for k in 0..40 {
        assert_eq!(c.put(0, &format!("d{k}"), json!(k), &null).await.0, 201);
    }
    let url = c.url(0, "/dashboard");
    let dom = headless(&bin, &url, &["--dump-dom"]);
    let shards = dom
        .split("id=\"shards\"")
        .nth(1)
        .expect("shards table rendered");
    let shards = shards.split("</tbody>").next().unwrap_or_default();
    for a in c.addrs() {
        assert!(
            shards.contains(&a),
            "{a} not among the shard members:\n{dom}"
        );
        let peers_or_self = dom.contains(&format!("<code>{a}</code>"));
        assert!(peers_or_self, "{a} not shown as a node:\n{dom}");
    }
    for id in 0..2 {
        assert!(
            shards.contains(&format!("<tr><td>{id}</td>")),
            "shard {id} row missing:\n{shards}"
        );
    }
    // both shards' key counts are shown and add up to the keys written
    let counts: u64 = shards
        .split("<td class=\"num\">")
        .skip(1)
        .map(|t| {
            t.split('<')
                .next()
                .unwrap_or("")
                .parse::<u64>()
                .expect("key count")
        })
        .sum();
    assert_eq!(counts, 40, "{shards}");
    let shot = repo().join("target/dashboard.png");
    let _ = std::fs::remove_file(&shot);
    headless(&bin, &url, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
