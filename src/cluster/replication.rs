//! Asynchronous replication inside a shard: one outbound queue and one sender loop per peer,
//! batched by count and bytes, retried with backoff, never blocking a client. A peer that does
//! not answer is suspected and its queue dropped; a batch that keeps failing is split, then the
//! queue is dropped; a queue over its byte bound is dropped. In every case anti-entropy (a delta
//! pull by the peer, see `sync`) brings the peer up to date: never silent loss, never a stuck queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, warn};

use super::batch::{MAX_BATCH_BYTES, take_batch, write_bytes};
use super::peers::PeerError;
use super::status::Counters;
use super::{Node, now_ms, scope};
use crate::domain::store::Write;

/// Most writes per Replicate call (the byte bound, [`MAX_BATCH_BYTES`], usually cuts first for
/// values above ~8 KiB): large enough to amortise a round trip under load.
const MAX_BATCH: usize = 512;
/// Backoff before the retries of a send the peer did not answer (then the peer is suspected).
const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(150)];
/// Consecutive failed sends to a peer still in the view (each one halving the next batch: 512
/// writes reach 1 in 9 halvings) after which its queue is dropped and it catches up by
/// anti-entropy; a single write that fails twice is dropped to anti-entropy too. So a batch is
/// never retried unchanged forever, and the peer's heartbeats see our clock ahead and pull.
const MAX_FAILED_SENDS: u32 = 10;

/// Writes and value bytes (JSON text) in `batch`.
pub fn batch_size(batch: &[Write]) -> (u64, u64) {
    let bytes = batch
        .iter()
        .map(|w| w.value.as_ref().map_or(0, |v| v.len() as u64))
        .sum();
    (batch.len() as u64, bytes)
}

/// Writes queued for one peer and their estimated bytes.
#[derive(Default)]
struct Queue {
    writes: VecDeque<Write>,
    bytes: usize,
}

impl Queue {
    fn clear(&mut self) {
        self.writes.clear();
        self.bytes = 0;
    }

    fn take(&mut self, max_count: usize) -> Vec<Write> {
        let (batch, bytes) = take_batch(&mut self.writes, max_count, MAX_BATCH_BYTES);
        self.bytes = self.bytes.saturating_sub(bytes);
        batch
    }

    fn put_back(&mut self, batch: Vec<Write>) {
        for w in batch.into_iter().rev() {
            self.bytes += write_bytes(&w);
            self.writes.push_front(w);
        }
    }
}

/// The outbound queue to one peer, bounded in bytes (`CKV_MAX_QUEUE_BYTES`).
#[derive(Default)]
pub struct Outbound {
    queue: Mutex<Queue>,
    notify: Notify,
}

impl Outbound {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes waiting to be sent.
    pub fn depth(&self) -> usize {
        self.lock().writes.len()
    }

    /// Estimated bytes waiting to be sent.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Node {
    fn outbound(&self, peer: &str) -> Arc<Outbound> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(peer) {
            return q.clone();
        }
        let q = Arc::new(Outbound::default());
        queues.insert(peer.to_string(), q.clone());
        let (peer, q2) = (peer.to_string(), q.clone());
        self.spawn_supervised("replication-sender", move |node| {
            node.sender_loop(peer.clone(), q2.clone())
        });
        q
    }

    /// Queues `write` for every peer in `targets`. A queue that would outgrow
    /// `CKV_MAX_QUEUE_BYTES` is dropped first: that peer catches up by anti-entropy.
    pub fn enqueue(&self, write: Write, targets: &[String]) {
        let size = write_bytes(&write);
        // the last queue takes the write itself, the others a copy
        let mut write = Some(write);
        for (i, peer) in targets.iter().enumerate() {
            let q = self.outbound(peer);
            let dropped = {
                let mut queue = q.lock();
                let over =
                    !queue.writes.is_empty() && queue.bytes + size > self.cfg.max_queue_bytes;
                let dropped = over.then(|| (queue.writes.len(), queue.bytes));
                if over {
                    queue.clear();
                }
                queue.bytes += size;
                let w = if i + 1 == targets.len() {
                    write.take()
                } else {
                    write.clone()
                };
                queue.writes.extend(w);
                dropped
            };
            if let Some((writes, bytes)) = dropped {
                warn!(node = %self.me, %peer, writes, bytes,
                      "replication queue full; dropped it, the peer catches up by anti-entropy");
            }
            q.notify.notify_one();
        }
    }

    /// The queue to `peer`, if one was ever opened.
    fn queue(&self, peer: &str) -> Option<Arc<Outbound>> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .cloned()
    }

    /// Drops everything queued for `peer` (it is down: it will catch up by anti-entropy).
    pub fn drop_queue(&self, peer: &str) {
        if let Some(q) = self.queue(peer) {
            q.lock().clear();
        }
    }

    /// Estimated bytes queued for `peer`, for operators.
    pub fn queue_bytes(&self, peer: &str) -> usize {
        self.queue(peer).map_or(0, |q| q.bytes())
    }

    /// Queue depth per peer, for the admin service.
    pub fn queue_depth(&self, peer: &str) -> usize {
        self.queue(peer).map_or(0, |q| q.depth())
    }

    async fn sender_loop(self, peer: String, q: Arc<Outbound>) {
        let mut shutdown = self.shutdown.subscribe();
        let mut limit = MAX_BATCH;
        let mut failures = 0u32;
        loop {
            // Let every task that is ready to run (client requests being served) queue its
            // write first, so that one call carries them all: no timer, a lone write waits one
            // scheduler round. Without it each write tended to travel alone, and the calls'
            // HTTP/2 frames and system calls cost more than the writes (perf, bench/ab.sh).
            tokio::task::yield_now().await;
            let batch = q.lock().take(limit);
            if batch.is_empty() {
                tokio::select! {
                    _ = q.notify.notified() => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let started = tokio::time::Instant::now();
            let n = batch.len();
            let (writes, bytes) = batch_size(&batch);
            let Err(e) = self.send_with_retry(&peer, &batch).await else {
                Counters::add(&self.stats.batches_sent, 1);
                Counters::add(&self.stats.writes_sent, writes);
                Counters::add(&self.stats.bytes_sent, bytes);
                failures = 0;
                limit = (limit * 2).min(MAX_BATCH);
                continue;
            };
            Counters::add(&self.stats.batches_failed, 1);
            if matches!(e, PeerError::Unreachable(_) | PeerError::NotSent(_)) {
                self.peer_failed(&peer, "replication failed", started);
            }
            let still_up = self.state().liveness.reachable(&peer);
            failures += 1;
            let mut queue = q.lock();
            if !still_up {
                queue.clear();
            } else if failures >= MAX_FAILED_SENDS || (n == 1 && failures > 1) {
                // The peer answers heartbeats but not our batches: stop resending and let it pull.
                let (writes, bytes) = (queue.writes.len() + n, queue.bytes);
                queue.clear();
                drop(queue);
                warn!(node = %self.me, %peer, writes, bytes, error = %e,
                      "replication keeps failing; dropped the queue, the peer catches up by anti-entropy");
                failures = 0;
                limit = MAX_BATCH;
            } else {
                // Not suspected (we were the ones stalled, or the batch was refused): send it
                // again, split, so a batch the peer cannot take is never resent unchanged.
                limit = (n / 2).max(1);
                queue.put_back(batch);
            }
        }
    }

    /// Sends one batch, retrying while the peer does not answer and is still in the view (once
    /// it is suspected, anti-entropy takes over after its re-admission). A batch the peer
    /// refused is not resent as it is.
    async fn send_with_retry(&self, peer: &str, batch: &[Write]) -> Result<(), PeerError> {
        let mut attempt = 0;
        loop {
            match self.peers.replicate(peer, batch).await {
                Ok(()) => return Ok(()),
                Err(e @ PeerError::Refused(_)) => {
                    warn!(node = %self.me, %peer, error = %e, writes = batch.len(), "replication batch refused");
                    return Err(e);
                }
                Err(e) if !self.state().liveness.reachable(peer) => return Err(e),
                Err(e) if attempt < RETRY_BACKOFF.len() => {
                    debug!(node = %self.me, %peer, error = %e, "replication send failed, retrying");
                    tokio::time::sleep(RETRY_BACKOFF[attempt]).await;
                    attempt += 1;
                }
                Err(e) => {
                    warn!(node = %self.me, %peer, error = %e, "replication send failed");
                    return Err(e);
                }
            }
        }
    }

    /// Receives a batch replicated by `sender`. A batch older than the RPC deadline was given up
    /// on by its sender (e.g. it sat in the socket while this process was paused) and is
    /// dropped: the sender has already treated it as failed.
    pub fn receive_writes(&self, sender: &str, sent_at_ms: u64, writes: Vec<Write>) -> (u32, u32) {
        let age = now_ms().saturating_sub(sent_at_ms);
        if sent_at_ms != 0 && age > self.cfg.rpc_timeout.as_millis() as u64 {
            warn!(node = %self.me, %sender, age_ms = age, "dropped a stale replication batch");
            return (0, 0);
        }
        if let Err(e) = self.storage_writable() {
            warn!(node = %self.me, %sender, error = %e, "dropped a replication batch: storage cannot take it (anti-entropy brings it later)");
            return (0, 0);
        }
        let (mut applied, mut buffered) = (0u32, 0u32);
        let backlog = {
            let mut guard = self.state();
            let st = &mut *guard;
            let in_scope = scope(&st.map, &self.me);
            for w in writes {
                let o = st.replica.offer(w, &in_scope);
                applied += o.delivered as u32;
                buffered += u32::from(o.buffered);
            }
            drop(in_scope);
            self.persist_replica_unwaited(st, false);
            // a backlog the bounded drain left is delivered a slice per lock hold
            st.replica.schedule_drain()
        };
        self.drain_backlog_later(backlog);
        if applied > 0 {
            self.bump_delivered();
        }
        (applied, buffered)
    }
}
