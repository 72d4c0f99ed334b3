//! What is where in the fjall keyspace, and the changes turned into one atomic batch.
//!
//! The `data` partition holds the counters (replica, map, incarnation, token keys) and the
//! pointers to the two *areas* of writes: the replica's data and a prepared reshard's staged
//! keys. An area is a partition of its own (`a<N>`, numbers never reused) whose keys are an
//! 8-byte prefix (the generation or epoch) and the key. Committing a reshard is then a pointer
//! move in one batch (the staging area becomes the replica's), and dropping an area is deleting
//! its partition, not a delete per key. Data directories written before areas existed keep their
//! data in `data` (prefix = generation) and staged keys in `staged` (prefix = epoch): those are
//! read the same way and their keys are dropped one by one once no pointer names them.

use std::collections::HashMap;
use std::path::Path;

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle};

use super::super::codec::{self, Malformed};
use super::super::{Change, Kept, Recovered, StorageError};
use super::ops::Ops;
use crate::domain::store::Write;

/// The counters' partition (and the replica's data in an old directory).
const DATA: &str = "data";
/// Staged keys in an old directory.
const LEGACY_STAGED: &str = "staged";
/// Keys deleted per batch when an old directory's area is dropped.
const CLEANUP_BATCH: usize = 10_000;
/// Memtable of an area: what is held in memory until flushed (the engine is never read from
/// while running, so a small one costs nothing but more, smaller flushes).
const AREA_MEMTABLE_BYTES: u32 = 8 << 20;
/// Memtable of the counters' partition: small, so that it flushes about as often as the areas
/// do (every group commit rewrites the counters) and does not pin old journals on the disk.
const DATA_MEMTABLE_BYTES: u32 = 1 << 20;
/// Block size of every partition: the engine is only scanned (at start-up), never searched key
/// by key, and its block index stays in memory for as long as the node runs: 32 KiB blocks keep
/// that index (and the block cache's bookkeeping of the start-up scan) an eighth of what the
/// default 4 KiB blocks cost, ~2.5 MB at 1M keys, and compress better.
const BLOCK_BYTES: u32 = 32 << 10;

// Counter keys in `data`, all shorter than the 8-byte prefix of the writes an old directory
// keeps beside them, so they never collide.
const META_REPLICA: &str = "replica";
const META_MAP: &str = "map";
const META_INCARNATION: &str = "incarn";
const META_TOKEN_KEYS: &str = "tokens";
/// The replica's area (absent in an old directory: `data` under the generation).
const META_AREA: &str = "area";
/// The staged reshard's map and area (an old directory keeps the map in `staged`).
const META_STAGING: &str = "staging";
const META_STAGING_AREA: &str = "stgarea";
/// The staged map's key in an old directory's `staged` partition.
const LEGACY_STAGED_MAP: &str = "map";

/// Where a set of writes lives: a partition and the prefix of its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Area {
    part: String,
    prefix: u64,
}

/// Where the replica's data and the staging area are now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Layout {
    replica: Option<Area>,
    /// The staged reshard's epoch and area.
    staging: Option<(u64, Area)>,
    /// Number of the next area partition.
    next: u64,
}

impl Layout {
    /// True when both layouts keep their writes in the same areas.
    pub(super) fn same_areas(&self, other: &Layout) -> bool {
        self.replica == other.replica && self.staging == other.staging
    }

    fn referenced(&self) -> impl Iterator<Item = &Area> {
        self.replica
            .iter()
            .chain(self.staging.iter().map(|(_, a)| a))
    }
}

/// `prefix` (a generation or epoch, big-endian) then `key`.
fn prefixed(prefix: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&prefix.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// A partition's options. No bloom filters: they only speed up point reads of keys that may be
/// absent, which the engine never serves (start-up reads the counters and scans the areas), and
/// they stay in memory (~3 MB per million keys).
fn options(memtable: u32) -> PartitionCreateOptions {
    PartitionCreateOptions::default()
        .max_memtable_size(memtable)
        .block_size(BLOCK_BYTES)
        .bloom_filter_bits(None)
}

fn area_number(name: &str) -> Option<u64> {
    name.strip_prefix('a')?.parse().ok()
}

fn fail(e: impl std::fmt::Display) -> StorageError {
    StorageError::Write(e.to_string())
}

/// The engine's handles.
pub(super) struct Db {
    pub(super) ks: Keyspace,
    data: PartitionHandle,
    /// Area partitions opened so far, by name.
    parts: HashMap<String, PartitionHandle>,
}

impl Db {
    pub(super) fn open(dir: &Path, cache_bytes: u64) -> Result<Self, fjall::Error> {
        let ks = fjall::Config::new(dir).cache_size(cache_bytes).open()?;
        // (a partition keeps the options it was created with: an old directory's `data` has
        // the engine's default memtable, 16 MiB)
        let data = ks.open_partition(DATA, options(DATA_MEMTABLE_BYTES))?;
        Ok(Self {
            data,
            ks,
            parts: HashMap::new(),
        })
    }

    fn part(&mut self, name: &str) -> Result<PartitionHandle, fjall::Error> {
        if name == DATA {
            return Ok(self.data.clone());
        }
        if let Some(p) = self.parts.get(name) {
            return Ok(p.clone());
        }
        let p = self.ks.open_partition(name, options(AREA_MEMTABLE_BYTES))?;
        self.parts.insert(name.to_string(), p.clone());
        Ok(p)
    }

    fn new_area(&mut self, layout: &mut Layout, prefix: u64) -> Result<Area, StorageError> {
        let part = format!("a{}", layout.next);
        self.part(&part).map_err(fail)?;
        layout.next += 1;
        Ok(Area { part, prefix })
    }

    fn put_writes(
        &mut self,
        ops: &mut Ops,
        area: &Area,
        writes: &[Write],
    ) -> Result<(), StorageError> {
        let part = self.part(&area.part).map_err(fail)?;
        for w in writes {
            ops.put(&part, prefixed(area.prefix, &w.key), codec::encode_write(w));
        }
        Ok(())
    }

    fn put_area(&self, ops: &mut Ops, key: &str, area: &Area) {
        ops.put(&self.data, key, codec::encode_area(&area.part, area.prefix));
    }

    /// Forgets the staging area's pointer (in an old directory, its map in `staged`).
    fn unstage(&mut self, ops: &mut Ops, layout: &mut Layout) -> Result<(), StorageError> {
        if let Some((_, area)) = layout.staging.take()
            && area.part == LEGACY_STAGED
        {
            let legacy = self.part(LEGACY_STAGED).map_err(fail)?;
            ops.del(&legacy, LEGACY_STAGED_MAP);
        }
        ops.del(&self.data, META_STAGING);
        ops.del(&self.data, META_STAGING_AREA);
        Ok(())
    }

    /// Adds `changes` to `ops`, moving `layout` along (kept only if the batch commits).
    pub(super) fn add(
        &mut self,
        ops: &mut Ops,
        changes: &[Change],
        layout: &mut Layout,
    ) -> Result<(), StorageError> {
        for change in changes {
            match change {
                Change::Applied(writes, meta) => {
                    let area = match &layout.replica {
                        Some(a) => a.clone(),
                        None => {
                            let a = self.new_area(layout, meta.generation)?;
                            self.put_area(ops, META_AREA, &a);
                            layout.replica = Some(a.clone());
                            a
                        }
                    };
                    self.put_writes(ops, &area, writes)?;
                    ops.put(&self.data, META_REPLICA, codec::encode_replica(meta));
                }
                Change::Replaced(writes, meta) => {
                    let area = self.new_area(layout, meta.generation)?;
                    self.put_area(ops, META_AREA, &area);
                    self.put_writes(ops, &area, writes)?;
                    layout.replica = Some(area);
                    ops.put(&self.data, META_REPLICA, codec::encode_replica(meta));
                }
                Change::Promoted {
                    epoch,
                    writes,
                    meta,
                } => {
                    let Some((_, area)) = layout.staging.clone().filter(|(e, _)| e == epoch) else {
                        return Err(StorageError::Write(format!(
                            "no staging area of epoch {epoch} to promote"
                        )));
                    };
                    self.unstage(ops, layout)?;
                    self.put_area(ops, META_AREA, &area);
                    self.put_writes(ops, &area, writes)?;
                    layout.replica = Some(area);
                    ops.put(&self.data, META_REPLICA, codec::encode_replica(meta));
                }
                Change::Map(map) => ops.put(&self.data, META_MAP, codec::encode_map(map)),
                Change::Staged(map, writes) => {
                    let area = match &layout.staging {
                        Some((e, a)) if *e == map.epoch => a.clone(),
                        _ => {
                            self.unstage(ops, layout)?;
                            let a = self.new_area(layout, map.epoch)?;
                            ops.put(&self.data, META_STAGING, codec::encode_map(map));
                            self.put_area(ops, META_STAGING_AREA, &a);
                            layout.staging = Some((map.epoch, a.clone()));
                            a
                        }
                    };
                    self.put_writes(ops, &area, writes)?;
                }
                Change::Unstaged => self.unstage(ops, layout)?,
                Change::Incarnation(n) => {
                    ops.put(&self.data, META_INCARNATION, codec::encode_u64(*n));
                }
                Change::TokenKeys(keys) => {
                    ops.put(&self.data, META_TOKEN_KEYS, codec::encode_keys(keys));
                }
            }
        }
        Ok(())
    }

    /// Hands every write of `area` to `sink` as `kept`.
    fn scan(
        &mut self,
        area: &Area,
        kept: Kept,
        sink: &mut dyn FnMut(Kept, Write),
    ) -> Result<(), String> {
        let part = self.part(&area.part).map_err(|e| e.to_string())?;
        for kv in part.prefix(area.prefix.to_be_bytes()) {
            let (k, v) = kv.map_err(|e| e.to_string())?;
            let w = codec::decode_write(&k[8..], &v).map_err(|Malformed(m)| m.to_string())?;
            sink(kept, w);
        }
        Ok(())
    }

    fn get_area(&self, key: &str) -> Result<Option<Area>, String> {
        match self.meta(key)? {
            None => Ok(None),
            Some(b) => {
                let (part, prefix) = codec::decode_area(&b).map_err(|Malformed(m)| m)?;
                Ok(Some(Area { part, prefix }))
            }
        }
    }

    fn meta(&self, key: &str) -> Result<Option<fjall::Slice>, String> {
        self.data.get(key).map_err(|e| e.to_string())
    }

    /// Reads everything kept, handing the writes to `sink`; returns the rest and the layout.
    pub(super) fn recover(
        &mut self,
        sink: &mut dyn FnMut(Kept, Write),
    ) -> Result<(Recovered, Layout), String> {
        let bad = |Malformed(m)| m.to_string();
        let mut r = Recovered::default();
        let mut layout = Layout {
            next: 1 + self
                .ks
                .list_partitions()
                .iter()
                .filter_map(|n| area_number(n))
                .max()
                .unwrap_or(0),
            ..Layout::default()
        };
        if let Some(b) = self.meta(META_MAP)? {
            r.map = Some(codec::decode_map(&b).map_err(bad)?);
        }
        if let Some(b) = self.meta(META_INCARNATION)? {
            r.incarnation = codec::decode_u64(&b).map_err(bad)?;
        }
        if let Some(b) = self.meta(META_TOKEN_KEYS)? {
            r.token_keys = codec::decode_keys(&b).map_err(bad)?;
        }
        if let Some(b) = self.meta(META_REPLICA)? {
            let meta = codec::decode_replica(&b).map_err(bad)?;
            let area = self.get_area(META_AREA)?.unwrap_or(Area {
                part: DATA.into(),
                prefix: meta.generation,
            });
            self.scan(&area, Kept::Replica, sink)?;
            layout.replica = Some(area);
            r.replica = Some(meta);
        }
        let staged = match self.meta(META_STAGING)? {
            Some(b) => {
                let area = self.get_area(META_STAGING_AREA)?;
                Some((codec::decode_map(&b).map_err(bad)?, area))
            }
            None if self.ks.partition_exists(LEGACY_STAGED) => {
                let legacy = self.part(LEGACY_STAGED).map_err(|e| e.to_string())?;
                match legacy.get(LEGACY_STAGED_MAP).map_err(|e| e.to_string())? {
                    Some(b) => Some((codec::decode_map(&b).map_err(bad)?, None)),
                    None => None,
                }
            }
            None => None,
        };
        if let Some((map, area)) = staged {
            let area = area.unwrap_or(Area {
                part: LEGACY_STAGED.into(),
                prefix: map.epoch,
            });
            self.scan(&area, Kept::Staged, sink)?;
            layout.staging = Some((map.epoch, area));
            r.staged = Some(map);
        }
        Ok((r, layout))
    }

    /// Drops every area `layout` does not name: area partitions are deleted whole, an old
    /// directory's shared partitions lose the keys under other prefixes. Idempotent; run after
    /// a commit that moved an area and at start-up (a crash may have left one behind).
    pub(super) fn sweep(&mut self, layout: &Layout) -> Result<(), fjall::Error> {
        let named = |part: &str| -> Vec<u64> {
            layout
                .referenced()
                .filter(|a| a.part == part)
                .map(|a| a.prefix)
                .collect()
        };
        for name in self.ks.list_partitions() {
            let name: &str = &name;
            if area_number(name).is_some() && named(name).is_empty() {
                let part = self.part(name)?;
                self.parts.remove(name);
                self.ks.delete_partition(part)?;
            }
        }
        for shared in [DATA, LEGACY_STAGED] {
            if self.ks.partition_exists(shared) {
                let part = self.part(shared)?;
                self.drop_prefixes(&part, named(shared))?;
            }
        }
        Ok(())
    }

    /// Deletes every key of `part` with an 8-byte prefix not in `keep` (the shorter counter
    /// keys stay), reading only the ranges between the kept prefixes.
    fn drop_prefixes(
        &self,
        part: &PartitionHandle,
        mut keep: Vec<u64>,
    ) -> Result<(), fjall::Error> {
        keep.sort_unstable();
        let mut doomed = Vec::new();
        let mut from = 0u64;
        for bound in keep.iter().map(|k| Some(*k)).chain([None]) {
            let lo = from.to_be_bytes().to_vec();
            let range: Box<dyn Iterator<Item = _>> = match bound {
                Some(k) => Box::new(part.range(lo..k.to_be_bytes().to_vec())),
                None => Box::new(part.range(lo..)),
            };
            for kv in range {
                let (k, _) = kv?;
                if k.len() >= 8 {
                    doomed.push(k);
                }
            }
            match bound.and_then(|k| k.checked_add(1)) {
                Some(next) => from = next,
                None => break,
            }
        }
        for chunk in doomed.chunks(CLEANUP_BATCH) {
            let mut b = self.ks.batch();
            for k in chunk {
                b.remove(part, k.clone());
            }
            b.commit()?;
        }
        Ok(())
    }
}
