//! The writer thread: takes every queued submission, commits them as one atomic batch, hands it
//! to the OS and, per the fsync policy, fsyncs once for the whole group before answering them
//! all (group commit). A commit that fails (a full disk) is answered with the error, marks the
//! storage unwritable and is retried until it succeeds; it never reorders changes.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use fjall::PersistMode;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::db::{Db, Layout};
use super::ops::Ops;
use crate::storage::{Change, Fsync, StorageError};

/// Most submissions committed in one group: bounds a batch's memory while a backlog drains.
const MAX_GROUP: usize = 4_096;
/// Pause between retries of a failed commit (a full disk is freed by an operator, not by us).
const RETRY_PAUSE: Duration = Duration::from_millis(500);

pub(super) type Reply = oneshot::Sender<Result<(), StorageError>>;

/// One submission.
pub(super) struct Job {
    pub(super) changes: Vec<Change>,
    pub(super) reply: Reply,
}

/// What the writer thread shares with submitters.
pub(super) struct Shared {
    /// The last commit error, while commits fail.
    pub(super) failing: Mutex<Option<String>>,
    /// Free bytes the disk must keep: below it commits wait (see [`commit_until_stored`]).
    pub(super) min_free: u64,
}

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

/// The writer thread's state.
pub(super) struct Writer<'a> {
    pub(super) db: Db,
    pub(super) dir: &'a Path,
    pub(super) fsync: Fsync,
    pub(super) shared: &'a Shared,
    pub(super) layout: Layout,
}

impl Writer<'_> {
    /// Take every queued job, commit them as one group, answer them all; until the queue closes.
    pub(super) fn run(mut self, rx: Receiver<Job>) {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        loop {
            let first = match self.fsync {
                Fsync::Batch(every) if unsynced => {
                    match rx.recv_timeout(every.saturating_sub(last_sync.elapsed())) {
                        Ok(job) => Some(job),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match rx.recv() {
                    Ok(job) => Some(job),
                    Err(_) => break,
                },
            };
            let mut jobs: Vec<Job> = first.into_iter().collect();
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if !jobs.is_empty() {
                let (changes, replies): (Vec<_>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.changes, Some(j.reply))).unzip();
                self.commit_until_stored(&changes, replies);
                unsynced = true;
            }
            if let Fsync::Batch(every) = self.fsync
                && unsynced
                && last_sync.elapsed() >= every
            {
                match self.db.ks.persist(PersistMode::SyncAll) {
                    Ok(()) => unsynced = false,
                    Err(e) => warn!(error = %e, "periodic fsync failed"),
                }
                last_sync = Instant::now();
            }
        }
        if let Err(e) = self.db.ks.persist(PersistMode::SyncAll) {
            warn!(error = %e, "final fsync failed");
        }
    }

    /// Commits one group and makes it as durable as the policy asks before returning; moves
    /// the layout along when it did.
    fn commit(&mut self, jobs: &[Vec<Change>]) -> Result<(), StorageError> {
        let fail = |e: fjall::Error| StorageError::Write(e.to_string());
        let mut ops = Ops::default();
        let mut layout = self.layout.clone();
        for changes in jobs {
            self.db.add(&mut ops, changes, &mut layout)?;
        }
        ops.into_batch(&self.db.ks).commit().map_err(fail)?;
        // fdatasync: the journal's data and what reading it back needs (its size, its blocks),
        // not its timestamps (measured ~8 % cheaper per group than fsync on this machine)
        let mode = match self.fsync {
            Fsync::Always => PersistMode::SyncData,
            Fsync::Batch(_) | Fsync::Off => PersistMode::Buffer,
        };
        self.db.ks.persist(mode).map_err(fail)?;
        self.layout = layout;
        Ok(())
    }

    /// Drops the areas no pointer names any more. The commit that moved the pointers is made
    /// durable first, whatever the policy: an area must never be gone before its replacement
    /// is on the disk.
    fn sweep(&mut self) {
        let swept = match self.fsync {
            Fsync::Always => Ok(()),
            _ => self.db.ks.persist(PersistMode::SyncAll),
        }
        .and_then(|()| self.db.sweep(&self.layout));
        if let Err(e) = swept {
            warn!(error = %e, "dropping old data from storage failed (it is ignored, and dropped at the next start)");
        }
    }

    /// Commits a group; on failure answers it with the error at once, then retries until the
    /// commit succeeds (changes are never dropped or reordered), unwritable meanwhile. A commit
    /// is not attempted while the disk has less than `min_free` bytes free: fjall refuses every
    /// write after a failed journal write (until the process restarts), so the node stops
    /// taking writes before the disk is really full and takes them again once space returns.
    fn commit_until_stored(&mut self, changes: &[Vec<Change>], mut replies: Vec<Option<Reply>>) {
        let mut reported = false;
        loop {
            let before = self.layout.clone();
            let attempt = match free_bytes(self.dir) {
                Some(free) if free < self.shared.min_free => Err(StorageError::Write(format!(
                    "no space: {free} bytes free under {}, below the reserve of {} (CKV_MIN_FREE_MB)",
                    self.dir.display(),
                    self.shared.min_free
                ))),
                _ => self.commit(changes),
            };
            match attempt {
                Ok(()) => {
                    let was = self
                        .shared
                        .failing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    if was.is_some() {
                        info!("storage writes succeed again");
                    }
                    for r in replies.iter_mut().filter_map(Option::take) {
                        let _ = r.send(Ok(()));
                    }
                    if !before.same_areas(&self.layout) {
                        self.sweep();
                    }
                    return;
                }
                Err(e) => {
                    if !reported {
                        error!(error = %e, "storage commit failed; writes are refused until it succeeds");
                        *self
                            .shared
                            .failing
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                        reported = true;
                    }
                    for r in replies.iter_mut().filter_map(Option::take) {
                        let _ = r.send(Err(e.clone()));
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }
}
