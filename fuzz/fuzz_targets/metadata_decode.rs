//! Causal-metadata tokens: arbitrary text, and arbitrary payloads sealed with the real key (so
//! the fuzzer gets past the MAC into the payload parser). Never a panic; whatever decodes
//! re-encodes to a token that decodes to the same metadata.
#![no_main]

use base64_shim::encode;
use causalkv::domain::metadata::CausalMetadata;
use causalkv::domain::token_key;
use libfuzzer_sys::fuzz_target;

mod base64_shim {
    /// base64url without padding (the token alphabet), so the target needs no extra crate.
    pub fn encode(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for c in bytes.chunks(3) {
            let n = c.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

fn check(token: &str) {
    if let Ok(m) = CausalMetadata::decode(token) {
        let again = CausalMetadata::decode(&m.encode()).expect("own encoding decodes");
        assert_eq!(again, m);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&token_key::tag(data));
    check(&format!("ckv2-{}", encode(&sealed)));
});
