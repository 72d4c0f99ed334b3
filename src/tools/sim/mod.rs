//! Deterministic simulation of a causalkv cluster (level 2 of the testing ladder): real
//! `cluster::Node`s in one process, talking through an in-memory network ([`net`]) that delays,
//! reorders, drops and partitions, with processes killed and restarted, all under tokio's paused
//! clock on one thread, so a run depends only on its seed. [`vopr`] runs seeded random
//! schedules (client sessions + faults) and checks every history with the causal checker.
//!
//! A test and operator tool: the server never runs any of it. (The scripted `Peers` for one
//! node's unit tests is `cluster::scripted`.)

pub mod cli;
pub mod cluster;
pub mod net;
pub mod peers;
pub mod vopr;
