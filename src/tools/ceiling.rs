//! The benchmark's ceiling: a minimal axum server with causalkv's `/kvs/<key>` PUT/GET/DELETE
//! handlers (same parsing, same metadata decoding, same JSON answers) over one in-memory map,
//! with no replication, no causal checks and no forwarding. What causalkv could reach on this
//! machine if consistency and fault tolerance were free.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::serve::ListenerExt;
use serde_json::json;

use crate::api::body;
use crate::api::kv_input::{Dialect, Method, parse};
use crate::cluster::op::KvOp;

/// Options of `causalkv ceiling`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9200")]
    pub listen: SocketAddr,
}

/// `causalkv ceiling`: serves until Ctrl-C.
pub fn main(args: Args) -> anyhow::Result<i32> {
    tokio::runtime::Runtime::new()?.block_on(serve(args.listen))?;
    Ok(0)
}

/// Values are capped as in causalkv's default configuration.
const MAX_VALUE_BYTES: usize = 1 << 20;
/// Lock stripes of the map, so the ceiling is not limited by one lock.
const STRIPES: usize = 64;

/// One lock stripe: keys → JSON text of their values.
type Stripe = Mutex<HashMap<String, Arc<str>>>;

#[derive(Clone, Default)]
struct Map(Arc<Vec<Stripe>>);

impl Map {
    fn new() -> Self {
        Self(Arc::new((0..STRIPES).map(|_| Mutex::default()).collect()))
    }

    fn stripe(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Arc<str>>> {
        let i = crate::domain::shard::key_shard(key, STRIPES as u32) as usize;
        self.0[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn kv(map: Map, key: String, method: Method, raw: Bytes) -> Response {
    let (op, meta) = match parse(&key, method, &raw, MAX_VALUE_BYTES) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.message(Dialect::Current);
            return (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response();
        }
    };
    let token = meta.encode();
    let (status, answer) = match op {
        KvOp::Put(v) => match map.stripe(&key).insert(key, v) {
            None => (StatusCode::CREATED, "created"),
            Some(_) => (StatusCode::OK, "replaced"),
        },
        KvOp::Delete => match map.stripe(&key).remove(&key) {
            Some(_) => (StatusCode::OK, "deleted"),
            None => (StatusCode::NOT_FOUND, ""),
        },
        KvOp::Get => {
            let found = map.stripe(&key).get(&key).cloned();
            return match found {
                Some(v) => body::kv_answer(StatusCode::OK, "found", Some(&token), 0, Some(&v)),
                None => not_found(),
            };
        }
    };
    if status == StatusCode::NOT_FOUND {
        return not_found();
    }
    // the same rendering as causalkv's handlers (api::current)
    body::kv_answer(status, answer, Some(&token), 0, None)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "Key does not exist", "shard-id": 0})),
    )
        .into_response()
}

/// The ceiling's router.
pub fn router() -> Router {
    Router::new()
        .route(
            "/kvs/{key}",
            put(|State(m): State<Map>, Path(k): Path<String>, raw: Bytes| {
                kv(m, k, Method::Put, raw)
            })
            .get(|State(m): State<Map>, Path(k): Path<String>, raw: Bytes| {
                kv(m, k, Method::Get, raw)
            })
            .delete(|State(m): State<Map>, Path(k): Path<String>, raw: Bytes| {
                kv(m, k, Method::Delete, raw)
            }),
        )
        .with_state(Map::new())
}

/// Serves the ceiling on `addr` until Ctrl-C.
pub async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    // small answers go out at once (no Nagle delay waiting for the client's delayed ACK)
    let listener = tokio::net::TcpListener::bind(addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tracing::info!(%addr, "ceiling server listening");
    axum::serve(listener, router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
