//! A bounded nemesis campaign against real node processes: four seeds, two at a time (their
//! contention for the CPU is itself a fault), each with seeded kills, pauses, partitions,
//! add-member and a reshard; every run must be clean: no causal anomaly, no divergence, and no
//! lost write but those the run explains (acknowledged by a node killed before any peer had
//! it, the in-memory limit). `causalkv nemesis --seeds 1..51 --parallel 3 --seconds 45` is the
//! long campaign (docs/nemesis.md).

use std::path::PathBuf;

use causalkv::tools::nemesis::Options;
use causalkv::tools::nemesis::campaign::{Campaign, run, table};

/// Seeds run in CI, chosen so that together they kill, pause and partition (see
/// `schedule::tests::print_plans`).
const SEEDS: [u64; 4] = [4, 6, 7, 11];
/// Workload length of each run (plus ~5 s start-up and convergence).
const SECONDS: u64 = 20;
/// Runs at once.
const PARALLEL: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_nemesis_campaign_is_clean() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nemesis-campaign");
    let c = Campaign {
        seeds: SEEDS.to_vec(),
        parallel: PARALLEL,
        base: Options {
            seed: 0,
            seconds: SECONDS,
            sessions: 4,
            block: 251,
            history: None,
            logs: None,
            exe: PathBuf::from(env!("CARGO_BIN_EXE_causalkv")),
        },
        keep: dir.clone(),
    };
    let rows = run(&c, |r| println!("seed {} done", r.seed)).await;
    println!("{}", table(&rows, &dir));
    let mut kinds = std::collections::BTreeSet::new();
    let mut partitions_possible = true;
    for row in &rows {
        let summary = row.result.as_ref().expect("nemesis run");
        assert!(summary.faults_injected() >= 2, "too few faults: {summary}");
        assert_eq!(
            summary.faults.injected.get("add-member"),
            Some(&1),
            "{summary}"
        );
        assert_eq!(
            summary.faults.injected.get("reshard"),
            Some(&1),
            "{summary}"
        );
        assert!(summary.report.ok_ops > 100, "too little traffic: {summary}");
        assert!(
            summary.is_clean(),
            "seed {} not clean (history and logs in {}): {summary}",
            row.seed,
            dir.display()
        );
        kinds.extend(summary.faults.injected.keys().copied());
        partitions_possible &= !summary.faults.skipped.contains_key("partition");
    }
    assert!(
        kinds.contains("kill") && kinds.contains("pause"),
        "{kinds:?}"
    );
    if partitions_possible {
        assert!(kinds.contains("partition"), "{kinds:?}");
    } else {
        println!("partitions were skipped: iptables is not usable here");
    }
}
