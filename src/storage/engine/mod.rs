//! The fjall implementation of [`Storage`] (chosen over redb by measurement, see
//! `bench/engines/RESULTS.md`): `db` says what is where in the keyspace, `writer` is the one
//! thread that commits (group commit). The data directory is locked (`LOCK`, `flock`) while a
//! process has it open: a second node started on it refuses to start, naming it.

mod db;
mod ops;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tracing::{info, warn};

use super::{Change, Fsync, Kept, Recovered, Storage, StorageError, Ticket};
use crate::domain::store::Write;
use db::{Db, Layout};
use writer::{Job, Shared, Writer};

/// The lock file in a data directory.
pub const LOCK_FILE: &str = "LOCK";

/// fjall's block cache: the engine is read only at start-up (one scan, which the cache does not
/// help) and to check counters, so a small cache is enough and keeps memory per key low.
const CACHE_BYTES: u64 = 4 << 20;

/// Storage on fjall; see the module doc.
pub struct FjallStorage {
    dir: PathBuf,
    /// The engine until the writer thread takes it (at recovery).
    db: Mutex<Option<Db>>,
    fsync: Fsync,
    tx: Mutex<Option<Sender<Job>>>,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The locked `LOCK` file: held until this is dropped (after the writer ended).
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
            db: Mutex::new(Some(db)),
            fsync,
            tx: Mutex::new(None),
            shared: Arc::new(Shared {
                failing: Mutex::new(None),
                min_free,
            }),
            writer: Mutex::new(None),
            _lock: lock,
        })
    }

    fn start_writer(&self, db: Db, layout: Layout) {
        let (tx, rx) = channel();
        let (dir, fsync, shared) = (self.dir.clone(), self.fsync, self.shared.clone());
        let handle = std::thread::Builder::new()
            .name("ckv-storage".into())
            .spawn(move || {
                let writer = Writer {
                    db,
                    dir: &dir,
                    fsync,
                    shared: &shared,
                    layout,
                };
                writer.run(rx)
            })
            .expect("spawn the storage writer thread");
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }
}

impl Drop for FjallStorage {
    /// Closes the queue: the writer commits what is queued, fsyncs and ends, and is waited for
    /// (so the engine is closed when this returns), unless it is retrying a failed commit,
    /// which must not hold the process.
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = writer
            && self.writable().is_ok()
        {
            let _ = h.join();
        }
    }
}

impl Storage for FjallStorage {
    fn submit(&self, changes: Vec<Change>) -> Ticket {
        let (ticket, reply) = Ticket::pair();
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match tx.as_ref() {
            Some(tx) => {
                if let Err(e) = tx.send(Job { changes, reply }) {
                    let _ = e.0.reply.send(Err(StorageError::Closed));
                }
            }
            None => {
                let _ = reply.send(Err(StorageError::Closed));
            }
        }
        ticket
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
        self.start_writer(db, layout);
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
