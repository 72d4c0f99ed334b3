//! Starting `causalkv serve` as a child process, shared by `causalkv local`, the nemesis, the
//! integration tests and the benchmarks: one place that knows which variables configure a
//! node, where its output goes, and how to stop, pause and resume it.
//!
//! Must not: leave a process behind. Dropping a [`NodeProcess`] resumes (a paused process
//! cannot die) and kills it, and reaps it.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where a node's log (stderr) goes; stdout and stdin are always null.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Log {
    /// Discarded.
    Null,
    /// The parent's stderr.
    Inherit,
    /// Appended to this file (its directory is created).
    File(PathBuf),
}

/// How to start one node: the executable, its environment and its log. Kept by callers that
/// restart a node, so a restart gets the same configuration (or an edited one).
#[derive(Clone, Debug)]
pub struct ServeCommand {
    exe: PathBuf,
    env: Vec<(String, String)>,
    log: Log,
}

/// The variables a node is configured by; never inherited from the caller's environment.
const NODE_VARS: [&str; 3] = ["SOCKET_ADDRESS", "VIEW", "SHARD_COUNT"];

impl ServeCommand {
    /// A node at `addr` whose `VIEW` is `view`, in replication-only mode (no `SHARD_COUNT`)
    /// until [`ServeCommand::shards`], logging nowhere until [`ServeCommand::log`].
    pub fn new(exe: &Path, addr: &str, view: &[String]) -> ServeCommand {
        ServeCommand {
            exe: exe.to_path_buf(),
            env: vec![
                ("SOCKET_ADDRESS".into(), addr.into()),
                ("VIEW".into(), view.join(",")),
            ],
            log: Log::Null,
        }
    }

    /// Sets `SHARD_COUNT` (`None` removes it: replication-only, or a spare).
    pub fn shards(mut self, shards: Option<u32>) -> ServeCommand {
        match shards {
            Some(n) => self.set("SHARD_COUNT", &n.to_string()),
            None => self.env.retain(|(k, _)| k != "SHARD_COUNT"),
        }
        self
    }

    /// Sets one environment variable (builder form of [`ServeCommand::set`]).
    pub fn env(mut self, key: &str, value: &str) -> ServeCommand {
        self.set(key, value);
        self
    }

    /// Where stderr goes.
    pub fn log(mut self, log: Log) -> ServeCommand {
        self.log = log;
        self
    }

    /// Sets (or replaces) one environment variable for the next start.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_string(),
            None => self.env.push((key.to_string(), value.to_string())),
        }
    }

    /// The value of one variable this command sets.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Starts the node and returns at once (it serves a little later).
    pub fn spawn(&self) -> std::io::Result<NodeProcess> {
        let stderr = match &self.log {
            Log::Null => Stdio::null(),
            Log::Inherit => Stdio::inherit(),
            Log::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let f = OpenOptions::new().create(true).append(true).open(path)?;
                Stdio::from(f)
            }
        };
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve");
        for var in NODE_VARS {
            cmd.env_remove(var);
        }
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        Ok(NodeProcess { child })
    }
}

/// A running node; dropping it kills it.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
}

impl NodeProcess {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the process stays alive but runs no more (a frozen VM, a long GC pause).
    pub fn pause(&self) -> std::io::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// SIGCONT.
    pub fn resume(&self) -> std::io::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// True once the process has exited (and reaps it).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn signal(&self, sig: libc::c_int) -> std::io::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(std::io::Error::other)?;
        // SAFETY: kill(2) on our own child's pid; the child is not reaped until drop, so the
        // pid cannot have been reused.
        if unsafe { libc::kill(pid, sig) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_sets_and_replaces_variables() {
        let view = ["127.0.0.2:8090".to_string(), "127.0.0.3:8090".to_string()];
        let mut c = ServeCommand::new(Path::new("causalkv"), &view[0], &view)
            .shards(Some(2))
            .env("RUST_LOG", "info");
        assert_eq!(c.get("VIEW"), Some("127.0.0.2:8090,127.0.0.3:8090"));
        assert_eq!(c.get("SHARD_COUNT"), Some("2"));
        c.set("RUST_LOG", "warn");
        assert_eq!(c.get("RUST_LOG"), Some("warn"));
        assert_eq!(c.env.iter().filter(|(k, _)| k == "RUST_LOG").count(), 1);
        let c = c.shards(None);
        assert_eq!(c.get("SHARD_COUNT"), None);
    }

    #[test]
    fn a_paused_process_is_still_killed_on_drop() {
        // `sleep` stands in for a node: the process handling does not depend on what runs.
        let child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let mut p = NodeProcess { child };
        p.pause().expect("SIGSTOP");
        p.resume().expect("SIGCONT");
        assert!(!p.has_exited());
        p.pause().expect("SIGSTOP");
        let pid = p.id();
        drop(p);
        // reaped: the pid no longer names our child
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        assert!(!alive, "pid {pid} still alive after drop");
    }
}
