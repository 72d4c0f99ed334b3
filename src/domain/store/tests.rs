//! Unit tests of the packed store (`store.rs`).

use super::*;

pub(crate) fn write(
    key: &str,
    origin: &str,
    seq: u64,
    clock: &[(&str, u64)],
    v: Option<&str>,
) -> Write {
    Write {
        key: key.into(),
        version: Version {
            generation: 1,
            origin: origin.into(),
            seq,
            clock: VectorClock::from_entries(clock.iter().map(|(o, s)| (o.to_string(), *s))),
        },
        value: v.map(Arc::from),
    }
}

#[test]
fn a_generation_beyond_32_bits_is_refused_not_a_panic() {
    let mut s = Store::new();
    let mut w = write("k", "a:1", 1, &[("a:1", 1)], Some("1"));
    w.version.generation = 1 << 32;
    assert_eq!(s.apply(w), Applied::Superseded);
    assert!(s.is_empty());
}

#[test]
fn created_replaced_superseded_and_counts() {
    let mut s = Store::new();
    assert_eq!(
        s.apply(write("k", "a", 1, &[("a", 1)], Some("1"))),
        Applied::Created
    );
    assert_eq!(
        s.apply(write("k", "a", 2, &[("a", 2)], Some("2"))),
        Applied::Replaced
    );
    assert_eq!(
        s.apply(write("k", "a", 1, &[("a", 1)], Some("1"))),
        Applied::Superseded
    );
    assert_eq!(s.live_count(), 1);
    assert_eq!(
        s.apply(write("k", "a", 3, &[("a", 3)], None)),
        Applied::Replaced
    );
    assert_eq!(s.live_count(), 0);
    assert!(s.live("k").is_none() && s.get("k").is_some());
    assert_eq!(
        s.apply(write("k", "a", 4, &[("a", 4)], Some("4"))),
        Applied::Created
    );
    assert_eq!(s.live_count(), 1);
}

#[test]
fn concurrent_writes_converge_in_any_order() {
    let w1 = write("k", "a", 1, &[("a", 1)], Some("\"from a\""));
    let w2 = write("k", "b", 1, &[("b", 1)], Some("\"from b\""));
    let w3 = write("k", "a", 2, &[("a", 2), ("b", 1)], Some("\"after both\""));
    let orders = [
        [&w1, &w2, &w3],
        [&w3, &w2, &w1],
        [&w2, &w1, &w3],
        [&w2, &w3, &w1],
    ];
    let results: Vec<_> = orders
        .iter()
        .map(|o| {
            let mut s = Store::new();
            o.iter().for_each(|w| {
                s.apply((*w).clone());
            });
            s.get("k")
        })
        .collect();
    assert!(results.windows(2).all(|p| p[0] == p[1]));
    assert_eq!(
        results[0].as_ref().unwrap().value.as_deref(),
        Some("\"after both\"")
    );
    // the tie between w1 and w2 is broken by origin
    let mut s = Store::new();
    s.apply(w2.clone());
    s.apply(w1.clone());
    assert_eq!(s.get("k").unwrap().value.as_deref(), Some("\"from b\""));
}

#[test]
fn versions_round_trip_through_the_packed_form() {
    let mut s = Store::new();
    let w = write(
        "k",
        "10.0.0.1:8090",
        300_000,
        &[
            ("10.0.0.1:8090", 300_000),
            ("10.0.0.2:8090", 7),
            ("x:1", 1 << 40),
        ],
        Some("\"v\""),
    );
    s.apply(w.clone());
    let e = s.get("k").unwrap();
    assert_eq!(e.version, w.version);
    assert_eq!(s.writes().next().unwrap(), w);
    // a key's slot stays small: that is the memory budget per key
    assert!(
        std::mem::size_of::<Slot>() <= 56,
        "{}",
        std::mem::size_of::<Slot>()
    );
}

#[test]
fn delta_lists_uncovered_writes() {
    let mut s = Store::new();
    s.apply(write("x", "a", 1, &[("a", 1)], Some("1")));
    s.apply(write("y", "b", 2, &[("b", 2)], Some("2")));
    let known = VectorClock::from_entries([("a".to_string(), 1)]);
    let d = s.delta(1, &known);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].key, "y");
}

#[test]
fn stamps_move_with_changes_only_and_slices_merge_as_a_join() {
    let mut s = Store::new();
    assert!((0..SLICES).all(|i| s.stamp(i) == 0), "never written");
    for i in 0..500u64 {
        s.apply(write(
            &format!("k{i}"),
            "a",
            i + 1,
            &[("a", i + 1)],
            Some("1"),
        ));
    }
    let at = slice_of("k7");
    let before: Vec<u64> = (0..SLICES).map(|i| s.stamp(i)).collect();
    // a superseded write changes nothing, so no stamp moves
    s.apply(write("k7", "a", 1, &[("a", 1)], Some("old")));
    assert!((0..SLICES).all(|i| s.stamp(i) == before[i]));
    s.apply(write("k7", "a", 900, &[("a", 900)], Some("new")));
    let moved: Vec<usize> = (0..SLICES).filter(|&i| s.stamp(i) != before[i]).collect();
    assert_eq!(moved, vec![at], "only the written key's slice");

    // one key whose clock names two origins, one of them unknown to the store merged into
    s.apply(write("k1000", "c", 1, &[("a", 3), ("c", 1)], Some("two")));
    // merging every slice, keys filtered, into a store holding a newer version of one key
    let mut into = Store::new();
    // (origin "b" first, so the copied slots' origins are renumbered)
    into.apply(write("k8", "b", 1_000, &[("b", 1_000)], Some("newer")));
    let even = |k: &str| k[1..].parse::<u64>().is_ok_and(|n| n % 2 == 0);
    let mut won = Vec::new();
    let offered: usize = (0..SLICES)
        .map(|i| s.merge_slice_into(i, &mut into, even, Some(&mut won)))
        .sum();
    assert_eq!(offered, 251);
    assert_eq!(won.len(), 250, "every offered entry won but the newer k8");
    assert!(
        won.iter()
            .all(|w| w.key != "k8" && into.get(&w.key).is_some())
    );
    assert_eq!(into.live_count(), 251);
    assert_eq!(into.get("k8").unwrap().value.as_deref(), Some("newer"));
    assert_eq!(into.get("k2").unwrap(), s.get("k2").unwrap());
    assert_eq!(
        into.get("k1000").unwrap(),
        s.get("k1000").unwrap(),
        "origins renumbered"
    );
    assert!(into.get("k7").is_none(), "filtered out");
    // merging again is idempotent
    won.clear();
    let again: usize = (0..SLICES)
        .map(|i| s.merge_slice_into(i, &mut into, even, Some(&mut won)))
        .sum();
    assert_eq!((again, into.live_count(), won.len()), (251, 251, 0));
}

#[test]
fn slices_partition_the_store() {
    let mut s = Store::new();
    for i in 0..2_000u64 {
        s.apply(write(
            &format!("k{i}"),
            "a",
            i + 1,
            &[("a", i + 1)],
            Some("1"),
        ));
    }
    let all: Vec<Write> = (0..SLICES).flat_map(|i| s.slice(i, None)).collect();
    assert_eq!(all.len(), 2_000);
    let mut keys: Vec<&str> = all.iter().map(|w| w.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 2_000, "every key in exactly one slice");
    let biggest = (0..SLICES).map(|i| s.slice(i, None).len()).max();
    assert!(biggest < Some(40), "slices are balanced: {biggest:?}");
    let known = VectorClock::from_entries([("a".to_string(), 1_500)]);
    let delta: usize = (0..SLICES)
        .map(|i| s.slice(i, Some((1, &known))).len())
        .sum();
    assert_eq!(delta, 500);
    assert!(s.slice(SLICES, None).is_empty());
}
