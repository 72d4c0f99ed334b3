//! Asynchronous replication inside a shard: one outbound queue and one sender loop per peer,
//! batched, retried with backoff, never blocking a client. A peer whose sends keep failing is
//! suspected and its queue dropped; anti-entropy brings it up to date once it is re-admitted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, warn};

use super::{Node, now_ms, scope};
use crate::domain::store::Write;

/// Most writes per Replicate call: large enough to amortise a round trip under load, small
/// enough that one message stays well under gRPC's 4 MiB default with 1 KiB values.
const MAX_BATCH: usize = 512;
/// Backoff before the retries of a failed send (then the peer is suspected).
const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(150)];
/// Bound on a queue; past it the oldest writes are dropped (anti-entropy repairs the gap).
const MAX_QUEUE: usize = 500_000;

/// The outbound queue to one peer.
#[derive(Default)]
pub struct Outbound {
    queue: Mutex<VecDeque<Write>>,
    notify: Notify,
}

impl Outbound {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Write>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes waiting to be sent.
    pub fn depth(&self) -> usize {
        self.lock().len()
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

    /// Queues `write` for every peer in `targets`.
    pub fn enqueue(&self, write: Write, targets: &[String]) {
        for peer in targets {
            let q = self.outbound(peer);
            {
                let mut queue = q.lock();
                if queue.len() >= MAX_QUEUE {
                    queue.pop_front();
                }
                queue.push_back(write.clone());
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

    /// Queue depth per peer, for the admin service.
    pub fn queue_depth(&self, peer: &str) -> usize {
        self.queue(peer).map_or(0, |q| q.depth())
    }

    async fn sender_loop(self, peer: String, q: Arc<Outbound>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let batch: Vec<Write> = {
                let mut queue = q.lock();
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = q.notify.notified() => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let started = std::time::Instant::now();
            if !self.send_with_retry(&peer, batch.clone()).await {
                self.peer_failed(&peer, "replication failed", started);
                let still_up = self.state().liveness.in_view(&peer);
                let mut queue = q.lock();
                if still_up {
                    // Not suspected after all (we were the ones stalled): send it again.
                    for w in batch.into_iter().rev() {
                        queue.push_front(w);
                    }
                } else {
                    queue.clear();
                }
            }
        }
    }

    /// Sends one batch, retrying while the peer is still in the view (once it is suspected,
    /// anti-entropy takes over after its re-admission).
    async fn send_with_retry(&self, peer: &str, batch: Vec<Write>) -> bool {
        let mut attempt = 0;
        loop {
            match self.peers.replicate(peer, batch.clone()).await {
                Ok(()) => return true,
                Err(_) if !self.state().liveness.in_view(peer) => return false,
                Err(e) if attempt < RETRY_BACKOFF.len() => {
                    debug!(node = %self.me, %peer, error = %e, "replication send failed, retrying");
                    tokio::time::sleep(RETRY_BACKOFF[attempt]).await;
                    attempt += 1;
                }
                Err(e) => {
                    warn!(node = %self.me, %peer, error = %e, "replication send failed");
                    return false;
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
        let (mut applied, mut buffered) = (0u32, 0u32);
        {
            let mut guard = self.state();
            let st = &mut *guard;
            let in_scope = scope(&st.map, &self.me);
            for w in writes {
                let o = st.replica.offer(w, &in_scope);
                applied += o.delivered as u32;
                buffered += u32::from(o.buffered);
            }
        }
        if applied > 0 {
            self.bump_delivered();
        }
        (applied, buffered)
    }
}
