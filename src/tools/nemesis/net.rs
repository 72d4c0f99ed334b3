//! Network partitions on loopback with `iptables`: isolating a node drops every packet to or
//! from its 127.x address (filter table, OUTPUT chain, which loopback traffic traverses).
//! Nodes bind their outgoing gRPC connections to their own address, so the cut is symmetric.
//! Only rules for the run's own 127.x addresses are ever added; dropping [`Partitions`]
//! deletes every rule it added.

use std::process::{Command, Stdio};

/// The iptables rules added by one run.
#[derive(Debug)]
pub struct Partitions {
    available: bool,
    why_not: String,
    rules: Vec<Vec<String>>,
}

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Partitions {
    /// Probes whether iptables works here (it needs root / CAP_NET_ADMIN).
    pub fn probe() -> Partitions {
        let (available, why_not) = match iptables(&["-n", "-L", "OUTPUT"]) {
            Ok(()) => (true, String::new()),
            Err(why_not) => (false, why_not),
        };
        Partitions {
            available,
            why_not,
            rules: Vec::new(),
        }
    }

    /// True when partitions can be injected.
    pub fn available(&self) -> bool {
        self.available
    }

    /// Why partitions are unavailable (empty when they are available).
    pub fn why_not(&self) -> &str {
        &self.why_not
    }

    /// Cuts the node at `addr` (`IP:PORT`, loopback only) off from everyone.
    pub fn isolate(&mut self, addr: &str) -> Result<(), String> {
        let ip = addr.split(':').next().unwrap_or_default();
        if !ip.starts_with("127.") {
            return Err(format!("refusing to partition non-loopback address {addr}"));
        }
        for dir in ["-d", "-s"] {
            let rule: Vec<String> = ["OUTPUT", dir, ip, "-j", "DROP"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let mut insert: Vec<&str> = vec!["-I"];
            insert.extend(rule.iter().map(String::as_str));
            iptables(&insert)?;
            self.rules.push(rule);
        }
        Ok(())
    }

    /// Removes every rule added so far.
    pub fn heal(&mut self) {
        for rule in self.rules.drain(..) {
            let mut delete: Vec<&str> = vec!["-D"];
            delete.extend(rule.iter().map(String::as_str));
            if let Err(e) = iptables(&delete) {
                tracing::warn!("could not delete iptables rule {rule:?}: {e}");
            }
        }
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        self.heal();
    }
}
