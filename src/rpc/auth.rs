//! Authentication of internal gRPC calls.
//!
//! With a cluster key, every call carries `x-ckv-ts` (ms since the Unix epoch), `x-ckv-sender`
//! (the caller's `IP:PORT`) and `x-ckv-auth`: hex HMAC-SHA256 under the key of
//! `"causalkv-rpc-v1\n" + path + "\n" + ts + "\n" + sender`. The server recomputes it (constant
//! time) and refuses calls whose timestamp is outside [`REPLAY_WINDOW_MS`]. Without a key, calls
//! that change state are accepted only from the IP of a member, except `Announce`, which a
//! node may send from the address it claims (checked by the service). With mutual TLS
//! configured (`rpc::tls`), internal calls must also arrive over a TLS connection whose client
//! certificate the CA signed (that certificate then counts as membership). Reflection, health and
//! the read-only `Admin` calls are open in both modes. Refused calls get `UNAUTHENTICATED` and
//! never reach a service.
//!
//! Must not change node state.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tonic::transport::Channel;

use crate::cluster::Node;
use crate::cluster::now_ms;

/// Calls signed longer ago (or further ahead, for clock skew) than this are refused: a
/// captured call cannot be replayed later. Nodes' clocks must agree within it.
pub const REPLAY_WINDOW_MS: u64 = 30_000;
/// Prefix of the causalkv services' paths (reflection and health live elsewhere).
const INTERNAL_PREFIX: &str = "/causalkv.v1.";
/// Calls open to anyone: they only read.
const OPEN_PATHS: [&str; 2] = ["/causalkv.v1.Admin/Status", "/causalkv.v1.Admin/KeyCount"];
/// The one state-changing call a non-member may make (from the address it claims).
const ANNOUNCE_PATH: &str = "/causalkv.v1.Membership/Announce";
const TS: &str = "x-ckv-ts";
const SENDER: &str = "x-ckv-sender";
const AUTH: &str = "x-ckv-auth";

/// Who made an internal call, as far as the transport can tell; attached to every internal
/// request that passed [`authorize`].
#[derive(Clone, Debug)]
pub struct Caller {
    /// The peer's socket IP (`None` when the transport does not tell).
    pub ip: Option<IpAddr>,
    /// The sender proven by the cluster key (`None` without a key).
    pub signed_sender: Option<String>,
}

fn mac(key: &[u8], path: &str, ts: &str, sender: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in [b"causalkv-rpc-v1" as &[u8], path.as_bytes(), ts.as_bytes()] {
        m.update(part);
        m.update(b"\n");
    }
    m.update(sender.as_bytes());
    m
}

/// Signs an outgoing call to `path` by `sender`.
fn sign(key: &[u8], path: &str, sender: &str, headers: &mut HeaderMap) {
    let ts = now_ms().to_string();
    let tag = hex::encode(mac(key, path, &ts, sender).finalize().into_bytes());
    for (name, value) in [(TS, ts), (SENDER, sender.to_string()), (AUTH, tag)] {
        if let Ok(v) = value.parse() {
            headers.insert(name, v);
        }
    }
}

/// Checks the signature of an incoming call; `Ok(sender)` when valid.
fn verify(key: &[u8], path: &str, headers: &HeaderMap) -> Result<String, &'static str> {
    let get = |n| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(sender), Some(tag)) = (get(TS), get(SENDER), get(AUTH)) else {
        return Err("missing cluster credentials");
    };
    let t: u64 = ts.parse().map_err(|_| "bad timestamp")?;
    if now_ms().abs_diff(t) > REPLAY_WINDOW_MS {
        return Err("timestamp outside the replay window");
    }
    let tag = hex::decode(tag).map_err(|_| "bad signature")?;
    mac(key, path, ts, sender)
        .verify_slice(&tag)
        .map_err(|_| "bad signature")?;
    Ok(sender.to_string())
}

/// A channel that signs every call (when a key is set).
#[derive(Clone)]
pub struct SignedChannel {
    inner: Channel,
    key: Option<Arc<[u8]>>,
    sender: Arc<str>,
}

impl SignedChannel {
    /// Wraps `inner`; calls are signed as `sender` under `key`.
    pub fn new(inner: Channel, key: Option<Arc<[u8]>>, sender: Arc<str>) -> Self {
        Self { inner, key, sender }
    }
}

impl tower::Service<axum::http::Request<tonic::body::Body>> for SignedChannel {
    type Response = <Channel as tower::Service<axum::http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as tower::Service<axum::http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as tower::Service<axum::http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(key) = &self.key {
            let path = req.uri().path().to_string();
            sign(key, &path, &self.sender, req.headers_mut());
        }
        self.inner.call(req)
    }
}

/// State of the [`authorize`] middleware.
#[derive(Clone)]
pub struct AuthState {
    /// The node (for the member allow-list).
    pub node: Node,
    /// The cluster key, if configured.
    pub key: Option<Arc<[u8]>>,
    /// Mutual TLS is configured: internal calls must arrive over a verified TLS connection.
    pub tls_required: bool,
}

fn refuse(why: &str) -> Response {
    tonic::Status::unauthenticated(why.to_string())
        .into_http::<axum::body::Body>()
        .into_response()
}

/// Middleware on the gRPC routes: lets open calls through, authenticates the others, and
/// attaches a [`Caller`].
pub async fn authorize(State(auth): State<AuthState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !path.starts_with(INTERNAL_PREFIX) || OPEN_PATHS.contains(&path.as_str()) {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let verified_tls = req
        .extensions()
        .get::<crate::hardening::VerifiedTlsPeer>()
        .is_some();
    if auth.tls_required && !verified_tls {
        return refuse("internal calls need mutual TLS with a cluster certificate");
    }
    let signed_sender = match &auth.key {
        Some(key) => match verify(key, &path, req.headers()) {
            Ok(sender) => Some(sender),
            Err(why) => return refuse(why),
        },
        None => {
            let member = verified_tls
                || match ip {
                    Some(ip) => auth.node.is_member_ip(ip).await,
                    None => false,
                };
            if !member && path != ANNOUNCE_PATH {
                return refuse("internal calls are for cluster members only");
            }
            None
        }
    };
    req.extensions_mut().insert(Caller { ip, signed_sender });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_path_sender_and_time() {
        let key = b"0123456789abcdef0123";
        let mut h = HeaderMap::new();
        sign(
            key,
            "/causalkv.v1.Membership/ViewChange",
            "1.2.3.4:5",
            &mut h,
        );
        assert_eq!(
            verify(key, "/causalkv.v1.Membership/ViewChange", &h),
            Ok("1.2.3.4:5".to_string())
        );
        assert!(verify(key, "/causalkv.v1.Membership/InstallShardMap", &h).is_err());
        assert!(
            verify(
                b"another-key-of-16-bytes",
                "/causalkv.v1.Membership/ViewChange",
                &h
            )
            .is_err()
        );
        let mut forged = h.clone();
        forged.insert(SENDER, "6.6.6.6:1".parse().unwrap());
        assert!(verify(key, "/causalkv.v1.Membership/ViewChange", &forged).is_err());
        let mut old = h.clone();
        let ts = (now_ms() - REPLAY_WINDOW_MS - 1_000).to_string();
        let tag = hex::encode(mac(key, "/p", &ts, "1.2.3.4:5").finalize().into_bytes());
        old.insert(TS, ts.parse().unwrap());
        old.insert(AUTH, tag.parse().unwrap());
        assert_eq!(
            verify(key, "/p", &old),
            Err("timestamp outside the replay window")
        );
        assert!(verify(key, "/p", &HeaderMap::new()).is_err());
    }
}
