//! `GET /dashboard`: one self-contained page (HTML/CSS/JS compiled into the binary) that polls
//! `GET /dashboard/data` every second and draws the view, shards, peers and a live chart.
//!
//! Must not: load anything from another origin (the page works on an offline laptop).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use serde::Serialize;

use super::Ops;
use super::window::SecondStats;
use crate::cluster::status::NodeStatus;

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// Key count of one shard, as the cluster answers it.
#[derive(Serialize)]
pub struct ShardKeys {
    /// The shard.
    pub id: u32,
    /// Its live keys, `None` when no member answered.
    pub keys: Option<u64>,
}

/// What the page polls.
#[derive(Serialize)]
pub struct DashboardData {
    /// This node's status.
    pub node: NodeStatus,
    /// Key counts of every shard.
    pub shard_keys: Vec<ShardKeys>,
    /// Client requests and p99 of the last complete second on this node.
    pub last_second: SecondStats,
}

/// `GET /dashboard`
#[utoipa::path(
    get,
    path = "/dashboard",
    operation_id = "dashboard_page",
    tag = "operations",
    responses(
        (status = 200, description = "the dashboard page", body = String, content_type = "text/html", example = "<!doctype html>..."),
    )
)]
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

/// `GET /dashboard/data`
#[utoipa::path(
    get,
    path = "/dashboard/data",
    operation_id = "dashboard_data",
    tag = "operations",
    responses(
        (status = 200, description = "what the dashboard polls", body = serde_json::Value, example = json!({"node": {"address": "10.10.0.2:8090"}, "shard_keys": [{"id": 0, "keys": 140}], "last_second": {"requests": 250, "p99_ms": 1.2}})),
    )
)]
pub async fn data(State(ops): State<Ops>) -> Json<DashboardData> {
    let node = ops.node.status();
    let counts = node.shards.iter().map(|s| {
        let n = ops.node.clone();
        let id = s.id;
        async move {
            ShardKeys {
                id,
                keys: n.shard_key_count(id).await.ok(),
            }
        }
    });
    let shard_keys = join_all(counts).await;
    Json(DashboardData {
        node,
        shard_keys,
        last_second: ops.metrics.last_second(),
    })
}
