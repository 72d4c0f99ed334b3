//! The compact form of a stored vector clock: `(origin id, counter)` pairs as varints, inline
//! when short. Origin ids are the store's interned origins. Pure; no I/O.

use smallvec::SmallVec;

/// A stored clock: `(origin id, counter)` pairs as varints, inline when short (three origins with
/// counters below 2^28 fit), so a key's version costs a few bytes instead of a map.
pub type PackedClock = SmallVec<[u8; 16]>;

/// Appends `v` to a packed clock (see [`super::varint`]).
pub fn put_varint(v: u64, out: &mut PackedClock) {
    super::varint::put(v, out);
}

/// Decodes the pairs of a packed clock (written by [`put_varint`], so well-formed).
pub fn packed_pairs(bytes: &[u8]) -> impl Iterator<Item = (u32, u64)> + '_ {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let id = super::varint::get(&mut rest)?;
        Some((id as u32, super::varint::get(&mut rest)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_three_small_entries_stay_inline() {
        let pairs = [(0u32, 1u64), (1, 300_000), (2, (1 << 28) - 1)];
        let mut c = PackedClock::new();
        for (id, seq) in pairs {
            put_varint(u64::from(id), &mut c);
            put_varint(seq, &mut c);
        }
        assert!(!c.spilled(), "{} bytes", c.len());
        assert_eq!(packed_pairs(&c).collect::<Vec<_>>(), pairs);
        let mut big = PackedClock::new();
        put_varint(7, &mut big);
        put_varint(u64::MAX, &mut big);
        assert_eq!(packed_pairs(&big).collect::<Vec<_>>(), [(7, u64::MAX)]);
    }
}
