//! REST API (axum): handlers extract, call `cluster`, and map. Both dialects share body parsing;
//! each has its own literal messages.

pub mod body;
pub mod current;
pub mod error;
pub mod kv_input;

use axum::Router;
use axum::routing::{get, put};

use crate::cluster::Node;

/// The REST routes of both dialects (no fallback: the server owns it).
pub fn router(node: Node) -> Router {
    Router::new()
        .route(
            "/view",
            get(current::get_view)
                .put(current::put_view)
                .delete(current::delete_view),
        )
        .route(
            "/kvs/{key}",
            get(current::get_kv)
                .put(current::put_kv)
                .delete(current::delete_kv),
        )
        .route("/shard/ids", get(current::shard_ids))
        .route("/shard/node-shard-id", get(current::node_shard_id))
        .route("/shard/members/{id}", get(current::shard_members))
        .route("/shard/key-count/{id}", get(current::shard_key_count))
        .route("/shard/add-member/{id}", put(current::add_member))
        .route("/shard/reshard", put(current::reshard))
        .with_state(node)
}
