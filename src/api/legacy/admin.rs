//! Legacy view and shard endpoints: `/key-value-store-view` and `/key-value-store-shard/...`,
//! with the literal messages of API.md §3. Thin: every decision is made in `cluster`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;

use super::{LegacyError, LegacyResult, list_json, reply, shard_json};
use crate::api::body;
use crate::api::current::{shard_error, shard_id};
use crate::api::error::ApiError;
use crate::cluster::Node;
use crate::cluster::shards::ShardOpError;

/// Body of a reshard refused for lack of nodes (exact legacy text: hyphen and "!").
pub const NOT_ENOUGH_NODES: &str =
    "Not enough nodes to provide fault-tolerance with the given shard count!";

fn bad(method: &'static str) -> impl Fn(String) -> LegacyError {
    move |m| LegacyError::new(method, ApiError::BadRequest(m))
}

fn socket_address(raw: &Bytes, method: &'static str) -> Result<String, LegacyError> {
    let obj = body::object(raw).map_err(bad(method))?;
    body::socket_address(&obj).map_err(bad(method))
}

/// `GET /key-value-store-view`
pub async fn get_view(State(node): State<Node>) -> LegacyResult {
    reply(
        StatusCode::OK,
        json!({"message": "View retrieved successfully", "view": list_json(&node, &node.view())}),
    )
}

/// `PUT /key-value-store-view`
pub async fn put_view(State(node): State<Node>, raw: Bytes) -> LegacyResult {
    let addr = socket_address(&raw, "PUT")?;
    if node.add_to_view(&addr) {
        reply(
            StatusCode::CREATED,
            json!({"message": "Replica added successfully to the view"}),
        )
    } else {
        Err(LegacyError::new(
            "PUT",
            ApiError::NotFound("Socket address already exists in the view".into()),
        ))
    }
}

/// `DELETE /key-value-store-view`
pub async fn delete_view(State(node): State<Node>, raw: Bytes) -> LegacyResult {
    let addr = socket_address(&raw, "DELETE")?;
    if node.remove_from_view(&addr) {
        reply(
            StatusCode::OK,
            json!({"message": "Replica deleted successfully from the view"}),
        )
    } else {
        Err(LegacyError::new(
            "DELETE",
            ApiError::NotFound("Socket address does not exist in the view".into()),
        ))
    }
}

/// `GET /key-value-store-shard/shard-ids`
pub async fn shard_ids(State(node): State<Node>) -> LegacyResult {
    reply(
        StatusCode::OK,
        json!({
            "message": "Shard IDs retrieved successfully",
            "shard-ids": list_json(&node, &node.shard_ids()),
        }),
    )
}

/// `GET /key-value-store-shard/node-shard-id`
pub async fn node_shard_id(State(node): State<Node>) -> LegacyResult {
    reply(
        StatusCode::OK,
        json!({
            "message": "Shard ID of the node retrieved successfully",
            "shard-id": shard_json(&node, node.node_shard()),
        }),
    )
}

/// `GET /key-value-store-shard/shard-id-members/<id>`
pub async fn shard_members(State(node): State<Node>, Path(id): Path<String>) -> LegacyResult {
    let fail = |e| LegacyError::new("GET", e);
    let id = shard_id(&id).map_err(fail)?;
    match node.shard_members(id) {
        Some(m) => reply(
            StatusCode::OK,
            json!({
                "message": "Members of shard ID retrieved successfully",
                "shard-id-members": list_json(&node, &m),
            }),
        ),
        None => Err(fail(shard_error(ShardOpError::UnknownShard(id)))),
    }
}

/// `GET /key-value-store-shard/shard-id-key-count/<id>`
pub async fn shard_key_count(State(node): State<Node>, Path(id): Path<String>) -> LegacyResult {
    let fail = |e| LegacyError::new("GET", e);
    let id = shard_id(&id).map_err(fail)?;
    let n = node
        .shard_key_count(id)
        .await
        .map_err(|e| fail(shard_error(e)))?;
    reply(
        StatusCode::OK,
        json!({
            "message": "Key count of shard ID retrieved successfully",
            "shard-id-key-count": n,
        }),
    )
}

/// `PUT /key-value-store-shard/add-member/<id>`
pub async fn add_member(
    State(node): State<Node>,
    Path(id): Path<String>,
    raw: Bytes,
) -> LegacyResult {
    let fail = |e| LegacyError::new("PUT", e);
    let id = shard_id(&id).map_err(fail)?;
    let addr = socket_address(&raw, "PUT")?;
    node.add_member(id, &addr)
        .await
        .map_err(|e| fail(shard_error(e)))?;
    reply(
        StatusCode::OK,
        json!({"message": "Node added to shard successfully"}),
    )
}

/// `PUT /key-value-store-shard/reshard`
pub async fn reshard(State(node): State<Node>, raw: Bytes) -> LegacyResult {
    let obj = body::object(&raw).map_err(bad("PUT"))?;
    let n = body::shard_count(&obj).map_err(bad("PUT"))?;
    match node.reshard(n).await {
        Ok(()) => reply(
            StatusCode::OK,
            json!({"message": "Resharding done successfully"}),
        ),
        Err(ShardOpError::NotEnoughNodes) => reply(
            StatusCode::BAD_REQUEST,
            json!({"message": NOT_ENOUGH_NODES}),
        ),
        Err(e) => Err(LegacyError::new("PUT", shard_error(e))),
    }
}
