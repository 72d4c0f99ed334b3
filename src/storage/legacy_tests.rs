//! Level-2 tests of the old-layout path of the fjall engine: a data directory written before
//! areas existed (commit c8929a4: the replica's writes in `data` under the generation, a
//! reshard's staged keys and its map in `staged` under the epoch) is read by today's
//! [`FjallStorage`], keeps working through new changes and a reshard commit, and loses its old
//! keys once no pointer names them (the engine moves nothing: an old area is read and written
//! where it is until a reshard or a new generation replaces it, then it is dropped).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use fjall::PartitionCreateOptions;

use super::codec;
use super::engine::FjallStorage;
use super::tests::{map, meta, read, scratch, write};
use super::{Change, Fsync, Storage};
use crate::domain::token_key::TokenKey;

const KEY: TokenKey = TokenKey {
    created_ms: 3,
    bytes: [9; 32],
};

/// An 8-byte big-endian prefix (generation or epoch) then the key, as c8929a4 keyed writes.
fn prefixed(prefix: u64, key: &str) -> Vec<u8> {
    let mut k = prefix.to_be_bytes().to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

/// Fixture: the directory c8929a4's engine leaves after running generation 2 with a reshard to
/// epoch 3 prepared, and a crash before two cleanups (a replaced generation 1 key in `data`, an
/// aborted epoch 1 reshard's key in `staged`). Its layout, from `git show
/// c8929a4:src/storage/engine.rs`: partitions `data` and `staged` with default options; in
/// `data` the writes under `generation ‖ key` and the counters under `replica`, `map`, `incarn`,
/// `tokens`; in `staged` the staged keys under `epoch ‖ key` and the staged map under `map`.
/// The values are today's `codec` encodings, which c8929a4's codec wrote byte for byte (the
/// codec only gained the area encoding since: `git diff c8929a4 -- src/storage/codec.rs`).
fn write_old_directory(dir: &Path) {
    let ks = fjall::Config::new(dir).open().expect("keyspace");
    let data = ks
        .open_partition("data", PartitionCreateOptions::default())
        .expect("data");
    let staged = ks
        .open_partition("staged", PartitionCreateOptions::default())
        .expect("staged");
    let put = |p: &fjall::PartitionHandle, k: Vec<u8>, v: Vec<u8>| p.insert(k, v).expect("insert");
    for w in [
        write("a", 1, 2, Some("1")),
        write("b", 2, 2, None),
        write("c", 3, 2, Some("3")),
    ] {
        put(&data, prefixed(2, &w.key), codec::encode_write(&w));
    }
    let gone = write("gone", 1, 1, Some("old"));
    put(&data, prefixed(1, &gone.key), codec::encode_write(&gone));
    put(&data, b"replica".into(), codec::encode_replica(&meta(2, 3)));
    put(&data, b"map".into(), codec::encode_map(&map(2, 2)));
    put(&data, b"incarn".into(), codec::encode_u64(42));
    put(&data, b"tokens".into(), codec::encode_keys(&[KEY]));
    for w in [write("a", 9, 2, Some("sent")), write("s", 4, 2, Some("x"))] {
        put(&staged, prefixed(3, &w.key), codec::encode_write(&w));
    }
    let aborted = write("z", 1, 1, Some("aborted"));
    put(
        &staged,
        prefixed(1, &aborted.key),
        codec::encode_write(&aborted),
    );
    put(&staged, b"map".into(), codec::encode_map(&map(3, 3)));
    ks.persist(fjall::PersistMode::SyncAll).expect("persist");
}

/// Every key of every partition of the closed directory `dir`, by partition: a prefixed key as
/// `<prefix>/<key>`, a counter as its name.
fn keys_on_disk(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let ks = fjall::Config::new(dir).open().expect("keyspace");
    let mut out = BTreeMap::new();
    for name in ks.list_partitions() {
        let p = ks
            .open_partition(&name, PartitionCreateOptions::default())
            .expect("partition");
        let keys = p
            .keys()
            .map(|k| {
                let k = k.expect("key");
                match (k.len() >= 8).then(|| k[..8].try_into().expect("8 bytes")) {
                    Some(prefix) => format!(
                        "{}/{}",
                        u64::from_be_bytes(prefix),
                        String::from_utf8_lossy(&k[8..])
                    ),
                    None => String::from_utf8_lossy(&k).into_owned(),
                }
            })
            .collect();
        out.insert(name.to_string(), keys);
    }
    out
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn an_old_directory_is_read_kept_working_and_left_behind() {
    let dir = scratch("legacy");
    std::fs::create_dir_all(&dir).expect("dir");
    write_old_directory(&dir);
    let open =
        || Arc::new(FjallStorage::open(&dir, Fsync::Always).expect("open")) as Arc<dyn Storage>;

    // everything the old engine kept comes back
    let s = open();
    let (r, writes, staged) = read(&*s);
    assert_eq!(r.incarnation, 42);
    assert_eq!(r.map, Some(map(2, 2)));
    assert_eq!(r.token_keys, vec![KEY]);
    assert_eq!(r.replica, Some(meta(2, 3)));
    let old = vec![
        write("a", 1, 2, Some("1")),
        write("b", 2, 2, None),
        write("c", 3, 2, Some("3")),
    ];
    assert_eq!(writes, old);
    assert_eq!(r.staged, Some(map(3, 3)));
    let sent = vec![write("a", 9, 2, Some("sent")), write("s", 4, 2, Some("x"))];
    assert_eq!(staged, sent);

    // new changes go where the old areas are
    let (d, a_deleted, t) = (
        write("d", 4, 2, Some("4")),
        write("a", 5, 2, None),
        write("t", 6, 2, Some("y")),
    );
    s.submit(vec![
        Change::Applied(vec![d.clone(), a_deleted.clone()], meta(2, 5)),
        Change::Incarnation(43),
    ])
    .wait()
    .await
    .expect("stored");
    s.submit(vec![Change::Staged(map(3, 3), vec![t.clone()])])
        .wait()
        .await
        .expect("stored");
    drop(s);
    let s = open();
    let (r, writes, staged) = read(&*s);
    assert_eq!((r.incarnation, r.replica), (43, Some(meta(2, 5))));
    assert_eq!(
        writes,
        vec![a_deleted, old[1].clone(), old[2].clone(), d.clone()]
    );
    assert_eq!(r.staged, Some(map(3, 3)));
    assert_eq!(staged, vec![sent[0].clone(), sent[1].clone(), t.clone()]);
    drop(s);
    // the start-up sweep dropped what the old engine's interrupted cleanups left
    assert_eq!(
        keys_on_disk(&dir),
        BTreeMap::from([
            (
                "data".to_string(),
                strs(&[
                    "2/a", "2/b", "2/c", "2/d", "incarn", "map", "replica", "tokens"
                ])
            ),
            ("staged".to_string(), strs(&["3/a", "3/s", "3/t", "map"])),
        ])
    );

    // the reshard commit promotes the old staging area in place and drops the old generation
    let s = open();
    read(&*s);
    let late = write("late", 7, 2, Some("late"));
    s.submit(vec![
        Change::Promoted {
            epoch: 3,
            writes: vec![late.clone()],
            meta: meta(3, 0),
        },
        Change::Map(map(3, 3)),
    ])
    .wait()
    .await
    .expect("stored");
    drop(s);
    let s = open();
    let (r, writes, staged) = read(&*s);
    assert_eq!((r.replica, r.map), (Some(meta(3, 0)), Some(map(3, 3))));
    assert!(r.staged.is_none() && staged.is_empty(), "{staged:?}");
    let promoted = vec![sent[0].clone(), late.clone(), sent[1].clone(), t.clone()];
    assert_eq!(writes, promoted);
    assert_eq!((r.incarnation, r.token_keys), (43, vec![KEY]));
    drop(s);
    assert_eq!(
        keys_on_disk(&dir),
        BTreeMap::from([
            (
                "data".to_string(),
                strs(&["area", "incarn", "map", "replica", "tokens"])
            ),
            ("staged".to_string(), strs(&["3/a", "3/late", "3/s", "3/t"])),
        ])
    );

    // the next reshard moves the data into an area: nothing is left in the old partitions
    let s = open();
    read(&*s);
    let u = write("u", 8, 3, Some("u"));
    s.submit(vec![Change::Staged(map(4, 4), vec![u.clone()])])
        .wait()
        .await
        .expect("stored");
    s.submit(vec![Change::Promoted {
        epoch: 4,
        writes: Vec::new(),
        meta: meta(4, 0),
    }])
    .wait()
    .await
    .expect("stored");
    drop(s);
    let s = open();
    let (r, writes, staged) = read(&*s);
    assert_eq!(
        (r.replica, writes, staged.len()),
        (Some(meta(4, 0)), vec![u], 0)
    );
    drop(s);
    assert_migrated(&dir, &["4/u"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_old_directory_loses_its_old_areas_to_a_new_reshard_and_generation() {
    let dir = scratch("legacy-replaced");
    std::fs::create_dir_all(&dir).expect("dir");
    write_old_directory(&dir);
    let open = || Arc::new(FjallStorage::open(&dir, Fsync::Off).expect("open")) as Arc<dyn Storage>;
    let s = open();
    read(&*s);
    // a reshard of a later epoch replaces the old directory's staging area (epoch 3)
    let v = write("v", 1, 2, Some("v"));
    s.submit(vec![Change::Staged(map(5, 5), vec![v.clone()])])
        .wait()
        .await
        .expect("stored");
    drop(s);
    let s = open();
    let (r, writes, staged) = read(&*s);
    assert_eq!((r.staged, staged), (Some(map(5, 5)), vec![v]));
    assert_eq!(
        writes.len(),
        3,
        "the old generation's data stays: {writes:?}"
    );
    // a missed reshard: a new generation replaces the old data, the staging area is aborted
    let n = write("n", 1, 6, Some("new"));
    s.submit(vec![
        Change::Replaced(vec![n.clone()], meta(6, 0)),
        Change::Unstaged,
        Change::Map(map(6, 6)),
    ])
    .wait()
    .await
    .expect("stored");
    drop(s);
    let s = open();
    let (r, writes, staged) = read(&*s);
    assert_eq!((r.replica, writes), (Some(meta(6, 0)), vec![n]));
    assert!(r.staged.is_none() && staged.is_empty());
    drop(s);
    assert_migrated(&dir, &["6/n"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The old directory at `dir` is fully migrated: `data` holds only counters and the area pointer,
/// the old `staged` partition is empty, and one area holds exactly `keys`.
fn assert_migrated(dir: &Path, keys: &[&str]) {
    let on_disk = keys_on_disk(dir);
    assert_eq!(
        on_disk["data"],
        strs(&["area", "incarn", "map", "replica", "tokens"])
    );
    assert_eq!(
        on_disk["staged"],
        Vec::<String>::new(),
        "old staged keys left"
    );
    let areas: Vec<_> = on_disk.keys().filter(|n| n.starts_with('a')).collect();
    assert_eq!(areas.len(), 1, "one area holds the data: {on_disk:?}");
    assert_eq!(on_disk[areas[0]], strs(keys));
}
