//! The on-disk form of what `storage` keeps: writes (version and value or tombstone), the
//! replica's counters, shard maps. A small versioned binary format of varints and
//! length-prefixed bytes; the engine adds its own checksums. Decoding rejects anything
//! malformed (never panics), so a damaged record is reported, not served.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::domain::clock::VectorClock;
use crate::domain::shard::ShardMap;
use crate::domain::store::{Version, Write};
use crate::domain::token_key::TokenKey;

use super::ReplicaMeta;

/// First byte of every record: the format version, so a later format can read this one.
const FORMAT: u8 = 1;

/// A record that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed record: {0}")]
pub struct Malformed(pub &'static str);

fn put_u64(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(b: &[u8], out: &mut Vec<u8>) {
    put_u64(b.len() as u64, out);
    out.extend_from_slice(b);
}

fn put_clock(c: &VectorClock, out: &mut Vec<u8>) {
    put_u64(c.len() as u64, out);
    for (origin, seq) in c.iter() {
        put_bytes(origin.as_bytes(), out);
        put_u64(seq, out);
    }
}

/// A cursor over a record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u64(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or(Malformed("truncated number"))?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Malformed("number too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = usize::try_from(self.u64()?).map_err(|_| Malformed("length"))?;
        if n > self.0.len() {
            return Err(Malformed("truncated bytes"));
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }

    fn str(&mut self) -> Result<&'a str, Malformed> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed("not UTF-8"))
    }

    fn clock(&mut self) -> Result<VectorClock, Malformed> {
        let n = self.u64()?;
        let mut entries = Vec::new();
        for _ in 0..n {
            let origin = self.str()?.to_string();
            entries.push((origin, self.u64()?));
        }
        Ok(VectorClock::from_entries(entries))
    }

    fn format(&mut self) -> Result<(), Malformed> {
        match self.0.split_first() {
            Some((&FORMAT, rest)) => {
                self.0 = rest;
                Ok(())
            }
            _ => Err(Malformed("unknown format")),
        }
    }
}

/// Encodes a write's version and value (the key is the record's key).
pub fn encode_write(w: &Write) -> Vec<u8> {
    let value = w.value.as_deref().map_or(0, str::len);
    let mut out = Vec::with_capacity(value + 48);
    out.push(FORMAT);
    put_u64(w.version.generation, &mut out);
    put_bytes(w.version.origin.as_bytes(), &mut out);
    put_u64(w.version.seq, &mut out);
    put_clock(&w.version.clock, &mut out);
    match &w.value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v.as_bytes());
        }
    }
    out
}

/// Decodes a record written by [`encode_write`] for `key`.
pub fn decode_write(key: &[u8], bytes: &[u8]) -> Result<Write, Malformed> {
    let key = std::str::from_utf8(key).map_err(|_| Malformed("key not UTF-8"))?;
    let mut r = Reader(bytes);
    r.format()?;
    let generation = r.u64()?;
    let origin: Arc<str> = r.str()?.into();
    let seq = r.u64()?;
    let clock = r.clock()?;
    let value = match r.0.split_first() {
        Some((0, [])) => None,
        Some((1, v)) => Some(
            std::str::from_utf8(v)
                .map_err(|_| Malformed("value not UTF-8"))?
                .into(),
        ),
        _ => return Err(Malformed("value tag")),
    };
    Ok(Write {
        key: key.to_string(),
        version: Version {
            generation,
            origin,
            seq,
            clock,
        },
        value,
    })
}

/// Encodes the replica's counters.
pub fn encode_replica(m: &ReplicaMeta) -> Vec<u8> {
    let mut out = vec![FORMAT];
    put_u64(m.generation, &mut out);
    out.push(u8::from(m.complete));
    put_clock(&m.clock, &mut out);
    out
}

/// Decodes [`encode_replica`].
pub fn decode_replica(bytes: &[u8]) -> Result<ReplicaMeta, Malformed> {
    let mut r = Reader(bytes);
    r.format()?;
    let generation = r.u64()?;
    let complete = match r.0.split_first() {
        Some((&b, rest)) if b <= 1 => {
            r.0 = rest;
            b == 1
        }
        _ => return Err(Malformed("complete flag")),
    };
    let clock = r.clock()?;
    Ok(ReplicaMeta {
        generation,
        clock,
        complete,
    })
}

/// Encodes a shard map.
pub fn encode_map(m: &ShardMap) -> Vec<u8> {
    let mut out = vec![FORMAT];
    put_u64(m.epoch, &mut out);
    put_u64(m.generation, &mut out);
    put_u64(u64::from(m.shard_count), &mut out);
    put_u64(m.assignment.len() as u64, &mut out);
    for (node, shard) in &m.assignment {
        put_bytes(node.as_bytes(), &mut out);
        put_u64(u64::from(*shard), &mut out);
    }
    out
}

/// Decodes [`encode_map`].
pub fn decode_map(bytes: &[u8]) -> Result<ShardMap, Malformed> {
    let mut r = Reader(bytes);
    r.format()?;
    let epoch = r.u64()?;
    let generation = r.u64()?;
    let shard_count = u32::try_from(r.u64()?).map_err(|_| Malformed("shard count"))?;
    let n = r.u64()?;
    let mut assignment = BTreeMap::new();
    for _ in 0..n {
        let node = r.str()?.to_string();
        let shard = u32::try_from(r.u64()?).map_err(|_| Malformed("shard id"))?;
        assignment.insert(node, shard);
    }
    Ok(ShardMap {
        epoch,
        generation,
        shard_count,
        assignment,
    })
}

/// Encodes token keys.
pub fn encode_keys(keys: &[TokenKey]) -> Vec<u8> {
    let mut out = vec![FORMAT];
    put_u64(keys.len() as u64, &mut out);
    for k in keys {
        put_u64(k.created_ms, &mut out);
        put_bytes(&k.bytes, &mut out);
    }
    out
}

/// Decodes [`encode_keys`].
pub fn decode_keys(bytes: &[u8]) -> Result<Vec<TokenKey>, Malformed> {
    let mut r = Reader(bytes);
    r.format()?;
    let n = r.u64()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let created_ms = r.u64()?;
        let bytes = r.bytes()?.try_into().map_err(|_| Malformed("key length"))?;
        out.push(TokenKey { created_ms, bytes });
    }
    Ok(out)
}

/// Encodes where an area of writes lives: a partition's name and the prefix of its keys.
pub fn encode_area(part: &str, prefix: u64) -> Vec<u8> {
    let mut out = vec![FORMAT];
    put_bytes(part.as_bytes(), &mut out);
    put_u64(prefix, &mut out);
    out
}

/// Decodes [`encode_area`].
pub fn decode_area(bytes: &[u8]) -> Result<(String, u64), Malformed> {
    let mut r = Reader(bytes);
    r.format()?;
    let part = r.str()?.to_string();
    Ok((part, r.u64()?))
}

/// Encodes a plain number (the incarnation).
pub fn encode_u64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// Decodes [`encode_u64`].
pub fn decode_u64(bytes: &[u8]) -> Result<u64, Malformed> {
    Ok(u64::from_be_bytes(
        bytes.try_into().map_err(|_| Malformed("not 8 bytes"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(value: Option<&str>) -> Write {
        Write {
            key: "k/ü".into(),
            version: Version {
                generation: 3,
                origin: "10.0.0.1:8090".into(),
                seq: 300,
                clock: VectorClock::from_entries([
                    ("10.0.0.1:8090".to_string(), 300),
                    ("10.0.0.2:8090".to_string(), 7),
                ]),
            },
            value: value.map(Into::into),
        }
    }

    #[test]
    fn writes_round_trip_values_and_tombstones() {
        for w in [write(Some("{\"a\":1}")), write(None), write(Some(""))] {
            let bytes = encode_write(&w);
            assert_eq!(decode_write(w.key.as_bytes(), &bytes), Ok(w));
        }
    }

    #[test]
    fn maps_and_counters_round_trip() {
        let nodes: Vec<String> = (1..=6).map(|i| format!("127.0.0.{i}:8090")).collect();
        let map = ShardMap::initial(&nodes, 2);
        assert_eq!(decode_map(&encode_map(&map)), Ok(map));
        let meta = ReplicaMeta {
            generation: 2,
            clock: write(None).version.clock,
            complete: false,
        };
        assert_eq!(decode_replica(&encode_replica(&meta)), Ok(meta));
        assert_eq!(decode_u64(&encode_u64(77)), Ok(77));
        assert_eq!(decode_area(&encode_area("a12", 3)), Ok(("a12".into(), 3)));
        let keys = vec![
            TokenKey {
                created_ms: 5,
                bytes: [7; 32],
            },
            TokenKey {
                created_ms: 9,
                bytes: [1; 32],
            },
        ];
        assert_eq!(decode_keys(&encode_keys(&keys)), Ok(keys));
    }

    #[test]
    fn every_truncation_is_rejected_not_misread() {
        let w = write(Some("12345"));
        let bytes = encode_write(&w);
        // Cutting the value's text short still decodes (the value runs to the end): the engine's
        // checksums catch that; every cut inside the header must fail.
        let header = bytes.len() - "12345".len() - 1;
        for cut in 0..=header {
            assert!(decode_write(b"k", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let map = encode_map(&ShardMap::initial(&["a:1".into(), "b:1".into()], 1));
        for cut in 0..map.len() {
            assert!(decode_map(&map[..cut]).is_err(), "cut at {cut}");
        }
    }
}
