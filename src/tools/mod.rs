//! Everything the `causalkv` binary does besides serving: the history checker, the load
//! generator and its ceiling server, the fault-injection campaign, the loopback launcher, the
//! cluster status table, and the fuzz targets' bodies, plus what they and the tests share
//! (starting node processes, a seeded PRNG, a progress bar).
//!
//! Must not: be imported by the product (`server`, `api`, `rpc`, `cluster`, `domain`, `net`,
//! `ops`, `config`, `hardening`); `causalkv serve` never runs code from here.

pub mod bench;
pub mod ceiling;
pub mod check;
pub mod fuzzing;
pub mod local;
pub mod nemesis;
pub mod node_process;
pub mod progress;
pub mod rng;
pub mod sim;
pub mod status;

#[cfg(test)]
mod layers;
