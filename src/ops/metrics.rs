//! Prometheus metrics (`prometheus-client`, OpenMetrics text): request counters and latency
//! histograms recorded by a tower layer ([`TrackLayer`]) on every route (REST by axum route template,
//! gRPC by method), and gauges/counters computed at scrape time from [`Node::status`].
//!
//! Must not: label by raw request path (unbounded cardinality), or hold the node's lock.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tower::{Layer, Service};

use super::collector::NodeCollector;
use super::window::{SecondStats, Window};
use crate::cluster::Node;

/// Smallest latency bucket: 100 µs, below a loopback round trip's floor.
const FIRST_BUCKET_SECONDS: f64 = 0.0001;
/// 16 doubling buckets reach ~3.3 s, above the 1 s RPC deadline and most legacy waits.
const BUCKETS: u16 = 16;
/// Most distinct gRPC method labels kept: the services define ~15 methods; anything past this
/// is someone probing made-up names and is counted as `other`.
const MAX_GRPC_LABELS: usize = 64;
/// Content type of the OpenMetrics text exposition (Prometheus scrapes it natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of a REST request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The axum route template (`/kvs/{key}`), or `unmatched`.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The response status code.
    pub status: u16,
}

/// Labels of a REST latency sample.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The axum route template.
    pub route: String,
    /// The HTTP method.
    pub method: String,
}

/// Labels of a gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    /// `/package.Service/Method`.
    pub method: String,
    /// `grpc-status` of a trailers-only answer (errors); `0` when it travels in trailers.
    pub code: String,
}

/// Labels of a gRPC latency sample.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcMethod {
    /// `/package.Service/Method`.
    pub method: String,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

/// REST instrument handles by route, then method and status.
type RestHandles = HashMap<String, HashMap<(Method, u16), (Counter, Histogram)>>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(FIRST_BUCKET_SECONDS, 2.0, BUCKETS))
}

/// The metrics of one node: a registry plus the request instruments the middleware feeds.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Hist<RouteLabels>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_latency: Hist<GrpcMethod>,
    grpc_seen: Mutex<HashSet<String>>,
    /// Handles of the REST instruments by route, then method and status: a request finds its
    /// counter and histogram without building (allocating) a label set.
    rest_handles: Mutex<RestHandles>,
    window: Window,
}

impl Metrics {
    /// Instruments for `node`; its status is read at every scrape.
    pub fn new(node: Node) -> Arc<Self> {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency: Hist<RouteLabels> = Family::new_with_constructor(latency_histogram);
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        let grpc_latency: Hist<GrpcMethod> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "causalkv_http_requests",
            "REST requests by route template, method and status",
            http_requests.clone(),
        );
        registry.register_with_unit(
            "causalkv_http_request_duration",
            "REST request latency until the response head, by route template and method",
            Unit::Seconds,
            http_latency.clone(),
        );
        registry.register(
            "causalkv_grpc_requests",
            "gRPC calls served, by method and trailers-only grpc-status",
            grpc_requests.clone(),
        );
        registry.register_with_unit(
            "causalkv_grpc_request_duration",
            "gRPC call latency until the response head (first message of a stream), by method",
            Unit::Seconds,
            grpc_latency.clone(),
        );
        registry.register_collector(Box::new(NodeCollector(node)));
        Arc::new(Metrics {
            registry,
            http_requests,
            http_latency,
            grpc_requests,
            grpc_latency,
            grpc_seen: Mutex::new(HashSet::new()),
            rest_handles: Mutex::new(HashMap::new()),
            window: Window::default(),
        })
    }

    /// Client requests and p99 of the last complete second (operations routes excluded).
    pub fn last_second(&self) -> SecondStats {
        self.window.last_second()
    }

    /// The exposition text.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    fn grpc_label(&self, path: &str) -> String {
        let mut seen = self.grpc_seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(path) {
            return path.to_string();
        }
        if seen.len() < MAX_GRPC_LABELS {
            seen.insert(path.to_string());
            return path.to_string();
        }
        "other".to_string()
    }

    /// The counter and latency histogram of REST requests to `route` answered `status`.
    fn rest(&self, route: &str, method: &Method, status: u16) -> (Counter, Histogram) {
        let mut handles = self.rest_handles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = handles
            .get(route)
            .and_then(|m| m.get(&(method.clone(), status)))
        {
            return h.clone();
        }
        let counter = self
            .http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .clone();
        let histogram = self
            .http_latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method: method.to_string(),
            })
            .clone();
        let h = (counter, histogram);
        handles
            .entry(route.to_string())
            .or_default()
            .insert((method.clone(), status), h.clone());
        h
    }

    /// Records one answered request.
    fn record(&self, route: Option<&str>, path: &str, method: &Method, resp: &Response, t: f64) {
        let grpc = route.is_some_and(|r| r.ends_with("/{*rest}"));
        if grpc {
            let method = self.grpc_label(path);
            let code = resp
                .headers()
                .get("grpc-status")
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .unwrap_or("0")
                .to_string();
            self.grpc_requests
                .get_or_create(&GrpcLabels {
                    method: method.clone(),
                    code,
                })
                .inc();
            self.grpc_latency
                .get_or_create(&GrpcMethod { method })
                .observe(t);
            return;
        }
        let route = route.unwrap_or("unmatched");
        if !super::is_ops_route(route) {
            self.window.record(t);
        }
        let (counter, latency) = self.rest(route, method, resp.status().as_u16());
        counter.inc();
        latency.observe(t);
    }
}

/// Layer that counts and times every routed request ([`Track`]): a hand-written service, not
/// `from_fn`, so a request costs no boxed future or service clone here.
#[derive(Clone)]
pub struct TrackLayer(pub Arc<Metrics>);

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;
    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// See [`TrackLayer`].
#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        // cheap clones (an Arc, a standard method); the path is copied only for gRPC calls
        let route = req.extensions().get::<MatchedPath>().cloned();
        let path = route
            .as_ref()
            .filter(|r| r.as_str().ends_with("/{*rest}"))
            .map(|_| req.uri().path().to_string())
            .unwrap_or_default();
        let method = req.method().clone();
        TrackFuture {
            fut: self.inner.call(req),
            seen: Some(Seen {
                metrics: self.metrics.clone(),
                started,
                route,
                path,
                method,
            }),
        }
    }
}

/// What [`Track`] noted of a request when it arrived.
struct Seen {
    metrics: Arc<Metrics>,
    started: Instant,
    route: Option<MatchedPath>,
    path: String,
    method: Method,
}

pin_project_lite::pin_project! {
    /// Future of [`Track`]: records the answer when it is ready.
    pub struct TrackFuture<F> {
        #[pin]
        fut: F,
        seen: Option<Seen>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.fut.poll(cx));
        if let (Ok(resp), Some(s)) = (&out, this.seen.take()) {
            s.metrics.record(
                s.route.as_ref().map(MatchedPath::as_str),
                &s.path,
                &s.method,
                resp,
                s.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(out)
    }
}
