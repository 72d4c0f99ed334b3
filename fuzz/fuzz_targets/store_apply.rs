//! `Store::apply` and `Replica::offer` on writes that passed the wire boundary, in any order,
//! twice over: never a panic, and applying the same writes again changes nothing (the merge
//! is idempotent).
#![no_main]

use causalkv::domain::replica::Replica;
use causalkv::domain::store::{Applied, Store};
use causalkv::rpc::{convert, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
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
});
