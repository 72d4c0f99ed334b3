#!/usr/bin/env bash
# bench/durable.sh — issue 12's durability targets on this machine, in one run:
#   1. PUT throughput and p99 of a 1x3 cluster (CONNS connections, VALUE_SIZE-byte values) in
#      memory, with DATA_DIR and CKV_FSYNC=always, and with CKV_FSYNC=batch, ROUNDS rounds
#      interleaved (medians and ratios to in-memory printed at the end);
#      then what an fdatasync costs on this disk (3 KiB into a sparse file, as fjall's journal
#      takes a group commit), alone and while an `always` cluster takes PUTs, and the ceiling
#      that puts on `always`: a closed-loop PUT waits at least its in-memory latency plus one
#      fdatasync, so CONNS connections get at most CONNS / (CONNS / in-memory PUT/s + fdatasync);
#   2. a node holding FILL_KEYS keys (filled with CKV_FSYNC=off: same files) killed with SIGKILL
#      and restarted: seconds until it serves, its data directory's size against the raw key+value
#      bytes, and its resident memory per key, whole and beyond what the same node holds empty
#      (the basis of compare.sh's memory row), and that of a node that kept running.
# Environment: CKV_BIN [target/release/causalkv]  NET [127.0.72]  CONNS [32]  SECONDS_PER_RUN [8]
#              ROUNDS [2]  VALUE_SIZE [100]  FILL_KEYS [1000000]  OUT [bench/results/durable.txt]
#              ONLY [all; put: part 1 only; restart: part 2 only]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CKV_BIN:-$REPO/target/release/causalkv}"
NET="${NET:-127.0.72}"; CONNS="${CONNS:-32}"; SECS="${SECONDS_PER_RUN:-8}"; ROUNDS="${ROUNDS:-2}"
VALUE_SIZE="${VALUE_SIZE:-100}"; FILL_KEYS="${FILL_KEYS:-1000000}"; ONLY="${ONLY:-all}"
OUT="${OUT:-$REPO/bench/results/durable.txt}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ckv-durable-bench.XXXXXX")"
ADDRS=("$NET.2:9101" "$NET.3:9101" "$NET.4:9101")
VIEW="$(IFS=,; echo "${ADDRS[*]}")"
PIDS=()
stop() { local p; for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; PIDS=(); }
trap 'stop; rm -rf "$WORK"' EXIT
[[ -x "$BIN" ]] || { echo "no $BIN (cargo build --release)" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"; : > "$OUT"
say() { echo "$*" | tee -a "$OUT" >&2; }

start_node() {   # INDEX FSYNC(memory|always|batch|off)
    local i="$1" fsync="$2" env=(SOCKET_ADDRESS="${ADDRS[$1]}" VIEW="$VIEW" SHARD_COUNT=1)
    [[ "$fsync" != memory ]] && env+=(DATA_DIR="$WORK/node$i" CKV_FSYNC="$fsync")
    env "${env[@]}" "$BIN" serve </dev/null >>"$WORK/node$i.log" 2>&1 &
    PIDS[$i]=$!
}
ready() {        # INDEX -> 0 once it answers a read
    local code
    code="$(curl -s -X GET -o /dev/null -w "%{http_code}" --max-time 1 "http://${ADDRS[$1]}/kvs/__probe__" \
        -H 'Content-Type: application/json' -d '{"causal-metadata": null}' || true)"
    [[ "$code" == 404 || "$code" == 200 ]]
}
wait_ready() {   # INDEX LIMIT_S
    local t
    for ((t = 0; t < $2 * 20; t++)); do ready "$1" && return 0; sleep 0.05; done
    echo "node $1 not ready after $2 s; log: $WORK/node$1.log" >&2; tail -5 "$WORK/node$1.log" >&2; return 1
}
cluster() {      # FSYNC
    rm -rf "$WORK"/node*; local i
    for i in 0 1 2; do start_node "$i" "$1"; done
    for i in 0 1 2; do wait_ready "$i" 60; done
}
targets() { local a args=(); for a in "${ADDRS[@]}"; do args+=(--target "$a"); done; echo "${args[@]}"; }

declare -A TPUT P99
[[ "$ONLY" == restart ]] && ROUNDS=0
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in memory always batch; do
        cluster "$mode"
        # shellcheck disable=SC2046
        json="$("$BIN" bench $(targets) --concurrency "$CONNS" --seconds "$SECS" --warmup 2 --mix put \
            --value-size "$VALUE_SIZE" --label "$mode" --json 2>/dev/null | tail -1)"
        stop
        t="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(round(d["throughput"]))' "$json")"
        p="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["latency_ms"]["p99"])' "$json")"
        TPUT[$mode]+="$t "; P99[$mode]+="$p "
        say "round $r $mode: $t PUT/s p99 $p ms"
    done
done
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' $1; }
if ((ROUNDS > 0)); then
    base="$(median "${TPUT[memory]}")"
    for mode in memory always batch; do
        m="$(median "${TPUT[$mode]}")"; p="$(median "${P99[$mode]}")"
        say "median $mode: $m PUT/s (x$(python3 -c "print(round($m/$base, 2))") of in-memory) p99 $p ms"
    done
fi
probe_sync() {   # SECONDS -> "median p90 count" of fdatasync (ms) after a 3 KiB write into a sparse file
    python3 - "$WORK/probe" "$1" <<'PY'
import os, statistics, sys, time
path, secs = sys.argv[1], float(sys.argv[2])
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, 32 << 20)
os.fsync(fd)
buf, off, ts, end = os.urandom(3072), 0, [], time.time() + secs
while time.time() < end:
    os.pwrite(fd, buf, off)
    off += len(buf)
    t = time.perf_counter()
    os.fdatasync(fd)
    ts.append(time.perf_counter() - t)
os.close(fd)
os.unlink(path)
ts.sort()
print(f"{1000 * statistics.median(ts):.3f} {1000 * ts[len(ts) * 9 // 10]:.3f} {len(ts)}")
PY
}
if ((ROUNDS > 0)); then
    read -r med p90 n <<<"$(probe_sync 3)"
    say "fdatasync alone: median $med ms, p90 $p90 ms ($n syncs)"
    cluster always
    # shellcheck disable=SC2046
    "$BIN" bench $(targets) --concurrency "$CONNS" --seconds "$SECS" --warmup 2 --mix put \
        --value-size "$VALUE_SIZE" --label probe >/dev/null 2>&1 &
    load=$!
    sleep 3
    read -r med p90 n <<<"$(probe_sync $((SECS - 2)))"
    wait "$load" || true
    stop
    say "fdatasync while an always cluster takes PUTs: median $med ms, p90 $p90 ms ($n syncs)"
    say "ceiling for always at $CONNS connections from that median: $(python3 -c "
b, s, c = $base, $med / 1000, $CONNS
t = c / (c / b + s)
print(f'{t:.0f} PUT/s (x{t / b:.2f} of in-memory)')")"
fi
[[ "$ONLY" == put ]] && exit 0

# 2. restart of a node holding FILL_KEYS keys
cluster off
rss_empty="$(awk '/VmRSS/ {print $2 * 1024}' "/proc/${PIDS[2]}/status")"
# shellcheck disable=SC2046
"$BIN" bench $(targets) --fill --keys "$FILL_KEYS" --value-size "$VALUE_SIZE" --concurrency 64 \
    --seconds 600 --warmup 0 --label fill --json >/dev/null 2>&1 || true
sleep 2
keys="$(curl -s "http://${ADDRS[2]}/shard/key-count/0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["shard-key-count"])')"
rss_kept="$(awk '/VmRSS/ {print $2 * 1024}' "/proc/${PIDS[1]}/status")"
kill -9 "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true
start=$(date +%s.%N)
start_node 2 off
wait_ready 2 120
took="$(python3 -c "print(round($(date +%s.%N) - $start, 2))")"
disk="$(du -sb "$WORK/node2" | cut -f1)"
raw="$(python3 -c "print($keys * (len('bench-000000') + $VALUE_SIZE))")"
rss="$(awk '/VmRSS/ {print $2 * 1024}' "/proc/${PIDS[2]}/status")"
say "restart: node with $keys keys serving again after $took s"
say "disk: $disk bytes = x$(python3 -c "print(round($disk/$raw, 2))") the raw key+value bytes ($raw)"
say "resident memory after the restart: $rss bytes = $(python3 -c "print(round($rss/$keys))") B/key"
say "  beyond the same node empty ($rss_empty bytes): $(python3 -c "print(round(($rss - $rss_empty)/$keys))") B/key"
say "resident memory of a node that never restarted: $rss_kept bytes = $(python3 -c "print(round($rss_kept/$keys))") B/key"
stop
