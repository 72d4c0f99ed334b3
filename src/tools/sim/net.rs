//! The simulated network: which node lives at each address, which links are cut, and what
//! happens to a message on a live link (a delay drawn from a seeded PRNG, so messages reorder;
//! sometimes a loss). Calls run the receiving node's handler inline, in the caller's task, under
//! tokio's clock: with paused time a whole cluster runs on one thread, deterministically.
//!
//! What a call sees, like the gRPC transport: a dead target refuses the connection at once
//! (`NotSent`); a cut link or a lost message times out after the RPC deadline (`Unreachable`,
//! outcome unknown); a target killed while handling the call, or a reply lost or cut on the way
//! back, is `Unreachable` too, although the handler may have run.
//!
//! Must not: hold its lock across an `.await`, or read the wall clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::cluster::Node;
use crate::cluster::peers::{PeerError, PeerResult};
use crate::tools::rng::Rng;

/// How messages on a live link behave.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkFaults {
    /// Shortest one-way delay.
    pub min_delay: Duration,
    /// Longest one-way delay (each message draws its own: messages overtake each other).
    pub max_delay: Duration,
    /// Probability in 0..1 that a message (request or reply) is lost.
    pub loss: f64,
}

impl Default for LinkFaults {
    /// A quiet LAN: 0.1 to 2 ms, nothing lost.
    fn default() -> Self {
        Self {
            min_delay: Duration::from_micros(100),
            max_delay: Duration::from_millis(2),
            loss: 0.0,
        }
    }
}

/// One address: the node process living there now (if any) and how many processes have.
#[derive(Default)]
struct Slot {
    node: Option<Node>,
    life: u64,
}

struct State {
    slots: BTreeMap<String, Slot>,
    /// Directed links that drop everything (`from`, `to`).
    cut: BTreeSet<(String, String)>,
    faults: LinkFaults,
    /// How long each node takes to stage one batch of a reshard (a slow disk).
    stage_delay: Duration,
    rng: Rng,
}

/// The network every simulated node's `Peers` goes through.
pub struct Net {
    state: Mutex<State>,
    /// The deadline of a call (as `CKV_RPC_TIMEOUT_MS`).
    pub rpc_timeout: Duration,
}

/// What became of a call's request.
pub(super) enum Route {
    /// Nobody listens there (or the caller itself is dead): refused at once.
    Refused,
    /// Lost or cut: the caller times out.
    Lost,
    /// Delivered to `node` (process number `life`) after `delay`.
    Deliver {
        node: Node,
        life: u64,
        delay: Duration,
    },
}

impl Net {
    /// A network with no nodes yet, whose PRNG is seeded with `seed`.
    pub fn new(seed: u64, rpc_timeout: Duration, faults: LinkFaults) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                slots: BTreeMap::new(),
                cut: BTreeSet::new(),
                faults,
                stage_delay: Duration::ZERO,
                rng: Rng::new(seed, 7),
            }),
            rpc_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The life number the next process at `addr` gets.
    pub fn next_life(&self, addr: &str) -> u64 {
        self.lock().slots.get(addr).map_or(0, |s| s.life) + 1
    }

    /// Registers `node` as process number `life` (from [`Net::next_life`]) at `addr`.
    pub fn attach(&self, addr: &str, node: Node, life: u64) {
        let mut st = self.lock();
        let slot = st.slots.entry(addr.to_string()).or_default();
        slot.life = life;
        slot.node = Some(node);
    }

    /// The process at `addr` dies (its in-flight calls fail; calls to it are refused).
    pub fn detach(&self, addr: &str) -> Option<Node> {
        let mut st = self.lock();
        let slot = st.slots.get_mut(addr)?;
        slot.life += 1;
        slot.node.take()
    }

    /// The node living at `addr`, if any.
    pub fn node(&self, addr: &str) -> Option<Node> {
        self.lock().slots.get(addr).and_then(|s| s.node.clone())
    }

    /// True while process `life` still lives at `addr`.
    pub fn alive(&self, addr: &str, life: u64) -> bool {
        self.lock()
            .slots
            .get(addr)
            .is_some_and(|s| s.life == life && s.node.is_some())
    }

    /// Cuts both directions between every node of `a` and every node of `b`.
    pub fn partition(&self, a: &[String], b: &[String]) {
        let mut st = self.lock();
        for x in a {
            for y in b {
                st.cut.insert((x.clone(), y.clone()));
                st.cut.insert((y.clone(), x.clone()));
            }
        }
    }

    /// Cuts the one direction `from` → `to` (an asymmetric fault).
    pub fn cut_one_way(&self, from: &str, to: &str) {
        self.lock().cut.insert((from.to_string(), to.to_string()));
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Sets how live links behave from now on.
    pub fn set_faults(&self, faults: LinkFaults) {
        self.lock().faults = faults;
    }

    /// Makes every node take `delay` to stage each batch of keys a reshard sends it (a slow
    /// disk; zero by default).
    pub fn set_stage_delay(&self, delay: Duration) {
        self.lock().stage_delay = delay;
    }

    /// See [`Net::set_stage_delay`].
    pub fn stage_delay(&self) -> Duration {
        self.lock().stage_delay
    }

    /// True when messages from `from` to `to` are dropped by a cut.
    pub fn is_cut(&self, from: &str, to: &str) -> bool {
        self.lock()
            .cut
            .contains(&(from.to_string(), to.to_string()))
    }

    /// Draws the fate of one message from `from` to `to`: `None` when lost (by a cut or by
    /// chance), else its delay.
    pub(super) fn hop(&self, from: &str, to: &str) -> Option<Duration> {
        let mut st = self.lock();
        if st.cut.contains(&(from.to_string(), to.to_string())) {
            return None;
        }
        let f = st.faults.clone();
        if f.loss > 0.0 && (st.rng.below(1_000_000) as f64) < f.loss * 1e6 {
            return None;
        }
        let (lo, hi) = (
            f.min_delay.as_micros() as u64,
            f.max_delay.as_micros() as u64,
        );
        Some(Duration::from_micros(st.rng.range(lo, hi.max(lo))))
    }

    /// Routes a request from `from` (process `from_life`) to `to`.
    pub(super) fn route(&self, from: &str, from_life: u64, to: &str) -> Route {
        let target = {
            let st = self.lock();
            let caller_alive = st
                .slots
                .get(from)
                .is_some_and(|s| s.life == from_life && s.node.is_some());
            match st.slots.get(to) {
                Some(Slot {
                    node: Some(n),
                    life,
                }) if caller_alive => Some((n.clone(), *life)),
                _ => None,
            }
        };
        let Some((node, life)) = target else {
            return Route::Refused;
        };
        match self.hop(from, to) {
            Some(delay) => Route::Deliver { node, life, delay },
            None => Route::Lost,
        }
    }

    /// Runs one call from `from` to `to` through the network: `handler` runs at the target
    /// (inline) if the request arrives; its result comes back if the reply does.
    pub(super) async fn call<T, F, Fut>(
        &self,
        from: &str,
        from_life: u64,
        to: &str,
        deadline: Duration,
        handler: F,
    ) -> PeerResult<T>
    where
        F: FnOnce(Node) -> Fut,
        Fut: Future<Output = PeerResult<T>>,
    {
        let started = tokio::time::Instant::now();
        let timed_out = || async move {
            tokio::time::sleep_until(started + deadline).await;
            Err(PeerError::Unreachable("sim: deadline exceeded".into()))
        };
        let (node, life, delay) = match self.route(from, from_life, to) {
            Route::Refused => {
                tokio::task::yield_now().await;
                return Err(PeerError::NotSent(format!("sim: nothing listens at {to}")));
            }
            Route::Lost => return timed_out().await,
            Route::Deliver { node, life, delay } => (node, life, delay),
        };
        tokio::time::sleep(delay).await;
        if !self.alive(to, life) {
            return timed_out().await;
        }
        let Ok(result) = tokio::time::timeout_at(started + deadline, handler(node)).await else {
            return Err(PeerError::Unreachable("sim: deadline exceeded".into()));
        };
        let back = match self.hop(to, from) {
            Some(d) if self.alive(to, life) && self.alive(from, from_life) => d,
            _ => return timed_out().await,
        };
        tokio::time::sleep(back).await;
        result
    }
}
