//! The `causalkv nemesis` command line: one seed (`--seed`), or a campaign of many
//! (`--seeds A..B --parallel P`). Exit status 1 unless every run was clean.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};

use super::campaign::{BLOCKS, Campaign, table};
use super::{Options, run};

/// Options of `causalkv nemesis`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Seed of the fault schedule (same seed, same schedule) and of the address block.
    #[arg(long, default_value_t = 1, conflicts_with = "seeds")]
    pub seed: u64,
    /// A campaign: every seed of the range `A..B` (B excluded) or `A..=B`.
    #[arg(long, value_parser = parse_seeds)]
    pub seeds: Option<Seeds>,
    /// Campaign runs at once (1..=4); their contention for the CPU is itself a fault.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Length of each workload in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Number of concurrent client sessions.
    #[arg(long, default_value_t = 5)]
    pub sessions: usize,
    /// Third octet of the nodes' addresses 127.(30+seed%100).BLOCK.2-8 (251..=254; a campaign
    /// assigns blocks itself).
    #[arg(long, default_value_t = 252)]
    pub block: u8,
    /// Write the recorded history (JSON lines) here (one seed).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Write each node's log to DIR/<address>.log (one seed).
    #[arg(long)]
    pub logs: Option<PathBuf>,
    /// Campaign: keep the history, node logs and summary of every seed that is not clean in
    /// DIR/seed-N/.
    #[arg(long, default_value = "target/nemesis-campaign")]
    pub keep: PathBuf,
}

/// The seeds of a campaign, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds(pub Vec<u64>);

/// Parses `A..B` or `A..=B` into the seeds it names.
fn parse_seeds(s: &str) -> Result<Seeds, String> {
    let bad = || format!("expected A..B or A..=B, got {s:?}");
    let (a, b, inclusive) = match s.split_once("..=") {
        Some((a, b)) => (a, b, true),
        None => {
            let (a, b) = s.split_once("..").ok_or_else(bad)?;
            (a, b, false)
        }
    };
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    let end = if inclusive { b.saturating_add(1) } else { b };
    if end <= a || end - a > 10_000 {
        return Err(format!("{s:?} names no seeds, or more than 10,000"));
    }
    Ok(Seeds((a..end).collect()))
}

/// Runs the command; returns the process exit code.
pub fn main(args: Args) -> anyhow::Result<i32> {
    ensure!(
        (1..=3600).contains(&args.seconds),
        "--seconds must be 1..=3600"
    );
    ensure!(
        (1..=64).contains(&args.sessions),
        "--sessions must be 1..=64"
    );
    ensure!(
        (251..=254).contains(&args.block),
        "--block must be 251..=254"
    );
    ensure!(
        (1..=BLOCKS.len()).contains(&args.parallel),
        "--parallel must be 1..={}",
        BLOCKS.len()
    );
    let base = Options {
        seed: args.seed,
        seconds: args.seconds,
        sessions: args.sessions,
        block: args.block,
        history: args.history.clone(),
        logs: args.logs.clone(),
        exe: std::env::current_exe().context("cannot find own executable")?,
    };
    let rt = tokio::runtime::Runtime::new()?;
    // Ctrl-C drops the runs, whose guards kill every node and remove iptables rules.
    let clean = rt.block_on(async {
        match args.seeds {
            None => {
                let _bar =
                    crate::tools::progress::timed("nemesis", Duration::from_secs(args.seconds));
                let summary = tokio::select! {
                    r = run(&base) => r?,
                    _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
                };
                println!("{summary}");
                Ok(summary.is_clean())
            }
            Some(Seeds(seeds)) => {
                let c = Campaign {
                    seeds,
                    parallel: args.parallel,
                    base,
                    keep: args.keep.clone(),
                };
                let rows = tokio::select! {
                    rows = super::campaign::run(&c, |r| eprintln!("{}", row_line(r))) => rows,
                    _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
                };
                print!("{}", table(&rows, &c.keep));
                Ok(rows.iter().all(|r| r.is_clean()))
            }
        }
    })?;
    Ok(if clean { 0 } else { 1 })
}

fn row_line(r: &super::campaign::Row) -> String {
    match &r.result {
        Ok(s) => s.to_string().lines().next().unwrap_or_default().to_string(),
        Err(e) => format!("nemesis seed={} failed to run: {e}", r.seed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn seed_ranges() {
        assert_eq!(parse_seeds("3..6"), Ok(Seeds(vec![3, 4, 5])));
        assert_eq!(parse_seeds("3..=5"), Ok(Seeds(vec![3, 4, 5])));
        assert_eq!(parse_seeds(" 7 ..= 7"), Ok(Seeds(vec![7])));
        for bad in ["5..5", "6..3", "x..3", "3", "1..20000"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_lines_parse() {
        use clap::Parser;
        let c = Cmd::try_parse_from(["nemesis", "--seeds", "1..51", "--parallel", "3"])
            .expect("campaign");
        assert_eq!(c.args.seeds, Some(Seeds((1..51).collect())));
        assert_eq!((c.args.parallel, c.args.seconds), (3, 30));
        let c = Cmd::try_parse_from(["nemesis", "--seed", "7", "--history", "h.jsonl"])
            .expect("one seed");
        assert_eq!((c.args.seed, c.args.seeds), (7, None));
        assert!(Cmd::try_parse_from(["nemesis", "--seed", "7", "--seeds", "1..3"]).is_err());
        assert!(Cmd::try_parse_from(["nemesis", "--seeds", "9..3"]).is_err());
    }
}
