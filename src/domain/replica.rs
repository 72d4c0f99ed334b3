//! One node's replica of its shard: the store, the clock of delivered writes, and the buffer of
//! writes received before their causal dependencies.
//!
//! "Scope" is the set of origins of this node's shard in the current generation; checks ignore
//! entries of other origins (they belong to other shards). Pure; no I/O.

use std::collections::BTreeMap;

use super::table_hash::TableMap;
use std::sync::Arc;

use super::clock::VectorClock;
use super::metadata::CausalMetadata;
use super::store::{Applied, Store, Version, Write};

/// Bound on buffered not-yet-deliverable writes; past it new ones are dropped and anti-entropy
/// (which pulls a delta from a peer) repairs the gap. Large enough for seconds of full-speed lag.
pub const MAX_PENDING: usize = 200_000;
/// Bound on the bytes of buffered writes (keys, values, clocks), with the same overflow
/// behaviour: a write that would pass it is dropped and anti-entropy pulls it later. 256 MiB is
/// seconds of lag at full speed with 1 KiB values, and keeps a flood of large values from a
/// member from exhausting memory.
pub const MAX_PENDING_BYTES: usize = 256 << 20;
/// Most buffered writes one drain delivers. A drain runs under the node's lock, and one missing
/// write (or a pull's clock) can unblock the whole buffer, up to [`MAX_PENDING`] writes: about
/// 4k deliveries take a few milliseconds, so the rest is left as a backlog
/// ([`Replica::has_backlog`]) that the node delivers a slice per lock hold, releasing the lock
/// in between ([`Replica::deliver_backlog`]).
pub const DRAIN_SLICE: usize = 4_096;
/// Bookkeeping bytes counted per buffered write beside its key, value and clock.
const WRITE_OVERHEAD_BYTES: usize = 96;

/// Approximate heap bytes of a write: what the buffer counts against [`MAX_PENDING_BYTES`].
pub fn write_bytes(w: &Write) -> usize {
    let clock: usize = w.version.clock.iter().map(|(o, _)| o.len() + 40).sum();
    w.key.len() + w.value.as_deref().map_or(0, str::len) + clock + WRITE_OVERHEAD_BYTES
}

/// A shard replica.
#[derive(Debug, Default)]
pub struct Replica {
    /// Shard-map generation of the data.
    pub generation: u64,
    /// The data.
    pub store: Store,
    /// Writes delivered, per origin of this shard.
    pub clock: VectorClock,
    /// False while this replica may lack data of earlier generations (it joined its shard, or
    /// missed a reshard, and has not pulled a full copy yet): metadata of an earlier generation
    /// is then not satisfied.
    pub complete: bool,
    pending: TableMap<Arc<str>, BTreeMap<u64, Write>>,
    pending_len: usize,
    pending_bytes: usize,
    /// True when the last drain stopped at its bound: buffered writes may be deliverable.
    backlog: bool,
    /// True while a delivery of the backlog is scheduled (see [`Replica::schedule_drain`]).
    drain_scheduled: bool,
    /// Writes that won here since the last [`Replica::take_changes`], when recording (a node
    /// with a data directory hands them to storage).
    journal: Option<Vec<Write>>,
}

/// What offering a remote write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Offered {
    /// Writes delivered (this one and any buffered ones it unblocked).
    pub delivered: usize,
    /// True when the write was buffered to wait for its dependencies.
    pub buffered: bool,
}

impl Replica {
    /// An empty replica of `generation`, complete (nothing earlier exists).
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            complete: true,
            ..Self::default()
        }
    }

    /// True when every write `meta` depends on (within scope) has been delivered here.
    /// Metadata of an older generation is satisfied once this replica holds its shard's full
    /// data (that generation was settled by the reshard); a newer generation never is (this
    /// node has not installed it yet). Empty metadata depends on nothing.
    pub fn satisfies(&self, meta: &CausalMetadata, scope: impl Fn(&str) -> bool) -> bool {
        if meta.is_empty() {
            return true;
        }
        match meta.generation.cmp(&self.generation) {
            std::cmp::Ordering::Less => self.complete,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => meta.clock.le_within(&self.clock, scope),
        }
    }

    /// Accepts a client write at origin `me` (the caller checked `satisfies`). The write depends
    /// on everything delivered here, everything `meta` depends on in other shards, and the
    /// version it overwrites (so it always orders after that version, foreign entries included).
    pub fn local_write(
        &mut self,
        me: &Arc<str>,
        key: String,
        value: Option<Arc<str>>,
        meta: &CausalMetadata,
    ) -> (Write, Applied) {
        let seq = self.clock.get(me) + 1;
        self.clock.raise(me, seq);
        let mut clock = self.clock.clone();
        if meta.generation == self.generation {
            clock.merge(&meta.clock);
        }
        if let Some(old) = self
            .store
            .get(&key)
            .filter(|e| e.version.generation == self.generation)
        {
            clock.merge(&old.version.clock);
        }
        let write = Write {
            key,
            version: Version {
                generation: self.generation,
                origin: me.clone(),
                seq,
                clock,
            },
            value,
        };
        let applied = self.apply(write.clone());
        (write, applied)
    }

    /// Offers a write replicated from a peer: delivered now if its dependencies are met,
    /// buffered otherwise, ignored if already delivered or of another generation's past. At
    /// most [`DRAIN_SLICE`] buffered writes are delivered with it; while a backlog is left
    /// (see [`Replica::has_backlog`]) the write is only buffered, and the backlog's delivery
    /// takes it too (any deliverable write may be delivered at any time: order only matters
    /// within what each write's clock requires, and that is checked per write).
    pub fn offer(&mut self, write: Write, scope: &impl Fn(&str) -> bool) -> Offered {
        let v = &write.version;
        if v.generation < self.generation
            || (v.generation == self.generation && self.clock.get(&v.origin) >= v.seq)
            || !scope(&v.origin)
        {
            return Offered::default();
        }
        let bytes = write_bytes(&write);
        let (origin, seq) = (v.origin.clone(), v.seq);
        let slot = self.pending.entry(origin.clone()).or_default();
        match slot.insert(seq, write) {
            None => self.pending_len += 1,
            Some(old) => self.pending_bytes -= write_bytes(&old),
        }
        self.pending_bytes += bytes;
        let delivered = if self.backlog {
            0
        } else {
            self.drain(scope, DRAIN_SLICE)
        };
        // Still waiting and over a bound: drop it (anti-entropy pulls it later).
        if self.pending_len > MAX_PENDING || self.pending_bytes > MAX_PENDING_BYTES {
            let dropped = self.pending.get_mut(&origin).and_then(|q| q.remove(&seq));
            if let Some(w) = dropped {
                self.pending_len -= 1;
                self.pending_bytes -= write_bytes(&w);
                self.pending.retain(|_, q| !q.is_empty());
                return Offered {
                    delivered,
                    buffered: false,
                };
            }
        }
        Offered {
            delivered,
            buffered: delivered == 0,
        }
    }

    /// Delivers buffered writes whose dependencies are now met, at most `max` (then the rest
    /// is a backlog: [`Replica::has_backlog`]); returns how many.
    fn drain(&mut self, scope: &impl Fn(&str) -> bool, max: usize) -> usize {
        let mut delivered = 0;
        'passes: loop {
            let mut progress = false;
            let origins: Vec<Arc<str>> = self.pending.keys().cloned().collect();
            for origin in origins {
                while delivered < max
                    && let Some(w) = self.next_deliverable(&origin, scope)
                {
                    self.clock.raise(&origin, w.version.seq);
                    self.apply(w);
                    delivered += 1;
                    progress = true;
                }
                if delivered >= max {
                    break 'passes;
                }
            }
            if !progress {
                break;
            }
        }
        self.backlog = delivered >= max && self.pending_len > 0;
        self.pending.retain(|_, q| !q.is_empty());
        delivered
    }

    /// True when buffered writes may be deliverable but were left for later: the last drain
    /// reached [`DRAIN_SLICE`]. [`Replica::deliver_backlog`] delivers the next slice.
    pub fn has_backlog(&self) -> bool {
        self.backlog
    }

    /// Delivers the next slice (at most `max`) of the backlog; returns how many were delivered.
    /// Clears the backlog once nothing deliverable is left.
    pub fn deliver_backlog(&mut self, scope: &impl Fn(&str) -> bool, max: usize) -> usize {
        self.drain(scope, max.max(1))
    }

    /// True once per backlog: the caller is to deliver it (a slice per lock hold) and call
    /// [`Replica::drain_finished`] when [`Replica::has_backlog`] turns false. False when there
    /// is no backlog or its delivery is scheduled already.
    pub fn schedule_drain(&mut self) -> bool {
        let schedule = self.backlog && !self.drain_scheduled;
        self.drain_scheduled |= schedule;
        schedule
    }

    /// The scheduled delivery of the backlog ended (see [`Replica::schedule_drain`]).
    pub fn drain_finished(&mut self) {
        self.drain_scheduled = false;
    }

    /// Pops the next write of `origin` if it is deliverable; drops stale ones on the way.
    fn next_deliverable(
        &mut self,
        origin: &Arc<str>,
        scope: &impl Fn(&str) -> bool,
    ) -> Option<Write> {
        let have = self.clock.get(origin);
        let generation = self.generation;
        let queue = self.pending.get_mut(origin)?;
        while let Some((&seq, w)) = queue.first_key_value() {
            if seq <= have || w.version.generation < generation {
                if let Some((_, w)) = queue.pop_first() {
                    self.pending_len -= 1;
                    self.pending_bytes -= write_bytes(&w);
                }
                continue;
            }
            let ready = seq == have + 1
                && w.version.generation == generation
                && w.version
                    .clock
                    .le_within(&self.clock, |o| o != &**origin && scope(o));
            if !ready {
                return None;
            }
            let w = queue.pop_first().map(|(_, w)| w)?;
            self.pending_len -= 1;
            self.pending_bytes -= write_bytes(&w);
            return Some(w);
        }
        None
    }

    /// Absorbs a peer's state (a delta from `Store::delta`, or its whole store, and the peer's
    /// clock, same generation): every write not from a newer generation is merged by version
    /// order and the clock becomes the pointwise maximum. Sound because both states are
    /// causally closed.
    pub fn absorb(
        &mut self,
        writes: Vec<Write>,
        peer_clock: &VectorClock,
        scope: &impl Fn(&str) -> bool,
    ) -> usize {
        let changed = self.absorb_writes(writes);
        self.absorb_clock(peer_clock, scope);
        changed
    }

    /// First half of [`Replica::absorb`], for a state that streams in: merges writes by version
    /// order without raising the clock (reads stay safe: a value carries its version's clock, so
    /// metadata that depends on writes not yet delivered here still gets 503). Returns how many
    /// changed the store.
    pub fn absorb_writes(&mut self, writes: Vec<Write>) -> usize {
        let mut changed = 0;
        for w in writes {
            // Older generations' writes are the data carried over by a reshard: merge them too.
            if w.version.generation <= self.generation && self.apply(w) != Applied::Superseded {
                changed += 1;
            }
        }
        changed
    }

    /// Second half of [`Replica::absorb`]: once every write the peer's clock covers has been
    /// absorbed, the clock becomes the pointwise maximum and buffered writes are delivered
    /// (at most [`DRAIN_SLICE`]: the rest is a backlog, see [`Replica::has_backlog`]).
    pub fn absorb_clock(&mut self, peer_clock: &VectorClock, scope: &impl Fn(&str) -> bool) {
        let mut clock = peer_clock.clone();
        clock.retain(scope);
        self.clock.merge(&clock);
        self.drain(scope, DRAIN_SLICE);
    }

    /// Number of buffered writes.
    pub fn pending_len(&self) -> usize {
        self.pending_len
    }

    /// Bytes of buffered writes (as counted by [`write_bytes`]).
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Starts a new generation with `store` as its data: clocks and buffers reset. `complete`
    /// says whether `store` holds all of the shard's earlier data.
    pub fn reset(&mut self, generation: u64, store: Store, complete: bool) {
        let journal = self.journal.take().map(|_| Vec::new());
        *self = Self::new(generation);
        self.store = store;
        self.complete = complete;
        self.journal = journal;
    }

    /// Starts recording every write that wins here (see [`Replica::take_changes`]).
    pub fn record_changes(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// The writes that won here since the last call, in the order they were applied (empty
    /// unless recording).
    pub fn take_changes(&mut self) -> Vec<Write> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Applies `w` to the store, recording it if it won.
    fn apply(&mut self, w: Write) -> Applied {
        let Some(journal) = self.journal.as_mut() else {
            return self.store.apply(w);
        };
        let applied = self.store.apply(w.clone());
        if applied != Applied::Superseded {
            journal.push(w);
        }
        applied
    }

    /// Metadata to return to the client that made local write `written` with `meta`: its own
    /// dependencies plus the write's in-scope entries. Not the write's whole clock: that also
    /// holds the overwritten version's dependencies in other shards (merged only to order the
    /// write after it), which this client never saw; handing them on would make its next
    /// request wait for writes it does not depend on (a 503 under load).
    pub fn metadata_after_write(
        &self,
        meta: &CausalMetadata,
        written: &Version,
        scope: impl Fn(&str) -> bool,
    ) -> CausalMetadata {
        let mut own = written.clone();
        own.clock.retain(scope);
        self.metadata_after(meta, Some(&own))
    }

    /// Metadata to return after reading `entry_version` (or nothing) with `meta`.
    pub fn metadata_after(&self, meta: &CausalMetadata, read: Option<&Version>) -> CausalMetadata {
        let mut out = meta.clone();
        if let Some(v) = read {
            out.merge(&CausalMetadata {
                generation: v.generation,
                clock: v.clock.clone(),
            });
        }
        if out.generation < self.generation {
            out = CausalMetadata {
                generation: self.generation,
                clock: VectorClock::new(),
            };
            if let Some(v) = read.filter(|v| v.generation == self.generation) {
                out.clock = v.clock.clone();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
