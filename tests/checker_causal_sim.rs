//! Simulates a causally consistent replicated store (sticky sessions, causal
//! delivery of writes between replicas, last-writer-wins on concurrent
//! writes, deletes as timestamped tombstones) and checks that the checker
//! raises no false alarm on its histories, which are causal but far from
//! linearizable.

use std::collections::HashMap;
use std::fmt::Write as _;

use causalkv::tools::check::{AnomalyKind, check_history};
use causalkv::tools::rng::Rng;

type Stamp = (u64, usize);

struct Write {
    deps: Vec<u64>,
    key: usize,
    value: Option<String>,
    stamp: Stamp,
}

#[derive(Default)]
struct Replica {
    store: HashMap<usize, (Stamp, Option<String>)>,
    applied: Vec<u64>,
    lamport: u64,
}

impl Replica {
    fn apply(&mut self, w: &Write) {
        self.lamport = self.lamport.max(w.stamp.0);
        let newer = self.store.get(&w.key).is_none_or(|(s, _)| *s < w.stamp);
        if newer {
            self.store.insert(w.key, (w.stamp, w.value.clone()));
        }
    }
    fn get(&self, key: usize) -> Option<String> {
        self.store.get(&key).and_then(|(_, v)| v.clone())
    }
}

struct Sim {
    rng: Rng,
    replicas: Vec<Replica>,
    logs: Vec<Vec<Write>>,
    out: String,
    t: u64,
    /// When false, reads go to a random replica (breaks session guarantees).
    sticky: bool,
}

impl Sim {
    fn new(seed: u64, n: usize) -> Sim {
        let replicas = (0..n)
            .map(|_| Replica {
                applied: vec![0; n],
                ..Replica::default()
            })
            .collect();
        let logs = (0..n).map(|_| Vec::new()).collect();
        Sim {
            rng: Rng::new(seed, 0),
            replicas,
            logs,
            out: String::new(),
            t: 0,
            sticky: true,
        }
    }

    /// Delivers the next write of `origin` to `to` if its dependencies are met.
    fn deliver(&mut self, to: usize, origin: usize) -> bool {
        let next = self.replicas[to].applied[origin] as usize;
        let Some(w) = self.logs[origin].get(next) else {
            return false;
        };
        let replica = &mut self.replicas[to];
        let ready = (0..w.deps.len()).all(|j| j == origin || w.deps[j] <= replica.applied[j]);
        if ready {
            replica.apply(w);
            replica.applied[origin] += 1;
        }
        ready
    }

    fn record(
        &mut self,
        session: usize,
        r: usize,
        kind: &str,
        key: usize,
        value: &Option<String>,
        outcome: &str,
    ) {
        self.t += 1000;
        let v = value
            .as_ref()
            .map_or("null".to_string(), |v| format!("\"{v}\""));
        writeln!(
            self.out,
            r#"{{"type":"op","session":"s{session}","node":"10.0.0.{r}:8090","kind":"{kind}","key":"k{key}","value":{v},"meta_in":null,"meta_out":null,"invoke_ns":{},"complete_ns":{},"outcome":"{outcome}","status":null}}"#,
            self.t,
            self.t + 400
        )
        .expect("write to string");
    }

    fn client_op(&mut self, session: usize, seq: u64, keys: u64) {
        let r = session % self.replicas.len();
        let key = self.rng.below(keys) as usize;
        let roll = self.rng.below(100);
        if roll < 50 {
            let from = if self.sticky {
                r
            } else {
                self.rng.below(self.replicas.len() as u64) as usize
            };
            let value = self.replicas[from].get(key);
            self.record(session, r, "get", key, &value, "ok");
            return;
        }
        let (kind, value) = if roll < 88 {
            ("put", Some(format!("s{session}-{seq}")))
        } else {
            ("delete", None)
        };
        let outcome = if self.rng.below(20) == 0 {
            "unknown"
        } else {
            "ok"
        };
        self.record(session, r, kind, key, &value, outcome);
        if outcome == "unknown" && self.rng.below(2) == 0 {
            return; // the request never reached the replica
        }
        let replica = &mut self.replicas[r];
        replica.lamport += 1;
        let w = Write {
            deps: replica.applied.clone(),
            key,
            value,
            stamp: (replica.lamport, r),
        };
        replica.apply(&w);
        replica.applied[r] += 1;
        self.logs[r].push(w);
    }

    /// Runs `ops` client operations; between them, a delivery step happens
    /// with probability `deliver_pct`%.
    fn run(&mut self, sessions: usize, ops: usize, keys: u64, deliver_pct: u64) -> String {
        let n = self.replicas.len();
        let mut seqs = vec![0u64; sessions];
        let mut done = 0;
        while done < ops {
            if self.rng.below(100) < deliver_pct {
                let (to, from) = (
                    self.rng.below(n as u64) as usize,
                    self.rng.below(n as u64) as usize,
                );
                if to != from {
                    self.deliver(to, from);
                }
            } else {
                let s = self.rng.below(sessions as u64) as usize;
                seqs[s] += 1;
                self.client_op(s, seqs[s], keys);
                done += 1;
            }
        }
        // Heal: deliver everything, then dump the converged state of every replica.
        while (0..n).any(|to| (0..n).any(|from| to != from && self.deliver(to, from))) {}
        for key in 0..keys as usize {
            for r in 0..n {
                let v = self.replicas[r]
                    .get(key)
                    .map_or("null".to_string(), |v| format!("\"{v}\""));
                writeln!(self.out, r#"{{"type":"final","node":"10.0.0.{r}:8090","shard":0,"key":"k{key}","value":{v}}}"#)
                    .expect("write to string");
            }
        }
        std::mem::take(&mut self.out)
    }
}

#[test]
fn causal_replicated_histories_are_clean() {
    for seed in 1..=20u64 {
        let text = Sim::new(seed * 7919, 3).run(9, 1_500, 6, [30, 60, 80][seed as usize % 3]);
        let report = check_history(text.as_bytes()).expect("valid history");
        assert!(report.is_clean(), "seed {seed}: {report}");
    }
}

#[test]
fn large_causal_history_is_clean() {
    let text = Sim::new(99, 4).run(20, 20_000, 300, 70);
    let report = check_history(text.as_bytes()).expect("valid history");
    assert!(report.is_clean(), "{report}");
}

#[test]
fn non_sticky_reads_are_detected() {
    let mut sim = Sim::new(5, 3);
    sim.sticky = false;
    let text = sim.run(9, 1_500, 6, 30);
    let report = check_history(text.as_bytes()).expect("valid history");
    assert!(report.count(AnomalyKind::WriteCoRead) > 0, "{report}");
    assert!(report.count(AnomalyKind::ReadYourWrites) > 0, "{report}");
    assert!(report.count(AnomalyKind::MonotonicReads) > 0, "{report}");
}
