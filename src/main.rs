//! The `causalkv` binary: `serve` (the default) runs a node from environment variables;
//! `local` runs a loopback cluster of child processes; `check` checks a recorded history;
//! `bench` generates load and measures it; `ceiling` runs the benchmark's ceiling server;
//! `nemesis` runs a seeded fault-injection test against a loopback cluster; `sim` runs seeded
//! random schedules over a simulated network; `status` prints
//! what every node of a cluster reports about itself.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use causalkv::config::Config;
use causalkv::local::{LocalCluster, stop_all};

#[derive(Parser)]
#[command(
    name = "causalkv",
    version,
    about = "A sharded, replicated, causally consistent key-value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node, configured by SOCKET_ADDRESS, VIEW, SHARD_COUNT and CKV_* variables.
    Serve,
    /// Run a local cluster on loopback (127.0.0.2, .3, ...), one process per node.
    Local {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Number of shards (each needs at least 2 nodes). Without it the nodes get no
        /// SHARD_COUNT: one replicated store, every node holding every key.
        #[arg(long)]
        shards: Option<u32>,
        /// Port of every node.
        #[arg(long, default_value_t = 8090)]
        port: u16,
    },
    /// Check a JSON-lines history for causal-consistency anomalies; exit 1 unless clean.
    Check {
        /// The history file.
        history: PathBuf,
    },
    /// Load generator: throughput and latency of causalkv, its ceiling server or etcd.
    Bench(causalkv::bench::Options),
    /// The benchmark's ceiling: causalkv's /kvs handlers over one map, no replication.
    Ceiling {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9200")]
        listen: std::net::SocketAddr,
    },
    /// Ask a node (Admin/Status over gRPC) about every node in its view and print a table.
    Status {
        /// The node to ask first (IP:PORT).
        #[arg(long)]
        node: String,
        /// Print JSON (one array of rows) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Seeded fault injection against a 2×3 loopback cluster (+ spare), one seed or a campaign;
    /// exit 1 unless every run is clean.
    Nemesis(causalkv::nemesis::cli::Args),
    /// Deterministic simulation: seeded random schedules of client sessions and faults over
    /// in-process nodes under simulated time, each history checked; exit 1 if a seed fails.
    Sim(causalkv::sim::cli::Args),
}

/// mimalloc instead of glibc's malloc: the request path allocates many small short-lived
/// buffers, and glibc's malloc/free/consolidation took ~15 % of CPU under load (perf); mimalloc
/// gave +6-8 % PUT/s in `bench/ab.sh`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // one plain line per event in `docker logs` and files; colours only on a terminal
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// How long background work may run after the server stopped before the process exits.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => {
            let cfg = Config::from_vars(|k| std::env::var(k).ok())?;
            let rt = tokio::runtime::Runtime::new()?;
            let served = rt.block_on(causalkv::server::run(cfg));
            // Background tasks (lazy peer connections, DNS) must not hold the exit.
            rt.shutdown_timeout(SHUTDOWN_GRACE);
            served?;
        }
        Cmd::Local {
            nodes,
            shards,
            port,
        } => {
            anyhow::ensure!(
                (1..=200).contains(&nodes),
                "--nodes must be between 1 and 200"
            );
            anyhow::ensure!(
                shards.is_none_or(|s| s >= 1 && (s == 1 || nodes >= 2 * s as usize)),
                "each shard needs at least 2 nodes"
            );
            let cluster = LocalCluster {
                nodes,
                shards,
                port,
                first_host: 2,
            };
            let exe = std::env::current_exe().context("cannot find own executable")?;
            let mut children = cluster.spawn(&exe)?;
            println!("{}", cluster.help_text());
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async { tokio::signal::ctrl_c().await })?;
            stop_all(&mut children);
        }
        Cmd::Check { history } => {
            let report = causalkv::check::check_file(&history)?;
            println!("{report}");
            if !report.is_clean() {
                std::process::exit(1);
            }
        }
        Cmd::Bench(opts) => {
            let rt = tokio::runtime::Runtime::new()?;
            let planned = Duration::from_secs_f64((opts.warmup + opts.seconds).max(0.0));
            let summary = rt.block_on(async {
                let _bar = causalkv::progress::timed("bench", planned);
                causalkv::bench::run(&opts).await
            })?;
            if opts.json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!("{summary}");
            }
        }
        Cmd::Status { node, json } => {
            let rt = tokio::runtime::Runtime::new()?;
            let rows = rt.block_on(causalkv::status_cli::collect(&node))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{}", causalkv::status_cli::table(&rows));
            }
        }
        Cmd::Ceiling { listen } => {
            tokio::runtime::Runtime::new()?.block_on(causalkv::ceiling::serve(listen))?;
        }
        Cmd::Sim(args) => {
            let code = causalkv::sim::cli::main(args).map_err(anyhow::Error::msg)?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Cmd::Nemesis(args) => {
            let code = causalkv::nemesis::cli::main(args)?;
            if code != 0 {
                std::process::exit(code);
            }
        }
    }
    Ok(())
}
