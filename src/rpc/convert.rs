//! Every protobuf ↔ domain conversion, in one place. Incoming messages are validated here:
//! malformed input becomes a `Status::invalid_argument`, never a panic.

use std::sync::Arc;

use tonic::Status;

use super::pb;
use crate::cluster::kv::{KvOp, OpReply, Outcome};
use crate::domain::clock::VectorClock;
use crate::domain::metadata::CausalMetadata;
use crate::domain::shard::ShardMap;
use crate::domain::store::{Version, Write};
use crate::domain::write_id::WriteIdError;

/// Clock → wire entries.
pub fn clock_to_pb(c: &VectorClock) -> Vec<pb::ClockEntry> {
    c.iter()
        .map(|(origin, seq)| pb::ClockEntry {
            origin: origin.to_string(),
            seq,
        })
        .collect()
}

/// Wire entries → clock.
pub fn clock_from_pb(entries: Vec<pb::ClockEntry>) -> VectorClock {
    VectorClock::from_entries(entries.into_iter().map(|e| (e.origin, e.seq)))
}

/// Write → wire.
pub fn write_to_pb(w: &Write) -> pb::Write {
    pb::Write {
        key: w.key.clone(),
        version: Some(pb::Version {
            generation: w.version.generation,
            origin: w.version.origin.to_string(),
            seq: w.version.seq,
            clock: clock_to_pb(&w.version.clock),
        }),
        value: w.value.as_deref().unwrap_or_default().to_string(),
        tombstone: w.value.is_none(),
    }
}

/// Wire → write, rejecting writes without a version or with an invalid one.
pub fn write_from_pb(w: pb::Write) -> Result<Write, Status> {
    let v = w
        .version
        .ok_or_else(|| Status::invalid_argument("write without a version"))?;
    if v.seq == 0 || v.origin.is_empty() {
        return Err(Status::invalid_argument("write with an invalid version"));
    }
    let clock = clock_from_pb(v.clock);
    if clock.get(&v.origin) != v.seq {
        return Err(Status::invalid_argument(
            "write clock does not include the write",
        ));
    }
    Ok(Write {
        key: w.key,
        version: Version {
            generation: v.generation,
            origin: v.origin.into(),
            seq: v.seq,
            clock,
        },
        value: (!w.tombstone).then(|| Arc::from(w.value)),
    })
}

/// Many wire writes → writes.
pub fn writes_from_pb(ws: Vec<pb::Write>) -> Result<Vec<Write>, Status> {
    ws.into_iter().map(write_from_pb).collect()
}

/// Shard map → wire.
pub fn map_to_pb(m: &ShardMap) -> pb::ShardMap {
    pb::ShardMap {
        epoch: m.epoch,
        generation: m.generation,
        shard_count: m.shard_count,
        shards: m
            .ids()
            .into_iter()
            .map(|id| pb::ShardEntry {
                id,
                members: m.members(id),
            })
            .collect(),
    }
}

/// Wire → shard map, rejecting members of shards outside `0..shard_count`.
pub fn map_from_pb(m: pb::ShardMap) -> Result<ShardMap, Status> {
    let mut map = ShardMap {
        epoch: m.epoch,
        generation: m.generation,
        shard_count: m.shard_count,
        assignment: Default::default(),
    };
    for s in m.shards {
        if s.id >= m.shard_count {
            return Err(Status::invalid_argument("shard id out of range"));
        }
        for node in s.members {
            map.assignment.insert(node, s.id);
        }
    }
    Ok(map)
}

/// Client op → wire kind and value.
pub fn op_to_pb(op: &KvOp) -> (pb::OpKind, String) {
    match op {
        KvOp::Put(v) => (pb::OpKind::Put, v.to_string()),
        KvOp::Get => (pb::OpKind::Get, String::new()),
        KvOp::Delete => (pb::OpKind::Delete, String::new()),
    }
}

/// Wire kind and value → client op.
pub fn op_from_pb(kind: i32, value: String) -> Result<KvOp, Status> {
    match pb::OpKind::try_from(kind) {
        Ok(pb::OpKind::Put) => Ok(KvOp::Put(value.into())),
        Ok(pb::OpKind::Get) => Ok(KvOp::Get),
        Ok(pb::OpKind::Delete) => Ok(KvOp::Delete),
        _ => Err(Status::invalid_argument("unknown operation kind")),
    }
}

/// Metadata token text → metadata ("" = none).
pub fn metadata_from_token(token: &str) -> Result<CausalMetadata, Status> {
    if token.is_empty() {
        return Ok(CausalMetadata::empty());
    }
    CausalMetadata::decode(token).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Operation reply → wire.
pub fn reply_to_pb(r: OpReply) -> pb::ForwardResponse {
    let (outcome, detail) = match r.outcome {
        Outcome::Created => (pb::Outcome::Created, String::new()),
        Outcome::Replaced => (pb::Outcome::Replaced, String::new()),
        Outcome::Found => (pb::Outcome::Found, String::new()),
        Outcome::Deleted => (pb::Outcome::Deleted, String::new()),
        Outcome::NotFound => (pb::Outcome::NotFound, String::new()),
        Outcome::Unsatisfied => (pb::Outcome::Unsatisfied, String::new()),
        Outcome::CannotForward(d) => (pb::Outcome::Unavailable, d),
        Outcome::Unavailable(d) => (pb::Outcome::NotOwner, d),
    };
    pb::ForwardResponse {
        outcome: outcome as i32,
        value: r.value.as_deref().unwrap_or_default().to_string(),
        metadata: r.metadata.map(|m| m.encode()).unwrap_or_default(),
        shard_id: r.shard,
        detail,
        written: r.written.map(|w| w.to_string()).unwrap_or_default(),
    }
}

/// Wire → operation reply.
pub fn reply_from_pb(r: pb::ForwardResponse) -> Result<OpReply, Status> {
    let outcome = match pb::Outcome::try_from(r.outcome) {
        Ok(pb::Outcome::Created) => Outcome::Created,
        Ok(pb::Outcome::Replaced) => Outcome::Replaced,
        Ok(pb::Outcome::Found) => Outcome::Found,
        Ok(pb::Outcome::Deleted) => Outcome::Deleted,
        Ok(pb::Outcome::NotFound) => Outcome::NotFound,
        Ok(pb::Outcome::Unsatisfied) => Outcome::Unsatisfied,
        Ok(pb::Outcome::Unavailable) => Outcome::CannotForward(r.detail),
        Ok(pb::Outcome::NotOwner) => Outcome::Unavailable(r.detail),
        _ => return Err(Status::invalid_argument("unknown outcome")),
    };
    let metadata = if r.metadata.is_empty() {
        None
    } else {
        Some(metadata_from_token(&r.metadata)?)
    };
    let written = if r.written.is_empty() {
        None
    } else {
        Some(
            r.written
                .parse()
                .map_err(|e: WriteIdError| Status::invalid_argument(e.to_string()))?,
        )
    };
    Ok(OpReply {
        value: (outcome == Outcome::Found).then(|| Arc::from(r.value)),
        outcome,
        metadata,
        shard: r.shard_id,
        written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_and_map_round_trip() {
        let w = Write {
            key: "k".into(),
            version: Version {
                generation: 2,
                origin: "a:1".into(),
                seq: 3,
                clock: VectorClock::from_entries([("a:1".to_string(), 3), ("b:1".to_string(), 1)]),
            },
            value: Some("{\"x\":1}".into()),
        };
        assert_eq!(write_from_pb(write_to_pb(&w)).unwrap(), w);
        let tomb = Write {
            value: None,
            ..w.clone()
        };
        assert_eq!(write_from_pb(write_to_pb(&tomb)).unwrap(), tomb);
        let m = ShardMap::initial(&["a:1".into(), "b:1".into(), "c:1".into(), "d:1".into()], 2);
        assert_eq!(map_from_pb(map_to_pb(&m)).unwrap(), m);
    }

    #[test]
    fn malformed_messages_are_rejected() {
        assert!(write_from_pb(pb::Write::default()).is_err());
        let mut w = write_to_pb(&Write {
            key: "k".into(),
            version: Version {
                generation: 1,
                origin: "a:1".into(),
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
        assert!(op_from_pb(42, String::new()).is_err());
        assert!(metadata_from_token("nope").is_err());
    }
}
