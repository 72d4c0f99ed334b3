//! The current dialect: `/view`, `/kvs/<key>`, `/shard/...` with the exact JSON of API.md §2.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::body;
use super::error::ApiError;
use super::kv_input::{Dialect, Method, parse};
use crate::cluster::Error as ShardOpError;
use crate::cluster::Node;
use crate::cluster::op::Outcome;

type ApiResult = Result<Response, ApiError>;

fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// `GET /view`
#[utoipa::path(
    get,
    path = "/view",
    operation_id = "current_get_view",
    tag = "current",
    responses(
        (status = 200, description = "the view", body = crate::api::schema::ViewReply, example = json!({"view": ["10.10.0.2:8090", "10.10.0.3:8090"]})),
    )
)]
pub async fn get_view(State(node): State<Node>) -> ApiResult {
    ok(StatusCode::OK, json!({"view": node.view()}))
}

/// `PUT /view`
#[utoipa::path(
    put,
    path = "/view",
    operation_id = "current_put_view",
    tag = "current",
    request_body(content = crate::api::schema::AddressRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "added", body = crate::api::schema::ResultReply, example = json!({"result": "added"})),
        (status = 200, description = "already present", body = crate::api::schema::ResultReply, example = json!({"result": "already present"})),
        (status = 400, description = "body not JSON or no socket-address", body = crate::api::schema::ErrorReply, example = json!({"error": "Missing socket-address"})),
    )
)]
pub async fn put_view(State(node): State<Node>, raw: Bytes) -> ApiResult {
    let obj = body::object(&raw).map_err(ApiError::BadRequest)?;
    let addr = body::socket_address(&obj).map_err(ApiError::BadRequest)?;
    if node.add_to_view(&addr) {
        ok(StatusCode::CREATED, json!({"result": "added"}))
    } else {
        ok(StatusCode::OK, json!({"result": "already present"}))
    }
}

/// `DELETE /view`
#[utoipa::path(
    delete,
    path = "/view",
    operation_id = "current_delete_view",
    tag = "current",
    request_body(content = crate::api::schema::AddressRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "deleted", body = crate::api::schema::ResultReply, example = json!({"result": "deleted"})),
        (status = 404, description = "not in the view", body = crate::api::schema::ErrorReply, example = json!({"error": "View has no such replica"})),
        (status = 400, description = "body not JSON or no socket-address", body = crate::api::schema::ErrorReply, example = json!({"error": "Missing socket-address"})),
    )
)]
pub async fn delete_view(State(node): State<Node>, raw: Bytes) -> ApiResult {
    let obj = body::object(&raw).map_err(ApiError::BadRequest)?;
    let addr = body::socket_address(&obj).map_err(ApiError::BadRequest)?;
    if node.remove_from_view(&addr) {
        ok(StatusCode::OK, json!({"result": "deleted"}))
    } else {
        Err(ApiError::NotFound("View has no such replica".into()))
    }
}

async fn kv(node: Node, key: String, method: Method, raw: Bytes) -> ApiResult {
    let (op, meta) = parse(&key, method, &raw, node.cfg.max_value_bytes)
        .map_err(|e| ApiError::BadRequest(e.message(Dialect::Current)))?;
    let reply = node.execute(&key, op, meta, Duration::ZERO).await;
    let token = reply.metadata.as_ref().map(|m| m.encode());
    let shard = reply.shard;
    // answers written directly (body::kv_answer): the same bytes as json!, without building
    // a Value, and a found value's JSON text copied in rather than parsed and serialized again
    let written = |status, result: &str| {
        Ok(super::mark_written(
            body::kv_answer(status, result, token.as_deref(), shard, None),
            reply.written.as_ref(),
        ))
    };
    match reply.outcome {
        Outcome::Created => written(StatusCode::CREATED, "created"),
        Outcome::Replaced => written(StatusCode::OK, "replaced"),
        Outcome::Deleted => written(StatusCode::OK, "deleted"),
        Outcome::Found => Ok(body::kv_answer(
            StatusCode::OK,
            "found",
            token.as_deref(),
            shard,
            Some(reply.value.as_deref().unwrap_or("null")),
        )),
        Outcome::NotFound => Ok((
            StatusCode::NOT_FOUND,
            Json(json!({"error": "Key does not exist", "shard-id": shard})),
        )
            .into_response()),
        Outcome::Unsatisfied => Err(ApiError::Unsatisfied),
        Outcome::CannotForward(detail) => Err(ApiError::CannotForward { shard, detail }),
        Outcome::Unavailable(m) => Err(ApiError::Unavailable(format!("Service unavailable: {m}"))),
    }
}

/// `PUT /kvs/<key>`
#[utoipa::path(
    put,
    path = "/kvs/{key}",
    operation_id = "current_put_kv",
    tag = "current",
    params(("key" = String, Path, description = "the key (at most 50 characters)")),
    request_body(content = crate::api::schema::KvPutRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "created", body = crate::api::schema::KvReply, example = json!({"result": "created", "causal-metadata": "ckv1-…", "shard-id": 0})),
        (status = 200, description = "replaced", body = crate::api::schema::KvReply, example = json!({"result": "replaced", "causal-metadata": "ckv1-…", "shard-id": 0})),
        (status = 400, description = "no value, key too long, bad metadata, value too large or body not JSON", body = crate::api::schema::ErrorReply, example = json!({"error": "PUT request does not specify a value"})),
        (status = 503, description = "dependencies not yet applied here, or the owning shard cannot be reached", body = crate::api::schema::ErrorReply, example = json!({"error": "Causal dependencies not satisfied; try again later"})),
    )
)]
pub async fn put_kv(State(node): State<Node>, Path(key): Path<String>, raw: Bytes) -> ApiResult {
    kv(node, key, Method::Put, raw).await
}

/// `GET /kvs/<key>`
#[utoipa::path(
    get,
    path = "/kvs/{key}",
    operation_id = "current_get_kv",
    tag = "current",
    params(("key" = String, Path, description = "the key (at most 50 characters)")),
    request_body(content = crate::api::schema::MetadataRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "found", body = crate::api::schema::KvReply, example = json!({"result": "found", "value": {"any": "json"}, "causal-metadata": "ckv1-…", "shard-id": 0})),
        (status = 404, description = "no such key", body = crate::api::schema::ErrorReply, example = json!({"error": "Key does not exist"})),
        (status = 400, description = "key too long, bad metadata or body not JSON", body = crate::api::schema::ErrorReply, example = json!({"error": "Key is too long"})),
        (status = 503, description = "dependencies not yet applied here, or the owning shard cannot be reached", body = crate::api::schema::ErrorReply, example = json!({"error": "Cannot forward request", "shard-id": 1, "detail": "no member of shard 1 answered"})),
    )
)]
pub async fn get_kv(State(node): State<Node>, Path(key): Path<String>, raw: Bytes) -> ApiResult {
    kv(node, key, Method::Get, raw).await
}

/// `DELETE /kvs/<key>`
#[utoipa::path(
    delete,
    path = "/kvs/{key}",
    operation_id = "current_delete_kv",
    tag = "current",
    params(("key" = String, Path, description = "the key (at most 50 characters)")),
    request_body(content = crate::api::schema::MetadataRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "deleted", body = crate::api::schema::KvReply, example = json!({"result": "deleted", "causal-metadata": "ckv1-…", "shard-id": 0})),
        (status = 404, description = "no such key", body = crate::api::schema::ErrorReply, example = json!({"error": "Key does not exist"})),
        (status = 400, description = "key too long, bad metadata or body not JSON", body = crate::api::schema::ErrorReply, example = json!({"error": "Key is too long"})),
        (status = 503, description = "dependencies not yet applied here", body = crate::api::schema::ErrorReply, example = json!({"error": "Causal dependencies not satisfied; try again later"})),
    )
)]
pub async fn delete_kv(State(node): State<Node>, Path(key): Path<String>, raw: Bytes) -> ApiResult {
    kv(node, key, Method::Delete, raw).await
}

/// Maps shard-operation failures onto the status table.
pub fn shard_error(e: ShardOpError) -> ApiError {
    match e {
        ShardOpError::UnknownShard(_) | ShardOpError::NotInView(_) => {
            ApiError::NotFound(e.to_string())
        }
        ShardOpError::NotEnoughNodes | ShardOpError::AlreadyAssigned(..) => {
            ApiError::BadRequest(e.to_string())
        }
        _ => ApiError::Unavailable(e.to_string()),
    }
}

/// Parses a shard id from the path (unknown when not a number).
pub fn shard_id(raw: &str) -> Result<u32, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("No shard with id {raw}")))
}

/// `GET /shard/ids`
#[utoipa::path(
    get,
    path = "/shard/ids",
    operation_id = "current_shard_ids",
    tag = "current",
    responses(
        (status = 200, description = "shard ids", body = crate::api::schema::ShardIdsReply, example = json!({"shard-ids": [0, 1]})),
    )
)]
pub async fn shard_ids(State(node): State<Node>) -> ApiResult {
    ok(StatusCode::OK, json!({"shard-ids": node.shard_ids()}))
}

/// `GET /shard/node-shard-id`
#[utoipa::path(
    get,
    path = "/shard/node-shard-id",
    operation_id = "current_node_shard_id",
    tag = "current",
    responses(
        (status = 200, description = "this node's shard (null for a spare)", body = crate::api::schema::NodeShardReply, example = json!({"node-shard-id": 0})),
    )
)]
pub async fn node_shard_id(State(node): State<Node>) -> ApiResult {
    ok(StatusCode::OK, json!({"node-shard-id": node.node_shard()}))
}

/// `GET /shard/members/<id>`
#[utoipa::path(
    get,
    path = "/shard/members/{id}",
    operation_id = "current_shard_members",
    tag = "current",
    params(("id" = String, Path, description = "a shard id (0..N-1)")),
    responses(
        (status = 200, description = "members", body = crate::api::schema::MembersReply, example = json!({"shard-members": ["10.10.0.2:8090", "10.10.0.3:8090"]})),
        (status = 404, description = "unknown shard", body = crate::api::schema::ErrorReply, example = json!({"error": "No shard with id 7"})),
    )
)]
pub async fn shard_members(State(node): State<Node>, Path(id): Path<String>) -> ApiResult {
    let id = shard_id(&id)?;
    match node.shard_members(id) {
        Some(m) => ok(StatusCode::OK, json!({"shard-members": m})),
        None => Err(shard_error(ShardOpError::UnknownShard(id))),
    }
}

/// `GET /shard/key-count/<id>`
#[utoipa::path(
    get,
    path = "/shard/key-count/{id}",
    operation_id = "current_shard_key_count",
    tag = "current",
    params(("id" = String, Path, description = "a shard id (0..N-1)")),
    responses(
        (status = 200, description = "live keys of the shard", body = crate::api::schema::KeyCountReply, example = json!({"shard-key-count": 300})),
        (status = 404, description = "unknown shard", body = crate::api::schema::ErrorReply, example = json!({"error": "No shard with id 7"})),
        (status = 503, description = "no member of the shard answered", body = crate::api::schema::ErrorReply, example = json!({"error": "shard 1 unreachable"})),
    )
)]
pub async fn shard_key_count(State(node): State<Node>, Path(id): Path<String>) -> ApiResult {
    let n = node
        .shard_key_count(shard_id(&id)?)
        .await
        .map_err(shard_error)?;
    ok(StatusCode::OK, json!({"shard-key-count": n}))
}

/// `PUT /shard/add-member/<id>`
#[utoipa::path(
    put,
    path = "/shard/add-member/{id}",
    operation_id = "current_add_member",
    tag = "current",
    params(("id" = String, Path, description = "a shard id (0..N-1)")),
    request_body(content = crate::api::schema::AddressRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "added", body = crate::api::schema::ResultReply, example = json!({"result": "node added to shard"})),
        (status = 404, description = "unknown shard, or node not in the view", body = crate::api::schema::ErrorReply, example = json!({"error": "Node 10.10.0.9:8090 is not in the view"})),
        (status = 400, description = "body not JSON, or the node is in another shard", body = crate::api::schema::ErrorReply, example = json!({"error": "Missing socket-address"})),
        (status = 503, description = "the change could not complete", body = crate::api::schema::ErrorReply, example = json!({"error": "This node has no shard map yet"})),
    )
)]
pub async fn add_member(State(node): State<Node>, Path(id): Path<String>, raw: Bytes) -> ApiResult {
    let id = shard_id(&id)?;
    let obj = body::object(&raw).map_err(ApiError::BadRequest)?;
    let addr = body::socket_address(&obj).map_err(ApiError::BadRequest)?;
    node.add_member(id, &addr).await.map_err(shard_error)?;
    ok(StatusCode::OK, json!({"result": "node added to shard"}))
}

/// `PUT /shard/reshard`
#[utoipa::path(
    put,
    path = "/shard/reshard",
    operation_id = "current_reshard",
    tag = "current",
    request_body(content = crate::api::schema::ShardCountRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "resharded", body = crate::api::schema::ResultReply, example = json!({"result": "resharded"})),
        (status = 400, description = "fewer than 2 nodes per shard would remain, or bad body", body = crate::api::schema::ErrorReply, example = json!({"error": "Not enough nodes to provide fault tolerance with requested shard count"})),
        (status = 503, description = "the reshard could not complete (nothing changed)", body = crate::api::schema::ErrorReply, example = json!({"error": "reshard aborted"})),
    )
)]
pub async fn reshard(State(node): State<Node>, raw: Bytes) -> ApiResult {
    let obj = body::object(&raw).map_err(ApiError::BadRequest)?;
    let n = body::shard_count(&obj).map_err(ApiError::BadRequest)?;
    node.reshard(n).await.map_err(shard_error)?;
    ok(StatusCode::OK, json!({"result": "resharded"}))
}
