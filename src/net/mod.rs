//! Node addresses beyond IP literals: parsing `HOST:PORT` (and `IP:PORT`, `[v6]:PORT`), resolving
//! host names with a pure-Rust resolver (so the static `FROM scratch` image resolves them too),
//! and the TCP connector the gRPC client uses for named peers. It knows nothing of the cluster.

pub mod addr;
pub mod connect;
pub mod resolve;

pub use addr::{AddrError, NodeAddr};
pub use resolve::{ResolveError, forget, resolve};
