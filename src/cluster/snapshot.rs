//! State transfer, the serving side: a snapshot (delta or full copy) is read from the store one
//! slice at a time under the node's lock, cut into byte-bounded chunks, and streamed as it is
//! built, so no O(N) copy runs under the lock in one piece and no O(N) buffer is held. At most
//! [`MAX_CONCURRENT_SNAPSHOTS`] copies (snapshots and reshard sends) run at once per node; the
//! rest wait for a permit.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Node;
use super::batch::Batcher;
use super::peers::SnapshotPart;
use crate::domain::clock::VectorClock;
use crate::domain::store::{SLICES, Write};

/// Copies of the whole store a node serves at once: each reads every slice and keeps a few MiB in
/// flight; two keep a restart and a reshard (or two restarts) going while the lock and the two
/// cores stay mostly free for clients and heartbeats.
pub const MAX_CONCURRENT_SNAPSHOTS: usize = 2;
/// Most writes per snapshot chunk (the byte bound usually cuts first).
const SNAPSHOT_CHUNK: usize = 2_048;

/// Why a snapshot stream stopped early.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// A reshard committed while the snapshot was being read: its data is of the old generation.
    #[error("the data generation changed during the snapshot ({0} → {1})")]
    GenerationChanged(u64, u64),
    /// The node is shutting down.
    #[error("shutting down")]
    Closed,
}

/// The limiter of concurrent copies, for [`super::Inner`].
pub fn copy_limiter() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_CONCURRENT_SNAPSHOTS))
}

/// Where a snapshot stream stands.
struct Cursor {
    node: Node,
    requested: u64,
    known: Option<VectorClock>,
    started: Option<(OwnedSemaphorePermit, u64, VectorClock)>,
    next_slice: usize,
    ready: VecDeque<Vec<Write>>,
    batcher: Batcher,
    done: bool,
}

impl Node {
    /// Waits for one of the node's copy permits.
    pub async fn copy_permit(&self) -> Result<OwnedSemaphorePermit, SnapshotError> {
        self.snapshots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SnapshotError::Closed)
    }

    /// Streams what a requester at `known` (of `generation`) lacks, or everything when `known` is
    /// `None` or of another generation: byte-bounded chunks of writes, then our generation and
    /// clock. The clock is taken when the copy starts, so it covers nothing the chunks miss.
    pub fn snapshot_stream(
        &self,
        generation: u64,
        known: Option<VectorClock>,
    ) -> BoxStream<'static, Result<SnapshotPart, SnapshotError>> {
        let cursor = Cursor {
            node: self.clone(),
            requested: generation,
            known,
            started: None,
            next_slice: 0,
            ready: VecDeque::new(),
            batcher: Batcher::new(SNAPSHOT_CHUNK),
            done: false,
        };
        futures::stream::unfold(cursor, |mut c| async move {
            if c.done {
                return None;
            }
            let item = c.next_part().await;
            c.done = !matches!(item, Ok(SnapshotPart::Writes { .. }));
            Some((item, c))
        })
        .boxed()
    }
}

impl Cursor {
    async fn next_part(&mut self) -> Result<SnapshotPart, SnapshotError> {
        if self.started.is_none() {
            let permit = self.node.copy_permit().await?;
            let st = self.node.state();
            let (g, clock) = (st.replica.generation, st.replica.clock.clone());
            drop(st);
            if g != self.requested {
                self.known = None;
            }
            self.started = Some((permit, g, clock));
        }
        let generation = self.started.as_ref().map_or(0, |s| s.1);
        loop {
            if let Some(writes) = self.ready.pop_front() {
                return Ok(SnapshotPart::Writes { generation, writes });
            }
            if self.next_slice >= SLICES {
                break;
            }
            let slice = {
                let st = self.node.state();
                let now = st.replica.generation;
                if now != generation {
                    return Err(SnapshotError::GenerationChanged(generation, now));
                }
                let since = self.known.as_ref().map(|k| (generation, k));
                st.replica.store.slice(self.next_slice, since)
            };
            self.next_slice += 1;
            self.ready
                .extend(slice.into_iter().filter_map(|w| self.batcher.push(w)));
            // let heartbeats and clients at the lock between slices
            tokio::task::yield_now().await;
        }
        if let Some(writes) = self.batcher.finish() {
            return Ok(SnapshotPart::Writes { generation, writes });
        }
        let clock = self
            .started
            .as_ref()
            .map(|s| s.2.clone())
            .unwrap_or_default();
        Ok(SnapshotPart::End { generation, clock })
    }
}
