//! The fjall implementation of [`Storage`] (chosen over redb by measurement, see
//! `bench/engines/RESULTS.md`): `db` says what is where in the keyspace, `commit` writes a
//! submission there and then (under the caller's lock), `background` syncs (group commit) and
//! retries. The data directory is locked (`LOCK`, `flock`) while a process has it open: a
//! second node started on it refuses to start, naming it.

mod background;
mod commit;
mod db;
mod ops;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tracing::{info, warn};

use super::{Change, Fsync, Kept, Recovered, Storage, StorageError, Ticket};
use crate::domain::store::Write;
use background::{Background, LEFTOVER_MAX, Shared};
use commit::Core;
use db::Db;

/// The lock file in a data directory.
pub const LOCK_FILE: &str = "LOCK";

/// fjall's block cache: the engine is read only at start-up (one scan, which the cache does not
/// help) and to check counters, so a small cache is enough and keeps memory per key low (what
/// the start-up scan leaves in it stays resident).
const CACHE_BYTES: u64 = 1 << 20;

/// Storage on fjall; see the module doc.
pub struct FjallStorage {
    dir: PathBuf,
    /// The engine until recovery has read it (then it is the core's).
    db: Mutex<Option<Db>>,
    fsync: Fsync,
    min_free: u64,
    shared: Arc<Shared>,
    background: Mutex<Option<JoinHandle<()>>>,
    /// The locked `LOCK` file: held until this is dropped (after the engine closed).
    _lock: File,
}

/// Locks `dir` for this process (an advisory `flock` on `dir/LOCK`, released by the kernel when
/// the process ends, however it ends).
fn lock(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::Corrupt {
            path: dir.display().to_string(),
            reason: format!("cannot open {}: {e}", path.display()),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked {
            path: dir.display().to_string(),
            lock: LOCK_FILE,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StorageError::Corrupt {
            path: dir.display().to_string(),
            reason: format!("cannot lock {}: {e}", path.display()),
        }),
    }
}

impl FjallStorage {
    /// Opens (or creates) the data directory `dir`; a damaged one is [`StorageError::Corrupt`].
    pub fn open(dir: &Path, fsync: Fsync) -> Result<Self, StorageError> {
        Self::open_with_reserve(dir, fsync, 0)
    }

    /// [`FjallStorage::open`], refusing writes while fewer than `min_free` bytes are free.
    pub fn open_with_reserve(
        dir: &Path,
        fsync: Fsync,
        min_free: u64,
    ) -> Result<Self, StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| corrupt(format!("cannot create it: {e}")))?;
        let lock = lock(dir)?;
        let db = Db::open(dir, CACHE_BYTES).map_err(|e| corrupt(e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            shared: Arc::new(Shared::new(db.ks.clone())),
            db: Mutex::new(Some(db)),
            fsync,
            min_free,
            background: Mutex::new(None),
            _lock: lock,
        })
    }

    /// Syncs of the journal the storage made so far (`always` and `batch`).
    pub fn journal_syncs(&self) -> u64 {
        self.shared.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn start_background(&self) {
        let (shared, fsync, dir) = (self.shared.clone(), self.fsync, self.dir.clone());
        let handle = std::thread::Builder::new()
            .name("ckv-storage".into())
            .spawn(move || Background::new(&shared, fsync, &dir).run())
            .expect("spawn the storage thread");
        *self.background.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }
}

impl Drop for FjallStorage {
    /// Closes: the background thread syncs and closes the engine and is waited for (so the
    /// engine is closed when this returns), unless it is retrying a failed commit, which must
    /// not hold the process.
    fn drop(&mut self) {
        self.shared.close();
        let background = self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = background
            && self.writable().is_ok()
        {
            let _ = h.join();
        }
    }
}

impl Storage for FjallStorage {
    fn submit(&self, changes: Vec<Change>) -> Ticket {
        let mut guard = self.shared.core();
        let Some(core) = guard.as_mut() else {
            return Ticket::failed(StorageError::Closed);
        };
        let n = core.submit(changes);
        let (ticket, poke) = if self.fsync == Fsync::Always {
            let (ticket, reply) = Ticket::pair();
            core.waiting.push((n, reply));
            (ticket, true)
        } else {
            let shared = self.shared.clone();
            let ticket = Ticket::then(move || shared.store(n));
            (ticket, core.pending() >= LEFTOVER_MAX || core.moved)
        };
        drop(guard);
        if poke {
            self.shared.poke();
        }
        ticket
    }

    fn submit_unwaited(&self, changes: Vec<Change>) {
        let mut guard = self.shared.core();
        let Some(core) = guard.as_mut() else {
            return;
        };
        core.submit(changes);
        // `always`: committed and handed to the OS at once, synced within 10 ms (no waiter,
        // so no sync of its own); otherwise as a submission whose ticket is dropped
        let poke = self.fsync == Fsync::Always || core.pending() >= LEFTOVER_MAX || core.moved;
        drop(guard);
        if poke {
            self.shared.poke();
        }
    }

    fn recover(&self, sink: &mut dyn FnMut(Kept, Write)) -> Result<Recovered, StorageError> {
        let Some(mut db) = self.db.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Err(StorageError::Closed);
        };
        let mut keys = 0usize;
        let mut counting = |kept, w| {
            keys += 1;
            sink(kept, w)
        };
        let (r, layout) = db
            .recover(&mut counting)
            .map_err(|reason| StorageError::Corrupt {
                path: self.dir.display().to_string(),
                reason,
            })?;
        if let Err(e) = db.sweep(&layout) {
            warn!(error = %e, "dropping data a crash left behind failed (it is ignored)");
        }
        info!(dir = %self.dir.display(), keys,
              generation = r.replica.as_ref().map(|m| m.generation),
              map_epoch = r.map.as_ref().map(|m| m.epoch), fsync = self.fsync.name(),
              "opened the data directory");
        *self.shared.core() = Some(Core::new(db, layout, &self.dir, self.min_free));
        self.start_background();
        Ok(r)
    }

    fn writable(&self) -> Result<(), StorageError> {
        match &*self
            .shared
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            Some(e) => Err(StorageError::Write(e.clone())),
            None => Ok(()),
        }
    }

    fn fsync(&self) -> Fsync {
        self.fsync
    }
}
