//! `causalkv sim`: runs a range of seeds of the randomized simulation on a few threads, prints
//! every failing seed (with how to replay it) and a summary with the throughput.

use std::time::Instant;

use super::vopr::{SeedReport, run_many};

/// Options of `causalkv sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seeds to run: `N` (one seed, printed in full) or `A..B` (B excluded).
    #[arg(long, default_value = "0..1000")]
    pub seeds: String,
    /// Threads (each runs one seed at a time on its own single-threaded runtime).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// With one seed: also write its history (JSON lines, as `causalkv check` reads) here.
    #[arg(long)]
    pub history: Option<std::path::PathBuf>,
}

/// Parses `N` or `A..B`.
pub fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>, String> {
    let bad = || format!("--seeds must be N or A..B, not {s:?}");
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a >= b {
                return Err(bad());
            }
            Ok(a..b)
        }
        None => {
            let n: u64 = s.trim().parse().map_err(|_| bad())?;
            Ok(n..n + 1)
        }
    }
}

fn line(r: &SeedReport) -> String {
    format!(
        "seed {}: {} — {} ops ({} ok), {} faults, {} explained losses, {:.1}s simulated, history {:016x}",
        r.seed,
        r.shape,
        r.ops,
        r.ok,
        r.faults,
        r.explained_losses,
        r.simulated.as_secs_f64(),
        r.digest
    )
}

/// Runs the seeds; returns the process exit code (1 when some seed failed).
pub fn main(args: Args) -> Result<i32, String> {
    let seeds = parse_seeds(&args.seeds)?;
    let single = seeds.end - seeds.start == 1;
    let started = Instant::now();
    let reports = run_many(seeds.clone(), args.threads, |r: &SeedReport| {
        if single {
            println!("{}", line(r));
            if let Some(path) = &args.history
                && let Err(e) = std::fs::write(path, &r.history)
            {
                println!("cannot write {}: {e}", path.display());
            }
        }
        if !r.passed() {
            println!(
                "FAILED {}\n  {}\n  replay: causalkv sim --seeds {}",
                line(r),
                r.failures.join("; "),
                r.seed
            );
        }
    });
    let took = started.elapsed().as_secs_f64();
    let failed: Vec<u64> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.seed)
        .collect();
    let ops: usize = reports.iter().map(|r| r.ops).sum();
    println!(
        "{} seeds ({}..{}) in {:.1}s: {:.0} schedules/min, {} client ops checked, {} failed{}",
        reports.len(),
        seeds.start,
        seeds.end,
        took,
        reports.len() as f64 * 60.0 / took.max(1e-9),
        ops,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        }
    );
    Ok(i32::from(!failed.is_empty()))
}
