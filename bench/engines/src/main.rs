//! Compares fjall (LSM) and redb (B-tree) for causalkv's write pattern: many small writes from
//! concurrent clients, group commit (one writer thread takes every queued write, commits them in
//! one batch and fsyncs once), then a full scan (snapshots, reshards, restart). Run with
//! `cargo run --release -- DIR` (DIR on the disk to measure); prints one line per engine.

use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const WRITES_PER_CLIENT: usize = 1_500;
const SCAN_KEYS: usize = 200_000;
const VALUE: usize = 100;

type Req = (Vec<u8>, Vec<u8>, Sender<()>);

trait Engine: Send {
    /// Writes a group atomically; `sync` = fsync before returning.
    fn commit(&mut self, group: &[(Vec<u8>, Vec<u8>)], sync: bool);
    fn scan(&self) -> usize;
    fn disk(&self, dir: &Path) -> u64;
}

struct Fjall {
    ks: fjall::Keyspace,
    p: fjall::PartitionHandle,
}

impl Engine for Fjall {
    fn commit(&mut self, group: &[(Vec<u8>, Vec<u8>)], sync: bool) {
        let mut b = self.ks.batch();
        for (k, v) in group {
            b.insert(&self.p, k, v);
        }
        b.commit().unwrap();
        let mode = if sync { fjall::PersistMode::SyncData } else { fjall::PersistMode::Buffer };
        self.ks.persist(mode).unwrap();
    }
    fn scan(&self) -> usize {
        self.p.iter().map(|kv| kv.unwrap().1.len()).count()
    }
    fn disk(&self, _: &Path) -> u64 {
        self.ks.disk_space()
    }
}

const T: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data");

struct Redb(redb::Database);

impl Engine for Redb {
    fn commit(&mut self, group: &[(Vec<u8>, Vec<u8>)], sync: bool) {
        let mut tx = self.0.begin_write().unwrap();
        tx.set_durability(if sync { redb::Durability::Immediate } else { redb::Durability::None });
        {
            let mut t = tx.open_table(T).unwrap();
            for (k, v) in group {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn scan(&self) -> usize {
        use redb::ReadableTable;
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(T).unwrap();
        t.iter().unwrap().map(|kv| kv.unwrap().1.value().len()).count()
    }
    fn disk(&self, dir: &Path) -> u64 {
        std::fs::metadata(dir.join("db.redb")).map(|m| m.len()).unwrap_or(0)
    }
}

fn writer(mut e: Box<dyn Engine>, rx: Receiver<Req>) -> (Box<dyn Engine>, usize) {
    let mut groups = 0;
    while let Ok(first) = rx.recv() {
        let mut waiters = vec![first.2];
        let mut group = vec![(first.0, first.1)];
        while let Ok((k, v, w)) = rx.try_recv() {
            group.push((k, v));
            waiters.push(w);
        }
        e.commit(&group, true);
        groups += 1;
        for w in waiters {
            let _ = w.send(());
        }
    }
    (e, groups)
}

fn key(i: usize) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

fn run(name: &str, e: Box<dyn Engine>, dir: &Path) {
    // 1. Group-committed small writes from concurrent clients.
    let (tx, rx) = channel::<Req>();
    let w = thread::spawn(move || writer(e, rx));
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut lat = Vec::with_capacity(WRITES_PER_CLIENT);
                for i in 0..WRITES_PER_CLIENT {
                    let (done, wait) = channel();
                    let t = Instant::now();
                    tx.send((key(c * WRITES_PER_CLIENT + i), vec![b'v'; VALUE], done)).unwrap();
                    wait.recv().unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    drop(tx);
    let mut lat: Vec<Duration> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let elapsed = start.elapsed();
    let (mut e, groups) = w.join().unwrap();
    lat.sort();
    let n = lat.len();
    let p = |q: f64| lat[((n as f64 * q) as usize).min(n - 1)].as_secs_f64() * 1e3;
    // 2. Bulk load to SCAN_KEYS (batches of 10k, synced), then a full scan.
    let load = Instant::now();
    let mut i = n;
    while i < SCAN_KEYS {
        let group: Vec<_> = (i..(i + 10_000).min(SCAN_KEYS)).map(|j| (key(j), vec![b'v'; VALUE])).collect();
        i += group.len();
        e.commit(&group, true);
    }
    let load = load.elapsed();
    let scan = Instant::now();
    let count = e.scan();
    let scan = scan.elapsed();
    let raw = (SCAN_KEYS * (11 + VALUE)) as u64;
    println!(
        "{name}: {n} group-committed writes, {CLIENTS} clients: {:.0} writes/s, {groups} fsyncs, p50 {:.2} ms p99 {:.2} ms | bulk load {:.2} s | full scan of {count} keys {:.0} ms | disk {:.2}x raw",
        n as f64 / elapsed.as_secs_f64(),
        p(0.5),
        p(0.99),
        load.as_secs_f64(),
        scan.as_secs_f64() * 1e3,
        e.disk(dir) as f64 / raw as f64,
    );
}

fn main() {
    let base = std::env::args().nth(1).unwrap_or_else(|| "target/engine-bench".into());
    let base = Path::new(&base);
    let _ = std::fs::remove_dir_all(base);
    let (fd, rd) = (base.join("fjall"), base.join("redb"));
    std::fs::create_dir_all(&rd).unwrap();
    let ks = fjall::Config::new(&fd).open().unwrap();
    let p = ks.open_partition("data", fjall::PartitionCreateOptions::default()).unwrap();
    run("fjall", Box::new(Fjall { ks, p }), &fd);
    let db = redb::Database::create(rd.join("db.redb")).unwrap();
    run("redb", Box::new(Redb(db)), &rd);
}
