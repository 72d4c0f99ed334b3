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
use super::kv_input::{InputError, Method, parse};
use crate::cluster::Node;
use crate::cluster::kv::Outcome;
use crate::cluster::shards::ShardOpError;

type ApiResult = Result<Response, ApiError>;

fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// `GET /view`
pub async fn get_view(State(node): State<Node>) -> ApiResult {
    ok(StatusCode::OK, json!({"view": node.view()}))
}

/// `PUT /view`
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
    let (op, meta) = parse(&key, method, &raw, node.cfg.max_value_bytes).map_err(|e| match e {
        InputError::KeyTooLong => ApiError::BadRequest("Key is too long".into()),
        InputError::ValueMissing => {
            ApiError::BadRequest("PUT request does not specify a value".into())
        }
        InputError::Invalid(m) => ApiError::BadRequest(m),
    })?;
    let reply = node.execute(&key, op, meta, Duration::ZERO).await;
    let token = reply.metadata.as_ref().map(|m| m.encode());
    let shard = reply.shard;
    let written = |status, result: &str| {
        ok(
            status,
            json!({"result": result, "causal-metadata": token, "shard-id": shard}),
        )
        .map(|r| super::mark_written(r, reply.written.as_ref()))
    };
    match reply.outcome {
        Outcome::Created => written(StatusCode::CREATED, "created"),
        Outcome::Replaced => written(StatusCode::OK, "replaced"),
        Outcome::Deleted => written(StatusCode::OK, "deleted"),
        Outcome::Found => {
            let value = reply
                .value
                .as_deref()
                .map(body::stored_value)
                .unwrap_or(Value::Null);
            ok(
                StatusCode::OK,
                json!({"result": "found", "value": value, "causal-metadata": token, "shard-id": shard}),
            )
        }
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
pub async fn put_kv(State(node): State<Node>, Path(key): Path<String>, raw: Bytes) -> ApiResult {
    kv(node, key, Method::Put, raw).await
}

/// `GET /kvs/<key>`
pub async fn get_kv(State(node): State<Node>, Path(key): Path<String>, raw: Bytes) -> ApiResult {
    kv(node, key, Method::Get, raw).await
}

/// `DELETE /kvs/<key>`
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
        ShardOpError::Failed(_) => ApiError::Unavailable(e.to_string()),
    }
}

/// Parses a shard id from the path (unknown when not a number).
pub fn shard_id(raw: &str) -> Result<u32, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("No shard with id {raw}")))
}

/// `GET /shard/ids`
pub async fn shard_ids(State(node): State<Node>) -> ApiResult {
    ok(StatusCode::OK, json!({"shard-ids": node.shard_ids()}))
}

/// `GET /shard/node-shard-id`
pub async fn node_shard_id(State(node): State<Node>) -> ApiResult {
    ok(StatusCode::OK, json!({"node-shard-id": node.node_shard()}))
}

/// `GET /shard/members/<id>`
pub async fn shard_members(State(node): State<Node>, Path(id): Path<String>) -> ApiResult {
    let id = shard_id(&id)?;
    match node.shard_members(id) {
        Some(m) => ok(StatusCode::OK, json!({"shard-members": m})),
        None => Err(shard_error(ShardOpError::UnknownShard(id))),
    }
}

/// `GET /shard/key-count/<id>`
pub async fn shard_key_count(State(node): State<Node>, Path(id): Path<String>) -> ApiResult {
    let n = node
        .shard_key_count(shard_id(&id)?)
        .await
        .map_err(shard_error)?;
    ok(StatusCode::OK, json!({"shard-key-count": n}))
}

/// `PUT /shard/add-member/<id>`
pub async fn add_member(State(node): State<Node>, Path(id): Path<String>, raw: Bytes) -> ApiResult {
    let id = shard_id(&id)?;
    let obj = body::object(&raw).map_err(ApiError::BadRequest)?;
    let addr = body::socket_address(&obj).map_err(ApiError::BadRequest)?;
    node.add_member(id, &addr).await.map_err(shard_error)?;
    ok(StatusCode::OK, json!({"result": "node added to shard"}))
}

/// `PUT /shard/reshard`
pub async fn reshard(State(node): State<Node>, raw: Bytes) -> ApiResult {
    let obj = body::object(&raw).map_err(ApiError::BadRequest)?;
    let n = body::shard_count(&obj).map_err(ApiError::BadRequest)?;
    node.reshard(n).await.map_err(shard_error)?;
    ok(StatusCode::OK, json!({"result": "resharded"}))
}
