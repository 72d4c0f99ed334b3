//! Vector clocks: one counter of delivered writes per origin node, and their partial order.
//!
//! Pure data; no I/O. Entries with a zero counter are never stored, so equal clocks compare equal.

use std::collections::BTreeMap;

/// A vector clock keyed by origin node address (`IP:PORT`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VectorClock(BTreeMap<String, u64>);

impl VectorClock {
    /// The empty clock (everything zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a clock from `(origin, counter)` pairs, dropping zero counters and keeping the
    /// maximum of duplicates.
    pub fn from_entries<I: IntoIterator<Item = (String, u64)>>(entries: I) -> Self {
        let mut clock = Self::new();
        for (origin, seq) in entries.into_iter().filter(|(_, s)| *s > 0) {
            // the origin moves in: no copy (bulk transfers decode millions of clocks)
            let at = clock.0.entry(origin).or_insert(seq);
            *at = (*at).max(seq);
        }
        clock
    }

    /// The counter of `origin` (zero when absent).
    pub fn get(&self, origin: &str) -> u64 {
        self.0.get(origin).copied().unwrap_or(0)
    }

    /// Sets `origin`'s counter to at least `seq`.
    pub fn raise(&mut self, origin: &str, seq: u64) {
        if seq == 0 {
            return;
        }
        match self.0.get_mut(origin) {
            Some(v) => *v = (*v).max(seq),
            None => {
                self.0.insert(origin.to_string(), seq);
            }
        }
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VectorClock) {
        for (origin, seq) in &other.0 {
            self.raise(origin, *seq);
        }
    }

    /// `self ≤ other` pointwise.
    pub fn le(&self, other: &VectorClock) -> bool {
        self.0.iter().all(|(o, s)| *s <= other.get(o))
    }

    /// `self ≤ other` on the entries whose origin satisfies `scope`.
    pub fn le_within(&self, other: &VectorClock, scope: impl Fn(&str) -> bool) -> bool {
        self.0.iter().all(|(o, s)| !scope(o) || *s <= other.get(o))
    }

    /// Happens-before: `self ≤ other` and `self ≠ other`.
    pub fn lt(&self, other: &VectorClock) -> bool {
        self.le(other) && self != other
    }

    /// Neither clock is ≤ the other.
    pub fn concurrent(&self, other: &VectorClock) -> bool {
        !self.le(other) && !other.le(self)
    }

    /// Sum of all counters: strictly increases along happens-before, so it orders writes
    /// consistently with causality.
    pub fn sum(&self) -> u64 {
        self.0.values().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Keeps only the entries whose origin satisfies `keep`.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.0.retain(|o, _| keep(o));
    }

    /// Number of non-zero entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when every counter is zero.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries in origin order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(o, s)| (o.as_str(), *s))
    }

    /// Entries in origin order, by value (no copies of the origins).
    pub fn into_entries(self) -> impl Iterator<Item = (String, u64)> {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(entries: &[(&str, u64)]) -> VectorClock {
        VectorClock::from_entries(entries.iter().map(|(o, s)| (o.to_string(), *s)))
    }

    #[test]
    fn zero_entries_are_not_stored() {
        assert_eq!(vc(&[("a", 0)]), VectorClock::new());
        assert!(vc(&[("a", 0), ("b", 1)]).len() == 1);
    }

    #[test]
    fn merge_is_commutative_associative_idempotent() {
        let (a, b, c) = (vc(&[("a", 2)]), vc(&[("a", 1), ("b", 3)]), vc(&[("c", 1)]));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        let mut ab_c = ab.clone();
        ab_c.merge(&c);
        let mut bc = b.clone();
        bc.merge(&c);
        let mut a_bc = a.clone();
        a_bc.merge(&bc);
        assert_eq!(ab_c, a_bc);
        let mut aa = a.clone();
        aa.merge(&a);
        assert_eq!(aa, a);
    }

    #[test]
    fn order_laws() {
        let a = vc(&[("a", 1)]);
        let b = vc(&[("a", 1), ("b", 1)]);
        let c = vc(&[("c", 1)]);
        assert!(a.le(&a) && !a.lt(&a));
        assert!(a.lt(&b) && !b.le(&a));
        assert!(a.concurrent(&c));
        assert!(a.sum() < b.sum());
        assert!(VectorClock::new().le(&a));
    }

    #[test]
    fn scoped_comparison_ignores_other_origins() {
        let meta = vc(&[("a", 5), ("x", 9)]);
        let local = vc(&[("a", 5)]);
        assert!(!meta.le(&local));
        assert!(meta.le_within(&local, |o| o == "a"));
        assert!(!meta.le_within(&local, |o| o == "x"));
    }
}
