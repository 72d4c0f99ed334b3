//! `causalkv bench`: a load generator for causalkv (and, for comparison, its ceiling server
//! and etcd). Closed loop (each connection sends its next request when the previous one is
//! answered) or open loop (requests start on a fixed schedule at `--rate`, and latency is
//! measured from the scheduled start, so a slow server cannot hide its queueing delay:
//! no coordinated omission). Every connection is one virtual client that threads its causal
//! metadata from response to request. Reports throughput and p50/p99/p99.9 latency, can probe
//! replication lag, and can write the checker's history format.

pub mod cli;
pub mod client;
pub mod lag;
pub mod options;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::tools::check::record::{OpKind, OpRecord, Outcome, Record};
use crate::tools::rng::Rng;
use client::{Conn, read_value};
pub use options::{Mix, Mode, Options};
use stats::{ClientStats, RunInfo, Summary};

/// Time points of a run.
#[derive(Clone, Copy)]
struct Clock {
    t0: Instant,
    measure_from: Instant,
    end: Instant,
}

/// What every virtual client shares.
struct Plan {
    opts: Options,
    clock: Clock,
    /// Open loop: the index of the next scheduled request.
    next: AtomicU64,
    /// Origin of history timestamps (the start of the whole run, preload included).
    history_t0: Instant,
}

/// What one virtual client produced.
#[derive(Default)]
struct ClientRun {
    stats: ClientStats,
    history: Vec<OpRecord>,
}

/// One virtual client's state.
struct Session {
    id: usize,
    conn: Conn,
    name: String,
    incarnation: u32,
    writes: u64,
    record_history: bool,
    /// Origin of the history's timestamps (shared by every session).
    t0: Instant,
    run: ClientRun,
}

impl Session {
    fn new(id: usize, opts: &Options, t0: Instant) -> Self {
        let target = &opts.targets[id % opts.targets.len()];
        Self {
            id,
            conn: Conn::new(target, opts.api, true),
            name: format!("b{id}.0"),
            incarnation: 0,
            writes: 0,
            record_history: opts.history.is_some(),
            t0,
            run: ClientRun::default(),
        }
    }

    /// A unique value of `size` bytes (unique so that a history can tell writes apart).
    fn next_value(&mut self, size: usize) -> String {
        self.writes += 1;
        let mut v = format!("b{}-{}-", self.id, self.writes);
        if v.len() < size {
            v.extend(std::iter::repeat_n('x', size - v.len()));
        }
        v
    }

    /// Performs one operation; `scheduled` is when it should have started (latency is
    /// measured from there).
    async fn op(&mut self, kind: OpKind, key: &str, opts: &Options, scheduled: Instant) {
        let sent = Instant::now();
        // only a history needs the metadata sent (no copy per request otherwise)
        let meta_in = self
            .record_history
            .then(|| self.conn.metadata().map(str::to_string))
            .flatten();
        let value = (kind == OpKind::Put).then(|| self.next_value(opts.value_size));
        let result = match &value {
            Some(v) => self.conn.put(key, v).await,
            None => self.conn.get(key).await,
        };
        let done = Instant::now();
        let status = result.as_ref().ok().map(|a| a.status);
        let ok = match (kind, status) {
            (_, Some(s)) if (200..300).contains(&s) => true,
            (OpKind::Get, Some(404)) => true,
            _ => false,
        };
        let tally = if kind == OpKind::Put {
            &mut self.run.stats.put
        } else {
            &mut self.run.stats.get
        };
        tally.record(ok, done.saturating_duration_since(scheduled));
        self.run.stats.status(status);
        if !ok {
            let sample = match &result {
                Ok(a) => format!("{} {}", a.status, String::from_utf8_lossy(&a.body).trim()),
                Err(e) => format!("no answer: {e}"),
            };
            self.run.stats.error_sample(sample);
        }
        if self.record_history {
            let outcome = match (ok, status) {
                (true, _) => Outcome::Ok,
                (false, None) => Outcome::Unknown,
                (false, Some(_)) => Outcome::Fail,
            };
            let value = match (kind, &result) {
                (OpKind::Put, _) => Value::String(value.unwrap_or_default()),
                (_, Ok(a)) if ok && a.status == 200 => read_value(opts.api, a),
                _ => Value::Null,
            };
            self.run.history.push(OpRecord {
                session: self.name.clone(),
                node: Some(self.conn.addr().to_string()),
                kind,
                key: key.to_string(),
                value,
                meta_in,
                meta_out: if ok {
                    self.conn.metadata().map(str::to_string)
                } else {
                    None
                },
                invoke_ns: ns(self.t0, sent),
                complete_ns: Some(ns(self.t0, done)),
                written: None,
                outcome,
                status,
            });
            if outcome == Outcome::Unknown && kind == OpKind::Put {
                // the write may or may not have happened: go on as a new session (see
                // nemesis::workload for why the checker needs this)
                self.incarnation += 1;
                self.name = format!("b{}.{}", self.id, self.incarnation);
            }
        }
    }
}

/// Nanoseconds from `t0` to `at`.
fn ns(t0: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(t0).as_nanos()).unwrap_or(u64::MAX)
}

/// Key number `n`'s name.
fn key_name(n: u64) -> String {
    format!("bench-{n}")
}

/// Writes keys `id, id + c, id + 2c, …` once each (c = concurrency).
async fn fill_share(plan: Arc<Plan>, id: usize) -> ClientRun {
    let opts = &plan.opts;
    let mut s = Session::new(id, opts, plan.history_t0);
    let mut n = id as u64;
    while n < opts.keys {
        s.op(OpKind::Put, &key_name(n), opts, Instant::now()).await;
        n += opts.concurrency as u64;
    }
    s.run
}

/// One virtual client of the measured phase.
async fn client(plan: Arc<Plan>, id: usize) -> ClientRun {
    let opts = &plan.opts;
    let clock = plan.clock;
    let mut s = Session::new(id, opts, plan.history_t0);
    let mut rng = Rng::new(opts.seed, id as u64 + 1);
    let mut measured_started = false;
    loop {
        let scheduled = match opts.mode {
            Mode::Closed => Instant::now(),
            Mode::Open => {
                let k = plan.next.fetch_add(1, Ordering::Relaxed);
                let rate = opts.rate.unwrap_or(1.0);
                clock.t0 + Duration::from_secs_f64(k as f64 / rate)
            }
        };
        // open loop: a server that fell behind does not get past the window to catch up;
        // what it never started is reported as missed
        if scheduled >= clock.end || Instant::now() >= clock.end {
            break;
        }
        // Only an open loop ahead of its schedule sleeps. tokio's timer rounds every deadline
        // up to its next 1 ms tick, so a `sleep_until(now)` costs up to a millisecond: in the
        // closed loop it was the load generator's floor (~1.2 ms per request at c=1, a cap
        // near 20k/s at c=32 whatever the server).
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        if !measured_started
            && (scheduled >= clock.measure_from || Instant::now() >= clock.measure_from)
        {
            // Warm-up operations are not counted. An open loop that fell behind is still working
            // through operations due during the warm-up when the window opens: those it starts
            // from then on count (their latency runs from their intended time), or an
            // overloaded server would show 0 operations instead of what it did.
            measured_started = true;
            s.run.stats = ClientStats::default();
        }
        let kind = if rng.below(100) < opts.mix.put_percent() {
            OpKind::Put
        } else {
            OpKind::Get
        };
        let key = key_name(rng.below(opts.keys));
        s.op(kind, &key, opts, scheduled).await;
    }
    if !measured_started {
        s.run.stats = ClientStats::default();
    }
    s.run
}

/// Runs the benchmark described by `opts` and returns its summary.
pub async fn run(opts: &Options) -> anyhow::Result<Summary> {
    opts.validate()?;
    let mut history = Vec::new();
    let info = RunInfo {
        label: opts.label.clone(),
        api: format!("{:?}", opts.api).to_lowercase(),
        mode: if opts.fill {
            "fill".into()
        } else {
            format!("{:?}", opts.mode).to_lowercase()
        },
        mix: if opts.fill {
            "put".into()
        } else {
            opts.mix.name().into()
        },
        concurrency: opts.concurrency,
        rate: opts.rate.filter(|_| opts.mode == Mode::Open && !opts.fill),
        value_size: opts.value_size,
        keys: opts.keys,
    };
    let now = Instant::now();
    let plan = |warmup: f64, seconds: f64| {
        let t0 = Instant::now();
        let measure_from = t0 + Duration::from_secs_f64(warmup);
        Arc::new(Plan {
            opts: opts.clone(),
            clock: Clock {
                t0,
                measure_from,
                end: measure_from + Duration::from_secs_f64(seconds),
            },
            next: AtomicU64::new(0),
            history_t0: now,
        })
    };
    if opts.fill || opts.mix != Mix::Put {
        // fill, or give reads something to find: every key written once
        let p = plan(0.0, 0.0);
        let runs = join_all(opts.concurrency, |id| fill_share(p.clone(), id)).await?;
        let mut stats = ClientStats::default();
        for r in runs {
            stats.merge(&r.stats);
            history.extend(r.history);
        }
        if opts.fill {
            let seconds = now.elapsed().as_secs_f64();
            write_history(opts, history)?;
            return Ok(Summary::new(info, &stats, seconds, None));
        }
        ensure!(
            stats.put.errors == 0,
            "preloading {} keys failed {} times",
            opts.keys,
            stats.put.errors
        );
    }
    let p = plan(opts.warmup, opts.seconds);
    let lag = opts.lag.then(|| {
        tokio::spawn(lag::probe(
            opts.targets.clone(),
            p.clock.measure_from,
            p.clock.end,
        ))
    });
    let runs = join_all(opts.concurrency, |id| client(p.clone(), id)).await?;
    let mut stats = ClientStats::default();
    for r in runs {
        stats.merge(&r.stats);
        history.extend(r.history);
    }
    let lag = match lag {
        Some(h) => Some(h.await.context("lag probe failed")?),
        None => None,
    };
    write_history(opts, history)?;
    let mut summary = Summary::new(info, &stats, opts.seconds, lag);
    if let (Mode::Open, Some(rate)) = (opts.mode, opts.rate) {
        let due = (opts.seconds * rate).round() as u64;
        summary.missed = Some(due.saturating_sub(summary.ops));
    }
    Ok(summary)
}

/// Runs `n` tasks made by `f` and collects their results.
async fn join_all<F, Fut>(n: usize, f: F) -> anyhow::Result<Vec<ClientRun>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ClientRun> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|id| tokio::spawn(f(id))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.context("virtual client failed")?);
    }
    Ok(out)
}

fn write_history(opts: &Options, mut ops: Vec<OpRecord>) -> anyhow::Result<()> {
    use std::io::Write;
    let Some(path) = &opts.history else {
        return Ok(());
    };
    ops.sort_by_key(|o| o.invoke_ns);
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for op in ops {
        serde_json::to_writer(&mut w, &Record::Op(op))?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}
