//! A stable smoke of the fuzz targets' checks (`causalkv::tools::fuzzing`) for CI: seeded random
//! bytes, and valid encodings mutated byte by byte, 20,000 inputs per target. No coverage
//! guidance: the coverage-guided runs (≥ 1M inputs per target) are `cargo +nightly fuzz`,
//! docs/fuzzing.md. A failing input is printed so it can become a unit test.

use causalkv::domain::clock::VectorClock;
use causalkv::domain::store::{Version, Write};
use causalkv::rpc::{convert, pb};
use causalkv::tools::fuzzing;
use causalkv::tools::rng::Rng;
use prost::Message;

/// Inputs per target.
const INPUTS: usize = 20_000;

/// `n` seeded random bytes, `n` below `max`.
fn bytes(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = rng.below(max + 1);
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// Valid messages of every kind the targets parse, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let origin = "127.0.0.2:8090";
    let write = convert::write_to_pb(&Write {
        key: "k".into(),
        version: Version {
            generation: 1,
            origin: origin.into(),
            seq: 2,
            clock: VectorClock::from_entries([
                (origin.to_string(), 2),
                ("127.0.0.3:8090".to_string(), 1),
            ]),
        },
        value: Some("{\"a\":1}".into()),
    });
    vec![
        pb::ReplicateRequest {
            sender: "127.0.0.2:8090".into(),
            writes: vec![write.clone(), write],
            sent_at_ms: 1,
        }
        .encode_to_vec(),
        pb::ShardMap {
            epoch: 2,
            generation: 1,
            shard_count: 2,
            ..Default::default()
        }
        .encode_to_vec(),
        br#"{"value": [1, {"x": null}], "causal-metadata": null, "socket-address": "127.0.0.2:8090", "shard-count": 2}"#.to_vec(),
        b"ckv2-AAEOMTI3LjAuMC4yOjgwOTAB".to_vec(),
    ]
}

fn smoke(name: &str, target: fn(&[u8])) {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15, name.len() as u64);
    let seeds = seeds();
    for i in 0..INPUTS {
        let input = if i % 2 == 0 {
            bytes(&mut rng, 256)
        } else {
            let mut s = seeds[i / 2 % seeds.len()].clone();
            for _ in 0..1 + rng.below(4) {
                if !s.is_empty() {
                    let at = rng.below(s.len() as u64) as usize;
                    s[at] = rng.next_u64() as u8;
                }
            }
            s
        };
        let caught = std::panic::catch_unwind(|| target(&input));
        assert!(caught.is_ok(), "{name} failed on input {input:?}");
    }
}

#[test]
fn metadata_decode() {
    smoke("metadata_decode", fuzzing::metadata_decode);
}

#[test]
fn request_body() {
    smoke("request_body", fuzzing::request_body);
}

#[test]
fn from_pb() {
    smoke("from_pb", fuzzing::from_pb);
}

#[test]
fn store_apply() {
    smoke("store_apply", fuzzing::store_apply);
}
