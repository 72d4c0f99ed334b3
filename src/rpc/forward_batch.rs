//! Batching of forwarded client operations: concurrent forwards to the same member share one
//! `ForwardBatch` call instead of one `Forward` call (and its HTTP/2 frames, flushes and system
//! calls at both ends) each.
//!
//! The first operation queued for a member becomes the batch's *leader*: it yields to the
//! scheduler once, so every other task that is ready to run (other client requests being
//! parsed) can queue its operation behind it; then, when the member is busy (its last batch
//! held [`BUSY_BATCH`] operations or more) and an earlier call to it is still in flight, it
//! waits for that call to finish (at most [`FLIGHT_WAIT`]), so everything that arrives during
//! a round trip travels in the next call: under load one call per round trip, not one per
//! scheduler round (the owner then also replicates them in one batch). A lone
//! request with nothing in flight pays one scheduler round, and sends a plain `Forward` from its
//! own task; otherwise a spawned task sends the batch and hands each operation its answer. The
//! next operation queued after the leader took the batch leads the next batch. A slow or dead
//! member delays a batch by at most [`FLIGHT_WAIT`] behind the one in flight (no head-of-line
//! blocking beyond that).
//!
//! Only operations that do not wait for dependencies are batched (a legacy request that may
//! wait up to `CKV_LEGACY_WAIT_MS` would hold its batch's answers back); those still go alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::pb;
use crate::cluster::batch::MAX_BATCH_BYTES;
use crate::cluster::op::OpReply;
use crate::cluster::peers::{PeerError, PeerResult};

/// Most operations in one batch (the server refuses more).
pub const MAX_OPS: usize = 512;
/// Longest a leader waits for the call in flight to the same member before sending its own
/// batch alongside: a few loopback round trips under load, and what a dead member costs a
/// queued operation on top of its own deadline.
pub const FLIGHT_WAIT: Duration = Duration::from_millis(3);
/// A leader waits for the call in flight only when the last batch to the member carried at
/// least this many operations: with a few concurrent forwards per member (every node a target)
/// a round trip gathers little, and the wait only added latency (bench/ab.sh 6x2, all
/// targets: 0.84x when every leader waited).
pub const BUSY_BATCH: usize = 4;

/// An operation waiting for its batch, and where its answer goes.
pub type Waiting = (pb::ForwardRequest, oneshot::Sender<PeerResult<OpReply>>);

/// Operations queued for one member.
#[derive(Default)]
struct Queue {
    ops: Vec<Waiting>,
    /// A leader has queued and will take the batch.
    leading: bool,
    /// Calls to the member not answered yet.
    in_flight: usize,
    /// Operations in the last batch taken.
    last_batch: usize,
}

/// One member's queue, and the signal that a call to it finished.
#[derive(Default)]
struct Lane {
    queue: Mutex<Queue>,
    landed: Notify,
}

/// The lanes of every member forwarded to.
#[derive(Default)]
pub struct Lanes(Mutex<HashMap<String, Arc<Lane>>>);

/// Where a queued operation's answer comes from.
pub type Answer = oneshot::Receiver<PeerResult<OpReply>>;

/// How a queued operation is to be sent.
pub enum Turn {
    /// This caller leads a batch: after [`Leader::take`], send it; a batch's answer for this
    /// caller's own operation arrives on the receiver.
    Lead(Leader, Answer),
    /// Another caller leads: the answer arrives here.
    Follow(Answer),
}

/// The leader's hold on its lane. Dropped before [`Leader::take`] (the leader's request was
/// cancelled while yielding), it hands the queued operations to a spawned task all the same.
pub struct Leader {
    lane: Option<Arc<Lane>>,
    orphans: Option<Box<dyn FnOnce(Vec<Waiting>) + Send>>,
}

/// A call to a member in flight: counted until dropped (answered, failed or abandoned).
pub struct Flight(Arc<Lane>);

impl Drop for Flight {
    fn drop(&mut self) {
        lock(&self.0).in_flight -= 1;
        self.0.landed.notify_waiters();
    }
}

fn lock(lane: &Lane) -> std::sync::MutexGuard<'_, Queue> {
    lane.queue.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lanes {
    /// Queues `op` for `to`. `orphans` sends a batch whose leader was cancelled.
    pub fn join(
        &self,
        to: &str,
        op: pb::ForwardRequest,
        orphans: Box<dyn FnOnce(Vec<Waiting>) + Send>,
    ) -> Turn {
        let lane = {
            let mut lanes = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match lanes.get(to) {
                Some(lane) => lane.clone(),
                None => lanes.entry(to.to_string()).or_default().clone(),
            }
        };
        let (tx, rx) = oneshot::channel();
        let mut l = lock(&lane);
        l.ops.push((op, tx));
        if l.leading {
            return Turn::Follow(rx);
        }
        l.leading = true;
        drop(l);
        Turn::Lead(
            Leader {
                lane: Some(lane),
                orphans: Some(orphans),
            },
            rx,
        )
    }
}

impl Leader {
    /// Waits while a call to the member is in flight, at most `limit`: what queues meanwhile
    /// joins this batch.
    pub fn wait_for_flight(&self, limit: Duration) -> impl Future<Output = ()> + Send + 'static {
        let lane = self.lane.clone();
        async move {
            let Some(lane) = lane else { return };
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let landed = lane.landed.notified();
                tokio::pin!(landed);
                // registered before the check, so a landing in between is not missed
                landed.as_mut().enable();
                let busy = {
                    let q = lock(&lane);
                    q.in_flight > 0 && q.last_batch >= BUSY_BATCH
                };
                if !busy {
                    return;
                }
                if tokio::time::timeout_at(deadline, landed).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Takes the batch (the leader's own operation first) and counts its call in flight until
    /// the returned [`Flight`] is dropped; the next operation queued leads the next batch.
    pub fn take(mut self) -> (Vec<Waiting>, Option<Flight>) {
        match self.lane.take() {
            Some(lane) => (take(&lane), Some(Flight(lane))),
            None => (Vec::new(), None),
        }
    }
}

/// Takes a lane's queue and counts the call that will carry it.
fn take(lane: &Lane) -> Vec<Waiting> {
    let mut l = lock(lane);
    l.leading = false;
    l.in_flight += 1;
    l.last_batch = l.ops.len();
    std::mem::take(&mut l.ops)
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let (Some(lane), Some(send)) = (self.lane.take(), self.orphans.take()) {
            let ops = take(&lane);
            // orphans are sent at once, by a task that does not report its landing
            drop(Flight(lane));
            if !ops.is_empty() {
                send(ops);
            }
        }
    }
}

/// Splits `ops` into batches of at most [`MAX_OPS`] operations and about [`MAX_BATCH_BYTES`]
/// of values and tokens (at least one operation each), so no message outgrows the decode limit.
pub fn chunks(ops: Vec<Waiting>) -> Vec<Vec<Waiting>> {
    let mut out: Vec<Vec<Waiting>> = Vec::new();
    let mut bytes = 0;
    for w in ops {
        let size = w.0.value.len() + w.0.metadata.len() + w.0.key.len() + 16;
        match out.last_mut() {
            Some(last) if last.len() < MAX_OPS && bytes + size <= MAX_BATCH_BYTES => {
                bytes += size;
                last.push(w);
            }
            _ => {
                bytes = size;
                out.push(vec![w]);
            }
        }
    }
    out
}

/// Hands each operation of a batch its answer: the replies in order, or the call's error for
/// every operation (a batch that may have been applied leaves every write's outcome unknown).
pub fn deliver(
    to: Vec<oneshot::Sender<PeerResult<OpReply>>>,
    answer: PeerResult<Vec<pb::ForwardResponse>>,
    convert: impl Fn(pb::ForwardResponse) -> PeerResult<OpReply>,
) {
    match answer {
        Ok(replies) if replies.len() == to.len() => {
            for (tx, r) in to.into_iter().zip(replies) {
                let _ = tx.send(convert(r));
            }
        }
        Ok(replies) => {
            let e = PeerError::Refused(format!(
                "batch of {} operations answered with {} replies",
                to.len(),
                replies.len()
            ));
            for tx in to {
                let _ = tx.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for tx in to {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}

/// The answer of a batch's operation that went missing (its batch's task ended without
/// answering): the operation may have been applied.
pub fn abandoned() -> PeerError {
    PeerError::Unreachable("forward batch abandoned".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &str, value_len: usize) -> pb::ForwardRequest {
        pb::ForwardRequest {
            kind: pb::OpKind::Put as i32,
            key: key.into(),
            value: "x".repeat(value_len),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_leads_the_others_follow_and_the_next_after_a_take_leads_again() {
        let lanes = Lanes::default();
        let noop = || Box::new(|_: Vec<Waiting>| {}) as Box<dyn FnOnce(Vec<Waiting>) + Send>;
        let t1 = lanes.join("a", op("k1", 1), noop());
        let t2 = lanes.join("a", op("k2", 1), noop());
        let t3 = lanes.join("b", op("k3", 1), noop());
        let (Turn::Lead(l1, _), Turn::Follow(_), Turn::Lead(_l3, _)) = (t1, t2, t3) else {
            panic!("wrong turns");
        };
        let (batch, _flight) = l1.take();
        assert_eq!(
            batch.iter().map(|w| w.0.key.as_str()).collect::<Vec<_>>(),
            ["k1", "k2"]
        );
        let t4 = lanes.join("a", op("k4", 1), noop());
        assert!(matches!(t4, Turn::Lead(..)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_waits_for_the_call_in_flight_to_a_busy_member_and_no_longer_than_the_limit() {
        let lanes = Lanes::default();
        let noop = || Box::new(|_: Vec<Waiting>| {}) as Box<dyn FnOnce(Vec<Waiting>) + Send>;
        let lead = |key: &str| match lanes.join("a", op(key, 1), noop()) {
            Turn::Lead(leader, _) => leader,
            Turn::Follow(_) => panic!("{key} should lead"),
        };
        let follow = |key: &str| {
            assert!(matches!(
                lanes.join("a", op(key, 1), noop()),
                Turn::Follow(_)
            ));
        };
        // nothing in flight: no wait
        let first = lead("k1");
        let t = tokio::time::Instant::now();
        first.wait_for_flight(FLIGHT_WAIT).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        let (batch, flight) = first.take();
        assert_eq!(batch.len(), 1);
        // a call in flight with a small batch: the member is not busy, no wait either
        first_without_wait(lead("k2")).await;
        drop(flight);
        // a busy member (a batch of BUSY_BATCH): the next leader waits until the call in
        // flight lands, gathering what queues meanwhile
        let busy = lead("b0");
        (1..BUSY_BATCH).for_each(|i| follow(&format!("b{i}")));
        let (batch, flight) = busy.take();
        assert_eq!(batch.len(), BUSY_BATCH);
        let second = lead("k3");
        let wait = tokio::spawn(second.wait_for_flight(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(1)).await;
        (4..4 + BUSY_BATCH).for_each(|i| follow(&format!("k{i}")));
        assert!(!wait.is_finished());
        drop(flight);
        wait.await.expect("landed");
        let (batch, flight) = second.take();
        assert_eq!(batch.len(), BUSY_BATCH + 1);
        // a call that never lands holds the next batch for the limit only
        let third = lead("k9");
        let t = tokio::time::Instant::now();
        third.wait_for_flight(FLIGHT_WAIT).await;
        assert_eq!(t.elapsed(), FLIGHT_WAIT);
        drop(flight);
    }

    async fn first_without_wait(leader: Leader) {
        let t = tokio::time::Instant::now();
        leader.wait_for_flight(FLIGHT_WAIT).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        drop(leader.take());
    }

    #[test]
    fn a_cancelled_leader_hands_its_batch_on() {
        let lanes = Lanes::default();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = sent.clone();
        let orphans = Box::new(move |ops: Vec<Waiting>| {
            s.lock().unwrap().extend(ops.into_iter().map(|w| w.0.key));
        });
        let t1 = lanes.join("a", op("k1", 1), orphans);
        let _t2 = lanes.join("a", op("k2", 1), Box::new(|_| {}));
        drop(t1);
        assert_eq!(*sent.lock().unwrap(), ["k1", "k2"]);
        let t3 = lanes.join("a", op("k3", 1), Box::new(|_| {}));
        assert!(matches!(t3, Turn::Lead(..)), "the lane is free again");
    }

    #[test]
    fn batches_are_cut_by_count_and_bytes() {
        let many: Vec<Waiting> = (0..MAX_OPS + 3)
            .map(|i| (op(&format!("k{i}"), 1), oneshot::channel().0))
            .collect();
        let sizes: Vec<usize> = chunks(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_OPS, 3]);
        let big: Vec<Waiting> = (0..3)
            .map(|i| {
                (
                    op(&format!("k{i}"), MAX_BATCH_BYTES / 2),
                    oneshot::channel().0,
                )
            })
            .collect();
        assert_eq!(chunks(big).len(), 3);
    }

    #[test]
    fn answers_go_back_in_order_and_a_short_answer_fails_every_operation() {
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        let reply = |detail: &str| pb::ForwardResponse {
            outcome: pb::Outcome::NotFound as i32,
            detail: detail.into(),
            ..Default::default()
        };
        let convert = |r: pb::ForwardResponse| Err(PeerError::Refused(r.detail));
        deliver(vec![tx1, tx2], Ok(vec![reply("1"), reply("2")]), convert);
        assert_eq!(rx1.try_recv().unwrap(), Err(PeerError::Refused("1".into())));
        assert_eq!(rx2.try_recv().unwrap(), Err(PeerError::Refused("2".into())));
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        deliver(vec![tx1, tx2], Ok(vec![reply("1")]), convert);
        assert!(rx1.try_recv().unwrap().is_err() && rx2.try_recv().unwrap().is_err());
    }
}
