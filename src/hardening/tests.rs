//! Request-level protections over a router: panics, timeouts, router errors, body limit.
use super::*;
use axum::routing::get;
use tower::ServiceExt;

fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_millis(200),
        max_connections: 16,
        max_in_flight: 4,
        max_body_bytes: 1024,
    }
}

async fn call(app: &Router, method: &str, path: &str, len: Option<u64>) -> (u16, Value) {
    let mut b = axum::http::Request::builder().method(method).uri(path);
    if let Some(n) = len {
        b = b.header(header::CONTENT_LENGTH, n);
    }
    let res = app
        .clone()
        .oneshot(b.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

use serde_json::Value;

#[tokio::test]
async fn panics_timeouts_and_router_errors_become_json() {
    let app = protect(
        Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("handler bug");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }),
            )
            .route("/ok", get(|| async { "ok" }).put(|| async { "ok" })),
        &limits(),
    );
    let (s, b) = call(&app, "GET", "/boom", None).await;
    assert_eq!((s, b["error"].is_string()), (500, true), "{b}");
    let (s, b) = call(&app, "GET", "/slow", None).await;
    assert_eq!((s, b["error"].is_string()), (503, true), "{b}");
    let (s, b) = call(&app, "POST", "/ok", None).await;
    assert_eq!((s, b["error"].is_string()), (405, true), "{b}");
    let (s, b) = call(&app, "GET", "/nowhere", None).await;
    assert_eq!((s, b["error"].is_string()), (404, true), "{b}");
    let (s, b) = call(&app, "PUT", "/ok", Some(1 << 30)).await;
    assert_eq!((s, b["error"].is_string()), (413, true), "{b}");
    let (s, _) = call(&app, "GET", "/ok", None).await;
    assert_eq!(s, 200, "the router still serves after a panic");
}
