//! Copying a store out a slice at a time (snapshots, deltas, reshard transfers) and merging
//! one store's slices into another in packed form (a reshard's commit).

use super::{Applied, PackedClock, SLICES, Slot, Store, Write, packed_pairs, put_varint, slice_of};
use crate::domain::clock::VectorClock;

impl Store {
    /// Applies `slot` of `src` as `key` (what [`Store::apply`] does with its write), copying the
    /// packed form with the origins renumbered instead of decoding it into a [`Write`].
    /// `ids` caches `src`'s origin ids as this store's (filled as they are first met), so a merge
    /// of many entries interns each origin once.
    fn apply_slot(
        &mut self,
        src: &Store,
        key: &str,
        slot: &Slot,
        ids: &mut Vec<Option<u32>>,
    ) -> Applied {
        let origin = &src.origins[slot.origin as usize];
        let incoming = (
            u64::from(slot.generation),
            Self::clock_sum(slot),
            &**origin,
            slot.seq,
        );
        let at = slice_of(key);
        let Some(was_live) = self.loses_to(at, key, incoming) else {
            return Applied::Superseded;
        };
        let mut id_of = |store: &mut Store, id: u32| {
            let i = id as usize;
            if ids.len() <= i {
                ids.resize(i + 1, None);
            }
            *ids[i].get_or_insert_with(|| store.intern(&src.origins[i]))
        };
        let mut clock = PackedClock::new();
        for (id, seq) in packed_pairs(&slot.clock) {
            put_varint(u64::from(id_of(self, id)), &mut clock);
            put_varint(seq, &mut clock);
        }
        let copy = Slot {
            seq: slot.seq,
            value: slot.value.clone(),
            clock,
            generation: slot.generation,
            origin: id_of(self, slot.origin),
        };
        self.put(at, key.to_string(), copy, was_live)
    }

    /// Every entry as a write (O(N): snapshots and reshard copies use [`Store::slice`]).
    pub fn writes(&self) -> impl Iterator<Item = Write> + '_ {
        self.slices
            .iter()
            .flat_map(|m| m.iter().map(|(k, s)| self.write_of(k, s)))
    }

    fn uncovered(&self, s: &Slot, generation: u64, known: &VectorClock) -> bool {
        let g = u64::from(s.generation);
        g > generation || (g == generation && known.get(&self.origins[s.origin as usize]) < s.seq)
    }

    /// Entries of `generation` whose write `known` does not cover (what a peer at `known` lacks).
    pub fn delta(&self, generation: u64, known: &VectorClock) -> Vec<Write> {
        (0..SLICES)
            .flat_map(|i| self.slice(i, Some((generation, known))))
            .collect()
    }

    /// The entries of slice `i` (`0..SLICES`) as writes: all of them, or with `since` =
    /// `(generation, known)` only those a peer at `known` lacks. A whole store is the union of
    /// its slices, so a copy can be taken slice by slice, releasing the lock in between.
    pub fn slice(&self, i: usize, since: Option<(u64, &VectorClock)>) -> Vec<Write> {
        let Some(m) = self.slices.get(i) else {
            return Vec::new();
        };
        m.iter()
            .filter(|(_, s)| since.is_none_or(|(g, known)| self.uncovered(s, g, known)))
            .map(|(k, s)| self.write_of(k, s))
            .collect()
    }

    /// The entries of slice `i` that `keep` accepts, as writes. `keep` sees each entry's key
    /// and (generation, origin, seq) before it is decoded, so the entries it turns down cost
    /// no copy (a reshard's sender skips what every new owner already holds).
    pub fn slice_where(
        &self,
        i: usize,
        keep: impl Fn(&str, (u64, &str, u64)) -> bool,
    ) -> Vec<Write> {
        let Some(m) = self.slices.get(i) else {
            return Vec::new();
        };
        m.iter()
            .filter(|(k, s)| {
                let origin = &*self.origins[s.origin as usize];
                keep(k, (u64::from(s.generation), origin, s.seq))
            })
            .map(|(k, s)| self.write_of(k, s))
            .collect()
    }

    /// The stamp of slice `i`: it changes whenever the slice does, and is 0 for a slice never
    /// written. Equal stamps mean the slice is unchanged, so a copy of it taken earlier (e.g. a
    /// reshard's merge, done a slice at a time off the lock) is still current.
    pub fn stamp(&self, i: usize) -> u64 {
        self.stamps.get(i).copied().unwrap_or(0)
    }

    /// Merges the entries of slice `i` whose key satisfies `keep` into `into` (a join: entries
    /// `into` holds newer versions of stay), pushing each that won there to `won` if given.
    /// Returns how many entries were offered.
    pub fn merge_slice_into(
        &self,
        i: usize,
        into: &mut Store,
        keep: impl Fn(&str) -> bool,
        mut won: Option<&mut Vec<Write>>,
    ) -> usize {
        let Some(m) = self.slices.get(i) else {
            return 0;
        };
        let mut n = 0;
        let mut ids = Vec::new();
        for (k, s) in m.iter().filter(|(k, _)| keep(k)) {
            if into.apply_slot(self, k, s, &mut ids) != Applied::Superseded
                && let Some(won) = won.as_deref_mut()
            {
                won.push(self.write_of(k, s));
            }
            n += 1;
        }
        n
    }
}
