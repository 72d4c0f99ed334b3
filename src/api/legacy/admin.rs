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
use crate::cluster::Error as ShardOpError;
use crate::cluster::Node;

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
#[utoipa::path(
    get,
    path = "/key-value-store-view",
    operation_id = "legacy_get_view",
    tag = "legacy",
    responses(
        (status = 200, description = "the view", body = crate::api::schema::LegacyReply, example = json!({"message": "View retrieved successfully", "view": ["10.10.0.2:8085", "10.10.0.3:8085"]})),
    )
)]
pub async fn get_view(State(node): State<Node>) -> LegacyResult {
    reply(
        StatusCode::OK,
        json!({"message": "View retrieved successfully", "view": list_json(&node, &node.view())}),
    )
}

/// `PUT /key-value-store-view`
#[utoipa::path(
    put,
    path = "/key-value-store-view",
    operation_id = "legacy_put_view",
    tag = "legacy",
    request_body(content = crate::api::schema::AddressRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "added", body = crate::api::schema::LegacyReply, example = json!({"message": "Replica added successfully to the view"})),
        (status = 404, description = "already present", body = crate::api::schema::LegacyReply, example = json!({"error": "Socket address already exists in the view", "message": "Error in PUT"})),
        (status = 400, description = "bad body", body = crate::api::schema::LegacyReply, example = json!({"error": "Missing socket-address", "message": "Error in PUT"})),
    )
)]
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
#[utoipa::path(
    delete,
    path = "/key-value-store-view",
    operation_id = "legacy_delete_view",
    tag = "legacy",
    request_body(content = crate::api::schema::AddressRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "deleted", body = crate::api::schema::LegacyReply, example = json!({"message": "Replica deleted successfully from the view"})),
        (status = 404, description = "absent", body = crate::api::schema::LegacyReply, example = json!({"error": "Socket address does not exist in the view", "message": "Error in DELETE"})),
        (status = 400, description = "bad body", body = crate::api::schema::LegacyReply, example = json!({"error": "Missing socket-address", "message": "Error in DELETE"})),
    )
)]
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
#[utoipa::path(
    get,
    path = "/key-value-store-shard/shard-ids",
    operation_id = "legacy_shard_ids",
    tag = "legacy",
    responses(
        (status = 200, description = "shard ids", body = crate::api::schema::LegacyReply, example = json!({"message": "Shard IDs retrieved successfully", "shard-ids": [0, 1]})),
    )
)]
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
#[utoipa::path(
    get,
    path = "/key-value-store-shard/node-shard-id",
    operation_id = "legacy_node_shard_id",
    tag = "legacy",
    responses(
        (status = 200, description = "this node's shard", body = crate::api::schema::LegacyReply, example = json!({"message": "Shard ID of the node retrieved successfully", "shard-id": 0})),
    )
)]
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
#[utoipa::path(
    get,
    path = "/key-value-store-shard/shard-id-members/{id}",
    operation_id = "legacy_shard_members",
    tag = "legacy",
    params(("id" = String, Path, description = "a shard id (0..N-1)")),
    responses(
        (status = 200, description = "members", body = crate::api::schema::LegacyReply, example = json!({"message": "Members of shard ID retrieved successfully", "shard-id-members": ["10.10.0.2:8085", "10.10.0.3:8085"]})),
        (status = 404, description = "unknown shard", body = crate::api::schema::LegacyReply, example = json!({"error": "No shard with id 7", "message": "Error in GET"})),
    )
)]
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
#[utoipa::path(
    get,
    path = "/key-value-store-shard/shard-id-key-count/{id}",
    operation_id = "legacy_shard_key_count",
    tag = "legacy",
    params(("id" = String, Path, description = "a shard id (0..N-1)")),
    responses(
        (status = 200, description = "live keys of the shard", body = crate::api::schema::LegacyReply, example = json!({"message": "Key count of shard ID retrieved successfully", "shard-id-key-count": 300})),
        (status = 404, description = "unknown shard", body = crate::api::schema::LegacyReply, example = json!({"error": "No shard with id 7", "message": "Error in GET"})),
        (status = 503, description = "no member of the shard answered", body = crate::api::schema::LegacyReply, example = json!({"error": "shard 1 unreachable", "message": "Error in GET"})),
    )
)]
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
#[utoipa::path(
    put,
    path = "/key-value-store-shard/add-member/{id}",
    operation_id = "legacy_add_member",
    tag = "legacy",
    params(("id" = String, Path, description = "a shard id (0..N-1)")),
    request_body(content = crate::api::schema::AddressRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "added", body = crate::api::schema::LegacyReply, example = json!({"message": "Node added to shard successfully"})),
        (status = 404, description = "unknown shard or node not in the view", body = crate::api::schema::LegacyReply, example = json!({"error": "Node 10.10.0.9:8085 is not in the view", "message": "Error in PUT"})),
        (status = 400, description = "bad body", body = crate::api::schema::LegacyReply, example = json!({"error": "Missing socket-address", "message": "Error in PUT"})),
        (status = 503, description = "the change could not complete", body = crate::api::schema::LegacyReply, example = json!({"error": "This node has no shard map yet", "message": "Error in PUT"})),
    )
)]
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
#[utoipa::path(
    put,
    path = "/key-value-store-shard/reshard",
    operation_id = "legacy_reshard",
    tag = "legacy",
    request_body(content = crate::api::schema::ShardCountRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "resharded", body = crate::api::schema::LegacyReply, example = json!({"message": "Resharding done successfully"})),
        (status = 400, description = "fewer than 2 nodes per shard would remain, or bad body", body = crate::api::schema::LegacyReply, example = json!({"message": "Not enough nodes to provide fault-tolerance with the given shard count!"})),
        (status = 503, description = "the reshard could not complete (nothing changed)", body = crate::api::schema::LegacyReply, example = json!({"error": "reshard aborted", "message": "Error in PUT"})),
    )
)]
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
