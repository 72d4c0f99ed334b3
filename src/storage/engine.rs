//! The fjall implementation of [`Storage`] (chosen over redb by measurement, see
//! `bench/engines/RESULTS.md`): two partitions (`data`: the replica's writes keyed by
//! generation and key, and its counters, map, incarnation and token keys; `staged`: a reshard's
//! keys keyed by epoch and key, and its map) and one writer thread that commits everything queued in one atomic batch, hands
//! it to the OS and, per the fsync policy, fsyncs once for the whole group before answering.
//!
//! A commit that fails (a full disk) is answered with the error, marks the storage unwritable
//! and is retried until it succeeds; it never reorders changes.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::codec::{self, Malformed};
use super::{Change, Fsync, Recovered, Storage, StorageError, Ticket};
use crate::domain::store::Write;

/// Most submissions committed in one group: bounds a batch's memory while a backlog drains.
const MAX_GROUP: usize = 4_096;
/// Pause between retries of a failed commit (a full disk is freed by an operator, not by us).
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Keys deleted per batch when old generations or staged keys are dropped.
const CLEANUP_BATCH: usize = 10_000;

// Counters live in the `data` partition beside the writes they describe (fjall recovers each
// partition to a consistent point, not necessarily the same one for two partitions), under
// keys shorter than the 8-byte prefix of every write's key, so they never collide.
const META_REPLICA: &str = "replica";
const META_MAP: &str = "map";
const META_INCARNATION: &str = "incarn";
const META_TOKEN_KEYS: &str = "tokens";
// The staged map lives in the `staged` partition, beside the staged keys.
const META_STAGED_MAP: &str = "map";

type Reply = oneshot::Sender<Result<(), StorageError>>;

/// One submission.
struct Job {
    changes: Vec<Change>,
    reply: Reply,
}

/// The engine's handles.
#[derive(Clone)]
struct Db {
    ks: Keyspace,
    data: PartitionHandle,
    staged: PartitionHandle,
}

/// `prefix` (a generation or epoch, big-endian) then `key`.
fn prefixed(prefix: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&prefix.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

fn fail(e: impl std::fmt::Display) -> StorageError {
    StorageError::Write(e.to_string())
}

/// Work left after a commit: keys of other generations or epochs to delete.
#[derive(Default)]
struct Cleanup {
    data_except: Option<u64>,
    staged_except: Option<Option<u64>>,
}

impl Db {
    fn open(dir: &Path) -> Result<Self, fjall::Error> {
        let ks = fjall::Config::new(dir).open()?;
        let opts = PartitionCreateOptions::default;
        Ok(Self {
            data: ks.open_partition("data", opts())?,
            staged: ks.open_partition("staged", opts())?,
            ks,
        })
    }

    /// Adds `changes` to `batch`; `staged_epoch` tracks the staging area's epoch.
    fn add(
        &self,
        batch: &mut Ops,
        changes: &[Change],
        staged_epoch: &mut Option<u64>,
        cleanup: &mut Cleanup,
    ) {
        for change in changes {
            match change {
                Change::Applied(writes, meta) | Change::Replaced(writes, meta) => {
                    for w in writes {
                        let key = prefixed(meta.generation, &w.key);
                        batch.put(false, key, codec::encode_write(w));
                    }
                    batch.put(false, META_REPLICA, codec::encode_replica(meta));
                    if matches!(change, Change::Replaced(..)) {
                        cleanup.data_except = Some(meta.generation);
                    }
                }
                Change::Map(map) => batch.put(false, META_MAP, codec::encode_map(map)),
                Change::Staged(map, writes) => {
                    if *staged_epoch != Some(map.epoch) {
                        *staged_epoch = Some(map.epoch);
                        cleanup.staged_except = Some(Some(map.epoch));
                        batch.put(true, META_STAGED_MAP, codec::encode_map(map));
                    }
                    for w in writes {
                        let key = prefixed(map.epoch, &w.key);
                        batch.put(true, key, codec::encode_write(w));
                    }
                }
                Change::Unstaged => {
                    *staged_epoch = None;
                    cleanup.staged_except = Some(None);
                    batch.del(true, META_STAGED_MAP);
                }
                Change::Incarnation(n) => {
                    batch.put(false, META_INCARNATION, codec::encode_u64(*n));
                }
                Change::TokenKeys(keys) => {
                    batch.put(false, META_TOKEN_KEYS, codec::encode_keys(keys));
                }
            }
        }
    }

    /// Deletes every prefixed key of `part` whose 8-byte prefix is not `keep` (the shorter
    /// counter keys stay).
    fn drop_prefixes(&self, part: &PartitionHandle, keep: Option<u64>) -> Result<(), fjall::Error> {
        let mut doomed = Vec::new();
        for kv in part.keys() {
            let k = kv?;
            let Some(p) = k.get(..8).and_then(|b| b.try_into().ok()) else {
                continue;
            };
            if Some(u64::from_be_bytes(p)) != keep {
                doomed.push(k);
            }
        }
        for chunk in doomed.chunks(CLEANUP_BATCH) {
            let mut b = self.ks.batch();
            for k in chunk {
                b.remove(part, k.clone());
            }
            b.commit()?;
        }
        Ok(())
    }

    fn run_cleanup(&self, c: Cleanup) -> Result<(), fjall::Error> {
        if let Some(keep) = c.data_except {
            self.drop_prefixes(&self.data, Some(keep))?;
        }
        if let Some(keep) = c.staged_except {
            self.drop_prefixes(&self.staged, keep)?;
        }
        Ok(())
    }

    fn writes_under(part: &PartitionHandle, prefix: u64) -> Result<Vec<Write>, String> {
        let mut out = Vec::new();
        for kv in part.prefix(prefix.to_be_bytes()) {
            let (k, v) = kv.map_err(|e| e.to_string())?;
            let w = codec::decode_write(&k[8..], &v).map_err(|Malformed(m)| m.to_string())?;
            out.push(w);
        }
        Ok(out)
    }

    fn recover(&self) -> Result<(Recovered, Option<u64>), String> {
        let get = |k: &str| self.data.get(k).map_err(|e| e.to_string());
        let bad = |Malformed(m)| m.to_string();
        let mut r = Recovered::default();
        if let Some(b) = get(META_REPLICA)? {
            let meta = codec::decode_replica(&b).map_err(bad)?;
            r.writes = Self::writes_under(&self.data, meta.generation)?;
            r.replica = Some(meta);
        }
        if let Some(b) = get(META_MAP)? {
            r.map = Some(codec::decode_map(&b).map_err(bad)?);
        }
        let mut staged_epoch = None;
        if let Some(b) = self
            .staged
            .get(META_STAGED_MAP)
            .map_err(|e| e.to_string())?
        {
            let map = codec::decode_map(&b).map_err(bad)?;
            staged_epoch = Some(map.epoch);
            r.staged = Some((map.clone(), Self::writes_under(&self.staged, map.epoch)?));
        }
        if let Some(b) = get(META_INCARNATION)? {
            r.incarnation = codec::decode_u64(&b).map_err(bad)?;
        }
        if let Some(b) = get(META_TOKEN_KEYS)? {
            r.token_keys = codec::decode_keys(&b).map_err(bad)?;
        }
        Ok((r, staged_epoch))
    }
}

/// What the writer thread shares with submitters.
struct Shared {
    /// The last commit error, while commits fail.
    failing: Mutex<Option<String>>,
    /// Free bytes the disk must keep: below it commits wait (see [`commit_until_stored`]).
    min_free: u64,
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

/// Storage on fjall; see the module doc.
pub struct FjallStorage {
    dir: PathBuf,
    /// The engine until the writer thread takes it (at recovery).
    db: Mutex<Option<Db>>,
    fsync: Fsync,
    tx: Mutex<Option<Sender<Job>>>,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
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
        let db = Db::open(dir).map_err(|e| corrupt(e.to_string()))?;
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
        })
    }

    fn start_writer(&self, db: Db, staged_epoch: Option<u64>) {
        let (tx, rx) = channel();
        let (dir, fsync, shared) = (self.dir.clone(), self.fsync, self.shared.clone());
        let handle = std::thread::Builder::new()
            .name("ckv-storage".into())
            .spawn(move || writer(db, &dir, rx, fsync, shared, staged_epoch))
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

    fn recover(&self) -> Result<Recovered, StorageError> {
        let Some(db) = self.db.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Err(StorageError::Closed);
        };
        let (r, staged_epoch) = db.recover().map_err(|reason| StorageError::Corrupt {
            path: self.dir.display().to_string(),
            reason,
        })?;
        info!(dir = %self.dir.display(), keys = r.writes.len(),
              generation = r.replica.as_ref().map(|m| m.generation),
              map_epoch = r.map.as_ref().map(|m| m.epoch), fsync = self.fsync.name(),
              "opened the data directory");
        self.start_writer(db, staged_epoch);
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

/// One group's key updates, the last one per key kept: fjall gives every item of a batch the
/// same sequence number, so two updates of one key in a batch (a key replicated twice in one
/// batch, the counters of every job of a group) would leave either one standing.
#[derive(Default)]
struct Ops {
    /// (staged partition?, key) → value, `None` = delete.
    keys: std::collections::HashMap<(bool, Vec<u8>), Option<Vec<u8>>>,
}

impl Ops {
    fn put(&mut self, staged: bool, key: impl AsRef<[u8]>, value: Vec<u8>) {
        self.keys
            .insert((staged, key.as_ref().to_vec()), Some(value));
    }

    fn del(&mut self, staged: bool, key: impl AsRef<[u8]>) {
        self.keys.insert((staged, key.as_ref().to_vec()), None);
    }

    fn into_batch(self, db: &Db) -> fjall::Batch {
        let mut batch = db.ks.batch();
        for ((staged, key), value) in self.keys {
            let part = if staged { &db.staged } else { &db.data };
            match value {
                Some(v) => batch.insert(part, key, v),
                None => batch.remove(part, key),
            }
        }
        batch
    }
}

/// Commits one group and makes it as durable as the policy asks before returning.
fn commit(
    db: &Db,
    jobs: &[Vec<Change>],
    fsync: Fsync,
    staged_epoch: &mut Option<u64>,
) -> Result<Cleanup, StorageError> {
    let mut ops = Ops::default();
    let mut cleanup = Cleanup::default();
    let mut epoch = *staged_epoch;
    for changes in jobs {
        db.add(&mut ops, changes, &mut epoch, &mut cleanup);
    }
    ops.into_batch(db).commit().map_err(fail)?;
    let mode = match fsync {
        Fsync::Always => PersistMode::SyncAll,
        Fsync::Batch(_) | Fsync::Off => PersistMode::Buffer,
    };
    db.ks.persist(mode).map_err(fail)?;
    *staged_epoch = epoch;
    Ok(cleanup)
}

/// The writer thread: take every queued job, commit them as one group, answer them all.
fn writer(
    db: Db,
    dir: &Path,
    rx: Receiver<Job>,
    fsync: Fsync,
    shared: Arc<Shared>,
    mut staged_epoch: Option<u64>,
) {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let first = match fsync {
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
            let group = Group {
                changes: &changes,
                replies,
            };
            commit_until_stored(&db, dir, group, fsync, &shared, &mut staged_epoch);
            unsynced = true;
        }
        if let Fsync::Batch(every) = fsync
            && unsynced
            && last_sync.elapsed() >= every
        {
            match db.ks.persist(PersistMode::SyncAll) {
                Ok(()) => unsynced = false,
                Err(e) => warn!(error = %e, "periodic fsync failed"),
            }
            last_sync = Instant::now();
        }
    }
    if let Err(e) = db.ks.persist(PersistMode::SyncAll) {
        warn!(error = %e, "final fsync failed");
    }
}

/// One group commit: the changes of every job taken, and their submitters.
struct Group<'a> {
    changes: &'a [Vec<Change>],
    replies: Vec<Option<Reply>>,
}

/// Commits a group; on failure answers it with the error at once, then retries until the
/// commit succeeds (changes are never dropped or reordered), unwritable meanwhile. A commit
/// is not attempted while the disk has less than `min_free` bytes free: fjall refuses every
/// write after a failed journal write (until the process restarts), so the node stops taking
/// writes before the disk is really full and takes them again once space returns.
fn commit_until_stored(
    db: &Db,
    dir: &Path,
    mut group: Group<'_>,
    fsync: Fsync,
    shared: &Shared,
    staged_epoch: &mut Option<u64>,
) {
    let mut reported = false;
    loop {
        let attempt = match free_bytes(dir) {
            Some(free) if free < shared.min_free => Err(StorageError::Write(format!(
                "no space: {free} bytes free under {}, below the reserve of {} (CKV_MIN_FREE_MB)",
                dir.display(),
                shared.min_free
            ))),
            _ => commit(db, group.changes, fsync, staged_epoch),
        };
        match attempt {
            Ok(cleanup) => {
                let was = shared
                    .failing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if was.is_some() {
                    info!("storage writes succeed again");
                }
                for r in group.replies.iter_mut().filter_map(Option::take) {
                    let _ = r.send(Ok(()));
                }
                if let Err(e) = db.run_cleanup(cleanup) {
                    warn!(error = %e, "dropping old keys from storage failed (they are ignored)");
                }
                return;
            }
            Err(e) => {
                if !reported {
                    error!(error = %e, "storage commit failed; writes are refused until it succeeds");
                    *shared.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    reported = true;
                }
                for r in group.replies.iter_mut().filter_map(Option::take) {
                    let _ = r.send(Err(e.clone()));
                }
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}
