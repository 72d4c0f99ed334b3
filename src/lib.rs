//! causalkv: a sharded, replicated, causally consistent key-value store.
//!
//! Layers (dependencies point inward): `server` → `api` (REST) + `rpc` (gRPC) → `cluster`
//! (async algorithms) → `domain` (pure). `check` verifies recorded client histories;
//! `nemesis` injects faults into a loopback cluster and checks the history it records.

pub mod api;
pub mod bench;
pub mod ceiling;
pub mod check;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod fuzzing;
pub mod hardening;
pub mod local;
pub mod nemesis;
pub mod net;
pub mod ops;
pub mod progress;
pub mod rpc;
pub mod server;
pub mod sim;
pub mod status_cli;
