//! `causalkv local`: a cluster of real server processes on loopback (127.0.0.2, .3, … port
//! 8090 by default), for trying the product without Docker. Stops everything on Ctrl-C.

use anyhow::{Context, ensure};

use super::node_process::{Log, NodeProcess, ServeCommand};

/// Options of `causalkv local`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Number of shards (each needs at least 2 nodes). Without it the nodes get no
    /// SHARD_COUNT: one replicated store, every node holding every key.
    #[arg(long)]
    pub shards: Option<u32>,
    /// Port of every node.
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
}

/// `causalkv local`: starts the nodes, prints what to try, and stops them all on Ctrl-C.
pub fn main(args: Args) -> anyhow::Result<i32> {
    ensure!(
        (1..=200).contains(&args.nodes),
        "--nodes must be between 1 and 200"
    );
    ensure!(
        args.shards
            .is_none_or(|s| s >= 1 && (s == 1 || args.nodes >= 2 * s as usize)),
        "each shard needs at least 2 nodes"
    );
    let cluster = LocalCluster {
        nodes: args.nodes,
        shards: args.shards,
        port: args.port,
        first_host: 2,
    };
    let exe = std::env::current_exe().context("cannot find own executable")?;
    let nodes = cluster.spawn(&exe)?;
    println!("{}", cluster.help_text());
    tokio::runtime::Runtime::new()?.block_on(tokio::signal::ctrl_c())?;
    drop(nodes);
    Ok(0)
}

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalCluster {
    /// Number of nodes.
    pub nodes: usize,
    /// Number of shards; `None` starts a replication-only cluster (no `SHARD_COUNT`).
    pub shards: Option<u32>,
    /// Port every node listens on (each has its own loopback address).
    pub port: u16,
    /// First address is 127.0.0.<first_host>.
    pub first_host: u8,
}

impl LocalCluster {
    /// Addresses of the nodes.
    pub fn addresses(&self) -> Vec<String> {
        (0..self.nodes)
            .map(|i| format!("127.0.0.{}:{}", usize::from(self.first_host) + i, self.port))
            .collect()
    }

    /// Starts every node as a child process of `exe`, logging to this terminal; dropping the
    /// processes stops them.
    pub fn spawn(&self, exe: &std::path::Path) -> std::io::Result<Vec<NodeProcess>> {
        let view = self.addresses();
        view.iter()
            .map(|addr| {
                ServeCommand::new(exe, addr, &view)
                    .shards(self.shards)
                    .log(Log::Inherit)
                    .spawn()
            })
            .collect()
    }

    /// Ready-to-paste commands for a user.
    pub fn help_text(&self) -> String {
        let a = self.addresses();
        let first = &a[0];
        let second = a.get(1).unwrap_or(first);
        format!(
            "causalkv: {n} nodes, {s}: {list}\n\n\
             Try:\n\
             curl -s -X PUT http://{first}/kvs/x -H 'Content-Type: application/json' -d '{{\"value\": 1, \"causal-metadata\": null}}'\n\
             curl -s -X GET http://{second}/kvs/x -H 'Content-Type: application/json' -d '{{\"causal-metadata\": null}}'\n\
             curl -s http://{first}/view\n\
             curl -s http://{first}/shard/ids\n\
             grpcurl -plaintext {first} list\n\
             grpcurl -plaintext {first} grpc.health.v1.Health/Check\n\
             grpcurl -plaintext {first} causalkv.v1.Admin/Status\n\n\
             Ctrl-C stops every node.\n",
            n = self.nodes,
            s = match self.shards {
                Some(n) => format!("{n} shard(s)"),
                None => "replication-only (every node holds every key)".to_string(),
            },
            list = a.join(" "),
        )
    }
}
