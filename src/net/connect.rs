//! The TCP connector of a gRPC channel to a peer named by host name: every (re)connection
//! resolves the name again (cache of a couple of seconds), so a peer that came back under the
//! same name with a new IP is found; a failed connection drops the cached answer and, if a fresh
//! lookup answers differently, tries the new address at once. Peers given
//! as IP literals do not use this (tonic's own connector serves them).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

/// A connector for `tonic::transport::Endpoint::connect_with_connector_lazy`.
pub type NameConnector = tower::util::ServiceFn<
    Box<
        dyn FnMut(tonic::transport::Uri) -> BoxFuture<'static, io::Result<TokioIo<TcpStream>>>
            + Send,
    >,
>;

/// A connector to `addr` (`HOST:PORT`): resolves it on every connection, tries the addresses in
/// order, each for at most `per_address`, from `source` when one is given and of the same family.
pub fn name_connector(addr: &str, source: Option<IpAddr>, per_address: Duration) -> NameConnector {
    let addr: Arc<str> = addr.into();
    tower::service_fn(Box::new(move |_uri| {
        let addr = addr.clone();
        Box::pin(async move { connect(&addr, source, per_address).await })
            as BoxFuture<'static, io::Result<TokioIo<TcpStream>>>
    }))
}

async fn connect(
    addr: &str,
    source: Option<IpAddr>,
    per_address: Duration,
) -> io::Result<TokioIo<TcpStream>> {
    let not_found = |e: super::ResolveError| io::Error::new(io::ErrorKind::NotFound, e.to_string());
    let targets = super::resolve(addr).await.map_err(not_found)?;
    let last = match try_all(addr, &targets, source, per_address).await {
        Ok(stream) => return Ok(stream),
        Err(e) => e,
    };
    // The name may point elsewhere now (a restarted pod, and the answer was cached): look it up
    // afresh, and try again at once if the answer changed.
    super::forget(addr);
    let fresh = super::resolve(addr).await.map_err(not_found)?;
    if fresh == targets {
        return Err(last);
    }
    let stream = try_all(addr, &fresh, source, per_address).await;
    if stream.is_err() {
        super::forget(addr);
    }
    stream
}

async fn try_all(
    addr: &str,
    targets: &[SocketAddr],
    source: Option<IpAddr>,
    per_address: Duration,
) -> io::Result<TokioIo<TcpStream>> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
    for &target in targets {
        match tokio::time::timeout(per_address, connect_one(target, source)).await {
            Ok(Ok(stream)) => return Ok(TokioIo::new(stream)),
            Ok(Err(e)) => last = io::Error::new(e.kind(), format!("{addr} ({target}): {e}")),
            Err(_) => {
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{addr} ({target}): connect timed out"),
                )
            }
        }
    }
    Err(last)
}

async fn connect_one(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == target.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
