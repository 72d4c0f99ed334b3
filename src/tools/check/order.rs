//! Causal order co = (so ∪ wr)+ as per-session vector clocks, computed in
//! topological order; cycles are found with Tarjan's algorithm.
//!
//! `clock(op)[s]` is the number of ops of session `s` that are co-before or
//! equal to `op`, so `a co<= b` iff `clock(b)[session(a)] > idx(a)`. Memory and
//! time are O(ops × sessions), never a dense ops × ops matrix.
//!
//! Works on edges only (session order and read-from), not on the operations themselves, so
//! it knows nothing of the history's records: `graph` builds the edges and asks.

/// Vector clocks of all ops plus the cycles found in so ∪ wr.
#[derive(Debug, Default)]
pub(crate) struct Order {
    width: usize,
    clocks: Vec<u32>,
    /// Non-trivial strongly connected components (op ids), one per cycle found.
    pub cycles: Vec<Vec<usize>>,
}

fn successors(session_ops: &[Vec<usize>], wr: &[Option<usize>]) -> Vec<Vec<usize>> {
    let mut succ = vec![Vec::new(); wr.len()];
    for list in session_ops {
        for pair in list.windows(2) {
            succ[pair[0]].push(pair[1]);
        }
    }
    for (r, w) in wr.iter().enumerate() {
        if let Some(w) = w {
            succ[*w].push(r);
        }
    }
    succ
}

/// Kahn's algorithm; returns the order and whether it covers every op.
fn topo_order(succ: &[Vec<usize>]) -> (Vec<usize>, bool) {
    let n = succ.len();
    let mut indeg = vec![0usize; n];
    for list in succ {
        for &v in list {
            indeg[v] += 1;
        }
    }
    let mut queue: Vec<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(v) = queue.pop() {
        order.push(v);
        for &w in &succ[v] {
            indeg[w] -= 1;
            if indeg[w] == 0 {
                queue.push(w);
            }
        }
    }
    let complete = order.len() == n;
    (order, complete)
}

/// Iterative Tarjan: component id of every node.
fn components(succ: &[Vec<usize>]) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    let n = succ.len();
    let (mut index, mut low) = (vec![NONE; n], vec![0; n]);
    let mut on_stack = vec![false; n];
    let (mut stack, mut comp) = (Vec::new(), vec![NONE; n]);
    let (mut next, mut ncomp) = (0, 0);
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
            if let Some(&w) = succ[v].get(*pos) {
                *pos += 1;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(u, _)) = calls.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = ncomp;
                    if w == v {
                        break;
                    }
                }
                ncomp += 1;
            }
        }
    }
    comp
}

impl Order {
    /// Computes clocks of ops `0..wr.len()`: `session_ops[s]` lists the ops of session `s` in
    /// session order (every op in exactly one session), `wr[r]` is the write that op `r` read
    /// from, if any. Read-from edges inside a cycle are reported and then ignored so that the
    /// rest of the history can still be checked.
    pub(crate) fn compute(session_ops: &[Vec<usize>], mut wr: Vec<Option<usize>>) -> Order {
        let n = wr.len();
        let mut succ = successors(session_ops, &wr);
        let (mut topo, complete) = topo_order(&succ);
        let mut cycles = Vec::new();
        if !complete {
            let comp = components(&succ);
            let mut members: Vec<Vec<usize>> = Vec::new();
            for (v, &c) in comp.iter().enumerate() {
                if members.len() <= c {
                    members.resize(c + 1, Vec::new());
                }
                members[c].push(v);
            }
            cycles = members.into_iter().filter(|m| m.len() > 1).collect();
            for (r, w) in wr.iter_mut().enumerate() {
                if w.is_some_and(|w| comp[w] == comp[r]) {
                    *w = None;
                }
            }
            succ = successors(session_ops, &wr);
            topo = topo_order(&succ).0;
        }
        // (session, position in it) of every op
        let mut place = vec![(0, 0); n];
        for (s, list) in session_ops.iter().enumerate() {
            for (i, &v) in list.iter().enumerate() {
                place[v] = (s, i);
            }
        }
        let width = session_ops.len();
        let mut clocks = vec![0u32; n * width];
        for &v in &topo {
            let (session, idx) = place[v];
            let prev = idx.checked_sub(1).map(|i| session_ops[session][i]);
            for s in 0..width {
                let a = prev.map_or(0, |p| clocks[p * width + s]);
                let b = wr[v].map_or(0, |w| clocks[w * width + s]);
                clocks[v * width + s] = a.max(b);
            }
            clocks[v * width + session] = idx as u32 + 1;
        }
        Order {
            width,
            clocks,
            cycles,
        }
    }

    /// Clock of op `id` (one entry per session).
    pub(crate) fn clock(&self, id: usize) -> &[u32] {
        &self.clocks[id * self.width..(id + 1) * self.width]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarjan_finds_cycle_and_singletons() {
        // 0 -> 1 -> 2 -> 0, 2 -> 3
        let succ = vec![vec![1], vec![2], vec![0, 3], vec![]];
        let comp = components(&succ);
        assert_eq!(comp[0], comp[1]);
        assert_eq!(comp[1], comp[2]);
        assert_ne!(comp[2], comp[3]);
        assert!(!topo_order(&succ).1);
    }

    #[test]
    fn kahn_orders_a_dag() {
        let succ = vec![vec![2], vec![2], vec![3], vec![]];
        let (order, complete) = topo_order(&succ);
        assert!(complete);
        let pos = |v: usize| order.iter().position(|&x| x == v);
        assert!(pos(0) < pos(2) && pos(1) < pos(2) && pos(2) < pos(3));
    }

    #[test]
    fn clocks_from_session_order_and_read_from() {
        // session 0: ops 0, 1; session 1: ops 2, 3; op 2 read from op 1
        let order = Order::compute(&[vec![0, 1], vec![2, 3]], vec![None, None, Some(1), None]);
        assert!(order.cycles.is_empty());
        assert_eq!(order.clock(0), &[1, 0]);
        assert_eq!(order.clock(1), &[2, 0]);
        assert_eq!(order.clock(2), &[2, 1]);
        assert_eq!(order.clock(3), &[2, 2]);
    }

    #[test]
    fn a_read_from_cycle_is_reported_and_its_edges_ignored() {
        // op 0 (session 0) read from op 1 (session 1), which read from op 0
        let order = Order::compute(&[vec![0], vec![1]], vec![Some(1), Some(0)]);
        assert_eq!(order.cycles, vec![vec![0, 1]]);
        assert_eq!(order.clock(0), &[1, 0]);
        assert_eq!(order.clock(1), &[0, 1]);
    }
}
