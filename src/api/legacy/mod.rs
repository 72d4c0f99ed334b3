//! The legacy dialect (API.md §3): `/key-value-store/<key>`, `/key-value-store-view` and
//! `/key-value-store-shard/...`, with `"message"` bodies and blocking (bounded) waits for
//! causal dependencies. Parsing is shared with the current dialect (`body`, `kv_input`); this
//! module only renders the older shapes. It must not implement cluster behaviour of its own.

pub mod admin;
pub mod kv;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::cluster::Node;
use crate::domain::shard::ShardId;

/// Result of a legacy handler.
pub type LegacyResult = Result<Response, LegacyError>;

/// A failed legacy request: the status comes from [`ApiError::status`] (the one table), the
/// body is `{"error": ..., "message": "Error in <METHOD>"}`.
#[derive(Debug, PartialEq, Eq)]
pub struct LegacyError {
    /// What went wrong.
    pub error: ApiError,
    /// `GET`, `PUT` or `DELETE`.
    pub method: &'static str,
}

impl LegacyError {
    /// An error of a request made with `method`.
    pub fn new(method: &'static str, error: ApiError) -> Self {
        Self { error, method }
    }
}

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.error.to_string(),
            "message": format!("Error in {}", self.method),
        });
        (self.error.status(), Json(body)).into_response()
    }
}

/// A success (or other non-error-shaped) response.
pub fn reply(status: StatusCode, body: Value) -> LegacyResult {
    Ok((status, Json(body)).into_response())
}

/// A shard id as JSON: a number, or a string (`"0"`) under the compatibility switch.
pub fn shard_json(node: &Node, id: Option<ShardId>) -> Value {
    match id {
        None => Value::Null,
        Some(id) if node.cfg.legacy_strings => Value::String(id.to_string()),
        Some(id) => json!(id),
    }
}

/// A list as JSON: an array, or one comma-separated string under the compatibility switch.
pub fn list_json<T: ToString + serde::Serialize>(node: &Node, items: &[T]) -> Value {
    if node.cfg.legacy_strings {
        let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
        Value::String(parts.join(","))
    } else {
        json!(items)
    }
}
