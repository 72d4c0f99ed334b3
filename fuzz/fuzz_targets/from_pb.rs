//! Every `*_from_pb` conversion on arbitrary protobuf bytes. Never a panic; whatever is
//! accepted is within the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| causalkv::tools::fuzzing::from_pb(data));
