//! The node processes of a nemesis run: spawn, SIGKILL + restart, SIGSTOP/SIGCONT. Dropping
//! [`Nodes`] resumes and kills every child, so a panic or an early error leaves nothing behind.
//! Addresses are loopback only.

use std::path::{Path, PathBuf};

use crate::tools::node_process::{Log, NodeProcess, ServeCommand};

/// Port every node listens on (each has its own loopback address).
pub const PORT: u16 = 8090;

/// One node: its address, how it is (re)started, and its process.
#[derive(Debug)]
struct Slot {
    addr: String,
    cmd: ServeCommand,
    child: Option<NodeProcess>,
    paused: bool,
}

/// The processes of one run; the guard that stops them.
#[derive(Debug)]
pub struct Nodes {
    slots: Vec<Slot>,
}

/// Loopback addresses of a run: `127.(30 + seed % 100).block.{2..}:8090`. Use a `block` of
/// 251..=254: the test harness numbers its blocks 1..=250, so they never collide.
pub fn addresses(seed: u64, block: u8, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("127.{}.{block}.{}:{PORT}", 30 + seed % 100, i + 2))
        .collect()
}

impl Nodes {
    /// Prepares `addrs` (not started). The first `members` nodes get `SHARD_COUNT=shards`;
    /// the rest are spares. Every node's VIEW lists all addresses, as a restart needs.
    pub fn new(
        exe: &Path,
        logs: Option<PathBuf>,
        addrs: &[String],
        members: usize,
        shards: u32,
    ) -> Nodes {
        let slots = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let view = if i < members {
                    &addrs[..members]
                } else {
                    addrs
                };
                let log = match &logs {
                    Some(dir) => Log::File(dir.join(format!("{}.log", addr.replace(':', "_")))),
                    None => Log::Null,
                };
                let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
                let cmd = ServeCommand::new(exe, addr, view)
                    .shards((i < members).then_some(shards))
                    .env("RUST_LOG", &rust_log)
                    .log(log);
                Slot {
                    addr: addr.clone(),
                    cmd,
                    child: None,
                    paused: false,
                }
            })
            .collect();
        Nodes { slots }
    }

    /// Address of node `i`.
    pub fn addr(&self, i: usize) -> &str {
        &self.slots[i].addr
    }

    /// Number of nodes (started or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Starts node `i` (its VIEW becomes the full address list for later restarts).
    pub fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let slot = &mut self.slots[i];
        slot.child = Some(slot.cmd.spawn()?);
        slot.paused = false;
        Ok(())
    }

    /// Sets the VIEW used by later restarts of every node.
    pub fn set_restart_view(&mut self, view: &[String]) {
        let joined = view.join(",");
        for slot in &mut self.slots {
            slot.cmd.set("VIEW", &joined);
        }
    }

    /// SIGKILL and reap node `i`.
    pub fn kill(&mut self, i: usize) {
        self.slots[i].child = None;
        self.slots[i].paused = false;
    }

    /// True while node `i` has a process.
    pub fn is_running(&self, i: usize) -> bool {
        self.slots[i].child.is_some()
    }

    /// SIGSTOP node `i`.
    pub fn pause(&mut self, i: usize) -> std::io::Result<()> {
        if let Some(c) = &self.slots[i].child {
            c.pause()?;
        }
        self.slots[i].paused = true;
        Ok(())
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) -> std::io::Result<()> {
        if let Some(c) = &self.slots[i].child {
            c.resume()?;
        }
        self.slots[i].paused = false;
        Ok(())
    }

    /// Resumes every paused node (healing).
    pub fn resume_all(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].paused {
                let _ = self.resume(i);
            }
        }
    }
}
