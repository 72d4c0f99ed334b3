//! The `causalkv` binary: `serve` (the default) runs a node from environment variables;
//! `local` runs a loopback cluster of child processes.

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
        /// Number of shards (each needs at least 2 nodes).
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// Port of every node.
        #[arg(long, default_value_t = 8090)]
        port: u16,
    },
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => {
            let cfg = Config::from_vars(|k| std::env::var(k).ok())?;
            tokio::runtime::Runtime::new()?.block_on(causalkv::server::run(cfg))?;
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
                shards >= 1 && nodes >= 2 * shards as usize || shards == 1,
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
    }
    Ok(())
}
