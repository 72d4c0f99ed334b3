//! The REST error type of the current dialect and its one status-code table.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Message of every 503 caused by unmet causal dependencies (exact, per API.md).
pub const UNSATISFIED: &str = "Causal dependencies not satisfied; try again later";

/// A failed REST request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// Bad input; nothing changed.
    #[error("{0}")]
    BadRequest(String),
    /// No such key, replica or shard.
    #[error("{0}")]
    NotFound(String),
    /// The node has not applied writes the request depends on.
    #[error("{UNSATISFIED}")]
    Unsatisfied,
    /// No member of the owning shard answered.
    #[error("Cannot forward request")]
    CannotForward {
        /// The shard that owns the key.
        shard: u32,
        /// What went wrong.
        detail: String,
    },
    /// The node cannot serve right now (starting, resharding) or an operation failed as a whole.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status of each error: the single table.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unsatisfied | ApiError::CannotForward { .. } | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self {
            ApiError::CannotForward { shard, detail } => {
                json!({"error": self.to_string(), "shard-id": shard, "detail": detail})
            }
            _ => json!({"error": self.to_string()}),
        };
        (self.status(), Json(body)).into_response()
    }
}
