//! Binds one listener and serves REST (HTTP/1.1) and gRPC (h2c) on it: the causalkv services,
//! `grpc.health.v1` and server reflection, behind the cluster authentication of internal calls
//! (`rpc::auth`) and the HTTP limits of `hardening`. Shuts down gracefully on SIGTERM/SIGINT.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::api;
use crate::cluster::Node;
use crate::cluster::batch::message_limit;
use crate::config::Config;
use crate::domain::token_key;
use crate::hardening::{self, Limits};
use crate::ops;
use crate::ops::metrics::Metrics;
use crate::rpc::auth::{self, AuthState};
use crate::rpc::client::GrpcPeers;
use crate::rpc::pb;
use crate::rpc::service::Services;
use crate::rpc::tls::TlsMaterial;

/// HTTP request bodies may exceed `CKV_MAX_VALUE_BYTES` by this much: the JSON envelope and a
/// causal-metadata token of up to 1024 clock entries. A larger value still gets the contract's
/// 400 from the handler; only far larger bodies are cut off (413) before being read.
const BODY_SLACK: usize = 256 << 10;

/// Errors that stop a server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    /// The TLS files could not be loaded or used.
    #[error("{0}")]
    Tls(#[from] crate::rpc::tls::TlsError),
    /// Reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The data directory cannot be used.
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// The combined REST + gRPC router of `node`.
pub async fn router(node: Node) -> Result<axum::Router, ServerError> {
    let services = Services(node.clone());
    // Every service accepts (and may send) one byte-bounded batch plus one largest value.
    let limit = message_limit(node.cfg.max_value_bytes);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    health
        .set_serving::<pb::replication_server::ReplicationServer<Services>>()
        .await;
    health
        .set_serving::<pb::membership_server::MembershipServer<Services>>()
        .await;
    health
        .set_serving::<pb::state_transfer_server::StateTransferServer<Services>>()
        .await;
    health
        .set_serving::<pb::admin_server::AdminServer<Services>>()
        .await;
    // Both reflection versions: grpcurl and older tools still ask v1alpha first.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let grpc = tonic::service::Routes::new(
        pb::replication_server::ReplicationServer::new(services.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    )
    .add_service(
        pb::membership_server::MembershipServer::new(services.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    )
    .add_service(
        pb::state_transfer_server::StateTransferServer::new(services.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    )
    .add_service(
        pb::admin_server::AdminServer::new(services)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    )
    .add_service(health_service)
    .add_service(reflection_v1)
    .add_service(reflection_v1alpha)
    .prepare()
    .into_axum_router()
    .layer(axum::middleware::from_fn_with_state(
        AuthState {
            key: node.cfg.cluster_key.as_ref().map(|k| k.0.as_slice().into()),
            tls_required: node.cfg.tls.is_some(),
            node: node.clone(),
        },
        auth::authorize,
    ));
    let limits = limits(&node.cfg);
    let metrics = Metrics::new(node.clone());
    let body_limit = node.cfg.max_value_bytes.saturating_add(BODY_SLACK);
    let rest = api::router(node.clone()).layer(axum::extract::DefaultBodyLimit::max(body_limit));
    let app = grpc
        .merge(rest)
        .merge(ops::router(node, metrics.clone()))
        // counts and times every routed request (REST by route template, gRPC by method)
        .layer(ops::metrics::TrackLayer(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "No such endpoint"})),
            )
        });
    Ok(hardening::protect(app, &limits))
}

fn limits(cfg: &Config) -> Limits {
    Limits {
        header_timeout: cfg.header_timeout,
        idle_timeout: cfg.idle_timeout,
        request_timeout: cfg.request_timeout,
        max_connections: cfg.max_connections,
        max_in_flight: cfg.max_in_flight,
        // a value plus its metadata token and JSON framing; never below axum's 2 MiB default
        max_body_bytes: (cfg.max_value_bytes.saturating_add(BODY_SLACK)).max(2 << 20),
    }
}

/// What the binary does with its allocator as a node starts (the library does not know which
/// allocator it runs on): typically, return what the start-up freed to the OS.
#[derive(Clone, Copy, Debug)]
pub struct MemoryHooks {
    /// Called once the node's state is rebuilt (from its data directory, if it has one).
    pub restored: fn(),
    /// Called once the node serves (after any copy from its peers).
    pub serving: fn(),
}

/// Runs a node until SIGTERM/SIGINT.
pub async fn run(cfg: Config, memory: MemoryHooks) -> Result<(), ServerError> {
    match &cfg.cluster_key {
        Some(key) => token_key::derive_from_cluster_key(&key.0),
        None => warn!(
            node = %cfg.socket_address,
            "no CKV_CLUSTER_KEY: the cluster is unauthenticated (internal calls are allowed by \
             member address only; anyone who can reach the port from a member's IP is trusted)"
        ),
    }
    let tls = cfg.tls.as_ref().map(TlsMaterial::load).transpose()?;
    let acceptor = tls.as_ref().map(TlsMaterial::acceptor).transpose()?;
    let peers = Arc::new(
        GrpcPeers::new(&cfg.socket_address, cfg.rpc_timeout)
            .with_cluster_key(cfg.cluster_key.as_ref().map(|k| k.0.as_slice()))
            .with_tls(tls.as_ref().map(TlsMaterial::client_config))
            .with_max_value(cfg.max_value_bytes)
            .with_source_ip(cfg.listen_address.ip()),
    );
    let listen = cfg.listen_address;
    let limits = limits(&cfg);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| ServerError::Bind(listen.to_string(), e))?;
    let node = match crate::storage::open(&cfg.storage)? {
        Some(storage) => Node::with_storage(cfg, peers.clone(), storage)?,
        None => Node::new(cfg, peers.clone()),
    };
    (memory.restored)();
    let mut ready = node.ready.subscribe();
    tokio::spawn(async move {
        if ready.wait_for(|r| *r).await.is_ok() {
            (memory.serving)();
        }
    });
    // A weak handle: the node owns the peers, the filter must not own the node.
    let weak = std::sync::Arc::downgrade(&node.0);
    peers.set_key_sources(Box::new(move |addr| {
        weak.upgrade()
            .is_some_and(|inner| Node(inner).is_key_source(addr))
    }));
    let app = router(node.clone()).await?;
    let mode = match node.cfg.shard_count {
        Some(n) => format!("sharded: SHARD_COUNT={n}"),
        None => "replication-only: no SHARD_COUNT, every node of the view holds every key \
                 (a spare instead if its peers were given SHARD_COUNT)"
            .to_string(),
    };
    info!(node = %node.me, %listen, incarnation = node.incarnation, %mode, "listening (REST + gRPC)");
    let starter = node.clone();
    tokio::spawn(async move {
        if let Err(e) = starter.start().await {
            tracing::error!(node = %starter.me, error = %e, "refusing to start");
            eprintln!("causalkv: {e}");
            std::process::exit(1);
        }
    });
    let stopper = node.clone();
    // `serve` stops accepting at the signal and drains open connections for a bounded time
    // (peers keep HTTP/2 connections open; they do not hold the exit), then returns.
    hardening::serve(listener, app, limits, acceptor, async move {
        shutdown_signal().await;
        info!(node = %stopper.me, "shutting down");
        stopper.shutdown();
    })
    .await;
    info!(node = %node.me, "stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
