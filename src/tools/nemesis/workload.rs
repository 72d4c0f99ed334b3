//! Client sessions: random put/get/delete on a small key space at random nodes, chaining
//! causal metadata, recording every attempt (including each 503 retry, with a fresh value)
//! as one history record.
//!
//! After a write with an unknown outcome the session continues under a new session name:
//! the checker puts every later operation of a session after an unknown write that someone
//! read, although the client never received metadata for it, so continuing the same session
//! would make the checker demand guarantees the store never promised. The new session keeps
//! the old metadata, so the store still treats it as the same client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::http::{Reply, call};
use crate::tools::check::record::{OpKind, OpRecord, Outcome};
use crate::tools::rng::Rng;

/// Keys `k0..k29`: few enough for conflicts, enough to spread over every shard.
pub const KEYS: u64 = 30;
/// Bound on one client request; past it the outcome is unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per operation while the answer is 503 (each PUT attempt writes a new value).
const ATTEMPTS: usize = 4;
/// Pause between 503 retries: replication to a healthy peer takes a few milliseconds.
const RETRY_PAUSE: Duration = Duration::from_millis(40);

/// What the sessions share.
#[derive(Debug)]
pub struct Shared {
    /// HTTP client.
    pub http: reqwest::Client,
    /// Node addresses.
    pub addrs: Vec<String>,
    /// Sessions send to `addrs[..targets]` (grows when the spare joins a shard).
    pub targets: AtomicUsize,
    /// Time origin of `invoke_ns` / `complete_ns`.
    pub t0: Instant,
    /// The workload stops at this instant.
    pub stop: Instant,
}

impl Shared {
    fn ns(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Runs client `worker` until `shared.stop`; returns its records.
pub async fn session(shared: Arc<Shared>, seed: u64, worker: usize) -> Vec<OpRecord> {
    let mut rng = Rng::new(seed, 1000 + worker as u64);
    let mut records = Vec::new();
    let mut session = Session::new(worker);
    while Instant::now() < shared.stop {
        let (key, kind) = Session::next_op(&mut rng, KEYS);
        for _ in 0..ATTEMPTS {
            let targets = shared.targets.load(Ordering::Relaxed).max(1);
            let node = &shared.addrs[rng.below(targets as u64) as usize];
            let value = session.value(kind);
            let (method, body) = request(kind, &value, session.meta());
            let invoke_ns = shared.ns();
            let path = format!("/kvs/{key}");
            let reply = call(
                &shared.http,
                node,
                method,
                &path,
                Some(&body),
                REQUEST_TIMEOUT,
            )
            .await;
            let at = (invoke_ns, shared.ns());
            let rec = record(&session, node, kind, &key, value, at, &reply);
            session.absorb(&rec);
            let status = rec.status;
            records.push(rec);
            if status != Some(503) || Instant::now() >= shared.stop {
                break;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(2, 15))).await;
    }
    records
}

/// A client session between its operations: the name it records under (renewed after a write
/// with an unknown outcome, see the module doc), the metadata it chains and its write counter.
/// The simulation's sessions (`tools::sim`) are the same.
#[derive(Debug)]
pub struct Session {
    worker: usize,
    incarnation: u64,
    name: String,
    meta: Value,
    writes: u64,
}

impl Session {
    /// Client `worker`'s session, before its first operation.
    pub fn new(worker: usize) -> Self {
        Self {
            worker,
            incarnation: 0,
            name: format!("c{worker}.0"),
            meta: Value::Null,
            writes: 0,
        }
    }

    /// The metadata the next request carries.
    pub fn meta(&self) -> &Value {
        &self.meta
    }

    /// A random operation on `k0..k(keys-1)`: 45 % put, 45 % get, 10 % delete.
    pub fn next_op(rng: &mut Rng, keys: u64) -> (String, OpKind) {
        let key = format!("k{}", rng.below(keys));
        let kind = match rng.below(20) {
            0..=8 => OpKind::Put,
            9..=17 => OpKind::Get,
            _ => OpKind::Delete,
        };
        (key, kind)
    }

    /// The value an attempt of `kind` sends: a fresh, unique one for every PUT attempt.
    pub fn value(&mut self, kind: OpKind) -> Value {
        if kind != OpKind::Put {
            return Value::Null;
        }
        self.writes += 1;
        json!(format!("w{}-{}", self.worker, self.writes))
    }

    /// Takes an attempt's record in: a success's metadata is chained; after a write with an
    /// unknown outcome the session goes on under a new name.
    pub fn absorb(&mut self, rec: &OpRecord) {
        if rec.outcome == Outcome::Ok
            && let Some(m) = &rec.meta_out
        {
            self.meta = serde_json::from_str(m).unwrap_or(Value::Null);
        }
        if rec.outcome == Outcome::Unknown && rec.kind != OpKind::Get {
            self.incarnation += 1;
            self.name = format!("c{}.{}", self.worker, self.incarnation);
        }
    }
}

/// The method and JSON body of one attempt of `kind`.
pub fn request(kind: OpKind, value: &Value, meta: &Value) -> (Method, Value) {
    match kind {
        OpKind::Put => (
            Method::PUT,
            json!({"value": value, "causal-metadata": meta}),
        ),
        OpKind::Get => (Method::GET, json!({"causal-metadata": meta})),
        OpKind::Delete => (Method::DELETE, json!({"causal-metadata": meta})),
    }
}

/// The history record of one attempt by `session` at `node`, invoked and completed at
/// `(invoke_ns, complete_ns)`, that sent `value` (for a put) and got `reply`.
pub fn record(
    session: &Session,
    node: &str,
    kind: OpKind,
    key: &str,
    value: Value,
    (invoke_ns, complete_ns): (u64, u64),
    reply: &Reply,
) -> OpRecord {
    let (outcome, read) = classify(kind, reply);
    let meta_out = match (outcome, reply.body().get("causal-metadata")) {
        (Outcome::Ok, Some(m)) if !m.is_null() => Some(m.to_string()),
        _ => None,
    };
    OpRecord {
        session: session.name.clone(),
        node: Some(node.to_string()),
        kind,
        key: key.to_string(),
        value: if kind == OpKind::Get { read } else { value },
        meta_in: (!session.meta.is_null()).then(|| session.meta.to_string()),
        meta_out,
        invoke_ns,
        complete_ns: Some(complete_ns),
        outcome,
        status: reply.status(),
        written: (outcome == Outcome::Ok && kind != OpKind::Get)
            .then(|| reply.written().map(str::to_string))
            .flatten(),
    }
}

/// Maps a reply to an outcome (and, for a get, the value read).
///
/// A 503 "Cannot forward request" on a write is unknown rather than failed: the forwarding
/// node may have lost the owner's answer after the owner applied the write.
pub fn classify(kind: OpKind, reply: &Reply) -> (Outcome, Value) {
    match reply {
        Reply::NotSent(_) => (Outcome::Fail, Value::Null),
        Reply::Unknown(_) => (Outcome::Unknown, Value::Null),
        Reply::Answer { status, body, .. } => match (kind, *status) {
            (OpKind::Get, 200) => (Outcome::Ok, body.get("value").cloned().unwrap_or_default()),
            (OpKind::Get, 404) => (Outcome::Ok, Value::Null),
            (OpKind::Put, 200 | 201) | (OpKind::Delete, 200) => (Outcome::Ok, Value::Null),
            (OpKind::Put | OpKind::Delete, 503)
                if body.get("error") == Some(&json!("Cannot forward request")) =>
            {
                (Outcome::Unknown, Value::Null)
            }
            _ => (Outcome::Fail, Value::Null),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: Value) -> Reply {
        Reply::Answer {
            status,
            body,
            written: None,
        }
    }

    #[test]
    fn classification() {
        let v = json!({"result": "found", "value": 3});
        assert_eq!(
            classify(OpKind::Get, &answer(200, v)),
            (Outcome::Ok, json!(3))
        );
        assert_eq!(
            classify(OpKind::Get, &answer(404, json!({}))),
            (Outcome::Ok, Value::Null)
        );
        assert_eq!(
            classify(OpKind::Delete, &answer(404, json!({}))).0,
            Outcome::Fail
        );
        assert_eq!(
            classify(OpKind::Put, &answer(503, json!({}))).0,
            Outcome::Fail
        );
        let fwd = json!({"error": "Cannot forward request"});
        assert_eq!(classify(OpKind::Put, &answer(503, fwd)).0, Outcome::Unknown);
        assert_eq!(
            classify(OpKind::Put, &Reply::NotSent("refused".into())).0,
            Outcome::Fail
        );
        assert_eq!(
            classify(OpKind::Put, &Reply::Unknown("timeout".into())).0,
            Outcome::Unknown
        );
    }
}
