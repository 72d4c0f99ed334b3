//! The request front: one tower layer doing what four did (a panic answered as a JSON 500,
//! axum's plain-text router errors rewritten as JSON, the REST in-flight cap, the REST request
//! timeout and the declared-body limit).
//!
//! One hand-written service instead of three `from_fn` middlewares and a panic catcher: each
//! `from_fn` boxed its future and its inner service on every request, and the timeout armed a
//! timer even for a request answered on its first poll. Here nothing is allocated for a request
//! that completes at once, and the timer is armed only when the handler has to wait.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use super::{is_grpc, json_error, panic_response};

/// What every request of a server shares.
#[derive(Debug)]
struct Settings {
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    max_body: usize,
}

/// Layer of [`Front`].
#[derive(Clone, Debug)]
pub struct FrontLayer(Arc<Settings>);

impl FrontLayer {
    /// At most `max_in_flight` REST requests at once, each at most `timeout`, with a declared
    /// body of at most `max_body` bytes. gRPC calls pass (they have their own deadlines).
    pub fn new(max_in_flight: usize, timeout: Duration, max_body: usize) -> Self {
        Self(Arc::new(Settings {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            timeout,
            max_body,
        }))
    }
}

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;
    fn layer(&self, inner: S) -> Front<S> {
        Front {
            inner,
            settings: self.0.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Front<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Service<Request> for Front<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = FrontFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let rest = !is_grpc(&req);
        let mut permit = None;
        if rest {
            if declared_length(&req).is_some_and(|n| n > self.settings.max_body as u64) {
                let mut res = json_error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
                // the unread body makes the connection unusable for another request
                res.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                return FrontFuture::answered(res);
            }
            match self.settings.in_flight.clone().try_acquire_owned() {
                Ok(p) => permit = Some(p),
                Err(_) => {
                    return FrontFuture::answered(json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Server busy; try again later",
                    ));
                }
            }
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(fut) => FrontFuture {
                fut: Some(fut),
                answered: None,
                rest,
                timeout: self.settings.timeout,
                sleep: None,
                _permit: permit,
            },
            Err(p) => FrontFuture::answered(panic_response(p)),
        }
    }
}

fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

pin_project_lite::pin_project! {
    /// Future of [`Front`].
    pub struct FrontFuture<F> {
        #[pin]
        fut: Option<F>,
        answered: Option<Response>,
        rest: bool,
        timeout: Duration,
        // armed at the first Pending of a REST request
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        _permit: Option<OwnedSemaphorePermit>,
    }
}

impl<F> FrontFuture<F> {
    fn answered(res: Response) -> Self {
        Self {
            fut: None,
            answered: Some(res),
            rest: false,
            timeout: Duration::ZERO,
            sleep: None,
            _permit: None,
        }
    }
}

impl<F> Future for FrontFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(res) = this.answered.take() {
            return Poll::Ready(Ok(res));
        }
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Ready(Ok(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
            )));
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(Ok(res))) => {
                this.fut.set(None);
                let res = if *this.rest { json_errors(res) } else { res };
                return Poll::Ready(Ok(res));
            }
            Ok(Poll::Ready(Err(e))) => match e {},
            Ok(Poll::Pending) => {}
            Err(p) => {
                this.fut.set(None);
                return Poll::Ready(Ok(panic_response(p)));
            }
        }
        if !*this.rest {
            return Poll::Pending;
        }
        let timeout = *this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        this.fut.set(None);
        Poll::Ready(Ok(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Request timed out",
        )))
    }
}

/// Rewrites axum's plain-text or empty 404/405/413/415 into `{"error": ...}` (API.md §4-5).
fn json_errors(res: Response) -> Response {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let msg = match res.status() {
        _ if is_json => return res,
        StatusCode::NOT_FOUND => "No such endpoint",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported media type",
        _ => return res,
    };
    let allow = res.headers().get(header::ALLOW).cloned();
    let mut out = json_error(res.status(), msg);
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}
