//! Session guarantees (read-your-writes, monotonic reads, monotonic writes,
//! writes-follow-reads), reported by name. For causal consistency they are
//! implied by the bad patterns, but users ask about them by name.
//!
//! Each session is scanned in session order keeping, per key, its latest own
//! write and frontiers (joined vector clocks) of the puts it has read.

use std::collections::HashMap;

use super::graph::{History, ReadFrom};
use super::record::OpKind;
use super::report::{AnomalyKind, Findings};

/// What a session has done and seen for one key so far.
struct KeyState {
    /// Latest real write of the key by this session.
    own_last: Option<usize>,
    /// Per writer session: 1 + highest index of a put of that session read so far.
    read_max_idx: Vec<u32>,
    /// Per writer session: joined clocks of the puts of that session read so far.
    read_frontier: HashMap<usize, Vec<u32>>,
    /// Joined clocks of all puts read so far, if any.
    put_frontier: Option<Vec<u32>>,
}

impl KeyState {
    fn new(width: usize) -> KeyState {
        KeyState {
            own_last: None,
            read_max_idx: vec![0; width],
            read_frontier: HashMap::new(),
            put_frontier: None,
        }
    }
}

fn join(into: &mut Vec<u32>, clock: &[u32]) {
    if into.is_empty() {
        into.extend_from_slice(clock);
    } else {
        for (a, b) in into.iter_mut().zip(clock) {
            *a = (*a).max(*b);
        }
    }
}

/// Checks the session guarantees of every session.
pub(crate) fn check_sessions(h: &History, findings: &mut Findings) {
    for s in 0..h.width() {
        let mut state: HashMap<usize, KeyState> = HashMap::new();
        for &id in &h.session_ops[s] {
            let op = &h.ops[id];
            let st = state
                .entry(op.key)
                .or_insert_with(|| KeyState::new(h.width()));
            match op.read_from {
                ReadFrom::NotRead if op.real => st.own_last = Some(id),
                ReadFrom::Write(w) => {
                    value_read(h, st, id, w, findings);
                    let ws = h.ops[w].session;
                    let idx = h.ops[w].idx as u32 + 1;
                    st.read_max_idx[ws] = st.read_max_idx[ws].max(idx);
                    join(st.read_frontier.entry(ws).or_default(), h.clock(w));
                    join(st.put_frontier.get_or_insert_with(Vec::new), h.clock(w));
                }
                ReadFrom::Nothing => empty_read(h, st, id, findings),
                _ => {}
            }
        }
    }
}

fn value_read(h: &History, st: &KeyState, r: usize, w: usize, findings: &mut Findings) {
    if let Some(own) = st.own_last
        && own != w
        && h.lt(w, own)
    {
        findings.add(AnomalyKind::ReadYourWrites, || {
            format!(
                "{} returned {}, which is causally older than the session's own {}",
                h.describe(r),
                h.describe(w),
                h.describe(own)
            )
        });
    }
    let (ws, widx) = (h.ops[w].session, h.ops[w].idx);
    let later_same_writer = st.read_max_idx[ws] as usize;
    let monotonic_writes = later_same_writer > widx + 1;
    if monotonic_writes {
        findings.add(AnomalyKind::MonotonicWrites, || {
            format!(
                "{} returned {} after the session read the later write {} of the same writer",
                h.describe(r),
                h.describe(w),
                h.describe(h.op_at(ws, later_same_writer - 1))
            )
        });
    }
    let follower = st
        .read_frontier
        .iter()
        .find(|(q, clock)| **q != ws && clock[ws] as usize > widx)
        .map(|(q, _)| *q);
    if let Some(q) = follower {
        findings.add(AnomalyKind::WritesFollowReads, || {
            format!(
                "{} returned {} after the session read a write of {} that causally follows it",
                h.describe(r),
                h.describe(w),
                h.sessions[q]
            )
        });
    }
    if monotonic_writes || follower.is_some() {
        findings.add(AnomalyKind::MonotonicReads, || {
            format!(
                "{} returned {}, causally older than a value the session read before",
                h.describe(r),
                h.describe(w)
            )
        });
    }
}

fn empty_read(h: &History, st: &KeyState, r: usize, findings: &mut Findings) {
    let key = h.ops[r].key;
    let deletes: Vec<usize> = (0..h.width())
        .filter_map(|q| h.latest_delete_not_after(key, q, r))
        .collect();
    if let Some(own) = st.own_last.filter(|&w| h.ops[w].kind == OpKind::Put) {
        // A delete not co-before the own put could hide it.
        if !deletes.iter().any(|&d| !h.le(d, own)) {
            findings.add(AnomalyKind::ReadYourWrites, || {
                format!(
                    "{} found nothing after the session's own {}",
                    h.describe(r),
                    h.describe(own)
                )
            });
        }
    }
    if let Some(frontier) = &st.put_frontier {
        // Some delete must not be co-before every put read so far.
        let explained = deletes
            .iter()
            .any(|&d| frontier[h.ops[d].session] as usize <= h.ops[d].idx);
        if !explained {
            findings.add(AnomalyKind::MonotonicReads, || {
                format!(
                    "{} found nothing after the session had read a value of the key",
                    h.describe(r)
                )
            });
        }
    }
}
