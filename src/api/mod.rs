//! REST API (axum): handlers extract, call `cluster`, and map. Both dialects share body parsing;
//! each has its own literal messages (`current`: API.md §2, `legacy`: §3).

pub mod body;
pub mod current;
pub mod error;
pub mod kv_input;
pub mod legacy;
pub mod schema;

use axum::Router;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{get, put};

use crate::cluster::Node;
use crate::domain::write_id::WriteId;

/// Response header naming the write a PUT or DELETE made (`origin/generation/seq`): which node
/// accepted it first. Not part of the course API; tools (the nemesis) and operators read it.
pub const WRITTEN_HEADER: &str = "x-causalkv-write";

/// Adds [`WRITTEN_HEADER`] to a successful write's response.
pub fn mark_written(mut resp: Response, written: Option<&WriteId>) -> Response {
    if let Some(v) = written.and_then(|w| HeaderValue::from_str(&w.to_string()).ok()) {
        resp.headers_mut().insert(WRITTEN_HEADER, v);
    }
    resp
}

const LEGACY_SHARD_IDS: &str = "/key-value-store-shard/shard-ids";
const LEGACY_NODE_SHARD: &str = "/key-value-store-shard/node-shard-id";
const LEGACY_MEMBERS: &str = "/key-value-store-shard/shard-id-members/{id}";
const LEGACY_KEY_COUNT: &str = "/key-value-store-shard/shard-id-key-count/{id}";
const LEGACY_ADD_MEMBER: &str = "/key-value-store-shard/add-member/{id}";
const LEGACY_RESHARD: &str = "/key-value-store-shard/reshard";

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
        .route(
            "/key-value-store/{key}",
            get(legacy::kv::get_kv)
                .put(legacy::kv::put_kv)
                .delete(legacy::kv::delete_kv),
        )
        .route(
            "/key-value-store-view",
            get(legacy::admin::get_view)
                .put(legacy::admin::put_view)
                .delete(legacy::admin::delete_view),
        )
        .route(LEGACY_SHARD_IDS, get(legacy::admin::shard_ids))
        .route(LEGACY_NODE_SHARD, get(legacy::admin::node_shard_id))
        .route(LEGACY_MEMBERS, get(legacy::admin::shard_members))
        .route(LEGACY_KEY_COUNT, get(legacy::admin::shard_key_count))
        .route(LEGACY_ADD_MEMBER, put(legacy::admin::add_member))
        .route(LEGACY_RESHARD, put(legacy::admin::reshard))
        .with_state(node)
}
