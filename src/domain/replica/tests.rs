//! Unit tests of the replica: causal delivery, generations, slices of the store (`replica.rs`).

use super::*;

const A: &str = "a:1";
const B: &str = "b:1";
const X: &str = "x:1"; // an origin of another shard

fn scope(o: &str) -> bool {
    o == A || o == B
}

fn meta(clock: &[(&str, u64)]) -> CausalMetadata {
    CausalMetadata {
        generation: 1,
        clock: VectorClock::from_entries(clock.iter().map(|(o, s)| (o.to_string(), *s))),
    }
}

#[test]
fn a_writer_does_not_inherit_the_overwritten_versions_foreign_dependencies() {
    let mut r = Replica::new(1);
    let other_client = meta(&[(X, 9)]);
    let me: Arc<str> = A.into();
    r.local_write(&me, "k".into(), Some("1".into()), &other_client);
    let (w, _) = r.local_write(&me, "k".into(), Some("2".into()), &CausalMetadata::empty());
    assert_eq!(
        w.version.clock.get(X),
        9,
        "ordered after the version it overwrites"
    );
    let out = r.metadata_after_write(&CausalMetadata::empty(), &w.version, scope);
    assert_eq!(out.clock.get(X), 0, "but the writer does not depend on X");
    assert_eq!(out.clock.get(A), 2);
}

#[test]
fn local_writes_count_up_and_carry_foreign_dependencies() {
    let me: Arc<str> = A.into();
    let mut r = Replica::new(1);
    let (w1, a1) = r.local_write(&me, "k".into(), Some("1".into()), &meta(&[(X, 4)]));
    assert_eq!(a1, Applied::Created);
    assert_eq!(w1.version.seq, 1);
    assert_eq!(w1.version.clock.get(X), 4);
    assert_eq!(
        r.clock.get(X),
        0,
        "foreign entries stay out of the local clock"
    );
    let (w2, a2) = r.local_write(&me, "k".into(), Some("2".into()), &meta(&[]));
    assert_eq!((w2.version.seq, a2), (2, Applied::Replaced));
    assert!(r.satisfies(&meta(&[(A, 2), (X, 99)]), scope));
    assert!(!r.satisfies(&meta(&[(A, 3)]), scope));
}

#[test]
fn out_of_order_writes_are_buffered_until_deliverable() {
    let me: Arc<str> = A.into();
    let mut origin = Replica::new(1);
    let (w1, _) = origin.local_write(&me, "x".into(), Some("1".into()), &meta(&[]));
    let (w2, _) = origin.local_write(&me, "x".into(), Some("2".into()), &meta(&[]));
    let mut r = Replica::new(1);
    let o = r.offer(w2.clone(), &scope);
    assert!(o.buffered && o.delivered == 0);
    assert!(r.store.get("x").is_none());
    assert_eq!(r.pending_len(), 1);
    let o = r.offer(w1.clone(), &scope);
    assert_eq!(o.delivered, 2);
    assert_eq!(r.store.get("x").unwrap().value.as_deref(), Some("2"));
    assert_eq!(r.pending_len(), 0);
    assert_eq!(
        r.offer(w1, &scope),
        Offered::default(),
        "duplicates are ignored"
    );
}

#[test]
fn the_buffer_is_bounded_in_bytes_and_drops_past_it() {
    let me: Arc<str> = A.into();
    let mut origin = Replica::new(1);
    let big: Arc<str> = "7".repeat(MAX_PENDING_BYTES / 3).into();
    let writes: Vec<Write> = (0..4)
        .map(|_| {
            let m = meta(&[]);
            origin.local_write(&me, "x".into(), Some(big.clone()), &m).0
        })
        .collect();
    let mut r = Replica::new(1);
    // writes 2..4 wait for write 1; only two of them fit in the byte bound
    for w in &writes[1..] {
        r.offer(w.clone(), &scope);
    }
    assert_eq!(r.pending_len(), 2);
    assert!(r.pending_bytes() <= MAX_PENDING_BYTES);
    assert_eq!(r.offer(writes[0].clone(), &scope).delivered, 3);
    assert_eq!((r.pending_len(), r.pending_bytes()), (0, 0));
    assert_eq!(
        r.clock.get(A),
        3,
        "the dropped write waits for anti-entropy"
    );
}

#[test]
fn one_drain_delivers_at_most_a_slice_and_leaves_the_rest_as_a_backlog() {
    let me: Arc<str> = A.into();
    let mut origin = Replica::new(1);
    let n = 2 * DRAIN_SLICE + 5;
    let writes: Vec<Write> = (0..n)
        .map(|i| {
            let m = meta(&[]);
            origin
                .local_write(&me, format!("k{i}"), Some("1".into()), &m)
                .0
        })
        .collect();
    let mut r = Replica::new(1);
    for w in &writes[1..] {
        assert!(r.offer(w.clone(), &scope).buffered);
    }
    assert_eq!(r.offer(writes[0].clone(), &scope).delivered, DRAIN_SLICE);
    assert!(r.has_backlog());
    assert!(r.schedule_drain(), "the first to ask delivers the backlog");
    assert!(!r.schedule_drain(), "only once");
    // a write offered meanwhile waits in the buffer for the backlog's delivery
    let (late, _) = origin.local_write(&me, "late".into(), Some("2".into()), &meta(&[]));
    let o = r.offer(late, &scope);
    assert!(o.buffered && o.delivered == 0);
    assert_eq!(r.deliver_backlog(&scope, DRAIN_SLICE), DRAIN_SLICE);
    assert!(r.has_backlog());
    assert_eq!(r.deliver_backlog(&scope, DRAIN_SLICE), 6);
    assert!(!r.has_backlog());
    r.drain_finished();
    assert_eq!(r.clock.get(A), n as u64 + 1);
    assert_eq!((r.pending_len(), r.pending_bytes()), (0, 0));
    assert!(!r.schedule_drain());
}

#[test]
fn dependencies_on_other_origins_block_delivery() {
    let (a, b): (Arc<str>, Arc<str>) = (A.into(), B.into());
    let mut at_a = Replica::new(1);
    let (wa, _) = at_a.local_write(&a, "x".into(), Some("1".into()), &meta(&[]));
    let mut at_b = Replica::new(1);
    at_b.offer(wa.clone(), &scope);
    let (wb, _) = at_b.local_write(&b, "y".into(), Some("2".into()), &meta(&[]));
    // a third replica receives b's write first: it depends on a's
    let mut c = Replica::new(1);
    assert!(c.offer(wb, &scope).buffered);
    assert_eq!(c.offer(wa, &scope).delivered, 2);
}

#[test]
fn absorb_merges_state_and_unblocks_buffer() {
    let me: Arc<str> = A.into();
    let mut peer = Replica::new(1);
    let (w1, _) = peer.local_write(&me, "x".into(), Some("1".into()), &meta(&[]));
    let (w2, _) = peer.local_write(&me, "x".into(), Some("2".into()), &meta(&[]));
    let (w3, _) = peer.local_write(&me, "y".into(), Some("3".into()), &meta(&[]));
    let mut r = Replica::new(1);
    r.offer(w3, &scope);
    let delta = peer.store.delta(1, &r.clock);
    assert_eq!(delta.len(), 2);
    r.absorb(delta, &peer.clock, &scope);
    assert_eq!(r.clock.get(A), 3);
    assert_eq!(r.pending_len(), 0);
    assert_eq!(r.store.get("x").unwrap().value.as_deref(), Some("2"));
    let _ = (w1, w2);
}

#[test]
fn absorb_keeps_data_carried_over_from_an_earlier_generation() {
    let me: Arc<str> = A.into();
    let mut old = Replica::new(1);
    old.local_write(&me, "carried".into(), Some("1".into()), &meta(&[]));
    let mut peer = Replica::new(2);
    peer.store = old.store.clone();
    let mut r = Replica::new(2);
    r.absorb(peer.store.writes().collect(), &peer.clock, &scope);
    assert_eq!(r.store.live("carried").unwrap().value.as_deref(), Some("1"));
}

#[test]
fn recording_keeps_the_winning_writes_in_order_across_a_reset() {
    let (a, b): (Arc<str>, Arc<str>) = (A.into(), B.into());
    let mut r = Replica::new(1);
    r.local_write(&a, "x".into(), Some("0".into()), &meta(&[]));
    assert!(r.take_changes().is_empty(), "nothing recorded until asked");
    r.record_changes();
    let (w1, _) = r.local_write(&a, "x".into(), Some("1".into()), &meta(&[]));
    let mut peer = Replica::new(1);
    let (w2, _) = peer.local_write(&b, "y".into(), Some("2".into()), &meta(&[]));
    let mut stale = w1.clone();
    stale.version.clock = VectorClock::new();
    r.offer(w2.clone(), &scope);
    assert_eq!(r.absorb_writes(vec![stale]), 0);
    assert_eq!(
        r.take_changes(),
        vec![w1, w2],
        "superseded writes are not recorded"
    );
    assert!(r.take_changes().is_empty());
    r.reset(2, Store::new(), true);
    let (w3, _) = r.local_write(&a, "z".into(), None, &meta(&[]));
    assert_eq!(r.take_changes(), vec![w3], "still recording after a reset");
}

#[test]
fn generations_gate_satisfaction() {
    let mut r = Replica::new(2);
    let mut old = meta(&[(A, 100)]);
    assert!(r.satisfies(&old, scope));
    r.complete = false;
    assert!(
        !r.satisfies(&old, scope),
        "an incomplete replica may lack old data"
    );
    assert!(r.satisfies(&CausalMetadata::empty(), scope));
    r.complete = true;
    old.generation = 3;
    assert!(!r.satisfies(&old, scope));
    let out = r.metadata_after(&meta(&[(A, 100)]), None);
    assert_eq!(out.generation, 2);
    assert!(out.clock.is_empty());
}
