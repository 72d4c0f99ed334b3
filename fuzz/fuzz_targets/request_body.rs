//! REST request bodies: every field parser of `api::body` on arbitrary bytes. Never a panic;
//! an accepted value respects the size bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| causalkv::tools::fuzzing::request_body(data));
