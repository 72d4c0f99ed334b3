//! Tests of the protobuf conversions: round trips and hostile input.
use super::*;

#[test]
fn write_and_map_round_trip() {
    let w = Write {
        key: "k".into(),
        version: Version {
            generation: 2,
            origin: "10.0.0.1:1".into(),
            seq: 3,
            clock: VectorClock::from_entries([
                ("10.0.0.1:1".to_string(), 3),
                ("10.0.0.2:1".to_string(), 1),
            ]),
        },
        value: Some("{\"x\":1}".into()),
    };
    assert_eq!(write_from_pb(write_to_pb(&w)).unwrap(), w);
    assert_eq!(write_into_pb(w.clone()), write_to_pb(&w));
    let tomb = Write {
        value: None,
        ..w.clone()
    };
    assert_eq!(write_from_pb(write_to_pb(&tomb)).unwrap(), tomb);
    let m = ShardMap::initial(
        &[
            "10.0.0.1:1".into(),
            "10.0.0.2:1".into(),
            "10.0.0.3:1".into(),
            "10.0.0.4:1".into(),
        ],
        2,
    );
    assert_eq!(map_from_pb(map_to_pb(&m)).unwrap(), m);
}

#[test]
fn malformed_messages_are_rejected() {
    assert!(write_from_pb(pb::Write::default()).is_err());
    let mut w = write_to_pb(&Write {
        key: "k".into(),
        version: Version {
            generation: 1,
            origin: "10.0.0.1:1".into(),
            seq: 2,
            clock: VectorClock::new(),
        },
        value: None,
    });
    assert!(
        write_from_pb(w.clone()).is_err(),
        "clock must include the write"
    );
    w.version.as_mut().unwrap().seq = 0;
    assert!(write_from_pb(w).is_err());
    let bad = pb::ShardMap {
        epoch: 1,
        generation: 1,
        shard_count: 1,
        shards: vec![pb::ShardEntry {
            id: 4,
            members: vec![],
        }],
    };
    assert!(map_from_pb(bad).is_err());
    assert!(op_from_pb(42, String::new(), 10).is_err());
    assert!(op_from_pb(1, "{not json".into(), 100).is_err());
    assert!(op_from_pb(1, "\"0123456789\"".into(), 5).is_err());
    assert!(metadata_from_token("nope").is_err());
}

fn map_pb(epoch: u64, generation: u64, shard_count: u32, members: &[&str]) -> pb::ShardMap {
    pb::ShardMap {
        epoch,
        generation,
        shard_count,
        shards: vec![pb::ShardEntry {
            id: 0,
            members: members.iter().map(|m| m.to_string()).collect(),
        }],
    }
}

#[test]
fn hostile_maps_are_rejected() {
    let three = ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"];
    assert!(map_from_pb(map_pb(1000, 7, 1, &three)).is_ok());
    assert!(map_from_pb(map_pb(2, 1 << 40, 1, &three)).is_err());
    assert!(map_from_pb(map_pb(2, 1, u32::MAX, &three)).is_err());
    assert!(map_from_pb(map_pb(2, 1, 4, &three)).is_err());
    assert!(map_from_pb(map_pb(u64::MAX, 1, 1, &three)).is_err());
    assert!(map_from_pb(map_pb(2, 1, 1, &["not an address"])).is_err());
    let mut twice = map_pb(2, 1, 2, &three);
    twice.shards.push(pb::ShardEntry {
        id: 1,
        members: vec!["10.0.0.1:1".into()],
    });
    assert!(map_from_pb(twice).is_err());
}

#[test]
fn hostile_writes_are_rejected() {
    let good = Write {
        key: "k".into(),
        version: Version {
            generation: 1,
            origin: "10.0.0.1:1".into(),
            seq: 1,
            clock: VectorClock::from_entries([("10.0.0.1:1".to_string(), 1)]),
        },
        value: Some("1".into()),
    };
    let pbw = write_to_pb(&good);
    let with = |f: &dyn Fn(&mut pb::Write)| {
        let mut w = pbw.clone();
        f(&mut w);
        write_from_pb(w)
    };
    assert!(with(&|_| ()).is_ok());
    assert!(with(&|w| w.key = "k".repeat(51)).is_err());
    assert!(with(&|w| w.version.as_mut().unwrap().generation = 1 << 32).is_err());
    assert!(with(&|w| w.version.as_mut().unwrap().origin = "evil".into()).is_err());
    assert!(
        with(&|w| {
            let v = w.version.as_mut().unwrap();
            v.seq = u64::MAX;
            v.clock[0].seq = u64::MAX;
        })
        .is_err()
    );
    assert!(
        with(&|w| {
            let v = w.version.as_mut().unwrap();
            v.clock = (0..=MAX_ENTRIES as u64)
                .map(|i| pb::ClockEntry {
                    origin: format!("10.1.{}.{}:1", i / 250, i % 250),
                    seq: 1,
                })
                .collect();
        })
        .is_err()
    );
    assert!(
        with(&|w| {
            w.tombstone = true;
        })
        .is_err()
    );
    assert!(check_values(std::slice::from_ref(&good), 10).is_ok());
    assert!(check_values(std::slice::from_ref(&good), 0).is_err());
    let not_json = Write {
        value: Some("{nope".into()),
        ..good
    };
    assert!(check_values(&[not_json], 100).is_err());
}
