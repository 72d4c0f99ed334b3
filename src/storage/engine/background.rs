//! The storage's background thread. Per the fsync policy it forces commits to the disk
//! (`always`: as soon as a submitter waits, it commits everything pending and syncs it at once,
//! then answers every submitter it covered: group commit; `batch`: every interval), commits the
//! changes nobody waits for (replicated writes) soon after they are submitted (`always`: hands
//! them to the OS at once and syncs them within 10 ms, or with the next waited-for sync), retries commits
//! that failed, and drops the areas a commit replaced once that commit is on the disk.
//!
//! It syncs the journal through a file handle of its own: fjall syncs under its journal lock,
//! which would stop every commit (and with it the node's lock, under which changes are
//! submitted) for the whole fdatasync, while an fdatasync of any handle of the file covers every
//! write made to it before the call.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fjall::{Keyspace, PersistMode};
use tracing::{error, info, warn};

use super::commit::{Core, Reply};
use crate::storage::{Fsync, StorageError};

/// Pause between retries of a failed commit (a full disk is freed by an operator, not by us).
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long changes nobody waits for (replicated writes) stay pending at most before the
/// background thread commits them and hands them to the OS: a killed process loses no more
/// than that of them (its peers still hold them, and the node's counters roll back with them),
/// and a commit stays small.
const LEFTOVER_EVERY: Duration = Duration::from_millis(10);
/// Pending changes that make a submission wake the background thread to commit them at once.
pub(super) const LEFTOVER_MAX: usize = 256;
/// fjall's folder of journals in a data directory, each named by its number.
const JOURNALS: &str = "journals";

/// What submitters and the background thread share.
pub(super) struct Shared {
    /// The engine and its commit state, once recovery has read it.
    pub(super) core: Mutex<Option<Core>>,
    /// The engine's handle (to hand commits to the OS without the core's lock).
    pub(super) ks: Keyspace,
    /// The last commit error, while commits fail.
    pub(super) failing: Mutex<Option<String>>,
    /// Syncs of the journal made so far.
    pub(super) syncs: AtomicU64,
    signal: Mutex<Signal>,
    wake: Condvar,
}

#[derive(Default)]
struct Signal {
    /// Something to do (a commit to sync, a queue to retry).
    work: bool,
    /// The storage is being dropped: finish and end.
    closing: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(super) fn new(ks: Keyspace) -> Self {
        Self {
            core: Mutex::new(None),
            ks,
            failing: Mutex::new(None),
            syncs: AtomicU64::new(0),
            signal: Mutex::new(Signal::default()),
            wake: Condvar::new(),
        }
    }

    pub(super) fn core(&self) -> MutexGuard<'_, Option<Core>> {
        lock(&self.core)
    }

    /// Wakes the background thread.
    pub(super) fn poke(&self) {
        lock(&self.signal).work = true;
        self.wake.notify_one();
    }

    /// Tells the background thread to finish.
    pub(super) fn close(&self) {
        lock(&self.signal).closing = true;
        self.wake.notify_one();
    }

    /// Commits what `core` holds pending, keeping track of whether commits fail (a failure is
    /// logged once, and refuses new client writes until a commit succeeds again).
    pub(super) fn commit(&self, core: &mut Core) -> Result<(), StorageError> {
        let result = core.commit();
        let mut failing = lock(&self.failing);
        match &result {
            Ok(()) => {
                if failing.take().is_some() {
                    info!("storage writes succeed again");
                }
            }
            Err(e) => {
                if failing.is_none() {
                    error!(error = %e, "storage commit failed; writes are refused until it succeeds");
                }
                *failing = Some(e.to_string());
            }
        }
        result
    }

    /// Makes submission `n` stored per `batch` or `off`: committed (with everything pending
    /// before and beside it) and handed to the OS.
    pub(super) fn store(&self, n: u64) -> Result<(), StorageError> {
        {
            let mut guard = self.core();
            if let Some(core) = guard.as_mut()
                && core.committed < n
                && let Err(e) = self.commit(core)
            {
                drop(guard);
                self.poke();
                return Err(e);
            }
        }
        self.flush()
    }

    /// Hands what commits left in the journal's buffer to the OS.
    pub(super) fn flush(&self) -> Result<(), StorageError> {
        self.ks
            .persist(PersistMode::Buffer)
            .map_err(|e| StorageError::Write(e.to_string()))
    }

    /// Waits up to `limit` for work; returns whether the storage is closing.
    fn wait(&self, limit: Option<Duration>) -> bool {
        let mut s = lock(&self.signal);
        if !s.work && !s.closing {
            s = match limit {
                Some(d) => {
                    self.wake
                        .wait_timeout_while(s, d, |s| !s.work && !s.closing)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self
                    .wake
                    .wait_while(s, |s| !s.work && !s.closing)
                    .unwrap_or_else(|p| p.into_inner()),
            };
        }
        s.work = false;
        s.closing
    }
}

/// The engine's active journal, opened by us. fjall keeps its journals in
/// `<dir>/journals/<number>`, the active one the highest, and a rotation syncs the journal it
/// leaves before it creates the next number; so syncing the highest number found after a
/// commit covers the commit. `None` (an unexpected layout) falls back on fjall's own sync.
struct Journal {
    dir: PathBuf,
    number: u64,
    file: File,
}

impl Journal {
    fn open(data_dir: &Path) -> Option<Self> {
        let dir = data_dir.join(JOURNALS);
        let number = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()?;
        let file = File::open(dir.join(number.to_string())).ok()?;
        Some(Self { dir, number, file })
    }

    /// fdatasync of the active journal (following any rotation since the last call).
    fn sync(&mut self) -> std::io::Result<()> {
        while let Ok(next) = File::open(self.dir.join((self.number + 1).to_string())) {
            self.number += 1;
            self.file = next;
        }
        self.file.sync_data()
    }
}

/// The background thread's state.
pub(super) struct Background<'a> {
    pub(super) shared: &'a Shared,
    pub(super) fsync: Fsync,
    journal: Option<Journal>,
    /// Number of the last commit known to be on the disk (or, `off`, in the OS).
    synced: u64,
    last_sync: Instant,
    /// `always`: since when commits nobody waits for (replicated writes, counters) are in the
    /// OS but not synced yet; they are synced within [`LEFTOVER_EVERY`], or sooner by the
    /// sync of a write somebody waits for.
    unsynced_since: Option<Instant>,
}

impl<'a> Background<'a> {
    pub(super) fn new(shared: &'a Shared, fsync: Fsync, dir: &Path) -> Self {
        let journal = Journal::open(dir);
        if journal.is_none() {
            warn!(dir = %dir.display(), "cannot open the engine's journal to sync it; syncing through the engine (commits wait for each sync)");
        }
        Self {
            shared,
            fsync,
            journal,
            synced: 0,
            last_sync: Instant::now(),
            unsynced_since: None,
        }
    }

    /// Works until the storage closes, then commits what is pending, syncs and drops the
    /// engine.
    pub(super) fn run(mut self) {
        loop {
            let limit = match self.fsync {
                Fsync::Always => self
                    .unsynced_since
                    .map(|t| LEFTOVER_EVERY.saturating_sub(t.elapsed())),
                Fsync::Batch(every) => {
                    Some(LEFTOVER_EVERY.min(every.saturating_sub(self.last_sync.elapsed())))
                }
                Fsync::Off => Some(LEFTOVER_EVERY),
            };
            let closing = self.shared.wait(limit);
            let stored = match self.fsync {
                Fsync::Always => self.commit_and_sync(closing),
                Fsync::Batch(every) => self.commit().and_then(|()| {
                    if closing || self.last_sync.elapsed() >= every {
                        self.sync(Vec::new())
                    } else {
                        self.shared.flush()
                    }
                }),
                Fsync::Off => self.commit().and_then(|()| self.shared.flush()),
            };
            self.sweep();
            if stored.is_err() {
                std::thread::sleep(RETRY_PAUSE);
                self.shared.poke();
            } else if closing {
                break;
            }
        }
        if let Err(e) = self.shared.ks.persist(PersistMode::SyncAll) {
            warn!(error = %e, "final fsync failed");
        }
        self.shared.core().take();
    }

    /// Commits what is pending.
    fn commit(&self) -> Result<(), StorageError> {
        match self.shared.core().as_mut() {
            Some(core) => self.shared.commit(core),
            None => Ok(()),
        }
    }

    /// `always`: commits what is pending, syncs it and answers who waited for it. When nobody
    /// waits (every submitter dropped its ticket: a replica applying a peer's batch, counters),
    /// the commit goes to the OS at once and to the disk within [`LEFTOVER_EVERY`]: replicas
    /// syncing every batch they receive tripled the cluster's fdatasyncs, and slowed the syncs
    /// clients wait for (the accepting node has the write on its disk before it answers).
    fn commit_and_sync(&mut self, closing: bool) -> Result<(), StorageError> {
        let (committed, mut waiting) = match self.shared.core().as_mut() {
            Some(core) => (self.shared.commit(core), std::mem::take(&mut core.waiting)),
            None => return Ok(()),
        };
        waiting.retain(|(_, r)| !r.is_closed());
        let due = self
            .unsynced_since
            .is_some_and(|t| t.elapsed() >= LEFTOVER_EVERY);
        if committed.is_ok() && waiting.is_empty() && !closing && !due {
            let flushed = self.shared.flush();
            if flushed.is_ok() {
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
            return flushed;
        }
        match committed {
            Ok(()) => self.sync(waiting),
            Err(e) => {
                answer(waiting.into_iter().map(|(_, r)| r), &Err(e.clone()));
                Err(e)
            }
        }
    }

    /// Syncs every commit made so far and answers `waiting`.
    fn sync(&mut self, waiting: Vec<(u64, Reply)>) -> Result<(), StorageError> {
        let target = match self.shared.core().as_ref() {
            Some(core) => core.committed,
            None => return Ok(()),
        };
        self.last_sync = Instant::now();
        if target == self.synced && waiting.is_empty() {
            return Ok(());
        }
        let synced = self.shared.flush().and_then(|()| {
            match &mut self.journal {
                Some(j) => j.sync(),
                None => self
                    .shared
                    .ks
                    .persist(PersistMode::SyncData)
                    .map_err(|e| std::io::Error::other(e.to_string())),
            }
            .map_err(|e| StorageError::Write(format!("fdatasync of the journal: {e}")))
        });
        match &synced {
            Ok(()) => {
                self.synced = target;
                self.unsynced_since = None;
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => warn!(error = %e, "syncing the journal failed"),
        }
        answer(waiting.into_iter().map(|(_, r)| r), &synced);
        synced
    }

    /// Drops the areas a commit replaced, once that commit is durable whatever the policy.
    fn sweep(&mut self) {
        let mut guard = self.shared.core();
        let Some(core) = guard.as_mut().filter(|c| c.moved) else {
            return;
        };
        let swept = self
            .shared
            .ks
            .persist(PersistMode::SyncAll)
            .and_then(|()| core.sweep());
        if let Err(e) = swept {
            warn!(error = %e, "dropping old data from storage failed (it is ignored, and dropped at the next start)");
        }
    }
}

fn answer(replies: impl IntoIterator<Item = Reply>, result: &Result<(), StorageError>) {
    for r in replies {
        let _ = r.send(result.clone());
    }
}
