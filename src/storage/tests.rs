//! Level-2 tests of the storage adapter: the fjall engine and the in-memory implementation
//! keep and recover the same things (writes, counters, maps, staging, keys), group commit
//! answers every submitter, a new generation replaces the old data, a reshard's commit promotes
//! the staging area in one step, and a data directory has one process at a time.

use std::sync::Arc;

use super::engine::FjallStorage;
use super::memory::MemoryStorage;
use super::{Change, Fsync, Kept, Recovered, ReplicaMeta, Storage, StorageError};
use crate::domain::clock::VectorClock;
use crate::domain::shard::ShardMap;
use crate::domain::store::{Version, Write};
use crate::domain::token_key::TokenKey;

pub(super) fn write(key: &str, seq: u64, generation: u64, value: Option<&str>) -> Write {
    Write {
        key: key.into(),
        version: Version {
            generation,
            origin: "127.0.0.2:8090".into(),
            seq,
            clock: VectorClock::from_entries([("127.0.0.2:8090".to_string(), seq)]),
        },
        value: value.map(Into::into),
    }
}

pub(super) fn meta(generation: u64, seq: u64) -> ReplicaMeta {
    ReplicaMeta {
        generation,
        clock: VectorClock::from_entries([("127.0.0.2:8090".to_string(), seq)]),
        complete: true,
    }
}

pub(super) fn map(epoch: u64, generation: u64) -> ShardMap {
    let nodes: Vec<String> = (2..8).map(|i| format!("127.0.0.{i}:8090")).collect();
    let mut m = ShardMap::initial(&nodes, 2);
    m.epoch = epoch;
    m.generation = generation;
    m
}

pub(super) fn scratch(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ckv-storage-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// What a recovery handed over: the rest, the replica's writes and the staged ones (by key).
pub(super) fn read(s: &dyn Storage) -> (Recovered, Vec<Write>, Vec<Write>) {
    let (mut writes, mut staged) = (Vec::new(), Vec::new());
    let r = s
        .recover(&mut |kept, w| match kept {
            Kept::Replica => writes.push(w),
            Kept::Staged => staged.push(w),
        })
        .expect("recover");
    writes.sort_by(|a, b| a.key.cmp(&b.key));
    staged.sort_by(|a, b| a.key.cmp(&b.key));
    (r, writes, staged)
}

/// Submits a history and checks what `reopen` recovers from it.
async fn keeps_and_recovers(s: Arc<dyn Storage>, reopen: impl FnOnce() -> Arc<dyn Storage>) {
    let (r, writes, _) = read(&*s);
    assert!(r.replica.is_none() && writes.is_empty() && r.map.is_none());
    let key = TokenKey {
        created_ms: 3,
        bytes: [9; 32],
    };
    let tickets = vec![
        s.submit(vec![Change::Incarnation(42), Change::Map(map(1, 1))]),
        s.submit(vec![Change::Applied(
            vec![write("a", 1, 1, Some("1")), write("b", 2, 1, Some("2"))],
            meta(1, 2),
        )]),
        s.submit(vec![Change::Applied(
            vec![write("a", 3, 1, None)],
            meta(1, 3),
        )]),
        s.submit(vec![Change::TokenKeys(vec![key])]),
        s.submit(vec![Change::Staged(
            map(2, 2),
            vec![write("s", 1, 1, Some("x"))],
        )]),
    ];
    for t in tickets {
        t.wait().await.expect("stored");
    }
    drop(s);
    let (r, writes, staged) = read(&*reopen());
    assert_eq!(r.incarnation, 42);
    assert_eq!(r.map, Some(map(1, 1)));
    assert_eq!(r.replica, Some(meta(1, 3)));
    assert_eq!(
        writes,
        vec![write("a", 3, 1, None), write("b", 2, 1, Some("2"))]
    );
    assert_eq!(r.token_keys, vec![key]);
    assert_eq!(
        (r.staged, staged),
        (Some(map(2, 2)), vec![write("s", 1, 1, Some("x"))])
    );
}

/// A missed reshard: the new generation starts with exactly the given data, staging is gone.
async fn a_new_generation_replaces_the_data(
    s: Arc<dyn Storage>,
    reopen: impl FnOnce() -> Arc<dyn Storage>,
) {
    read(&*s);
    let commit = vec![
        Change::Replaced(vec![write("n", 1, 2, Some("new"))], meta(2, 0)),
        Change::Unstaged,
        Change::Map(map(2, 2)),
    ];
    s.submit(commit).wait().await.expect("stored");
    drop(s);
    let (r, writes, staged) = read(&*reopen());
    assert_eq!(writes, vec![write("n", 1, 2, Some("new"))]);
    assert_eq!(r.replica, Some(meta(2, 0)));
    assert!(r.staged.is_none() && staged.is_empty());
    assert_eq!(r.map, Some(map(2, 2)));
}

/// A reshard's commit: the staged keys (some staged by the merge of own keys ahead of the
/// commit) become the data with the writes merged at the commit applied over them; the old
/// data and the staging area are gone. Returns after checking what `reopen` recovers.
async fn a_commit_promotes_the_staging_area(
    s: Arc<dyn Storage>,
    reopen: impl Fn() -> Arc<dyn Storage>,
) {
    read(&*s);
    let old = vec![write("a", 1, 2, Some("old")), write("b", 2, 2, Some("old"))];
    s.submit(vec![Change::Applied(old.clone(), meta(2, 2))])
        .wait()
        .await
        .expect("stored");
    let staged = vec![
        write("a", 9, 2, Some("sent")),
        write("c", 5, 2, Some("sent")),
    ];
    s.submit(vec![Change::Staged(map(3, 3), Vec::new())]);
    s.submit(vec![Change::Staged(map(3, 3), staged.clone())]);
    // own keys merged ahead of the commit are staged like the received ones
    s.submit(vec![Change::Staged(
        map(3, 3),
        vec![write("b", 2, 2, Some("old"))],
    )])
    .wait()
    .await
    .expect("stored");
    // a crash before the commit: the old generation and the staging area
    drop(s);
    let again = reopen();
    let (r, writes, kept) = read(&*again);
    assert_eq!((r.replica, writes), (Some(meta(2, 2)), old));
    assert_eq!(r.staged, Some(map(3, 3)));
    assert_eq!(kept.len(), 3);
    // the commit: a late own write merged under the lock
    let late = write("d", 3, 2, Some("late"));
    let commit = vec![
        Change::Promoted {
            epoch: 3,
            writes: vec![late.clone()],
            meta: meta(3, 0),
        },
        Change::Map(map(3, 3)),
    ];
    again.submit(commit).wait().await.expect("stored");
    drop(again);
    let (r, writes, kept) = read(&*reopen());
    assert_eq!(r.replica, Some(meta(3, 0)));
    assert_eq!(r.map, Some(map(3, 3)));
    assert!(r.staged.is_none() && kept.is_empty());
    let expected = vec![
        staged[0].clone(),
        write("b", 2, 2, Some("old")),
        staged[1].clone(),
        late,
    ];
    assert_eq!(writes, expected);
}

/// The area partitions a data directory holds once deleted ones are gone (the engine removes a
/// deleted partition's files when its last handle goes, which its background threads may hold
/// a moment after the storage closed).
fn areas(dir: &std::path::Path, expected: usize) -> usize {
    let count = || {
        std::fs::read_dir(dir.join("partitions"))
            .expect("partitions")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with('a'))
            .count()
    };
    for _ in 0..100 {
        if count() == expected {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    count()
}

#[tokio::test]
async fn the_engine_keeps_everything_across_a_reopen() {
    let dir = scratch("reopen");
    let open = |fsync| Arc::new(FjallStorage::open(&dir, fsync).expect("open")) as Arc<dyn Storage>;
    keeps_and_recovers(open(Fsync::Always), || open(Fsync::Always)).await;
    let s = open(Fsync::Off);
    a_new_generation_replaces_the_data(s, || open(Fsync::Off)).await;
    assert_eq!(areas(&dir, 1), 1, "only the new generation's area is left");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_engine_promotes_a_staging_area_and_drops_the_old_data() {
    for fsync in [Fsync::Always, Fsync::Off] {
        let dir = scratch("promote");
        let open = || Arc::new(FjallStorage::open(&dir, fsync).expect("open")) as Arc<dyn Storage>;
        a_commit_promotes_the_staging_area(open(), open).await;
        assert_eq!(
            areas(&dir, 1),
            1,
            "{fsync:?}: the old generation's area is gone"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test]
async fn an_area_a_crash_left_behind_is_dropped_at_start() {
    let dir = scratch("leftover");
    let s = Arc::new(FjallStorage::open(&dir, Fsync::Always).expect("open"));
    read(&*s);
    let w = write("a", 1, 1, Some("1"));
    s.submit(vec![Change::Applied(vec![w.clone()], meta(1, 1))])
        .wait()
        .await
        .expect("stored");
    drop(s);
    // what a crash between a commit and the drop of the area it replaced leaves
    {
        let ks = fjall::Config::new(&dir).open().expect("keyspace");
        let p = ks
            .open_partition("a77", fjall::PartitionCreateOptions::default())
            .expect("partition");
        p.insert([0u8; 9], b"stale").expect("insert");
        ks.persist(fjall::PersistMode::SyncAll).expect("persist");
    }
    assert_eq!(areas(&dir, 2), 2);
    let s = FjallStorage::open(&dir, Fsync::Always).expect("reopen");
    let (r, writes, staged) = read(&s);
    assert_eq!(
        (r.replica, writes, staged.len()),
        (Some(meta(1, 1)), vec![w], 0)
    );
    drop(s);
    assert_eq!(areas(&dir, 1), 1, "the stale area is gone");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_promotion_without_its_staging_area_is_refused() {
    let s = Arc::new(MemoryStorage::new());
    read(&*s);
    let promote = || {
        vec![Change::Promoted {
            epoch: 4,
            writes: Vec::new(),
            meta: meta(4, 0),
        }]
    };
    assert!(s.submit(promote()).wait().await.is_err());
    let dir = scratch("nostaging");
    let f = FjallStorage::open(&dir, Fsync::Always).expect("open");
    read(&f);
    let e = f.submit(promote()).wait().await.expect_err("refused");
    assert!(e.to_string().contains("no staging area"), "{e}");
    drop(f);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_data_directory_takes_one_process_at_a_time() {
    let dir = scratch("locked");
    let first = FjallStorage::open(&dir, Fsync::Always).expect("open");
    match FjallStorage::open(&dir, Fsync::Always) {
        Err(e @ StorageError::Locked { .. }) => {
            assert!(e.to_string().contains(dir.to_str().unwrap()), "{e}")
        }
        Err(e) => panic!("not refused as in use: {e}"),
        Ok(_) => panic!("a second storage opened a locked directory"),
    }
    drop(first);
    FjallStorage::open(&dir, Fsync::Always).expect("open again once released");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_memory_storage_keeps_the_same() {
    let s = Arc::new(MemoryStorage::new());
    let again = s.clone();
    keeps_and_recovers(s.clone(), move || again as Arc<dyn Storage>).await;
    let again = s.clone();
    a_new_generation_replaces_the_data(s.clone(), move || again as Arc<dyn Storage>).await;
    let fresh = Arc::new(MemoryStorage::new());
    let again = fresh.clone();
    a_commit_promotes_the_staging_area(fresh, move || again.clone() as Arc<dyn Storage>).await;
    s.set_failing(true);
    assert!(s.writable().is_err());
    let failed = s.submit(vec![Change::Incarnation(1)]).wait().await;
    assert!(failed.is_err(), "a failing disk answers with the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_answers_every_concurrent_submitter() {
    let dir = scratch("group");
    for fsync in [
        Fsync::Always,
        Fsync::Batch(std::time::Duration::from_millis(5)),
        Fsync::Off,
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        let s = Arc::new(FjallStorage::open(&dir, fsync).expect("open"));
        read(&*s);
        let tasks: Vec<_> = (0..32u64)
            .map(|t| {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in 0..50u64 {
                        let w = write(&format!("t{t}-{i}"), i + 1, 1, Some("v"));
                        s.submit(vec![Change::Applied(vec![w], meta(1, i + 1))])
                            .wait()
                            .await
                            .expect("stored");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        drop(s);
        let (_, writes, _) = read(&FjallStorage::open(&dir, fsync).expect("reopen"));
        assert_eq!(writes.len(), 32 * 50, "{fsync:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `always` syncs what somebody waits for at once, and what nobody waits for (a replica's
/// applied batches, `submit_unwaited`) within 10 ms, not once per submission.
#[tokio::test]
async fn always_syncs_unwaited_changes_in_groups_and_soon() {
    let dir = scratch("unwaited");
    let s = FjallStorage::open(&dir, Fsync::Always).expect("open");
    read(&s);
    // one submission every 250 µs or more: a sync each would be ~40 syncs; one per 10 ms
    // of the loop (plus the one that may be running at either end) is what is allowed
    let started = std::time::Instant::now();
    for i in 0..40u64 {
        let w = write(&format!("r{i}"), i + 1, 1, Some("v"));
        s.submit_unwaited(vec![Change::Applied(vec![w], meta(1, i + 1))]);
        std::thread::sleep(std::time::Duration::from_micros(250));
    }
    let before = s.journal_syncs();
    let allowed = started.elapsed().as_millis() as u64 / 10 + 2;
    assert!(
        before <= allowed,
        "{before} syncs for 40 unwaited submissions in {:?}",
        started.elapsed()
    );
    // synced soon without anybody waiting (bounded wait)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.journal_syncs() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(s.journal_syncs() >= 1, "unwaited changes never synced");
    // a waited submission is synced before its ticket completes
    let synced = s.journal_syncs();
    s.submit(vec![Change::Applied(
        vec![write("w", 41, 1, Some("v"))],
        meta(1, 41),
    )])
    .wait()
    .await
    .expect("stored");
    assert!(
        s.journal_syncs() > synced,
        "the waited write was answered unsynced"
    );
    drop(s);
    let (r, writes, _) = read(&FjallStorage::open(&dir, Fsync::Always).expect("reopen"));
    assert_eq!(writes.len(), 41);
    assert_eq!(r.replica, Some(meta(1, 41)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_directory_is_refused_naming_it() {
    let dir = scratch("damaged");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("version"), b"garbage").expect("write");
    match FjallStorage::open(&dir, Fsync::Always) {
        Err(e) => assert!(e.to_string().contains(dir.to_str().unwrap()), "{e}"),
        Ok(_) => panic!("a damaged directory opened"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
