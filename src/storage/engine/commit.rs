//! Committing. A submission is appended to the pending changes under the core's lock (taken
//! under the node's lock, so they keep the order they were made in) and committed by whoever
//! needs it stored first: its own waiter, which commits every pending change at once as one
//! atomic fjall batch (so concurrent writes share a commit and no thread hand-off sits in the
//! way), or the background thread (`always`, and changes nobody waits for). The journal takes a
//! commit in the process's buffer; the waiter then hands it to the OS, or waits for the sync.
//! A commit is not attempted while the disk is below its reserve of free space: fjall refuses
//! every write after a failed journal write (until the process restarts), so the node stops
//! taking writes before the disk is really full. Changes that fail to commit stay pending,
//! ahead of everything submitted after them, and are retried until they commit: nothing is
//! dropped or reordered.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::db::{Db, Layout};
use super::ops::Ops;
use crate::storage::{Change, StorageError};

/// How long a free-space reading is trusted at most: the engine's background flushes and
/// compactions write too, not only our commits.
const SPACE_FRESH: Duration = Duration::from_millis(50);
/// Share of the headroom a free-space reading showed that commits may use before the next
/// reading (the rest covers what the engine writes beside them meanwhile).
const SPACE_SHARE: u64 = 4;

/// Answers a submitter.
pub(super) type Reply = oneshot::Sender<Result<(), StorageError>>;

/// Bytes available to us on the file system of `dir` (`None` if it cannot be asked).
#[allow(clippy::useless_conversion)] // the statvfs field types differ between platforms
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid statvfs to fill.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// The reserve of free space, read from the file system only now and then (a `statvfs` per
/// commit cost more than the commit's journal write).
struct Reserve {
    dir: PathBuf,
    min_free: u64,
    /// When the last reading was taken, while it is trusted.
    read_at: Option<Instant>,
    /// Bytes commits may still write before the next reading.
    budget: u64,
}

impl Reserve {
    /// `Err` when committing `bytes` more could take the disk below the reserve.
    fn check(&mut self, bytes: u64) -> Result<(), StorageError> {
        if self.min_free == 0 {
            return Ok(());
        }
        if self.read_at.is_some_and(|t| t.elapsed() < SPACE_FRESH) && bytes <= self.budget {
            self.budget -= bytes;
            return Ok(());
        }
        self.read_at = None;
        match free_bytes(&self.dir) {
            Some(free) if free < self.min_free.saturating_add(bytes) => {
                Err(StorageError::Write(format!(
                    "no space: {free} bytes free under {}, below the reserve of {} (CKV_MIN_FREE_MB)",
                    self.dir.display(),
                    self.min_free
                )))
            }
            Some(free) => {
                self.read_at = Some(Instant::now());
                self.budget = ((free - self.min_free) / SPACE_SHARE).saturating_sub(bytes);
                Ok(())
            }
            // cannot ask: commit, as a disk without a reserve would
            None => Ok(()),
        }
    }
}

/// The engine and what commits share, behind one lock.
pub(super) struct Core {
    pub(super) db: Db,
    layout: Layout,
    reserve: Reserve,
    /// Changes submitted and not committed yet, in order.
    pending: Vec<Change>,
    /// Number of the last submission.
    submitted: u64,
    /// Number of the last submission committed.
    pub(super) committed: u64,
    /// Submitters waiting for their submission to be synced (`always`), by number.
    pub(super) waiting: Vec<(u64, Reply)>,
    /// True when a commit moved an area: the areas no pointer names are dropped once that
    /// commit is on the disk.
    pub(super) moved: bool,
}

impl Core {
    pub(super) fn new(db: Db, layout: Layout, dir: &Path, min_free: u64) -> Self {
        Self {
            db,
            layout,
            reserve: Reserve {
                dir: dir.to_path_buf(),
                min_free,
                read_at: None,
                budget: 0,
            },
            pending: Vec::new(),
            submitted: 0,
            committed: 0,
            waiting: Vec::new(),
            moved: false,
        }
    }

    /// Takes a submission; returns its number.
    pub(super) fn submit(&mut self, changes: Vec<Change>) -> u64 {
        if self.pending.is_empty() {
            self.pending = changes;
        } else {
            self.pending.extend(changes);
        }
        self.submitted += 1;
        self.submitted
    }

    /// Changes pending.
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Commits every pending change as one atomic batch (nothing if none is). On failure they
    /// stay pending and the layout stays as it was.
    pub(super) fn commit(&mut self) -> Result<(), StorageError> {
        if self.committed == self.submitted {
            return Ok(());
        }
        let mut ops = Ops::default();
        let mut layout = self.layout.clone();
        self.db.add(&mut ops, &self.pending, &mut layout)?;
        self.reserve.check(ops.bytes())?;
        ops.into_batch(&self.db.ks)
            .commit()
            .map_err(|e| StorageError::Write(e.to_string()))?;
        self.moved |= !layout.same_areas(&self.layout);
        self.layout = layout;
        self.pending.clear();
        self.committed = self.submitted;
        Ok(())
    }

    /// Drops the areas no pointer names any more (call once the commit that moved them is on
    /// the disk: an area must never be gone before its replacement is).
    pub(super) fn sweep(&mut self) -> Result<(), fjall::Error> {
        self.moved = false;
        self.db.sweep(&self.layout)
    }
}
