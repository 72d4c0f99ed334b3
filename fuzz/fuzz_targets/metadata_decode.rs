//! Causal-metadata tokens: arbitrary text, and arbitrary payloads sealed with the real key (so
//! the fuzzer gets past the MAC into the payload parser). Never a panic; whatever decodes
//! re-encodes to a token that decodes to the same metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| causalkv::tools::fuzzing::metadata_decode(data));
