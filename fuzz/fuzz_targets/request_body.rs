//! REST request bodies: every field parser of `api::body` on arbitrary bytes. Never a panic;
//! an accepted value respects the size bound.
#![no_main]

use axum::body::Bytes;
use causalkv::api::body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = body::object(&Bytes::copy_from_slice(data)) else {
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
});
