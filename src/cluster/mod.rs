//! The node's behaviour: replication and causal delivery inside a shard, anti-entropy,
//! membership (failure detection, join, flap-damped re-admission), shard maps, add-member,
//! resharding, and routing client operations to their shard.
//!
//! One `Node` handle (an `Arc`) holds the state behind a `std::sync::Mutex` that is never held
//! across an `.await`. Other nodes are reached only through the [`peers::Peers`] trait.

pub mod batch;
pub mod commit;
pub mod durable;
pub mod error;
pub mod forward;
pub mod guard;
pub mod kv;
pub mod membership;
pub mod op;
pub mod peers;
pub mod replication;
pub mod reshard;
pub mod scripted;
pub mod shards;
pub mod snapshot;
pub mod startup;
pub mod status;
pub mod supervise;
pub mod sync;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::domain::clock::VectorClock;
use crate::domain::liveness::PeerTable;
use crate::domain::replica::Replica;
use crate::domain::shard::{ShardId, ShardMap};
use crate::domain::store::Store;
use peers::Peers;
use replication::Outbound;

pub use error::Error;

/// A map change prepared on this node (see `reshard`): a reshard, with the keys staged for it,
/// or an add-member (no keys; client writes go on).
#[derive(Debug)]
struct Staging {
    /// The map being installed.
    pub map: ShardMap,
    /// Keys received for this node's new shard.
    pub store: Store,
    /// When the reshard was prepared (for the abort timeout).
    pub since: Instant,
    /// Bytes received into `store` so far (bounded by `reshard::MAX_STAGING_BYTES`).
    pub bytes: usize,
    /// Per slice of the replica's store, its stamp when this node's own keys of that slice were
    /// last merged into `store` (0: never; see `commit`): the commit re-merges only slices
    /// whose stamp has moved since, so it holds the lock for a few slices, not the whole store.
    pub merged: Vec<u64>,
}

impl Staging {
    /// An empty staging area for `map`.
    pub fn new(map: ShardMap) -> Self {
        Self {
            map,
            store: Store::new(),
            since: Instant::now(),
            bytes: 0,
            merged: vec![0; crate::domain::store::SLICES],
        }
    }
}

/// Mutable node state, behind one short-held mutex. Private to `cluster/`: other layers read
/// [`Node::status`] and call methods.
#[derive(Debug)]
struct State {
    /// This node's replica of its shard.
    pub replica: Replica,
    /// The shard map in force.
    pub map: ShardMap,
    /// Liveness of every known peer (the view).
    pub liveness: PeerTable,
    /// A reshard in progress, if any: client writes wait while it is set.
    pub staging: Option<Staging>,
    /// Each shard peer's delivered clock at its last heartbeat (anti-entropy compares it with
    /// ours one heartbeat later).
    pub ahead: HashMap<String, VectorClock>,
    /// Per peer, the most of this node's own writes (of the replica's generation) it ever
    /// reported delivered in a heartbeat answer: what replication is known to have reached.
    pub has_mine: HashMap<String, u64>,
    /// When we last heard from each peer (a failed call older than that is not evidence).
    pub last_contact: HashMap<String, Instant>,
    /// When this process last resumed from a stall (SIGSTOP, VM pause): calls in flight across
    /// the stall timed out because of us, not the peer, and are not evidence either.
    pub stall_end: Option<Instant>,
}

impl State {
    /// Records that we heard from `peer` now.
    pub fn contact(&mut self, peer: &str, incarnation: u64) -> crate::domain::liveness::Transition {
        let now = Instant::now();
        self.last_contact.insert(peer.to_string(), now);
        self.liveness.contact(peer, incarnation, now.into_std())
    }

    /// True while a reshard (a change of data generation) is prepared here: client writes wait.
    /// A prepared add-member holds nothing.
    pub fn resharding(&self) -> bool {
        self.staging
            .as_ref()
            .is_some_and(|s| s.map.generation != self.map.generation)
    }

    /// This node's shard, `None` for a spare.
    pub fn my_shard(&self, me: &str) -> Option<ShardId> {
        self.map.shard_of(me)
    }

    /// Every node in the view other than `me`.
    pub fn view_peers(&self, me: &str) -> Vec<String> {
        self.liveness
            .view()
            .into_iter()
            .filter(|p| p != me)
            .collect()
    }

    /// Nodes of shard `id`: those the map assigns to it, or, in a replication-only cluster,
    /// the view (the replica set is the view).
    pub fn members(&self, id: ShardId) -> Vec<String> {
        if self.map.is_replicated() {
            return if id == 0 {
                self.liveness.view()
            } else {
                Vec::new()
            };
        }
        self.map.members(id)
    }

    /// Members of `me`'s shard other than `me` that we hear from: those in the view first, then
    /// those on probation. Both receive the shard's writes and may be pulled from, so a replica
    /// waiting out its grace period already holds every write when it is admitted (and a kill of
    /// the other replica meanwhile loses nothing).
    pub fn shard_peers(&self, me: &str) -> Vec<String> {
        match self.my_shard(me) {
            None => Vec::new(),
            Some(s) => {
                let (mut up, probation): (Vec<String>, Vec<String>) = self
                    .members(s)
                    .into_iter()
                    .filter(|m| m != me && self.liveness.reachable(m))
                    .partition(|m| self.liveness.in_view(m));
                up.extend(probation);
                up
            }
        }
    }

    /// Members of shard `id` ordered for contacting: those in the view first, each group in
    /// an order of its own for every `me` (rendezvous hashing). So one node always forwards to
    /// the same replica of a shard (its clients' sessions stay on one replica and never wait
    /// for replication between replicas), while different nodes spread over the replicas
    /// instead of all loading the first one.
    pub fn contact_order(&self, id: ShardId, me: &str) -> Vec<String> {
        let rank = |m: &String| {
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&(me, m.as_str()), &mut h);
            std::hash::Hasher::finish(&h)
        };
        let (mut up, mut down): (Vec<String>, Vec<String>) = self
            .members(id)
            .into_iter()
            .filter(|m| m != me)
            .partition(|m| self.liveness.in_view(m));
        up.sort_by_cached_key(rank);
        down.sort_by_cached_key(rank);
        up.extend(down);
        up
    }
}

/// Scope of causal checks: origins assigned to `me`'s shard in `map`.
pub fn scope<'a>(map: &'a ShardMap, me: &'a str) -> impl Fn(&str) -> bool + 'a {
    let mine = map.shard_of(me);
    move |origin: &str| mine.is_some() && map.shard_of(origin) == mine
}

/// Shared node internals.
pub struct Inner {
    /// This node's address (its identity).
    pub me: Arc<str>,
    /// Start time in ms since the epoch: tells a restart from a node that was cut off.
    pub incarnation: u64,
    /// Configuration.
    pub cfg: Config,
    state: Mutex<State>,
    /// How other nodes are reached.
    pub peers: Arc<dyn Peers>,
    /// Bumped whenever writes are delivered (wakes legacy waiters).
    pub delivered: watch::Sender<u64>,
    /// True once start-up state transfer is done.
    pub ready: watch::Sender<bool>,
    queues: Mutex<std::collections::HashMap<String, Arc<Outbound>>>,
    syncing: AtomicBool,
    /// Permits for copies of the whole store (snapshots served, reshard sends).
    snapshots: Arc<tokio::sync::Semaphore>,
    /// Set on shutdown: background loops stop.
    pub shutdown: watch::Sender<bool>,
    /// Counters of replication, sync and reshard work (for operators).
    pub stats: status::Counters,
    /// Where the node keeps what it must not forget; `None` = in memory only.
    storage: Option<Arc<dyn crate::storage::Storage>>,
    /// True when the state was restored from a data directory that held a replica.
    recovered: AtomicBool,
    /// The metadata-token key last handed to storage.
    token_saved: Mutex<Option<crate::domain::token_key::TokenKey>>,
}

/// A handle to the node; cheap to clone.
#[derive(Clone)]
pub struct Node(pub Arc<Inner>);

impl std::ops::Deref for Node {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Node {
    /// A node that has not joined yet (see [`Node::start`]), its state in memory only; its
    /// incarnation is the wall clock.
    pub fn new(cfg: Config, peers: Arc<dyn Peers>) -> Self {
        Self::build(cfg, peers, None, now_ms())
    }

    /// A node with a given incarnation, in memory only (a simulation numbers its processes
    /// itself; a restart must have a higher one than the process before it).
    pub fn with_incarnation(cfg: Config, peers: Arc<dyn Peers>, incarnation: u64) -> Self {
        Self::build(cfg, peers, None, incarnation)
    }

    fn build(
        cfg: Config,
        peers: Arc<dyn Peers>,
        storage: Option<Arc<dyn crate::storage::Storage>>,
        incarnation: u64,
    ) -> Self {
        let me: Arc<str> = cfg.socket_address.as_str().into();
        let map = match cfg.shard_count {
            Some(n) => ShardMap::initial(&cfg.view, n),
            None => ShardMap::replicated(),
        };
        let state = State {
            replica: Replica::new(map.generation),
            liveness: PeerTable::new(&me, &cfg.view, cfg.grace),
            map,
            staging: None,
            ahead: HashMap::new(),
            has_mine: HashMap::new(),
            last_contact: HashMap::new(),
            stall_end: None,
        };
        Node(Arc::new(Inner {
            me,
            incarnation,
            cfg,
            state: Mutex::new(state),
            peers,
            delivered: watch::channel(0).0,
            ready: watch::channel(false).0,
            queues: Mutex::new(Default::default()),
            syncing: AtomicBool::new(false),
            snapshots: snapshot::copy_limiter(),
            shutdown: watch::channel(false).0,
            stats: status::Counters::default(),
            storage,
            recovered: AtomicBool::new(false),
            token_saved: Mutex::new(None),
        }))
    }

    /// Locks the state. Never hold the guard across an `.await`.
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes everyone waiting for deliveries.
    pub fn bump_delivered(&self) {
        self.delivered.send_modify(|n| *n += 1);
    }

    /// Waits (bounded) until start-up state transfer is done; false on timeout.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        // the common case, without a timer per request
        if *self.ready.borrow() {
            return true;
        }
        let mut rx = self.ready.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|r| *r))
            .await
            .is_ok()
    }

    /// The view: this node and every peer it holds up.
    pub fn view(&self) -> Vec<String> {
        self.state().liveness.view()
    }

    /// True once shutdown started.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}
