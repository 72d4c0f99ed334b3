//! The `causalkv` binary: `serve` (the default) runs a node from environment variables;
//! `local` runs a loopback cluster of child processes; `check` checks a recorded history;
//! `bench` generates load and measures it; `ceiling` runs the benchmark's ceiling server;
//! `nemesis` runs a seeded fault-injection test against a loopback cluster; `sim` runs seeded
//! random schedules over a simulated network; `status` prints
//! what every node of a cluster reports about itself.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use causalkv::config::Config;
use causalkv::tools;

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
    Serve {
        /// Keep data in this directory (same as DATA_DIR); without either, in memory only.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// If the data directory is damaged, set it aside and copy the shard from its peers
        /// (same as CKV_RECOVER_FROM_PEERS=1) instead of refusing to start.
        #[arg(long)]
        recover_from_peers: bool,
    },
    /// Run a local cluster on loopback (127.0.0.2, .3, ...), one process per node.
    Local(tools::local::Args),
    /// Check a JSON-lines history for causal-consistency anomalies; exit 1 unless clean.
    Check(tools::check::Args),
    /// Load generator: throughput and latency of causalkv, its ceiling server or etcd.
    Bench(tools::bench::Options),
    /// The benchmark's ceiling: causalkv's /kvs handlers over one map, no replication.
    Ceiling(tools::ceiling::Args),
    /// Ask a node (Admin/Status over gRPC) about every node in its view and print a table.
    Status(tools::status::Args),
    /// Seeded fault injection against a 2×3 loopback cluster (+ spare), one seed or a campaign;
    /// exit 1 unless every run is clean.
    Nemesis(tools::nemesis::cli::Args),
    /// Deterministic simulation: seeded random schedules of client sessions and faults over
    /// in-process nodes under simulated time, each history checked; exit 1 if a seed fails.
    Sim(tools::sim::cli::Args),
}

/// mimalloc instead of glibc's malloc: the request path allocates many small short-lived
/// buffers, and glibc's malloc/free/consolidation took ~15 % of CPU under load (perf); mimalloc
/// gave +6-8 % PUT/s in `bench/ab.sh`. Built without transparent huge pages (`no_thp`): with
/// them every first touch of an arena page zeroes 2 MiB, which took 12-15 % of all CPU of a
/// 2→3 reshard (perf, `clear_page_erms`); without, the reshard's nodes spend 20 % less CPU on
/// 100 B values and half on 16 KiB values (`cargo bench --bench bigvalues -- spread`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (mimalloc.h; libmimalloc-sys names no constant for it):
/// how long a free page stays committed before it is returned to the OS.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// While a node starts (rebuilds its state from its data directory or copies it from its peers,
/// then catches up) mimalloc returns free pages to the OS at once instead of after its usual
/// delay: the start-up's temporaries (decoded records, the engine's scan buffers, catch-up
/// batches) are freed by the time the node serves, but their pages would stay resident until
/// the threads that freed them allocate again (measured at 1M keys: 307 -> 299 B/key after a
/// restart). Returns the delay in force before, for [`serving`].
fn start_lean() -> std::ffi::c_long {
    // SAFETY: options are plain values mimalloc reads on each use; any thread may set them.
    unsafe {
        let usual = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        usual
    }
}

/// The usual purge delay, in force again once the node serves (see [`start_lean`]).
static USUAL_PURGE_DELAY: std::sync::OnceLock<std::ffi::c_long> = std::sync::OnceLock::new();

/// The server's memory hooks: after the state is rebuilt, and once the node serves (then
/// purging at once would cost a page fault for every page reused under load).
const MEMORY: causalkv::server::MemoryHooks = causalkv::server::MemoryHooks {
    // SAFETY (both): mi_collect only walks mimalloc's own structures, from any thread.
    restored: || unsafe { libmimalloc_sys::mi_collect(true) },
    serving: || unsafe {
        libmimalloc_sys::mi_collect(true);
        if let Some(usual) = USUAL_PURGE_DELAY.get() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, *usual);
        }
    },
};

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

/// The server's start path: configuration from the environment, then `server::run`; nothing
/// from `tools`.
fn serve(data_dir: Option<std::path::PathBuf>, recover_from_peers: bool) -> anyhow::Result<i32> {
    let mut cfg = Config::from_vars(|k| std::env::var(k).ok())?;
    if data_dir.is_some() {
        cfg.storage.data_dir = data_dir;
    }
    cfg.storage.recover_from_peers |= recover_from_peers;
    let _ = USUAL_PURGE_DELAY.set(start_lean());
    let rt = tokio::runtime::Runtime::new()?;
    let served = rt.block_on(causalkv::server::run(cfg, MEMORY));
    // Background tasks (lazy peer connections, DNS, the storage thread) must not hold the exit.
    rt.shutdown_timeout(SHUTDOWN_GRACE);
    served?;
    Ok(0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let serve_default = Cmd::Serve {
        data_dir: None,
        recover_from_peers: false,
    };
    let code = match cli.command.unwrap_or(serve_default) {
        Cmd::Serve {
            data_dir,
            recover_from_peers,
        } => serve(data_dir, recover_from_peers)?,
        Cmd::Local(args) => tools::local::main(args)?,
        Cmd::Check(args) => tools::check::main(args)?,
        Cmd::Bench(opts) => tools::bench::cli::main(opts)?,
        Cmd::Ceiling(args) => tools::ceiling::main(args)?,
        Cmd::Status(args) => tools::status::main(args)?,
        Cmd::Nemesis(args) => tools::nemesis::cli::main(args)?,
        Cmd::Sim(args) => tools::sim::cli::main(args).map_err(anyhow::Error::msg)?,
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
