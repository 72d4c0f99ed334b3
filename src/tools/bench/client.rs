//! One virtual client's HTTP/1.1 keep-alive connection, speaking causalkv's `/kvs` API (and
//! threading the `causal-metadata` it is given from response to request, like a real client)
//! or etcd's v3 JSON gateway. Reconnects after a failure; every request is bounded in time.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpStream;

/// Bound on one request (connection set-up included); past it the request counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Which HTTP API the target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// causalkv's `/kvs/<key>` (also the ceiling server's).
    Kvs,
    /// etcd's v3 gRPC-gateway: `POST /v3/kv/put`, `POST /v3/kv/range`.
    Etcd,
}

/// What a request produced.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: Bytes,
}

/// A failed request: no answer (connection, protocol or timeout).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoAnswer(String);

#[derive(Serialize)]
struct KvsPut<'a> {
    value: &'a str,
    #[serde(rename = "causal-metadata")]
    meta: Option<&'a str>,
}

#[derive(Serialize)]
struct KvsGet<'a> {
    #[serde(rename = "causal-metadata")]
    meta: Option<&'a str>,
}

/// The part of a `/kvs` answer a client keeps (unknown fields, the value among them, skipped).
#[derive(Deserialize)]
struct KvsReply {
    #[serde(rename = "causal-metadata")]
    meta: Option<String>,
}

/// A connection to one target.
pub struct Conn {
    addr: String,
    api: Api,
    /// Send the last metadata received with each request (a causal session), or none.
    threads_metadata: bool,
    meta: Option<String>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A client of `addr` (connected on first use).
    pub fn new(addr: &str, api: Api, threads_metadata: bool) -> Self {
        Self {
            addr: addr.to_string(),
            api,
            threads_metadata,
            meta: None,
            sender: None,
        }
    }

    /// The target's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Metadata that the next request will carry.
    pub fn metadata(&self) -> Option<&str> {
        self.meta.as_deref()
    }

    /// Writes `value` (a string) under `key`.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<Answer, NoAnswer> {
        let (method, path, body) = match self.api {
            Api::Kvs => (
                Method::PUT,
                format!("/kvs/{key}"),
                serde_json::to_vec(&KvsPut {
                    value,
                    meta: self.sent_meta(),
                }),
            ),
            Api::Etcd => (
                Method::POST,
                "/v3/kv/put".to_string(),
                serde_json::to_vec(&serde_json::json!({
                    "key": B64.encode(key),
                    "value": B64.encode(value),
                })),
            ),
        };
        let body = body.map_err(|e| NoAnswer(e.to_string()))?;
        self.call(method, &path, body).await
    }

    /// Reads `key`.
    pub async fn get(&mut self, key: &str) -> Result<Answer, NoAnswer> {
        let (method, path, body) = match self.api {
            Api::Kvs => (
                Method::GET,
                format!("/kvs/{key}"),
                serde_json::to_vec(&KvsGet {
                    meta: self.sent_meta(),
                }),
            ),
            Api::Etcd => (
                Method::POST,
                "/v3/kv/range".to_string(),
                serde_json::to_vec(&serde_json::json!({"key": B64.encode(key)})),
            ),
        };
        let body = body.map_err(|e| NoAnswer(e.to_string()))?;
        self.call(method, &path, body).await
    }

    fn sent_meta(&self) -> Option<&str> {
        if self.threads_metadata {
            self.meta.as_deref()
        } else {
            None
        }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Answer, NoAnswer> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| NoAnswer(e.to_string()))?;
        let attempt = async {
            let sender = self.connected().await?;
            sender.ready().await.map_err(|e| NoAnswer(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| NoAnswer(e.to_string()))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| NoAnswer(e.to_string()))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(NoAnswer("timed out".into())),
        };
        match &result {
            Ok(a) if self.api == Api::Kvs && (200..300).contains(&a.status) => {
                if let Ok(KvsReply { meta: Some(m) }) = serde_json::from_slice(&a.body) {
                    self.meta = Some(m);
                }
            }
            Ok(_) => {}
            // a broken or timed-out connection may hold a late answer: start a new one
            Err(_) => self.sender = None,
        }
        result
    }

    async fn connected(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, NoAnswer> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| NoAnswer(format!("connect {}: {e}", self.addr)))?;
            stream.set_nodelay(true).ok();
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| NoAnswer(e.to_string()))?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| NoAnswer("no connection".into()))
    }
}

/// The value of a read's answer, as JSON (`Null` when not found or not parseable).
pub fn read_value(api: Api, answer: &Answer) -> Value {
    let Ok(body) = serde_json::from_slice::<Value>(&answer.body) else {
        return Value::Null;
    };
    match api {
        Api::Kvs => body.get("value").cloned().unwrap_or(Value::Null),
        Api::Etcd => body
            .pointer("/kvs/0/value")
            .and_then(Value::as_str)
            .and_then(|v| B64.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok())
            .map(Value::String)
            .unwrap_or(Value::Null),
    }
}
