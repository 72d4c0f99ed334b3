//! Every `*_from_pb` conversion on arbitrary protobuf bytes. Never a panic; whatever is
//! accepted is within the documented bounds.
#![no_main]

use causalkv::rpc::convert;
use causalkv::rpc::pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
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
});
