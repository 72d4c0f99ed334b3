//! One virtual client's HTTP/1.1 keep-alive connection, speaking causalkv's `/kvs` API (and
//! threading the `causal-metadata` it is given from response to request, like a real client)
//! or etcd's v3 JSON gateway. Reconnects after a failure; every request is bounded in time.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
///
/// A minimal HTTP/1.1 client written for this one job (not hyper): the request is formatted
/// into a buffer that is reused, written with one `write` on a `TCP_NODELAY` socket, and the
/// answer parsed in place (`httparse`), all inside the calling task. hyper's client runs its
/// connection in a separate task, so every request crossed two task wake-ups; that and the
/// per-request allocations cost more than the ceiling server's own work (see bench/README.md).
pub struct Conn {
    addr: String,
    api: Api,
    /// Send the last metadata received with each request (a causal session), or none.
    threads_metadata: bool,
    meta: Option<String>,
    stream: Option<TcpStream>,
    /// The request being written (reused).
    out: Vec<u8>,
    /// Bytes read and not yet consumed (reused).
    inp: Vec<u8>,
}

/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Largest response body accepted.
const MAX_BODY: usize = 64 << 20;

impl Conn {
    /// A client of `addr` (connected on first use).
    pub fn new(addr: &str, api: Api, threads_metadata: bool) -> Self {
        Self {
            addr: addr.to_string(),
            api,
            threads_metadata,
            meta: None,
            stream: None,
            out: Vec::with_capacity(512),
            inp: Vec::with_capacity(4096),
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
        let mut body = Vec::with_capacity(value.len() + 160);
        let r = match self.api {
            Api::Kvs => serde_json::to_writer(
                &mut body,
                &KvsPut {
                    value,
                    meta: self.sent_meta(),
                },
            ),
            Api::Etcd => serde_json::to_writer(
                &mut body,
                &serde_json::json!({
                    "key": B64.encode(key),
                    "value": B64.encode(value),
                }),
            ),
        };
        r.map_err(|e| NoAnswer(e.to_string()))?;
        match self.api {
            Api::Kvs => self.call("PUT", "/kvs/", key, &body).await,
            Api::Etcd => self.call("POST", "/v3/kv/put", "", &body).await,
        }
    }

    /// Reads `key`.
    pub async fn get(&mut self, key: &str) -> Result<Answer, NoAnswer> {
        let mut body = Vec::with_capacity(160);
        let r = match self.api {
            Api::Kvs => serde_json::to_writer(
                &mut body,
                &KvsGet {
                    meta: self.sent_meta(),
                },
            ),
            Api::Etcd => {
                serde_json::to_writer(&mut body, &serde_json::json!({"key": B64.encode(key)}))
            }
        };
        r.map_err(|e| NoAnswer(e.to_string()))?;
        match self.api {
            Api::Kvs => self.call("GET", "/kvs/", key, &body).await,
            Api::Etcd => self.call("POST", "/v3/kv/range", "", &body).await,
        }
    }

    fn sent_meta(&self) -> Option<&str> {
        if self.threads_metadata {
            self.meta.as_deref()
        } else {
            None
        }
    }

    /// Sends `method path_prefix+path_key` with a JSON `body` and reads the answer.
    async fn call(
        &mut self,
        method: &str,
        path_prefix: &str,
        path_key: &str,
        body: &[u8],
    ) -> Result<Answer, NoAnswer> {
        use std::io::Write;
        self.out.clear();
        // writing into a Vec cannot fail
        let _ = write!(
            self.out,
            "{method} {path_prefix}{path_key} HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.out.extend_from_slice(body);
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange()).await {
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
            Err(_) => {
                self.stream = None;
                self.inp.clear();
            }
        }
        result
    }

    /// Writes the prepared request and reads one answer (connecting first when needed; a
    /// kept-alive connection the server closed in the meantime is reopened once).
    async fn exchange(&mut self) -> Result<Answer, NoAnswer> {
        let reused = self.stream.is_some();
        match self.exchange_once().await {
            Err(Failure::Closed(_)) if reused => {
                self.stream = None;
                self.inp.clear();
                self.exchange_once().await.map_err(Failure::into_no_answer)
            }
            r => r.map_err(Failure::into_no_answer),
        }
    }

    async fn exchange_once(&mut self) -> Result<Answer, Failure> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| Failure::Other(format!("connect {}: {e}", self.addr)))?;
            stream.set_nodelay(true).ok();
            self.stream = Some(stream);
            self.inp.clear();
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::Other("no connection".into()));
        };
        stream
            .write_all(&self.out)
            .await
            .map_err(|e| Failure::Closed(e.to_string()))?;
        let mut got_bytes = false;
        // the head
        let (status, head_len, framing, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.inp) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut framing = Framing::UntilClose;
                    let mut close = resp.version == Some(0);
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let len = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .ok_or_else(|| Failure::Other("bad content-length".into()))?;
                            framing = Framing::Length(len);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                            && h.value.eq_ignore_ascii_case(b"chunked")
                        {
                            framing = Framing::Chunked;
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    // 1xx answers carry no body and are followed by the real one
                    if (100..200).contains(&status) {
                        self.inp.drain(..n);
                        continue;
                    }
                    break (status, n, framing, close);
                }
                Ok(httparse::Status::Partial) if self.inp.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(Failure::Other("response head too large".into()));
                }
                Err(e) => return Err(Failure::Other(format!("bad response: {e}"))),
            }
            if read_more(stream, &mut self.inp).await? == 0 {
                return Err(if got_bytes {
                    Failure::Other("connection closed mid-answer".into())
                } else {
                    Failure::Closed("connection closed".into())
                });
            }
            got_bytes = true;
        };
        let body = match framing {
            Framing::Length(len) => {
                if len > MAX_BODY {
                    return Err(Failure::Other("response body too large".into()));
                }
                while self.inp.len() < head_len + len {
                    if read_more(stream, &mut self.inp).await? == 0 {
                        return Err(Failure::Other("connection closed mid-body".into()));
                    }
                }
                let body = Bytes::copy_from_slice(&self.inp[head_len..head_len + len]);
                self.inp.drain(..head_len + len);
                body
            }
            Framing::Chunked => {
                let (body, used) = loop {
                    match dechunk(&self.inp[head_len..])? {
                        Some(done) => break done,
                        None if self.inp.len() > MAX_BODY => {
                            return Err(Failure::Other("response body too large".into()));
                        }
                        None => {
                            if read_more(stream, &mut self.inp).await? == 0 {
                                return Err(Failure::Other("connection closed mid-body".into()));
                            }
                        }
                    }
                };
                self.inp.drain(..head_len + used);
                Bytes::from(body)
            }
            Framing::UntilClose => {
                while read_more(stream, &mut self.inp).await? > 0 {
                    if self.inp.len() > MAX_BODY {
                        return Err(Failure::Other("response body too large".into()));
                    }
                }
                let body = Bytes::copy_from_slice(&self.inp[head_len..]);
                self.inp.clear();
                self.stream = None;
                body
            }
        };
        if close {
            self.stream = None;
            self.inp.clear();
        }
        Ok(Answer { status, body })
    }
}

/// How a response body ends.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Why an exchange failed: `Closed` before any answer byte (a kept-alive connection the server
/// had closed: safe to send again on a new one) or anything else.
enum Failure {
    Closed(String),
    Other(String),
}

impl Failure {
    fn into_no_answer(self) -> NoAnswer {
        match self {
            Failure::Closed(m) | Failure::Other(m) => NoAnswer(m),
        }
    }
}

/// Reads what is available into `buf`; the number of bytes read (0 at end of stream).
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, Failure> {
    buf.reserve(4096);
    stream
        .read_buf(buf)
        .await
        .map_err(|e| Failure::Other(e.to_string()))
}

/// Decodes a complete chunked body at the start of `data`: the body and the bytes it used, or
/// `None` when more is needed.
fn dechunk(data: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Failure> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = data[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[at..at + eol])
            .map_err(|_| Failure::Other("bad chunk size".into()))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Failure::Other("bad chunk size".into()))?;
        at += eol + 2;
        if size == 0 {
            // trailers (none expected) end with an empty line
            loop {
                let Some(eol) = data[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if data.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[at..at + size]);
        at += size + 2;
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
