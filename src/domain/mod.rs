//! Pure, deterministic core: clocks, causal metadata, the versioned store and replica, the
//! key→shard function and shard map, and peer-liveness arithmetic. No I/O, no async, no
//! axum/tonic/generated types. (`token_key` holds the process-wide token keyring.)

pub mod clock;
pub mod liveness;
pub mod metadata;
pub mod packed;
pub mod replica;
pub mod shard;
pub mod store;
pub mod table_hash;
pub mod token_key;
pub mod varint;
pub mod write_id;
