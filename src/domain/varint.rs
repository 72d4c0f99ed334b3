//! The one varint codec of the crate (LEB128, as protobuf writes it): used by the packed clocks
//! of the store and by metadata tokens. Pure; decoding rejects overlong and overflowing input
//! (tokens come from clients).

/// Appends `v` as a varint to `out`.
pub fn put(mut v: u64, out: &mut impl Extend<u8>) {
    while v >= 0x80 {
        out.extend([(v as u8) | 0x80]);
        v >>= 7;
    }
    out.extend([v as u8]);
}

/// Reads one varint from the front of `buf`, advancing it; `None` when `buf` ends inside the
/// varint or it does not fit in 64 bits (more than ten bytes, or a tenth byte above 1).
pub fn get(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        if i == 9 && b > 1 {
            return None;
        }
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_protobuf_encoding() {
        for v in [0, 1, 127, 128, 300, 1 << 28, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put(v, &mut out);
            let mut pb = Vec::new();
            prost::encoding::encode_varint(v, &mut pb);
            assert_eq!(out, pb, "{v}");
            let mut s = out.as_slice();
            assert_eq!(get(&mut s), Some(v));
            assert!(s.is_empty());
        }
    }

    #[test]
    fn rejects_truncated_and_overflowing_input() {
        assert_eq!(get(&mut &[0x80u8][..]), None);
        assert_eq!(get(&mut &[][..]), None);
        let eleven = [0xffu8; 11];
        assert_eq!(get(&mut &eleven[..]), None);
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        assert_eq!(get(&mut &ten[..]), None);
        ten[9] = 0x01;
        assert_eq!(get(&mut &ten[..]), Some(u64::MAX));
    }
}
