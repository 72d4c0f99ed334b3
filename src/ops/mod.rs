//! Operations endpoints (API.md §5) on the node's port: liveness and readiness probes,
//! Prometheus metrics, and a live dashboard with the JSON it polls.
//!
//! Must not: change any data, or read the node's state other than through `Node` methods.

pub mod collector;
pub mod dashboard;
pub mod metrics;
pub mod openapi;
pub mod process;
pub mod window;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::cluster::Node;
use crate::cluster::status::Readiness;
use metrics::Metrics;

/// Path prefixes of the operations routes (not client traffic on the dashboard's chart).
const OPS_PREFIXES: [&str; 5] = ["/healthz", "/readyz", "/metrics", "/dashboard", "/openapi"];

/// True for an operations route template.
pub fn is_ops_route(route: &str) -> bool {
    OPS_PREFIXES.iter().any(|p| route.starts_with(p))
}

/// State of the operations handlers.
#[derive(Clone)]
pub struct Ops {
    /// The node.
    pub node: Node,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
}

/// The operations routes (no fallback: the server owns it).
pub fn router(node: Node, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/data", get(dashboard::data))
        .route("/openapi.json", get(openapi))
        .with_state(Ops { node, metrics })
}

/// `GET /healthz`: 200 while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "ops_healthz",
    tag = "operations",
    responses(
        (status = 200, description = "the process serves", body = crate::api::schema::HealthReply, example = json!({"status": "ok", "node": "10.10.0.2:8090", "incarnation": 1795304697257u64})),
    )
)]
pub async fn healthz(State(ops): State<Ops>) -> Response {
    let body = json!({"status": "ok", "node": &*ops.node.me, "incarnation": ops.node.incarnation});
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /readyz`: 200 once synced and serving, 503 `{"error": ...}` while catching up.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "ops_readyz",
    tag = "operations",
    responses(
        (status = 200, description = "synced and serving", body = crate::api::schema::ReadyReply, example = json!({"status": "ready"})),
        (status = 503, description = "catching up", body = crate::api::schema::ErrorReply, example = json!({"error": "catching up: replica of this shard is incomplete"})),
    )
)]
pub async fn readyz(State(ops): State<Ops>) -> Response {
    match ops.node.readiness() {
        Readiness::Ready => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Readiness::NotReady(why) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": why}))).into_response()
        }
    }
}

/// `GET /metrics`: OpenMetrics text.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "ops_scrape",
    tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text", example = "# TYPE causalkv_keys gauge\ncausalkv_keys{shard=\"0\"} 140\n# EOF\n"),
        (status = 500, description = "encoding failed", body = crate::api::schema::ErrorReply, example = json!({"error": "metrics could not be encoded"})),
    )
)]
pub async fn scrape(State(ops): State<Ops>) -> Response {
    match ops.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "metrics could not be encoded"})),
        )
            .into_response(),
    }
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of every REST route, generated from the
/// handlers' annotations.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "ops_openapi",
    tag = "operations",
    responses(
        (status = 200, description = "this document", body = serde_json::Value, example = json!({"openapi": "3.1.0"})),
    )
)]
pub async fn openapi() -> Response {
    match openapi::document().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "document could not be encoded"})),
        )
            .into_response(),
    }
}
