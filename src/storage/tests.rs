//! Level-2 tests of the storage adapter: the fjall engine and the in-memory implementation
//! keep and recover the same things (writes, counters, maps, staging, keys), group commit
//! answers every submitter, and a new generation replaces the old data.

use std::sync::Arc;

use super::engine::FjallStorage;
use super::memory::MemoryStorage;
use super::{Change, Fsync, ReplicaMeta, Storage};
use crate::domain::clock::VectorClock;
use crate::domain::shard::ShardMap;
use crate::domain::store::{Version, Write};
use crate::domain::token_key::TokenKey;

fn write(key: &str, seq: u64, generation: u64, value: Option<&str>) -> Write {
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

fn meta(generation: u64, seq: u64) -> ReplicaMeta {
    ReplicaMeta {
        generation,
        clock: VectorClock::from_entries([("127.0.0.2:8090".to_string(), seq)]),
        complete: true,
    }
}

fn map(epoch: u64, generation: u64) -> ShardMap {
    let nodes: Vec<String> = (2..8).map(|i| format!("127.0.0.{i}:8090")).collect();
    let mut m = ShardMap::initial(&nodes, 2);
    m.epoch = epoch;
    m.generation = generation;
    m
}

fn scratch(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ckv-storage-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// Submits a history and checks what `reopen` recovers from it.
async fn keeps_and_recovers(s: Arc<dyn Storage>, reopen: impl FnOnce() -> Arc<dyn Storage>) {
    let r = s.recover().expect("recover empty");
    assert!(r.replica.is_none() && r.writes.is_empty() && r.map.is_none());
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
    let r = reopen().recover().expect("recover");
    assert_eq!(r.incarnation, 42);
    assert_eq!(r.map, Some(map(1, 1)));
    assert_eq!(r.replica, Some(meta(1, 3)));
    let mut writes = r.writes;
    writes.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        writes,
        vec![write("a", 3, 1, None), write("b", 2, 1, Some("2"))]
    );
    assert_eq!(r.token_keys, vec![key]);
    let (staged_map, staged) = r.staged.expect("staging kept");
    assert_eq!(
        (staged_map, staged),
        (map(2, 2), vec![write("s", 1, 1, Some("x"))])
    );
}

/// A reshard commit: the new generation's data replaces the old, staging is gone.
async fn a_new_generation_replaces_the_data(
    s: Arc<dyn Storage>,
    reopen: impl FnOnce() -> Arc<dyn Storage>,
) {
    s.recover().expect("recover");
    let commit = vec![
        Change::Replaced(vec![write("n", 1, 2, Some("new"))], meta(2, 0)),
        Change::Unstaged,
        Change::Map(map(2, 2)),
    ];
    s.submit(commit).wait().await.expect("stored");
    drop(s);
    let r = reopen().recover().expect("recover");
    assert_eq!(r.writes, vec![write("n", 1, 2, Some("new"))]);
    assert_eq!(r.replica, Some(meta(2, 0)));
    assert!(r.staged.is_none());
    assert_eq!(r.map, Some(map(2, 2)));
}

#[tokio::test]
async fn the_engine_keeps_everything_across_a_reopen() {
    let dir = scratch("reopen");
    let open = |fsync| Arc::new(FjallStorage::open(&dir, fsync).expect("open")) as Arc<dyn Storage>;
    keeps_and_recovers(open(Fsync::Always), || open(Fsync::Always)).await;
    let s = open(Fsync::Off);
    a_new_generation_replaces_the_data(s, || open(Fsync::Off)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_memory_storage_keeps_the_same() {
    let s = Arc::new(MemoryStorage::new());
    let again = s.clone();
    keeps_and_recovers(s.clone(), move || again as Arc<dyn Storage>).await;
    let again = s.clone();
    a_new_generation_replaces_the_data(s.clone(), move || again as Arc<dyn Storage>).await;
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
        s.recover().expect("recover");
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
        let r = FjallStorage::open(&dir, fsync)
            .expect("reopen")
            .recover()
            .expect("recover");
        assert_eq!(r.writes.len(), 32 * 50, "{fsync:?}");
    }
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
