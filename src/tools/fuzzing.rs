//! The bodies of the fuzz targets (`fuzz/`, run with `cargo +nightly fuzz`, see
//! docs/fuzzing.md): each takes arbitrary bytes and asserts what must hold for every input
//! (never a panic; whatever is accepted stays within its bounds). They live in the library so
//! that a stable test (`tests/fuzz_smoke.rs`) runs the same checks on seeded inputs in CI. Not
//! used by the server.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message;

use crate::api::body;
use crate::domain::metadata::CausalMetadata;
use crate::domain::replica::Replica;
use crate::domain::store::{Applied, Store};
use crate::domain::token_key;
use crate::rpc::{convert, pb};

/// Causal-metadata tokens: the bytes as token text, and as a payload sealed with the real key
/// (so a fuzzer gets past the MAC into the payload parser). Whatever decodes re-encodes to a
/// token that decodes to the same metadata.
pub fn metadata_decode(data: &[u8]) {
    fn check(token: &str) {
        if let Ok(m) = CausalMetadata::decode(token) {
            let again = CausalMetadata::decode(&m.encode()).expect("own encoding decodes");
            assert_eq!(again, m);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&token_key::tag(data));
    check(&format!("ckv2-{}", URL_SAFE_NO_PAD.encode(&sealed)));
}

/// REST request bodies: every field parser of `api::body`; an accepted value respects the
/// size bound.
pub fn request_body(data: &[u8]) {
    let Ok(obj) = body::object(&axum::body::Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = body::metadata(&obj);
    let _ = body::metadata_token(&obj);
    let _ = body::socket_address(&obj);
    if let Ok(n) = body::shard_count(&obj) {
        assert!(n >= 1);
    }
    if let Ok(Some(v)) = body::value(&obj, 64) {
        assert!(v.len() <= 64);
    }
}

/// Every `*_from_pb` conversion on the bytes read as each message; whatever is accepted is
/// within the documented bounds.
pub fn from_pb(data: &[u8]) {
    if let Ok(m) = pb::ShardMap::decode(data)
        && let Ok(map) = convert::map_from_pb(m)
    {
        assert!(map.generation <= convert::MAX_GENERATION);
        assert!(map.epoch <= convert::MAX_EPOCH);
        assert!(map.shard_count as usize <= map.assignment.len().max(1));
        let _ = map.ids();
    }
    if let Ok(r) = pb::ReplicateRequest::decode(data)
        && let Ok(ws) = convert::writes_from_pb(r.writes)
    {
        let _ = convert::check_values(&ws, 1 << 10);
        for w in ws {
            assert!(w.version.generation <= convert::MAX_GENERATION);
            assert_eq!(w.version.clock.get(&w.version.origin), w.version.seq);
            let _ = w.version.clock.sum();
        }
    }
    if let Ok(s) = pb::SnapshotRequest::decode(data) {
        let _ = convert::clock_from_pb(s.known);
    }
    if let Ok(f) = pb::ForwardRequest::decode(data) {
        let _ = convert::key(&f.key);
        let _ = convert::op_from_pb(f.kind, f.value, 1 << 10);
        let _ = convert::metadata_from_token(&f.metadata);
    }
    if let Ok(r) = pb::ForwardResponse::decode(data) {
        let _ = convert::reply_from_pb(r);
    }
}

/// `Store::apply` and `Replica::offer` on writes that passed the wire boundary, in any order,
/// twice over: applying the same writes again changes nothing (the merge is idempotent).
pub fn store_apply(data: &[u8]) {
    let Ok(r) = pb::ReplicateRequest::decode(data) else {
        return;
    };
    let Ok(writes) = convert::writes_from_pb(r.writes) else {
        return;
    };
    let mut store = Store::new();
    let mut replica = Replica::new(1);
    let scope = |_: &str| true;
    for w in &writes {
        store.apply(w.clone());
        replica.offer(w.clone(), &scope);
    }
    let live = store.live_count();
    for w in &writes {
        assert_eq!(store.apply(w.clone()), Applied::Superseded);
    }
    assert_eq!(store.live_count(), live);
    assert!(store.live_count() <= store.len());
}
