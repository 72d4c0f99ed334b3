//! A minimal JSON-over-HTTP client for the nemesis: one request, bounded by a timeout, and a
//! classification of what the caller learned (a response, certainly not sent, or unknown).

use std::time::Duration;

use serde_json::Value;

/// What a request produced.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The server answered.
    Answer {
        /// HTTP status.
        status: u16,
        /// JSON body (a JSON string holding the text when it was not JSON).
        body: Value,
        /// The write the request made, when the server named it (`x-causalkv-write`).
        written: Option<String>,
    },
    /// The connection could not be made: the request certainly had no effect.
    NotSent(String),
    /// Timeout or a failure after sending: the request may or may not have taken effect.
    Unknown(String),
}

impl Reply {
    /// The status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Answer { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The write the request made, when the server named it.
    pub fn written(&self) -> Option<&str> {
        match self {
            Reply::Answer { written, .. } => written.as_deref(),
            _ => None,
        }
    }

    /// The body, or `Null` when there was no answer.
    pub fn body(&self) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            Reply::Answer { body, .. } => body,
            _ => &NULL,
        }
    }
}

/// Builds the shared client (no connection reuse: a restarted node must not see stale sockets).
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().pool_max_idle_per_host(0).build()
}

/// Sends `method http://addr/path` with an optional JSON body, bounded by `timeout`.
pub async fn call(
    http: &reqwest::Client,
    addr: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Reply {
    let mut rb = http
        .request(method, format!("http://{addr}{path}"))
        .timeout(timeout);
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Reply::NotSent(e.to_string()),
        Err(e) => return Reply::Unknown(e.to_string()),
    };
    let status = resp.status().as_u16();
    let written = resp
        .headers()
        .get(crate::api::WRITTEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match resp.text().await {
        Ok(text) => Reply::Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            written,
        },
        Err(e) => Reply::Unknown(e.to_string()),
    }
}

/// `GET` without a body, returning the JSON body on 200.
pub async fn get_json(
    http: &reqwest::Client,
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Option<Value> {
    match call(http, addr, reqwest::Method::GET, path, None, timeout).await {
        Reply::Answer {
            status: 200, body, ..
        } => Some(body),
        _ => None,
    }
}
