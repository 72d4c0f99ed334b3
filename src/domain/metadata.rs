//! Causal metadata: the opaque token clients carry from response to request.
//!
//! A token names a shard-map generation and a vector clock of the writes the client depends on.
//! Encoding: `ckv2-` + base64url(varint fields + a 16-byte HMAC-SHA256 tag under the cluster's
//! token key, see [`super::token_key`]). Decoding checks the tag first (in constant time), then
//! validates everything (bounds, canonical order), so tokens this system did not issue, or that
//! were altered, are rejected. No I/O.

use super::varint;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::clock::VectorClock;
use super::token_key;

/// Token prefix; the digit is the format version (1 was CRC32-sealed, no longer accepted).
const PREFIX: &str = "ckv2-";
/// Tag length: 128 bits of HMAC-SHA256 is far beyond online guessing and keeps tokens short.
pub const TAG_BYTES: usize = 16;
/// Largest generation a token may name (generations are 32-bit in the store).
const MAX_GENERATION: u64 = u32::MAX as u64;
/// Largest counter a token may carry (as on the wire, `rpc/convert.rs`).
const MAX_SEQ: u64 = 1 << 48;
/// Bound on entries: one per node that ever accepted a write in a generation; far above any
/// realistic cluster, small enough that a token stays a few KiB.
pub const MAX_ENTRIES: usize = 1024;
/// Bound on an origin (`IP:PORT` or `[v6]:PORT`).
const MAX_ORIGIN_LEN: usize = 64;
/// Bound on the encoded token, derived from the two bounds above.
const MAX_TOKEN_LEN: usize =
    PREFIX.len() + (MAX_ENTRIES * (MAX_ORIGIN_LEN + 12) + 32 + TAG_BYTES) * 4 / 3;

/// Why a token was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    /// Not a token of this system (prefix, base64 or authentication tag).
    #[error("causal-metadata was not issued by this system")]
    Foreign,
    /// Well-formed envelope, invalid content.
    #[error("causal-metadata is malformed: {0}")]
    Malformed(&'static str),
}

/// What a client depends on: a generation and the writes (per origin) it has observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CausalMetadata {
    /// Shard-map generation the clock belongs to (changes on every reshard).
    pub generation: u64,
    /// Writes the client depends on, per origin node.
    pub clock: VectorClock,
}

impl CausalMetadata {
    /// Metadata of a client that has observed nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// True when the client depends on nothing.
    pub fn is_empty(&self) -> bool {
        self.clock.is_empty()
    }

    /// Merges another dependency set into this one. A newer generation supersedes an older one:
    /// everything of an older generation was settled when the newer one was committed.
    pub fn merge(&mut self, other: &CausalMetadata) {
        if other.generation > self.generation {
            *self = other.clone();
        } else if other.generation == self.generation {
            self.clock.merge(&other.clock);
        }
    }

    /// Canonical token text (equal metadata gives equal text).
    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(16 + self.clock.len() * 24);
        varint::put(self.generation, &mut buf);
        varint::put(self.clock.len() as u64, &mut buf);
        for (origin, seq) in self.clock.iter() {
            varint::put(origin.len() as u64, &mut buf);
            buf.extend_from_slice(origin.as_bytes());
            varint::put(seq, &mut buf);
        }
        let tag = token_key::tag(&buf);
        buf.extend_from_slice(&tag);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(buf))
    }

    /// Parses and validates a token.
    pub fn decode(token: &str) -> Result<Self, MetadataError> {
        let body = token.strip_prefix(PREFIX).ok_or(MetadataError::Foreign)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(MetadataError::Malformed("too long"));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| MetadataError::Foreign)?;
        if raw.len() < TAG_BYTES {
            return Err(MetadataError::Foreign);
        }
        let (payload, tag) = raw.split_at(raw.len() - TAG_BYTES);
        if !token_key::verify(payload, tag) {
            return Err(MetadataError::Foreign);
        }
        decode_payload(payload)
    }
}

fn decode_payload(mut buf: &[u8]) -> Result<CausalMetadata, MetadataError> {
    let bad = |what| MetadataError::Malformed(what);
    let generation = varint::get(&mut buf).ok_or_else(|| bad("generation"))?;
    if generation > MAX_GENERATION {
        return Err(bad("generation"));
    }
    let count = varint::get(&mut buf).ok_or_else(|| bad("entry count"))?;
    if count > MAX_ENTRIES as u64 {
        return Err(bad("too many entries"));
    }
    let mut entries: Vec<(String, u64)> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = varint::get(&mut buf).ok_or_else(|| bad("origin length"))? as usize;
        if len == 0 || len > MAX_ORIGIN_LEN || len > buf.len() {
            return Err(bad("origin length"));
        }
        let origin = std::str::from_utf8(&buf[..len]).map_err(|_| bad("origin"))?;
        buf = &buf[len..];
        let seq = varint::get(&mut buf).ok_or_else(|| bad("counter"))?;
        if seq == 0 || seq > MAX_SEQ || !origin.contains(':') {
            return Err(bad("entry"));
        }
        if entries
            .last()
            .is_some_and(|(prev, _)| prev.as_str() >= origin)
        {
            return Err(bad("entries out of order"));
        }
        entries.push((origin.to_string(), seq));
    }
    if !buf.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(CausalMetadata {
        generation,
        clock: VectorClock::from_entries(entries),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(generation: u64, entries: &[(&str, u64)]) -> CausalMetadata {
        CausalMetadata {
            generation,
            clock: VectorClock::from_entries(entries.iter().map(|(o, s)| (o.to_string(), *s))),
        }
    }

    #[test]
    fn round_trip_and_canonical() {
        let m = meta(3, &[("10.10.0.2:8090", 7), ("10.10.0.3:8090", 1)]);
        let t = m.encode();
        assert!(t.starts_with(PREFIX));
        assert_eq!(CausalMetadata::decode(&t).unwrap(), m);
        assert_eq!(
            meta(3, &[("10.10.0.3:8090", 1), ("10.10.0.2:8090", 7)]).encode(),
            t
        );
        assert_eq!(
            CausalMetadata::decode(&CausalMetadata::empty().encode()).unwrap(),
            CausalMetadata::empty()
        );
    }

    #[test]
    fn rejects_foreign_and_tampered_tokens() {
        assert_eq!(CausalMetadata::decode("hello"), Err(MetadataError::Foreign));
        assert_eq!(
            CausalMetadata::decode("ckv1-!!!"),
            Err(MetadataError::Foreign)
        );
        assert_eq!(CausalMetadata::decode("ckv1-"), Err(MetadataError::Foreign));
        let mut t = meta(1, &[("1.2.3.4:5", 2)]).encode();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        assert!(CausalMetadata::decode(&t).is_err());
    }

    #[test]
    fn rejects_well_signed_but_invalid_content() {
        let seal = |payload: Vec<u8>| {
            let mut p = payload.clone();
            p.extend_from_slice(&token_key::tag(&payload));
            format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(p))
        };
        // one entry whose origin has no port separator
        let t = seal(vec![1, 1, 3, b'a', b'b', b'c', 1]);
        assert_eq!(
            CausalMetadata::decode(&t),
            Err(MetadataError::Malformed("entry"))
        );
        // zero counter
        let t = seal(vec![1, 1, 3, b'a', b':', b'1', 0]);
        assert_eq!(
            CausalMetadata::decode(&t),
            Err(MetadataError::Malformed("entry"))
        );
        // a generation that does not fit the store, a counter out of range
        let t = seal(vec![0x80, 0x80, 0x80, 0x80, 0x10, 0]);
        assert_eq!(
            CausalMetadata::decode(&t),
            Err(MetadataError::Malformed("generation"))
        );
        // trailing garbage
        let t = seal(vec![1, 0, 9]);
        assert_eq!(
            CausalMetadata::decode(&t),
            Err(MetadataError::Malformed("trailing bytes"))
        );
    }

    #[test]
    fn forged_tag_is_foreign() {
        // valid base64, valid layout, a CRC32 (the old seal) or random bytes instead of the MAC
        let payload = vec![1, 1, 9, b'1', b'.', b'2', b'.', b'3', b':', b'4', 0x7f];
        for tail in [
            crc32fast::hash(&payload).to_le_bytes().to_vec(),
            vec![7; TAG_BYTES],
        ] {
            let mut p = payload.clone();
            p.extend_from_slice(&tail);
            let t = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(p));
            assert_eq!(CausalMetadata::decode(&t), Err(MetadataError::Foreign));
        }
        let old = format!("ckv1-{}", URL_SAFE_NO_PAD.encode(&payload));
        assert_eq!(CausalMetadata::decode(&old), Err(MetadataError::Foreign));
    }

    #[test]
    fn newer_generation_supersedes() {
        let mut a = meta(1, &[("a:1", 5)]);
        a.merge(&meta(2, &[("b:1", 1)]));
        assert_eq!(a, meta(2, &[("b:1", 1)]));
        a.merge(&meta(1, &[("c:1", 9)]));
        assert_eq!(a, meta(2, &[("b:1", 1)]));
        a.merge(&meta(2, &[("c:1", 9)]));
        assert_eq!(a, meta(2, &[("b:1", 1), ("c:1", 9)]));
    }
}
