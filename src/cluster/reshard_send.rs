//! A reshard's transfer, the sending side: one member of each old shard catches up with its
//! shard peers, then reads its store a slice at a time (never the whole store under the lock)
//! and sends each key's new owners byte-bounded batches as they fill, up to
//! [`SENDS_IN_FLIGHT`] at once so that reading, sending and the receivers' staging overlap.
//!
//! A new owner is sent only what it lacks. Every owner merges its own store's keys of its new
//! shard at commit (`commit`), so this node sends itself nothing, and an owner that was a member
//! of the same old shard is sent only the writes its own replica does not hold: its answer to
//! an empty batch tells its generation, delivered clock and completeness ([`Holding`]), and
//! what that clock covers is in its store until the commit (a store only gains newer versions).
//! An owner of another old shard, or one that is incomplete or of another generation, gets every
//! key of its new shard. At the end each such owner is asked again: one whose clock went back
//! (it restarted and lost data) fails the transfer, and the reshard aborts.

use std::collections::HashMap;

use futures::future::join_all;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use super::batch::Batcher;
use super::peers::{Holding, PeerError};
use super::{Error, Node};
use crate::domain::shard::ShardMap;
use crate::domain::store::{SLICES, Write};

/// Most writes per transfer message (the byte bound, `batch::MAX_BATCH_BYTES`, usually cuts
/// first for values above ~1 KiB).
const TRANSFER_BATCH: usize = 4_096;
/// Reshard batches a sender keeps in flight at once (over all targets): enough to overlap
/// reading the store with sending and with the receivers' merging, few enough to bound memory
/// (each is at most `batch::MAX_BATCH_BYTES` plus one value).
const SENDS_IN_FLIGHT: usize = 4;

/// What this node must send one new owner.
#[derive(Debug)]
enum Need {
    /// Nothing: it is this node, whose own store is merged into its new shard at commit.
    Nothing,
    /// The writes its own replica (of the same old shard) does not hold.
    Lacking(Holding),
    /// Every key of its new shard.
    Everything,
}

/// True when a replica holding `h` lacks `w`: a write of a newer generation, or of its
/// generation and not covered by its clock (earlier generations' data it holds when complete,
/// which [`Node::needs`] checked).
fn lacks(h: &Holding, (generation, origin, seq): (u64, &str, u64)) -> bool {
    generation > h.generation || (generation == h.generation && h.clock.get(origin) < seq)
}

/// True when the owner whose need is `need` is to be sent a write of version `v` (generation,
/// origin, seq).
fn wanted(need: &Need, v: (u64, &str, u64)) -> bool {
    match need {
        Need::Nothing => false,
        Need::Lacking(h) => lacks(h, v),
        Need::Everything => true,
    }
}

/// The new owners of a reshard, by index: every per-key decision is a lookup in vectors, not a
/// hash of an address (a transfer decides for every key of the store).
struct Owners {
    /// Each owner's address and what it needs.
    targets: Vec<(String, Need)>,
    /// The indices in `targets` of each new shard's members, by shard id.
    by_shard: Vec<Vec<usize>>,
}

impl Owners {
    fn new(map: &ShardMap, mut needs: HashMap<String, Need>) -> Self {
        let mut targets = Vec::new();
        let mut by_shard = vec![Vec::new(); map.shard_count as usize];
        for (node, shard) in &map.assignment {
            if let Some(members) = by_shard.get_mut(*shard as usize) {
                members.push(targets.len());
                let need = needs.remove(node).unwrap_or(Need::Everything);
                targets.push((node.clone(), need));
            }
        }
        Self { targets, by_shard }
    }

    /// The owners (indices) of the shard of `key` that are to be sent a write of version `v`.
    fn wanting<'a>(
        &'a self,
        map: &ShardMap,
        key: &str,
        v: (u64, &'a str, u64),
    ) -> impl Iterator<Item = usize> + 'a {
        let members = self
            .by_shard
            .get(map.shard_for_key(key) as usize)
            .map_or(&[][..], Vec::as_slice);
        members
            .iter()
            .copied()
            .filter(move |t| wanted(&self.targets[*t].1, v))
    }
}

impl Node {
    /// Phase 2 here: catch up with this shard's peers, then send every key's new owners what
    /// they lack (see the module). Returns how many writes went out.
    pub async fn send_reshard_data(&self, map: ShardMap) -> Result<u64, Error> {
        self.catch_up_with_shard().await;
        let _permit = self.copy_permit().await?;
        // this node takes part in the change (its staging area is there)
        self.stage(map.epoch, Vec::new())?;
        let (generation, old) = {
            let st = self.state();
            (st.replica.generation, st.map.clone())
        };
        let owners = Owners::new(&map, self.needs(&map, &old, generation).await);
        // one batcher per owner, in address order, so the sends go out in the same order every
        // run (simulations replay exactly)
        let mut batchers: Vec<Batcher> = owners
            .targets
            .iter()
            .map(|_| Batcher::new(TRANSFER_BATCH))
            .collect();
        let mut in_flight = FuturesUnordered::new();
        let mut sent = 0u64;
        let mut to = Vec::new();
        for i in 0..SLICES {
            let mut full = Vec::new();
            let slice = {
                let st = self.state();
                if st.replica.generation != generation {
                    return Err(Error::GenerationChanged);
                }
                // only the entries some owner lacks are copied out of the store
                st.replica
                    .store
                    .slice_where(i, |key, v| owners.wanting(&map, key, v).next().is_some())
            };
            self.stats.moved(0);
            for w in slice {
                let v = (w.version.generation, &*w.version.origin, w.version.seq);
                to.clear();
                to.extend(owners.wanting(&map, &w.key, v));
                let mut w = Some(w);
                for (n, t) in to.iter().enumerate() {
                    // the last owner takes the write itself, the others a copy
                    let Some(w) = (if n + 1 == to.len() {
                        w.take()
                    } else {
                        w.clone()
                    }) else {
                        continue;
                    };
                    if let Some(b) = batchers[*t].push(w) {
                        full.push((*t, b));
                    }
                }
            }
            in_flight.extend(
                full.into_iter()
                    .map(|(t, w)| self.send_batch(map.epoch, &owners.targets[t].0, w)),
            );
            // start the new sends and collect finished ones without waiting...
            while let Some(Some(r)) = in_flight.next().now_or_never() {
                sent += r?;
            }
            // ...and wait only while too many are out
            while in_flight.len() > SENDS_IN_FLIGHT {
                sent += in_flight.next().await.unwrap_or(Ok(0))?;
            }
            tokio::task::yield_now().await;
        }
        in_flight.extend(batchers.iter_mut().enumerate().filter_map(|(t, b)| {
            b.finish()
                .map(|w| self.send_batch(map.epoch, &owners.targets[t].0, w))
        }));
        while let Some(r) = in_flight.next().await {
            sent += r?;
        }
        self.check_holders(map.epoch, &owners.targets).await?;
        Ok(sent)
    }

    /// What to send each new owner of `map`: owners of the same old shard (in `old`) answer
    /// what their own replica holds; the others (and any that does not answer) get everything.
    async fn needs(
        &self,
        map: &ShardMap,
        old: &ShardMap,
        generation: u64,
    ) -> HashMap<String, Need> {
        let mine = old.shard_of(&self.me);
        let targets: Vec<String> = map
            .assignment
            .keys()
            .filter(|n| **n != *self.me)
            .cloned()
            .collect();
        let answers = join_all(targets.into_iter().map(|t| async move {
            if mine.is_none() || old.shard_of(&t) != mine {
                return (t, Need::Everything);
            }
            match self
                .peers
                .receive_reshard_data(&t, map.epoch, Vec::new())
                .await
            {
                Ok(h) if h.generation == generation && h.complete => (t, Need::Lacking(h)),
                _ => (t, Need::Everything),
            }
        }))
        .await;
        let mut needs: HashMap<String, Need> = answers.into_iter().collect();
        needs.insert(self.me.to_string(), Need::Nothing);
        needs
    }

    /// Asks every owner that was sent only what it lacked whether it still holds what it held:
    /// one that restarted and lost data since (its clock went back) fails the transfer.
    async fn check_holders(&self, epoch: u64, targets: &[(String, Need)]) -> Result<(), Error> {
        let checks = join_all(targets.iter().filter_map(|(t, need)| match need {
            Need::Lacking(before) => Some(async move {
                let now = self
                    .peers
                    .receive_reshard_data(t, epoch, Vec::new())
                    .await
                    .map_err(|e| Error::peer(t, e))?;
                if now.generation != before.generation || !before.clock.le(&now.clock) {
                    return Err(Error::peer(
                        t,
                        PeerError::Refused("it lost data it held during the reshard".into()),
                    ));
                }
                Ok(())
            }),
            _ => None,
        }))
        .await;
        checks.into_iter().collect()
    }

    /// Sends one batch of the reshard of `epoch` to `target`; returns how many writes went out.
    async fn send_batch(&self, epoch: u64, target: &str, writes: Vec<Write>) -> Result<u64, Error> {
        let n = writes.len() as u64;
        self.peers
            .receive_reshard_data(target, epoch, writes)
            .await
            .map_err(|e| Error::peer(target, e))?;
        self.stats.moved(n as usize);
        Ok(n)
    }

    /// What this node's own replica holds (a reshard receiver's answer).
    pub fn holding(&self) -> Holding {
        let st = self.state();
        Holding {
            generation: st.replica.generation,
            clock: st.replica.clock.clone(),
            complete: st.replica.complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::VectorClock;

    fn w(generation: u64, origin: &str, seq: u64) -> (u64, &str, u64) {
        (generation, origin, seq)
    }

    #[test]
    fn an_owner_lacks_what_its_clock_does_not_cover_and_newer_generations() {
        let h = Holding {
            generation: 2,
            clock: VectorClock::from_entries([("a".to_string(), 5)]),
            complete: true,
        };
        assert!(!lacks(&h, w(2, "a", 5)));
        assert!(lacks(&h, w(2, "a", 6)));
        assert!(lacks(&h, w(2, "b", 1)), "an origin it never heard of");
        assert!(
            !lacks(&h, w(1, "x", 99)),
            "carried over: held by a complete replica"
        );
        assert!(lacks(&h, w(3, "a", 1)));
    }
}
