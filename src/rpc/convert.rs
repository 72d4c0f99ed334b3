//! Every protobuf ↔ domain conversion, in one place. Incoming messages are validated here:
//! malformed input becomes a `Status::invalid_argument`, never a panic. Every number that comes
//! from outside is bounded here, so the layers inside may do plain arithmetic on it; the checks
//! that need the node's state (epoch and generation steps) live in `cluster::guard`.

use std::sync::Arc;

use tonic::Status;

use super::pb;
use crate::cluster::op::{ForwardOp, KvOp, OpReply, Outcome};
use crate::cluster::peers::ChangeKind;
use crate::domain::clock::VectorClock;
use crate::domain::metadata::CausalMetadata;
use crate::domain::metadata::MAX_ENTRIES;
use crate::domain::shard::ShardMap;
use crate::domain::store::{Version, Write};
use crate::domain::token_key;
use crate::domain::write_id::WriteIdError;

/// Generations are stored in 32 bits (`domain/store.rs`) and grow by one per reshard: a value
/// at or above 2^32 can only be forged.
pub const MAX_GENERATION: u64 = u32::MAX as u64;
/// Epochs grow by one per map change; 2^48 is out of reach for any real cluster and leaves
/// headroom for `+ 1` everywhere.
pub const MAX_EPOCH: u64 = 1 << 48;
/// Per-origin write counters: 2^48 writes per origin and generation is beyond reach, and a sum
/// of `MAX_ENTRIES` such counters cannot overflow a u64.
pub const MAX_SEQ: u64 = 1 << 48;
/// Longest key (API.md: more than 50 characters is refused).
pub const MAX_KEY_CHARS: usize = 50;
/// Nodes in one shard map: far above any cluster we run, small enough to bound a map message.
pub const MAX_MAP_NODES: usize = 1024;
/// Longest node address (`IP:PORT`, `[v6]:PORT` or `HOST:PORT`), as in metadata tokens.
const MAX_ADDRESS_LEN: usize = 64;

fn bad(what: impl Into<String>) -> Status {
    Status::invalid_argument(what.into())
}

/// A node address from the wire: `IP:PORT` or `HOST:PORT`, bounded.
pub fn address(what: &str, a: &str) -> Result<(), Status> {
    if a.len() > MAX_ADDRESS_LEN || crate::net::NodeAddr::parse(a).is_err() {
        return Err(bad(format!("{what} is not IP:PORT or HOST:PORT")));
    }
    Ok(())
}

/// Addresses already checked while decoding one message: a batch of thousands of writes names
/// the same few origins, so each is parsed once (up to 64 of them are remembered).
#[derive(Default)]
struct Checked(Vec<String>);

impl Checked {
    fn address(&mut self, what: &str, a: &str) -> Result<(), Status> {
        if self.0.iter().any(|c| c == a) {
            return Ok(());
        }
        address(what, a)?;
        if self.0.len() < 64 {
            self.0.push(a.to_string());
        }
        Ok(())
    }
}

/// A key from the wire: at most 50 characters.
pub fn key(k: &str) -> Result<(), Status> {
    if k.chars().count() > MAX_KEY_CHARS {
        return Err(bad("Key is too long"));
    }
    Ok(())
}

/// A value's JSON text from the wire: at most `max_bytes`, and valid JSON.
pub fn value_text(v: &str, max_bytes: usize) -> Result<(), Status> {
    if v.len() > max_bytes {
        return Err(bad(format!("value over {max_bytes} bytes")));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(v).map_err(|_| bad("value is not JSON"))?;
    Ok(())
}

/// Bounds a generation.
pub fn generation(g: u64) -> Result<u64, Status> {
    if g > MAX_GENERATION {
        return Err(bad("generation out of range"));
    }
    Ok(g)
}

/// Checks the values of writes (size and JSON validity); tombstones carry no value.
pub fn check_values(ws: &[Write], max_bytes: usize) -> Result<(), Status> {
    ws.iter()
        .filter_map(|w| w.value.as_deref())
        .try_for_each(|v| value_text(v, max_bytes))
}

/// Clock → wire entries.
pub fn clock_to_pb(c: &VectorClock) -> Vec<pb::ClockEntry> {
    c.iter()
        .map(|(origin, seq)| pb::ClockEntry {
            origin: origin.to_string(),
            seq,
        })
        .collect()
}

/// Wire entries → clock, bounded: at most `MAX_ENTRIES` entries of `IP:PORT` origins with
/// counters below `MAX_SEQ`.
pub fn clock_from_pb(entries: Vec<pb::ClockEntry>) -> Result<VectorClock, Status> {
    checked_clock_from_pb(entries, &mut Checked::default())
}

fn checked_clock_from_pb(
    entries: Vec<pb::ClockEntry>,
    checked: &mut Checked,
) -> Result<VectorClock, Status> {
    if entries.len() > MAX_ENTRIES {
        return Err(bad("clock has too many entries"));
    }
    for e in &entries {
        checked.address("clock origin", &e.origin)?;
        if e.seq > MAX_SEQ {
            return Err(bad("clock counter out of range"));
        }
    }
    Ok(VectorClock::from_entries(
        entries.into_iter().map(|e| (e.origin, e.seq)),
    ))
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

/// Write → wire, by value: the key and the clock's origins move instead of being copied (bulk
/// transfers convert every write of a store once).
pub fn write_into_pb(w: Write) -> pb::Write {
    let tombstone = w.value.is_none();
    pb::Write {
        key: w.key,
        version: Some(pb::Version {
            generation: w.version.generation,
            origin: w.version.origin.to_string(),
            seq: w.version.seq,
            clock: w
                .version
                .clock
                .into_entries()
                .map(|(origin, seq)| pb::ClockEntry { origin, seq })
                .collect(),
        }),
        value: w.value.as_deref().unwrap_or_default().to_string(),
        tombstone,
    }
}

/// Wire → write, rejecting writes without a version or with an invalid one (keys over 50
/// characters, forged generations, counters out of range, a tombstone with a value). Value
/// size and JSON validity need the node's limit: see [`check_values`].
pub fn write_from_pb(w: pb::Write) -> Result<Write, Status> {
    checked_write_from_pb(w, &mut Checked::default())
}

fn checked_write_from_pb(w: pb::Write, checked: &mut Checked) -> Result<Write, Status> {
    let v = w
        .version
        .ok_or_else(|| Status::invalid_argument("write without a version"))?;
    if v.seq == 0 || v.seq > MAX_SEQ {
        return Err(Status::invalid_argument("write with an invalid version"));
    }
    checked.address("write origin", &v.origin)?;
    key(&w.key)?;
    generation(v.generation)?;
    if w.tombstone && !w.value.is_empty() {
        return Err(bad("tombstone with a value"));
    }
    let clock = checked_clock_from_pb(v.clock, checked)?;
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
    let mut checked = Checked::default();
    ws.into_iter()
        .map(|w| checked_write_from_pb(w, &mut checked))
        .collect()
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

/// Wire → shard map, rejecting members of shards outside `0..shard_count`, members that are
/// not `IP:PORT` or belong to two shards, more shards than nodes (a shard count of 2^32 − 1
/// would make `/shard/ids` allocate 16 GiB), forged generations and epochs.
pub fn map_from_pb(m: pb::ShardMap) -> Result<ShardMap, Status> {
    if m.epoch > MAX_EPOCH {
        return Err(bad("epoch out of range"));
    }
    let mut map = ShardMap {
        epoch: m.epoch,
        generation: generation(m.generation)?,
        shard_count: m.shard_count,
        assignment: Default::default(),
    };
    if m.shards.len() > MAX_MAP_NODES {
        return Err(bad("too many shards"));
    }
    for s in m.shards {
        if s.id >= m.shard_count {
            return Err(Status::invalid_argument("shard id out of range"));
        }
        for node in s.members {
            address("shard member", &node)?;
            if map.assignment.insert(node, s.id).is_some_and(|o| o != s.id) {
                return Err(bad("node assigned to two shards"));
            }
            if map.assignment.len() > MAX_MAP_NODES {
                return Err(bad("too many nodes"));
            }
        }
    }
    let nodes = map.assignment.len().max(1);
    if m.shard_count as usize > nodes {
        return Err(bad("more shards than nodes in the map"));
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

/// Wire kind and value → client op; a PUT's value must be JSON of at most `max_bytes`.
pub fn op_from_pb(kind: i32, value: String, max_bytes: usize) -> Result<KvOp, Status> {
    match pb::OpKind::try_from(kind) {
        Ok(pb::OpKind::Put) => {
            value_text(&value, max_bytes)?;
            Ok(KvOp::Put(value.into()))
        }
        Ok(pb::OpKind::Get) => Ok(KvOp::Get),
        Ok(pb::OpKind::Delete) => Ok(KvOp::Delete),
        _ => Err(Status::invalid_argument("unknown operation kind")),
    }
}

/// The token key to share with a member (keyless clusters only).
pub fn token_key_to_pb() -> pb::TokenKey {
    let k = token_key::current();
    pb::TokenKey {
        key: k.bytes.to_vec(),
        created_ms: k.created_ms,
    }
}

/// Adopts a token key a member answered with, if it is well-formed and older than ours.
pub fn adopt_token_key(k: Option<pb::TokenKey>) {
    let Some(k) = k else { return };
    let Ok(bytes) = <[u8; token_key::KEY_BYTES]>::try_from(k.key.as_slice()) else {
        return;
    };
    if k.created_ms > 0
        && token_key::adopt(token_key::TokenKey {
            created_ms: k.created_ms,
            bytes,
        })
    {
        tracing::info!(
            created_ms = k.created_ms,
            "adopted the cluster's metadata-token key"
        );
    }
}

/// Metadata token text → metadata ("" = none).
pub fn metadata_from_token(token: &str) -> Result<CausalMetadata, Status> {
    if token.is_empty() {
        return Ok(CausalMetadata::empty());
    }
    CausalMetadata::decode(token).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Forwarded operation → wire (the metadata as its token text, "" for none).
pub fn forward_to_pb(op: ForwardOp) -> pb::ForwardRequest {
    let (kind, value) = op_to_pb(&op.op);
    pb::ForwardRequest {
        kind: kind as i32,
        key: op.key,
        value,
        metadata: if op.metadata.is_empty() {
            String::new()
        } else {
            op.metadata.encode()
        },
        wait_ms: op.wait.as_millis() as u64,
    }
}

/// Wire → forwarded operation: the key bounded, a PUT's value JSON of at most `max_bytes`, the
/// token valid, the wait at most `max_wait`.
pub fn forward_from_pb(
    r: pb::ForwardRequest,
    max_bytes: usize,
    max_wait: std::time::Duration,
) -> Result<ForwardOp, Status> {
    key(&r.key)?;
    let op = op_from_pb(r.kind, r.value, max_bytes)?;
    let metadata = metadata_from_token(&r.metadata)?;
    let wait = std::time::Duration::from_millis(r.wait_ms).min(max_wait);
    Ok(ForwardOp {
        op,
        key: r.key,
        metadata,
        wait,
    })
}

/// View-change kind → wire.
pub fn change_kind_to_pb(kind: ChangeKind) -> pb::ChangeKind {
    match kind {
        ChangeKind::Down => pb::ChangeKind::Down,
        ChangeKind::Added => pb::ChangeKind::Added,
        ChangeKind::Removed => pb::ChangeKind::Removed,
    }
}

/// Wire → view-change kind.
pub fn change_kind_from_pb(kind: i32) -> Result<ChangeKind, Status> {
    match pb::ChangeKind::try_from(kind) {
        Ok(pb::ChangeKind::Down) => Ok(ChangeKind::Down),
        Ok(pb::ChangeKind::Added) => Ok(ChangeKind::Added),
        Ok(pb::ChangeKind::Removed) => Ok(ChangeKind::Removed),
        _ => Err(bad("unknown change kind")),
    }
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

/// The answer to one operation of a batch that failed validation.
pub fn bad_request_reply(detail: &str) -> pb::ForwardResponse {
    pb::ForwardResponse {
        outcome: pb::Outcome::BadRequest as i32,
        detail: detail.to_string(),
        ..Default::default()
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
mod tests;
