//! `Store::apply` and `Replica::offer` on writes that passed the wire boundary, in any order,
//! twice over: never a panic, and applying the same writes again changes nothing (the merge
//! is idempotent).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| causalkv::tools::fuzzing::store_apply(data));
