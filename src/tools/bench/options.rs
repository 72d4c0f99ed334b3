//! Options of `causalkv bench`: pacing, mix, targets and outputs, and their validation.

use std::path::PathBuf;

use anyhow::{Context, ensure};

use super::client::Api;

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Each connection sends its next request as soon as the previous one is answered.
    Closed,
    /// Requests start on a fixed schedule (`--rate` per second over all connections).
    Open,
}

/// Share of writes and reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// 100 % PUT.
    Put,
    /// 50 % PUT, 50 % GET.
    Mixed,
    /// 5 % PUT, 95 % GET.
    Read,
}

impl Mix {
    pub(super) fn put_percent(self) -> u64 {
        match self {
            Mix::Put => 100,
            Mix::Mixed => 50,
            Mix::Read => 5,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Mix::Put => "put",
            Mix::Mixed => "mixed",
            Mix::Read => "read",
        }
    }
}

/// Options of `causalkv bench`.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Address (IP:PORT) to send to; repeat for several (connection i goes to target i mod n).
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    /// API the targets speak.
    #[arg(long, value_enum, default_value = "kvs")]
    pub api: Api,
    /// Closed or open loop.
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: Mode,
    /// Open loop: requests per second over all connections.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Connections, one virtual client each.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Workload mix.
    #[arg(long, value_enum, default_value = "put")]
    pub mix: Mix,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Size of the key space (keys are chosen uniformly; reads find keys written beforehand).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Name of the run in the output.
    #[arg(long, default_value = "bench")]
    pub label: String,
    /// Probe replication lag: write at the first target, poll the others until visible
    /// (for a one-shard cluster whose replicas are the targets).
    #[arg(long)]
    pub lag: bool,
    /// Write every key once and stop (no mix, no warm-up); for memory measurements.
    #[arg(long)]
    pub fill: bool,
    /// Write every operation to this file in the checker's history format.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seed of the key and operation choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Options {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=4096).contains(&self.concurrency),
            "--concurrency must be 1..=4096"
        );
        ensure!(
            self.seconds > 0.0 && self.seconds <= 3600.0,
            "--seconds must be in (0, 3600]"
        );
        ensure!(
            (0.0..=600.0).contains(&self.warmup),
            "--warmup must be 0..=600"
        );
        ensure!(
            (1..=1 << 20).contains(&self.value_size),
            "--value-size must be 1..=1048576"
        );
        ensure!(
            (1..=100_000_000).contains(&self.keys),
            "--keys must be 1..=100000000"
        );
        if self.mode == Mode::Open {
            let rate = self.rate.context("--mode open needs --rate")?;
            ensure!(
                rate > 0.0 && rate <= 10_000_000.0,
                "--rate must be positive"
            );
        }
        if self.lag {
            ensure!(
                self.api == Api::Kvs && self.targets.len() >= 2,
                "--lag needs --api kvs and at least two targets"
            );
        }
        ensure!(
            self.history.is_none() || self.api == Api::Kvs,
            "--history needs --api kvs"
        );
        Ok(())
    }
}
