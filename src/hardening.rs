//! HTTP hardening for the one listener: a connection cap, a header-read timeout (slowloris),
//! an idle timeout, a per-request timeout and an in-flight cap for REST, JSON bodies for the
//! errors axum would answer in plain text or empty (404, 405, 413), and a panic in one request
//! answered as a JSON 500 while the node lives on.
//!
//! Must not know about routes or cluster state: it wraps whatever router it is given.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::warn;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How often a connection's idle watchdog looks at its last activity.
const IDLE_CHECK: Duration = Duration::from_millis(250);
/// How long open connections may finish after shutdown starts.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Limits of the HTTP server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time to send a request's headers (and, for a new connection, its first byte).
    pub header_timeout: Duration,
    /// Time a connection may sit with no bytes moving either way.
    pub idle_timeout: Duration,
    /// Longest a REST request may take.
    pub request_timeout: Duration,
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// REST requests in progress at most; more get 503 at once.
    pub max_in_flight: usize,
    /// Largest REST request body; a larger `Content-Length` gets 413 before any of it is read.
    pub max_body_bytes: usize,
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn json_error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "error": msg }))).into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked; answered 500, node continues");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
}

/// Wraps `app` in the request-level protections ([`front::Front`]: panics, router errors, the
/// REST in-flight cap, timeout and declared-body limit; and axum's body limit for extractors).
pub fn protect(app: Router, limits: &Limits) -> Router {
    app.layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(front::FrontLayer::new(
            limits.max_in_flight,
            limits.request_timeout,
            limits.max_body_bytes,
        ))
}

/// Attached to every request of a connection that completed a TLS handshake with a client
/// certificate verified against the configured CA.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedTlsPeer;

/// First byte of a TLS handshake record: how a TLS connection is told from plain HTTP.
const TLS_HANDSHAKE: u8 = 0x16;

/// A stream that notes that bytes moved (a flag the idle watchdog reads and clears; no clock
/// read per read or write).
struct Tracked<T> {
    io: T,
    moved: Arc<AtomicBool>,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    // hyper writes a response's head and body with one writev instead of copying them together
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Resolves once no bytes moved for `idle` (or none at all within `first` of the start), as
/// seen every [`IDLE_CHECK`].
async fn idle_watch(moved: Arc<AtomicBool>, first: Duration, idle: Duration) {
    let mut last = Instant::now();
    let mut any = false;
    loop {
        tokio::time::sleep(IDLE_CHECK).await;
        if moved.swap(false, Ordering::Relaxed) {
            last = Instant::now();
            any = true;
            continue;
        }
        let limit = if any { idle } else { first };
        if last.elapsed() > limit {
            return;
        }
    }
}

/// What every connection of one server shares.
struct Shared {
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    /// Effective idle limit (never below the request timeout).
    idle: Duration,
}

/// Serves one accepted connection: TLS when it starts with a handshake and TLS is configured
/// (requests then carry [`VerifiedTlsPeer`]), plain HTTP otherwise.
async fn connection(
    sh: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    graceful: hyper_util::server::graceful::Watcher,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let moved = Arc::new(AtomicBool::new(false));
    let (limits, idle) = (sh.limits, sh.idle);
    let app = sh.app.clone();
    let service = move |verified: bool| {
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            if verified {
                req.extensions_mut().insert(VerifiedTlsPeer);
            }
            tower::ServiceExt::oneshot(app.clone(), req)
        })
    };
    let mut first = [0u8; 1];
    let is_tls = match &sh.tls {
        None => false,
        Some(_) => matches!(
            tokio::time::timeout(limits.header_timeout, tcp.peek(&mut first)).await,
            Ok(Ok(1)) if first[0] == TLS_HANDSHAKE
        ),
    };
    let watch = idle_watch(moved.clone(), limits.header_timeout, idle);
    let conn: Pin<Box<dyn Future<Output = ()> + Send>> = match sh.tls.clone().filter(|_| is_tls) {
        Some(acceptor) => {
            let stream =
                match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    _ => return None,
                };
            let io = TokioIo::new(Tracked { io: stream, moved });
            let c = sh
                .builder
                .serve_connection_with_upgrades(io, service(true))
                .into_owned();
            let c = graceful.watch(c);
            Box::pin(async move {
                let _ = c.await;
            })
        }
        None => {
            let io = TokioIo::new(Tracked { io: tcp, moved });
            let c = sh
                .builder
                .serve_connection_with_upgrades(io, service(false))
                .into_owned();
            let c = graceful.watch(c);
            Box::pin(async move {
                let _ = c.await;
            })
        }
    };
    Some(async move {
        tokio::select! {
            _ = conn => {}
            _ = watch => {}
        }
    })
}

/// Serves `app` on `listener` (HTTP/1.1 and h2c, and TLS connections when `tls` is set) under
/// `limits` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let shared = Arc::new(Shared {
        app,
        tls,
        builder,
        limits,
        // A REST request may legitimately wait its whole timeout with no bytes moving (a
        // legacy request waiting for dependencies): the idle limit never cuts it short.
        idle: limits
            .idle_timeout
            .max(limits.request_timeout + Duration::from_secs(1)),
    });
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        // small answers go out at once (no Nagle delay waiting for the client's delayed ACK)
        let _ = tcp.set_nodelay(true);
        let (sh, watcher) = (shared.clone(), graceful.watcher());
        tokio::spawn(async move {
            if let Some(conn) = connection(sh, tcp, peer, watcher).await {
                conn.await;
            }
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown()).await;
}

mod front;

#[cfg(test)]
mod tests;
