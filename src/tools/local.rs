//! `causalkv local`: a cluster of real server processes on loopback (127.0.0.2, .3, … port
//! 8090 by default), for trying the product without Docker. Stops everything on Ctrl-C.

use std::process::{Child, Command, Stdio};

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

    /// Starts every node as a child process of `exe`; the caller owns the children.
    pub fn spawn(&self, exe: &std::path::Path) -> std::io::Result<Vec<Child>> {
        let view = self.addresses().join(",");
        self.addresses()
            .iter()
            .map(|addr| {
                let mut cmd = Command::new(exe);
                cmd.arg("serve")
                    .env("SOCKET_ADDRESS", addr)
                    .env("VIEW", &view)
                    .env_remove("SHARD_COUNT")
                    .stdin(Stdio::null());
                if let Some(n) = self.shards {
                    cmd.env("SHARD_COUNT", n.to_string());
                }
                cmd.spawn()
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

/// Kills and reaps every child.
pub fn stop_all(children: &mut [Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
}
