//! Durability: what a node must not forget across a crash (every applied write, tombstones
//! included; the replica's generation, clock and completeness, which hold its own write
//! counter; the shard map; a reshard's staged keys; the node's incarnation), kept by an
//! embedded storage engine behind the small [`Storage`] trait.
//!
//! `cluster` hands changes over in the order it made them (under its lock) and gets a
//! [`Ticket`] to wait on before acknowledging; the engine commits everything queued at once
//! (group commit: concurrent writes share one fsync). The packed in-memory store stays the read
//! path; the engine is only read at start-up ([`Storage::recover`], which hands the kept writes
//! over one at a time, so no list of them all is ever built). Nothing here knows about
//! the network or the node's lock. `engine` is the fjall implementation (`DATA_DIR`), `memory`
//! an in-memory one for tests; without a data directory a node keeps no storage at all.

pub mod codec;
pub mod engine;
pub mod memory;
pub mod settings;

use tokio::sync::oneshot;

use crate::domain::clock::VectorClock;
use crate::domain::shard::ShardMap;
use crate::domain::store::Write;
use crate::domain::token_key::TokenKey;

pub use settings::{Fsync, Settings};

/// The replica's counters: its data generation, the clock of writes it delivered (this node's
/// own entry is its write counter) and whether it holds its shard's earlier data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReplicaMeta {
    /// Shard-map generation of the data.
    pub generation: u64,
    /// Writes delivered per origin.
    pub clock: VectorClock,
    /// See `Replica::complete`.
    pub complete: bool,
}

/// One change to what is kept. A list of changes handed over together is stored atomically.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Writes that won at the replica (each replaces the key's stored write), and the replica's
    /// counters after them.
    Applied(Vec<Write>, ReplicaMeta),
    /// The replica started a new generation with exactly these writes as its data (the node
    /// missed a reshard and starts empty).
    Replaced(Vec<Write>, ReplicaMeta),
    /// A reshard committed here: the keys staged for the reshard of `epoch` become the replica's
    /// data, with `writes` (this node's own keys merged at the commit) applied over them, and
    /// the replica's counters are `meta`; the staging area is gone. Stored in one atomic step
    /// whose size is that of `writes`, not of the data: a crash recovers either the old
    /// generation and the staging area or the new generation.
    Promoted {
        /// Epoch of the staged reshard (the staging area must be of this epoch).
        epoch: u64,
        /// Writes applied over the staged keys.
        writes: Vec<Write>,
        /// The replica's counters in the new generation.
        meta: ReplicaMeta,
    },
    /// The shard map in force.
    Map(ShardMap),
    /// Keys received for the reshard to `map` (the first call opens the staging area).
    Staged(ShardMap, Vec<Write>),
    /// The staging area is gone (committed or aborted).
    Unstaged,
    /// The node's incarnation (start time, kept so a restart always counts up).
    Incarnation(u64),
    /// The metadata-token keys accepted (the signing key first): without a cluster key they
    /// are random per cluster, and tokens issued before a whole-cluster crash must stay valid.
    TokenKeys(Vec<TokenKey>),
}

/// Everything kept but the writes (see [`Storage::recover`]), as read at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The replica's counters; `None` when nothing was ever kept (a new data directory).
    pub replica: Option<ReplicaMeta>,
    /// The shard map last in force.
    pub map: Option<ShardMap>,
    /// A reshard that was prepared here and neither committed nor aborted: its map (its keys
    /// went to the recovery's sink as [`Kept::Staged`]).
    pub staged: Option<ShardMap>,
    /// The incarnation of the previous run (0 if none).
    pub incarnation: u64,
    /// The metadata-token keys of the previous run.
    pub token_keys: Vec<TokenKey>,
}

/// Which kept data a recovered write belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// The replica's data.
    Replica,
    /// The keys staged for a prepared reshard ([`Recovered::staged`]).
    Staged,
}

/// Why storing or recovering failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The data directory cannot be opened or read: damaged, truncated or not ours.
    #[error(
        "data directory {path} is damaged or unreadable: {reason} (start with \
         --recover-from-peers / CKV_RECOVER_FROM_PEERS=1 to set it aside and copy the shard \
         from its peers)"
    )]
    Corrupt {
        /// The data directory.
        path: String,
        /// What the engine or decoder reported.
        reason: String,
    },
    /// Another process holds the data directory (two nodes must never share one).
    #[error(
        "data directory {path} is in use by another process (it holds {path}/{lock}); stop \
         that process or give this node its own DATA_DIR"
    )]
    Locked {
        /// The data directory.
        path: String,
        /// The lock file's name in it.
        lock: &'static str,
    },
    /// Writing failed (e.g. the disk is full): the change is not stored.
    #[error("storage write failed: {0}")]
    Write(String),
    /// The writer is gone (shutting down).
    #[error("storage is closed")]
    Closed,
}

/// A wait for a change to be stored (per the fsync policy). Dropping it does not cancel it.
pub struct Ticket(Wait);

/// What a [`Ticket`] waits for.
enum Wait {
    /// Nothing (stored already, or nothing to store).
    Done,
    /// The storage's answer.
    Reply(oneshot::Receiver<Result<(), StorageError>>),
    /// A last step the waiter runs itself (handing a commit to the OS: cheap, and shared by
    /// whoever runs it first), skipped if the ticket is dropped.
    Then(Box<dyn FnOnce() -> Result<(), StorageError> + Send>),
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.0 {
            Wait::Done => "done",
            Wait::Reply(_) => "waiting for the storage",
            Wait::Then(_) => "one step left",
        };
        f.debug_tuple("Ticket").field(&state).finish()
    }
}

impl Ticket {
    /// A ticket that is already done (nothing to store, or stored synchronously).
    pub fn done() -> Self {
        Self(Wait::Done)
    }

    /// A ticket and the sender that completes it.
    pub fn pair() -> (Self, oneshot::Sender<Result<(), StorageError>>) {
        let (tx, rx) = oneshot::channel();
        (Self(Wait::Reply(rx)), tx)
    }

    /// A ticket whose waiter finishes the storing by running `last` (it must not block for
    /// long: it runs on the waiter's task).
    pub fn then(last: impl FnOnce() -> Result<(), StorageError> + Send + 'static) -> Self {
        Self(Wait::Then(Box::new(last)))
    }

    /// A ticket that fails with `e`.
    pub fn failed(e: StorageError) -> Self {
        Self::then(move || Err(e))
    }

    /// Waits until the change is stored.
    pub async fn wait(self) -> Result<(), StorageError> {
        match self.0 {
            Wait::Done => Ok(()),
            Wait::Reply(rx) => rx.await.unwrap_or(Err(StorageError::Closed)),
            Wait::Then(last) => last(),
        }
    }
}

/// What a node keeps on disk. Implementations store the changes of one `submit` atomically and
/// in submission order; `cluster` submits under its lock so that order is the order it made them.
pub trait Storage: Send + Sync {
    /// Queues `changes` (stored together, after everything submitted before).
    fn submit(&self, changes: Vec<Change>) -> Ticket;
    /// [`Storage::submit`] for changes nobody waits for (a replica applying a peer's batch,
    /// counters): stored in the same order, but an engine may sync them later than changes a
    /// client waits for (`always`: in the OS at once, on the disk within 10 ms).
    fn submit_unwaited(&self, changes: Vec<Change>) {
        drop(self.submit(changes));
    }
    /// Reads everything kept (at start-up, before any submit): every kept write is handed to
    /// `sink` as it is read (so no list of them all is built), the rest is returned.
    fn recover(&self, sink: &mut dyn FnMut(Kept, Write)) -> Result<Recovered, StorageError>;
    /// `Err` while writes fail (e.g. a full disk): new client writes are refused up front.
    fn writable(&self) -> Result<(), StorageError>;
    /// The fsync policy (for status and logs).
    fn fsync(&self) -> Fsync;
}

/// File in a data directory found to have lost acknowledged writes: its text is the reason.
pub const DAMAGED_MARK: &str = "DAMAGED";

/// Marks `dir` damaged (see [`DAMAGED_MARK`]); best effort.
pub fn mark_damaged(dir: &std::path::Path, reason: &str) {
    if let Err(e) = std::fs::write(dir.join(DAMAGED_MARK), reason) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot mark the data directory damaged");
    }
}

/// Opens the storage `settings` ask for: `None` without a data directory (in memory, as before).
/// A damaged directory is an error naming it, unless `recover_from_peers` is set: then it is
/// renamed aside (`DIR.damaged-<ms>`) and the node starts empty and copies its shard.
pub fn open(settings: &Settings) -> Result<Option<std::sync::Arc<dyn Storage>>, StorageError> {
    let Some(dir) = &settings.data_dir else {
        return Ok(None);
    };
    let open =
        || engine::FjallStorage::open_with_reserve(dir, settings.fsync, settings.min_free_bytes);
    match open() {
        Ok(s) => Ok(Some(std::sync::Arc::new(s))),
        Err(e @ StorageError::Corrupt { .. }) if settings.recover_from_peers => {
            let aside = format!("{}.damaged-{}", dir.display(), crate::cluster::now_ms());
            tracing::warn!(error = %e, %aside, "setting the damaged data directory aside; the shard is copied from its peers");
            std::fs::rename(dir, &aside).map_err(|io| StorageError::Corrupt {
                path: dir.display().to_string(),
                reason: format!("cannot move it to {aside}: {io}"),
            })?;
            Ok(Some(std::sync::Arc::new(open()?)))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod legacy_tests;
#[cfg(test)]
mod tests;
