//! causalkv: a sharded, replicated, causally consistent key-value store.
//!
//! Layers (dependencies point inward): `server` → `api` (REST) + `rpc` (gRPC) → `cluster`
//! (async algorithms) → `domain` (pure); `net` (addresses, name resolution), `ops` (metrics,
//! dashboard, OpenAPI), `config` and `hardening` serve them. `tools` holds everything else the
//! binary does (history checker, load generator, fault injection, loopback launcher, status
//! table); the product never imports it.

pub mod api;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod hardening;
pub mod net;
pub mod ops;
pub mod rpc;
pub mod server;
pub mod tools;
