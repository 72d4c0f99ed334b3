//! State transfer, the serving side: a snapshot (delta or full copy) is read from the store one
//! slice at a time under the node's lock, cut into byte-bounded chunks, and streamed as it is
//! built, so no O(N) copy runs under the lock in one piece and no O(N) buffer is held. At most
//! [`MAX_CONCURRENT_SNAPSHOTS`] copies (snapshots and reshard sends) run at once per node; the
//! rest wait for a permit, sending an empty chunk every [`WAIT_KEEPALIVE`] meanwhile so that
//! their pullers, which give up after [`PULL_IDLE`] without a chunk, keep waiting.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use super::Node;
use super::batch::Batcher;
use super::peers::SnapshotPart;
use super::sync::PULL_IDLE;
use crate::domain::clock::VectorClock;
use crate::domain::store::{SLICES, Write};

/// Copies of the whole store a node serves at once: each reads every slice and keeps a few MiB in
/// flight; two keep a restart and a reshard (or two restarts) going while the lock and the two
/// cores stay mostly free for clients and heartbeats.
pub const MAX_CONCURRENT_SNAPSHOTS: usize = 2;
/// Most writes per snapshot chunk (the byte bound usually cuts first).
const SNAPSHOT_CHUNK: usize = 2_048;
/// While a snapshot waits for a copy permit, an empty chunk goes out this often: well inside
/// the puller's idle bound, so a copy queued behind two long ones is not given up.
pub const WAIT_KEEPALIVE: Duration = Duration::from_millis(PULL_IDLE.as_millis() as u64 / 4);

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

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
    /// The wait for a copy permit, kept across keep-alive chunks (so its place in the queue too).
    waiting: Option<Acquire>,
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
            waiting: None,
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
            let sem = self.node.snapshots.clone();
            let waiting = self
                .waiting
                .get_or_insert_with(|| Box::pin(sem.acquire_owned()));
            let permit = match tokio::time::timeout(WAIT_KEEPALIVE, waiting).await {
                Ok(permit) => permit.map_err(|_| SnapshotError::Closed)?,
                Err(_) => {
                    // still queued: an empty chunk of the generation the copy would have now
                    let generation = self.node.state().replica.generation;
                    return Ok(SnapshotPart::Writes {
                        generation,
                        writes: Vec::new(),
                    });
                }
            };
            self.waiting = None;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::scripted::{ScriptedPeers, env_config};

    /// A snapshot queued behind [`MAX_CONCURRENT_SNAPSHOTS`] copies sends empty chunks while it
    /// waits (never [`PULL_IDLE`] without one), then the data once a permit frees.
    #[tokio::test(start_paused = true)]
    async fn a_queued_snapshot_keeps_its_puller_waiting_then_copies() {
        let view: Vec<String> = (2..4).map(|i| format!("127.0.0.{i}:8090")).collect();
        let node = Node::new(
            env_config(&view[0], &view, 1),
            Arc::new(ScriptedPeers::default()),
        );
        node.state()
            .replica
            .store
            .apply(crate::domain::store::tests::write(
                "k",
                &view[1],
                1,
                &[(&view[1], 1)],
                Some("1"),
            ));
        let mut held = Vec::new();
        for _ in 0..MAX_CONCURRENT_SNAPSHOTS {
            held.push(node.copy_permit().await.expect("permit"));
        }
        let mut parts = node.snapshot_stream(0, None);
        let started = tokio::time::Instant::now();
        for _ in 0..8 {
            let part = tokio::time::timeout(PULL_IDLE, parts.next())
                .await
                .expect("a chunk within the puller's idle bound")
                .expect("a part")
                .expect("no error");
            assert!(
                matches!(&part, SnapshotPart::Writes { writes, .. } if writes.is_empty()),
                "only keep-alives while queued: {part:?}"
            );
        }
        assert!(started.elapsed() >= PULL_IDLE * 2, "queued for a while");
        drop(held);
        let mut keys = 0;
        loop {
            match tokio::time::timeout(PULL_IDLE, parts.next()).await {
                Ok(Some(Ok(SnapshotPart::Writes { writes, .. }))) => keys += writes.len(),
                Ok(Some(Ok(SnapshotPart::End { .. }))) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(keys, 1, "the copy ran once a permit was free");
    }
}
