//! The operation graph of a history: sessions, keys, read-from resolution,
//! per-(key, session) write indices and causal-order queries.

use std::collections::{BTreeMap, HashMap};

use super::order::Order;
use super::record::{CheckError, OpKind, OpRecord, Outcome, ParsedHistory, canonical};

/// What a get read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFrom {
    /// The operation is not a read.
    NotRead,
    /// The read found nothing (initial state or some delete).
    Nothing,
    /// The read returned the value of this put (op id).
    Write(usize),
    /// The read returned a value no put of this key wrote.
    ThinAir,
}

/// An operation that takes part in the causal order.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    /// Session id.
    pub session: usize,
    /// Position among the session's included operations.
    pub idx: usize,
    /// 1-based line in the history file.
    pub line: usize,
    /// Operation kind.
    pub kind: OpKind,
    /// Outcome (ok, or unknown for writes).
    pub outcome: Outcome,
    /// Key id.
    pub key: usize,
    /// Canonical value written or read (None for deletes and empty reads).
    pub value: Option<String>,
    /// Read-from resolution for gets.
    pub read_from: ReadFrom,
    /// A write that certainly took effect (ok, or unknown but read by someone).
    pub real: bool,
}

/// Session-local indices (`Op::idx`) of the writes of one key in one session.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    /// Real puts and deletes.
    pub real_writes: Vec<usize>,
    /// Real puts.
    pub real_puts: Vec<usize>,
    /// All deletes (ok or unknown): possible sources of empty reads.
    pub deletes: Vec<usize>,
}

static NO_LANES: Lanes = Lanes {
    real_writes: Vec::new(),
    real_puts: Vec::new(),
    deletes: Vec::new(),
};

/// A history ready to be checked.
#[derive(Debug)]
pub(crate) struct History {
    /// Number of op records in the file.
    pub op_records: usize,
    /// Number of op records with outcome ok.
    pub ok_records: usize,
    /// Session names by id.
    pub sessions: Vec<String>,
    /// Op ids of each session in session order.
    pub session_ops: Vec<Vec<usize>>,
    /// Key names by id.
    pub keys: Vec<String>,
    /// Key ids by name.
    pub key_ids: HashMap<String, usize>,
    /// Included operations.
    pub ops: Vec<Op>,
    /// Put (ok or unknown) by canonical value.
    pub puts_by_value: HashMap<String, usize>,
    /// Line of failed puts by canonical value.
    pub failed_puts: HashMap<String, usize>,
    lanes: HashMap<(usize, usize), Lanes>,
    /// Causal order.
    pub order: Order,
}

fn included(rec: &OpRecord) -> bool {
    match rec.outcome {
        Outcome::Ok => true,
        Outcome::Unknown => rec.kind != OpKind::Get,
        Outcome::Fail => false,
    }
}

impl History {
    /// Builds the graph: session order, read-from edges and the causal order.
    pub(crate) fn build(parsed: &ParsedHistory) -> Result<History, CheckError> {
        let mut by_session: BTreeMap<&str, Vec<(usize, &OpRecord)>> = BTreeMap::new();
        for (line, rec) in &parsed.ops {
            by_session
                .entry(&rec.session)
                .or_default()
                .push((*line, rec));
        }
        let mut h = History {
            op_records: parsed.ops.len(),
            ok_records: parsed
                .ops
                .iter()
                .filter(|(_, r)| r.outcome == Outcome::Ok)
                .count(),
            sessions: Vec::new(),
            session_ops: Vec::new(),
            keys: Vec::new(),
            key_ids: HashMap::new(),
            ops: Vec::new(),
            puts_by_value: HashMap::new(),
            failed_puts: HashMap::new(),
            lanes: HashMap::new(),
            order: Order::default(),
        };
        for (sid, (name, mut recs)) in by_session.into_iter().enumerate() {
            recs.sort_by_key(|(line, r)| (r.invoke_ns, *line));
            let mut list = Vec::new();
            for (line, rec) in recs {
                let value = match rec.kind {
                    OpKind::Delete => None,
                    _ => canonical(&rec.value),
                };
                if rec.kind == OpKind::Put && rec.outcome == Outcome::Fail {
                    if let Some(v) = value {
                        h.failed_puts.insert(v, line);
                    }
                    continue;
                }
                if !included(rec) {
                    continue;
                }
                let key = h.intern_key(&rec.key);
                let id = h.ops.len();
                if let (OpKind::Put, Some(v)) = (rec.kind, &value) {
                    if let Some(&first) = h.puts_by_value.get(v) {
                        return Err(CheckError::DuplicateValue {
                            line,
                            first: h.ops[first].line,
                            value: v.clone(),
                        });
                    }
                    h.puts_by_value.insert(v.clone(), id);
                }
                h.ops.push(Op {
                    session: sid,
                    idx: list.len(),
                    line,
                    kind: rec.kind,
                    outcome: rec.outcome,
                    key,
                    value,
                    read_from: ReadFrom::NotRead,
                    real: rec.outcome == Outcome::Ok && rec.kind != OpKind::Get,
                });
                list.push(id);
            }
            h.sessions.push(name.to_string());
            h.session_ops.push(list);
        }
        h.resolve_reads();
        h.index_lanes();
        let reads_from = h.ops.iter().map(|op| match op.read_from {
            ReadFrom::Write(w) => Some(w),
            _ => None,
        });
        h.order = Order::compute(&h.session_ops, reads_from.collect());
        Ok(h)
    }

    fn intern_key(&mut self, key: &str) -> usize {
        if let Some(&id) = self.key_ids.get(key) {
            return id;
        }
        let id = self.keys.len();
        self.keys.push(key.to_string());
        self.key_ids.insert(key.to_string(), id);
        id
    }

    fn resolve_reads(&mut self) {
        for i in 0..self.ops.len() {
            if self.ops[i].kind != OpKind::Get {
                continue;
            }
            let read_from = match &self.ops[i].value {
                None => ReadFrom::Nothing,
                Some(v) => match self.puts_by_value.get(v) {
                    Some(&w) if self.ops[w].key == self.ops[i].key => ReadFrom::Write(w),
                    _ => ReadFrom::ThinAir,
                },
            };
            if let ReadFrom::Write(w) = read_from {
                self.ops[w].real = true;
            }
            self.ops[i].read_from = read_from;
        }
    }

    fn index_lanes(&mut self) {
        for op in &self.ops {
            if op.kind == OpKind::Get {
                continue;
            }
            let lane = self.lanes.entry((op.key, op.session)).or_default();
            if op.kind == OpKind::Delete {
                lane.deletes.push(op.idx);
            } else if op.real {
                lane.real_puts.push(op.idx);
            }
            if op.real {
                lane.real_writes.push(op.idx);
            }
        }
    }

    /// Write indices of key `key` in session `session`.
    pub(crate) fn lanes(&self, key: usize, session: usize) -> &Lanes {
        self.lanes.get(&(key, session)).unwrap_or(&NO_LANES)
    }

    /// Op id of the `idx`-th included op of `session`.
    pub(crate) fn op_at(&self, session: usize, idx: usize) -> usize {
        self.session_ops[session][idx]
    }

    /// Number of sessions.
    pub(crate) fn width(&self) -> usize {
        self.sessions.len()
    }

    /// For each session, how many of its ops are causally before or equal to `op`.
    pub(crate) fn clock(&self, op: usize) -> &[u32] {
        self.order.clock(op)
    }

    /// `a` co<= `b` (causally before or equal).
    pub(crate) fn le(&self, a: usize, b: usize) -> bool {
        let op = &self.ops[a];
        self.clock(b)[op.session] as usize > op.idx
    }

    /// `a` co< `b` (strictly causally before).
    pub(crate) fn lt(&self, a: usize, b: usize) -> bool {
        a != b && self.le(a, b)
    }

    /// Latest entry of `lane` (session-local indices) strictly below `bound`.
    pub(crate) fn latest_below(lane: &[usize], bound: u32) -> Option<usize> {
        let p = lane.partition_point(|&i| (i as u32) < bound);
        p.checked_sub(1).map(|p| lane[p])
    }

    /// Latest real put of `key` in `session` that is causally before or equal to `op`.
    pub(crate) fn latest_put_before(&self, key: usize, session: usize, op: usize) -> Option<usize> {
        let lane = &self.lanes(key, session).real_puts;
        Self::latest_below(lane, self.clock(op)[session]).map(|i| self.op_at(session, i))
    }

    /// Latest delete of `key` in `session` that is not causally after `read`.
    pub(crate) fn latest_delete_not_after(
        &self,
        key: usize,
        session: usize,
        read: usize,
    ) -> Option<usize> {
        let lane = &self.lanes(key, session).deletes;
        let p = lane.partition_point(|&i| !self.lt(read, self.op_at(session, i)));
        p.checked_sub(1).map(|p| self.op_at(session, lane[p]))
    }

    /// Human-readable name of an op: session, index and line.
    pub(crate) fn describe(&self, id: usize) -> String {
        let op = &self.ops[id];
        let key = &self.keys[op.key];
        let what = match (op.kind, &op.value) {
            (OpKind::Put, Some(v)) => format!("put {key} = {v}"),
            (OpKind::Put, None) => format!("put {key}"),
            (OpKind::Delete, _) => format!("delete {key}"),
            (OpKind::Get, Some(v)) => format!("get {key} -> {v}"),
            (OpKind::Get, None) => format!("get {key} -> nothing"),
        };
        let unknown = if op.outcome == Outcome::Unknown {
            " [unknown outcome]"
        } else {
            ""
        };
        format!(
            "{}#{} (line {}: {what}{unknown})",
            self.sessions[op.session], op.idx, op.line
        )
    }
}
