//! The node processes of a nemesis run: spawn, SIGKILL + restart, SIGSTOP/SIGCONT. Dropping
//! [`Nodes`] resumes and kills every child, so a panic or an early error leaves nothing behind.
//! Addresses are loopback only.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Port every node listens on (each has its own loopback address).
pub const PORT: u16 = 8090;

/// One node: its address, the environment it is (re)started with, and its process.
#[derive(Debug)]
struct Slot {
    addr: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    paused: bool,
}

/// The processes of one run; the guard that stops them.
#[derive(Debug)]
pub struct Nodes {
    exe: PathBuf,
    logs: Option<PathBuf>,
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
                let mut env = vec![
                    ("SOCKET_ADDRESS".to_string(), addr.clone()),
                    ("VIEW".to_string(), view.join(",")),
                ];
                if i < members {
                    env.push(("SHARD_COUNT".to_string(), shards.to_string()));
                }
                Slot {
                    addr: addr.clone(),
                    env,
                    child: None,
                    paused: false,
                }
            })
            .collect();
        Nodes {
            exe: exe.to_path_buf(),
            logs,
            slots,
        }
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
        let stderr = match &self.logs {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let name = self.slots[i].addr.replace(':', "_");
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{name}.log")))?;
                Stdio::from(f)
            }
            None => Stdio::null(),
        };
        let slot = &mut self.slots[i];
        let child = Command::new(&self.exe)
            .arg("serve")
            .envs(slot.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        slot.child = Some(child);
        slot.paused = false;
        Ok(())
    }

    /// Sets the VIEW used by later restarts of every node.
    pub fn set_restart_view(&mut self, view: &[String]) {
        let joined = view.join(",");
        for slot in &mut self.slots {
            for (k, v) in &mut slot.env {
                if k == "VIEW" {
                    v.clone_from(&joined);
                }
            }
        }
    }

    /// SIGKILL and reap node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.slots[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.slots[i].paused = false;
    }

    /// True while node `i` has a process.
    pub fn is_running(&self, i: usize) -> bool {
        self.slots[i].child.is_some()
    }

    /// SIGSTOP node `i`.
    pub fn pause(&mut self, i: usize) -> std::io::Result<()> {
        self.signal(i, "-STOP")?;
        self.slots[i].paused = true;
        Ok(())
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) -> std::io::Result<()> {
        self.signal(i, "-CONT")?;
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

    fn signal(&self, i: usize, sig: &str) -> std::io::Result<()> {
        let Some(child) = &self.slots[i].child else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill {sig} failed")))
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some(mut c) = slot.child.take() {
                let _ = Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
