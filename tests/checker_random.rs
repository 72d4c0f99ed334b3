//! Generates a large random history that is valid by construction (a single
//! sequential store shared by all sessions, so it is even linearizable) and
//! checks that the causal-consistency checker finds it clean quickly.

use std::fmt::Write as _;
use std::time::Instant;

use causalkv::tools::check::check_history;
use causalkv::tools::rng::Rng;

fn json(value: &Option<String>) -> String {
    value
        .as_ref()
        .map_or("null".to_string(), |v| format!("\"{v}\""))
}

/// Builds `n_ops` operations over `sessions` sessions and `keys` keys.
fn random_history(seed: u64, n_ops: usize, sessions: u64, keys: usize) -> String {
    let mut rng = Rng::new(seed, 0);
    let mut store: Vec<Option<String>> = vec![None; keys];
    let mut counters = vec![0u64; sessions as usize];
    let mut out = String::new();
    for t in 0..n_ops {
        let s = rng.below(sessions) as usize;
        let key = rng.below(keys as u64) as usize;
        let roll = rng.below(100);
        let outcome = match rng.below(100) {
            0..=2 => "fail",
            3..=5 => "unknown",
            _ => "ok",
        };
        let (kind, value, status) = if roll < 40 {
            counters[s] += 1;
            let v = Some(format!("c{s}-{}", counters[s]));
            // An unknown put takes effect half of the time.
            if outcome == "ok" || (outcome == "unknown" && rng.below(2) == 0) {
                store[key] = v.clone();
            }
            ("put", v, 201)
        } else if roll < 50 {
            let status = if store[key].is_some() { 200 } else { 404 };
            if outcome == "ok" || (outcome == "unknown" && rng.below(2) == 0) {
                store[key] = None;
            }
            ("delete", None, status)
        } else {
            let v = if outcome == "ok" {
                store[key].clone()
            } else {
                None
            };
            let status = if v.is_some() { 200 } else { 404 };
            ("get", v, status)
        };
        let status = match outcome {
            "ok" => status.to_string(),
            "fail" => "503".to_string(),
            _ => "null".to_string(),
        };
        let invoke = 1_000 * t as u64;
        writeln!(
            out,
            r#"{{"type":"op","session":"c{s}","node":"127.0.0.{}:8090","kind":"{kind}","key":"k{key}","value":{},"meta_in":null,"meta_out":null,"invoke_ns":{invoke},"complete_ns":{},"outcome":"{outcome}","status":{status}}}"#,
            1 + s % 3,
            json(&value),
            invoke + 500
        )
        .expect("write to string");
    }
    for (key, value) in store.iter().enumerate() {
        for node in 1..=3 {
            writeln!(
                out,
                r#"{{"type":"final","node":"127.0.0.{node}:8090","shard":{},"key":"k{key}","value":{}}}"#,
                key % 4,
                json(value)
            )
            .expect("write to string");
        }
    }
    out
}

#[test]
fn large_valid_history_is_clean() {
    let text = random_history(0x5eed_1234_abcd_0001, 20_000, 20, 200);
    let start = Instant::now();
    let report = check_history(text.as_bytes()).expect("valid history");
    eprintln!("checked in {:?}: {report}", start.elapsed());
    assert_eq!(report.ops, 20_000);
    assert_eq!(report.sessions, 20);
    assert!(report.is_clean(), "{report}");
}

#[test]
fn hot_key_history_is_clean() {
    let text = random_history(42, 5_000, 8, 2);
    let report = check_history(text.as_bytes()).expect("valid history");
    assert!(report.is_clean(), "{report}");
}

#[test]
fn corrupting_a_read_is_detected() {
    let text = random_history(7, 2_000, 5, 20);
    // Replace the value of the last successful read of a put by an old value.
    let lines: Vec<&str> = text.lines().collect();
    let target = lines
        .iter()
        .rposition(|l| {
            l.contains(r#""kind":"get""#)
                && l.contains(r#""value":"c"#)
                && l.contains(r#""outcome":"ok""#)
        })
        .expect("some read");
    let mut corrupted: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    corrupted[target] = corrupted[target].replace(r#""value":"c"#, r#""value":"zz"#);
    let report = check_history(corrupted.join("\n").as_bytes()).expect("parses");
    assert!(
        report.count(causalkv::tools::check::AnomalyKind::ThinAirRead) == 1,
        "{report}"
    );
}
