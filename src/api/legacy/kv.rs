//! Legacy key-value endpoints: `/key-value-store/<key>` PUT, GET and DELETE. Requests wait
//! (bounded by `CKV_LEGACY_WAIT_MS`) for missing causal dependencies instead of answering 503
//! at once, and a GET that learns nothing new hands back the client's token unchanged.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{LegacyError, LegacyResult, reply, shard_json};
use crate::api::body;
use crate::api::error::ApiError;
use crate::api::kv_input::{Dialect, Method, parse_request};
use crate::cluster::Node;
use crate::cluster::op::Outcome;
use crate::domain::metadata::CausalMetadata;

/// The token to return: the client's own text when the metadata did not change (byte for
/// byte, as the legacy contract requires), otherwise the canonical encoding of the new one.
fn token_out(sent: Option<&str>, meta_in: &CausalMetadata, out: Option<&CausalMetadata>) -> Value {
    match (sent, out) {
        (Some(text), Some(m)) if m == meta_in => Value::String(text.to_string()),
        (_, Some(m)) => Value::String(m.encode()),
        (_, None) => Value::Null,
    }
}

async fn kv(node: Node, key: String, method: Method, raw: Bytes) -> LegacyResult {
    let fail = |e: ApiError| LegacyError::new(method.name(), e);
    let req = parse_request(&key, method, &raw, node.cfg.max_value_bytes)
        .map_err(|e| fail(ApiError::BadRequest(e.message(Dialect::Legacy))))?;
    let reply_ = node
        .execute(&key, req.op, req.meta.clone(), node.cfg.legacy_wait)
        .await;
    let token = token_out(req.token.as_deref(), &req.meta, reply_.metadata.as_ref());
    let shard = shard_json(&node, Some(reply_.shard));
    let written = |status, message: &str| {
        reply(
            status,
            json!({"message": message, "causal-metadata": token, "shard-id": shard}),
        )
        .map(|r| crate::api::mark_written(r, reply_.written.as_ref()))
    };
    match reply_.outcome {
        Outcome::Created => written(StatusCode::CREATED, "Added successfully"),
        Outcome::Replaced => written(StatusCode::OK, "Updated successfully"),
        Outcome::Deleted => written(StatusCode::OK, "Deleted successfully"),
        Outcome::Found => {
            let value = reply_
                .value
                .as_deref()
                .map(body::stored_value)
                .unwrap_or(Value::Null);
            reply(
                StatusCode::OK,
                json!({
                    "message": "Retrieved successfully",
                    "causal-metadata": token,
                    "value": value,
                    "doesExist": true,
                    "shard-id": shard,
                }),
            )
        }
        Outcome::NotFound => reply(
            StatusCode::NOT_FOUND,
            json!({
                "doesExist": false,
                "error": "Key does not exist",
                "message": format!("Error in {}", method.name()),
            }),
        ),
        Outcome::Unsatisfied => Err(fail(ApiError::Unsatisfied)),
        Outcome::CannotForward(detail) => Err(fail(ApiError::CannotForward {
            shard: reply_.shard,
            detail,
        })),
        Outcome::Unavailable(m) => Err(fail(ApiError::Unavailable(format!(
            "Service unavailable: {m}"
        )))),
    }
}

/// `PUT /key-value-store/<key>`
#[utoipa::path(
    put,
    path = "/key-value-store/{key}",
    operation_id = "legacy_kv_put_kv",
    tag = "legacy",
    params(("key" = String, Path, description = "the key (at most 50 characters)")),
    request_body(content = crate::api::schema::KvPutRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "added", body = crate::api::schema::LegacyReply, example = json!({"message": "Added successfully", "causal-metadata": "ckv1-…", "shard-id": 0})),
        (status = 200, description = "updated", body = crate::api::schema::LegacyReply, example = json!({"message": "Updated successfully", "causal-metadata": "ckv1-…", "shard-id": 0})),
        (status = 400, description = "no value, key too long, bad metadata or body", body = crate::api::schema::LegacyReply, example = json!({"error": "Value is missing", "message": "Error in PUT"})),
        (status = 503, description = "dependencies still missing after the bounded wait", body = crate::api::schema::LegacyReply, example = json!({"error": "Causal dependencies not satisfied; try again later", "message": "Error in PUT"})),
    )
)]
pub async fn put_kv(State(node): State<Node>, Path(key): Path<String>, raw: Bytes) -> LegacyResult {
    kv(node, key, Method::Put, raw).await
}

/// `GET /key-value-store/<key>`
#[utoipa::path(
    get,
    path = "/key-value-store/{key}",
    operation_id = "legacy_kv_get_kv",
    tag = "legacy",
    params(("key" = String, Path, description = "the key (at most 50 characters)")),
    request_body(content = crate::api::schema::MetadataRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "found", body = crate::api::schema::LegacyReply, example = json!({"message": "Retrieved successfully", "causal-metadata": "ckv1-…", "value": 1, "doesExist": true, "shard-id": 0})),
        (status = 404, description = "no such key", body = crate::api::schema::LegacyReply, example = json!({"doesExist": false, "error": "Key does not exist", "message": "Error in GET"})),
        (status = 400, description = "key too long, bad metadata or body", body = crate::api::schema::LegacyReply, example = json!({"error": "Key is too long", "message": "Error in GET"})),
        (status = 503, description = "dependencies still missing after the bounded wait", body = crate::api::schema::LegacyReply, example = json!({"error": "Causal dependencies not satisfied; try again later", "message": "Error in GET"})),
    )
)]
pub async fn get_kv(State(node): State<Node>, Path(key): Path<String>, raw: Bytes) -> LegacyResult {
    kv(node, key, Method::Get, raw).await
}

/// `DELETE /key-value-store/<key>`
#[utoipa::path(
    delete,
    path = "/key-value-store/{key}",
    operation_id = "legacy_kv_delete_kv",
    tag = "legacy",
    params(("key" = String, Path, description = "the key (at most 50 characters)")),
    request_body(content = crate::api::schema::MetadataRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "deleted", body = crate::api::schema::LegacyReply, example = json!({"message": "Deleted successfully", "causal-metadata": "ckv1-…", "shard-id": 0})),
        (status = 404, description = "no such key", body = crate::api::schema::LegacyReply, example = json!({"doesExist": false, "error": "Key does not exist", "message": "Error in DELETE"})),
        (status = 400, description = "key too long, bad metadata or body", body = crate::api::schema::LegacyReply, example = json!({"error": "Key is too long", "message": "Error in DELETE"})),
        (status = 503, description = "dependencies still missing after the bounded wait", body = crate::api::schema::LegacyReply, example = json!({"error": "Causal dependencies not satisfied; try again later", "message": "Error in DELETE"})),
    )
)]
pub async fn delete_kv(
    State(node): State<Node>,
    Path(key): Path<String>,
    raw: Bytes,
) -> LegacyResult {
    kv(node, key, Method::Delete, raw).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::VectorClock;

    #[test]
    fn unchanged_metadata_returns_the_token_as_sent() {
        let m = CausalMetadata {
            generation: 1,
            clock: VectorClock::from_entries([("10.0.0.1:1".to_string(), 3)]),
        };
        let sent = m.encode();
        assert_eq!(token_out(Some(&sent), &m, Some(&m)), json!(sent));
        let mut newer = m.clone();
        newer
            .clock
            .merge(&VectorClock::from_entries([("10.0.0.2:1".to_string(), 1)]));
        assert_eq!(
            token_out(Some(&sent), &m, Some(&newer)),
            json!(newer.encode())
        );
        assert_eq!(token_out(None, &m, None), Value::Null);
        let empty = CausalMetadata::empty();
        assert_eq!(token_out(None, &empty, Some(&empty)), json!(empty.encode()));
    }
}
