//! Byte-bounded batching of writes: every replication batch, snapshot chunk and reshard batch is
//! cut by bytes as well as by count, so no message outgrows the receiver's decode limit however
//! large the values are. A single write larger than the bound travels alone.
//!
//! Pure bookkeeping over [`Write`]s; it does no I/O and knows nothing of gRPC beyond sizing the
//! decode limit ([`message_limit`]) from the same constant.

use std::collections::VecDeque;

use crate::domain::store::Write;

/// Most bytes of writes in one batch, chunk or reshard message. A few MiB amortises a round trip
/// (loopback moves that in a few ms) while keeping a message far below any memory or HTTP/2
/// window worry, and a retried or split batch cheap to resend.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Framing beyond a write's key and value that a message may carry: protobuf tags and lengths,
/// the version, and a clock of up to 1024 entries (the metadata bound) of ~64-byte origins.
const ENVELOPE_SLACK: usize = 1 << 20;
/// Estimated protobuf overhead of one write besides its strings (tags, lengths, numbers).
const WRITE_OVERHEAD: usize = 48;
/// Estimated protobuf overhead of one clock entry besides its origin (tag, length, varint).
const CLOCK_ENTRY_OVERHEAD: usize = 14;

/// Largest gRPC message a node must accept (and may send), derived from the batch bound and the
/// largest value (`CKV_MAX_VALUE_BYTES`): a batch under the bound plus one write of the largest
/// value, plus framing.
pub fn message_limit(max_value_bytes: usize) -> usize {
    MAX_BATCH_BYTES
        .saturating_add(max_value_bytes)
        .saturating_add(ENVELOPE_SLACK)
}

/// Estimated encoded size of `w` (an over-estimate of its protobuf form).
pub fn write_bytes(w: &Write) -> usize {
    let clock: usize = w
        .version
        .clock
        .iter()
        .map(|(o, _)| o.len() + CLOCK_ENTRY_OVERHEAD)
        .sum();
    WRITE_OVERHEAD
        + w.key.len()
        + w.version.origin.len()
        + w.value.as_ref().map_or(0, |v| v.len())
        + clock
}

/// Takes the next batch from the front of `queue`: as many writes as fit in `max_bytes` and
/// `max_count`, at least one. Returns the batch and its estimated bytes.
pub fn take_batch(
    queue: &mut VecDeque<Write>,
    max_count: usize,
    max_bytes: usize,
) -> (Vec<Write>, usize) {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(w) = queue.front() {
        let size = write_bytes(w);
        if !batch.is_empty() && (batch.len() >= max_count || bytes + size > max_bytes) {
            break;
        }
        bytes += size;
        batch.extend(queue.pop_front());
    }
    (batch, bytes)
}

/// Accumulates writes and hands out full batches (by bytes or count) as they fill.
#[derive(Debug)]
pub struct Batcher {
    buf: Vec<Write>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl Batcher {
    /// A batcher cutting at `max_count` writes or [`MAX_BATCH_BYTES`].
    pub fn new(max_count: usize) -> Self {
        Self::with_bytes(max_count, MAX_BATCH_BYTES)
    }

    /// A batcher with an explicit byte bound (tests).
    pub fn with_bytes(max_count: usize, max_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            bytes: 0,
            max_count: max_count.max(1),
            max_bytes,
        }
    }

    /// Adds `w`; returns the previous batch when `w` does not fit in it.
    pub fn push(&mut self, w: Write) -> Option<Vec<Write>> {
        let size = write_bytes(&w);
        let full = !self.buf.is_empty()
            && (self.buf.len() >= self.max_count || self.bytes + size > self.max_bytes);
        let out = full.then(|| self.take());
        self.bytes += size;
        self.buf.push(w);
        out
    }

    /// The writes held so far, if any (the last, partial batch).
    pub fn finish(&mut self) -> Option<Vec<Write>> {
        (!self.buf.is_empty()).then(|| self.take())
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn take(&mut self) -> Vec<Write> {
        self.bytes = 0;
        std::mem::take(&mut self.buf)
    }
}

/// Cuts `writes` into byte- and count-bounded batches, in order.
pub fn batches(writes: Vec<Write>, max_count: usize) -> Vec<Vec<Write>> {
    let mut b = Batcher::new(max_count);
    let mut out: Vec<Vec<Write>> = writes.into_iter().filter_map(|w| b.push(w)).collect();
    out.extend(b.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::VectorClock;
    use crate::domain::store::Version;
    use std::sync::Arc;

    fn w(key: &str, value_len: usize) -> Write {
        Write {
            key: key.into(),
            version: Version {
                generation: 1,
                origin: "127.0.0.2:8090".into(),
                seq: 1,
                clock: VectorClock::from_entries([("127.0.0.2:8090".to_string(), 1)]),
            },
            value: Some(Arc::from("x".repeat(value_len))),
        }
    }

    #[test]
    fn take_batch_bounds_bytes_and_count_and_takes_a_big_write_alone() {
        let mut q: VecDeque<Write> = (0..10).map(|i| w(&format!("k{i}"), 1000)).collect();
        let (b, bytes) = take_batch(&mut q, 100, 3_500);
        assert_eq!(b.len(), 3, "3 writes of ~1.1 KB fit in 3.5 KB");
        assert!(bytes <= 3_500);
        let (b, _) = take_batch(&mut q, 2, 1 << 20);
        assert_eq!(b.len(), 2, "count bound");
        q.push_front(w("big", 10_000));
        let (b, bytes) = take_batch(&mut q, 100, 3_500);
        assert_eq!((b.len(), b[0].key.as_str()), (1, "big"));
        assert!(bytes > 10_000);
        assert_eq!(q.len(), 5);
        let (b, _) = take_batch(&mut VecDeque::new(), 100, 3_500);
        assert!(b.is_empty());
    }

    #[test]
    fn batcher_cuts_in_order_and_keeps_every_write() {
        let mut b = Batcher::with_bytes(1000, 10_000);
        let mut out = Vec::new();
        for i in 0..25 {
            out.extend(b.push(w(&format!("k{i}"), if i == 7 { 50_000 } else { 1_000 })));
        }
        out.extend(b.finish());
        assert!(b.finish().is_none());
        let keys: Vec<String> = out.iter().flatten().map(|w| w.key.clone()).collect();
        let want: Vec<String> = (0..25).map(|i| format!("k{i}")).collect();
        assert_eq!(keys, want, "nothing lost, nothing reordered");
        for batch in &out {
            let bytes: usize = batch.iter().map(write_bytes).sum();
            assert!(batch.len() == 1 || bytes <= 10_000, "{bytes}");
        }
        assert!(out.iter().any(|b| b.len() == 1 && b[0].key == "k7"));
    }

    #[test]
    fn batches_of_big_values_stay_under_the_message_limit() {
        let writes: Vec<Write> = (0..40).map(|i| w(&format!("k{i}"), 900_000)).collect();
        let out = batches(writes, 512);
        assert!(out.len() >= 9, "{} batches", out.len());
        let limit = message_limit(1 << 20);
        for b in &out {
            let bytes: usize = b.iter().map(write_bytes).sum();
            assert!(bytes <= MAX_BATCH_BYTES && bytes < limit);
        }
        // one write of the largest value still fits a message
        assert!(write_bytes(&w("k", 8 << 20)) < message_limit(8 << 20));
    }
}
