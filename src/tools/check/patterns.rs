//! The causal-consistency bad patterns of Bouajjani et al. (POPL 2017) for
//! differentiated histories: thin-air reads, cyclic co, WriteCOInitRead and
//! WriteCORead. Each read is checked in O(sessions × log writes) using the
//! per-(key, session) write indices and the vector clocks.

use super::graph::{History, ReadFrom};
use super::report::{AnomalyKind, Findings};

/// Reports cycles found while computing the causal order.
pub(crate) fn check_cycles(h: &History, findings: &mut Findings) {
    for cycle in &h.order.cycles {
        findings.add(AnomalyKind::CyclicCo, || {
            let shown: Vec<String> = cycle.iter().take(4).map(|&op| h.describe(op)).collect();
            let more = if cycle.len() > 4 { ", ..." } else { "" };
            format!(
                "{} ops form a cycle in so ∪ wr: {}{more}",
                cycle.len(),
                shown.join(", ")
            )
        });
    }
}

/// Checks every read for thin-air values, WriteCORead and WriteCOInitRead.
pub(crate) fn check_reads(h: &History, findings: &mut Findings) {
    for r in 0..h.ops.len() {
        match h.ops[r].read_from {
            ReadFrom::ThinAir => findings.add(AnomalyKind::ThinAirRead, || thin_air(h, r)),
            ReadFrom::Write(w1) => {
                if let Some(w2) = overwriter(h, w1, r) {
                    findings.add(AnomalyKind::WriteCoRead, || {
                        format!(
                            "{} read from {} although {} overwrote it causally before the read",
                            h.describe(r),
                            h.describe(w1),
                            h.describe(w2)
                        )
                    });
                }
            }
            ReadFrom::Nothing => {
                if let Some(p) = unexplained_empty_read(h, r) {
                    findings.add(AnomalyKind::WriteCoInitRead, || {
                        format!(
                            "{} found nothing although {} is causally before it and no delete explains the absence",
                            h.describe(r),
                            h.describe(p)
                        )
                    });
                }
            }
            ReadFrom::NotRead => {}
        }
    }
}

fn thin_air(h: &History, r: usize) -> String {
    let op = &h.ops[r];
    let value = op.value.clone().unwrap_or_default();
    let why = if let Some(line) = h.failed_puts.get(&value) {
        format!("that only a failed put (line {line}) wrote")
    } else if let Some(&w) = h.puts_by_value.get(&value) {
        format!("written to another key by {}", h.describe(w))
    } else {
        "that no put wrote".to_string()
    };
    format!("{} returned a value that {why}", h.describe(r))
}

/// A real write w2 of the key with w1 co< w2 co< r, if any.
pub(crate) fn overwriter(h: &History, w1: usize, r: usize) -> Option<usize> {
    let key = h.ops[r].key;
    let clock = h.clock(r);
    (0..h.width()).find_map(|s| {
        let lane = &h.lanes(key, s).real_writes;
        let m = h.op_at(s, History::latest_below(lane, clock[s])?);
        (m != r && h.lt(w1, m)).then_some(m)
    })
}

/// Some real put of the key co-before `r`, if any.
fn put_before(h: &History, key: usize, r: usize) -> Option<usize> {
    (0..h.width()).find_map(|s| h.latest_put_before(key, s, r))
}

/// Whether delete `d` is overwritten by a real put `p` with d co< p co< r.
fn delete_overwritten(h: &History, d: usize, r: usize) -> bool {
    let key = h.ops[r].key;
    (0..h.width()).any(|s| h.latest_put_before(key, s, r).is_some_and(|p| h.lt(d, p)))
}

/// For an empty read `r`: a put co-before it when neither the initial state
/// nor any delete (that is not co-after `r` and not overwritten before `r`)
/// can explain the absence.
pub(crate) fn unexplained_empty_read(h: &History, r: usize) -> Option<usize> {
    let key = h.ops[r].key;
    let p = put_before(h, key, r)?;
    // Per session, only the latest delete not co-after r can be the least
    // overwritten one: earlier deletes of the session are co-before it.
    let explained = (0..h.width())
        .filter_map(|q| h.latest_delete_not_after(key, q, r))
        .any(|d| !delete_overwritten(h, d, r));
    (!explained).then_some(p)
}
