#!/usr/bin/env bash
# bench/compare.sh [--smoke]   — the side-by-side benchmark (see bench/README.md)
#
# One run, on loopback, with two load generators (`causalkv bench`, and wrk 4 with
# bench/wrk/kv.lua as a cross-check) and the same workload (VALUE_SIZE-byte values, CONNS
# connections, closed loop, mixes put / mixed / read), one system at a time (each is stopped
# before the next starts). Every closed-loop row is measured by both generators; the summary puts
# them side by side and flags rows where they disagree by more than 20 %:
#   ceiling   `causalkv ceiling` (no replication, no causal checks)       CKV_NET.20:9200
#   ckv-1x3   causalkv, 1 shard x 3 replicas (+ a --lag run, put mix)       CKV_NET.2-4:9101
#   ckv-2x3   causalkv, 2 shards x 3 replicas (targets: all 6 nodes)        CKV_NET.12-17:9101
#             both causalkv shapes also: put at the first node only (variant 1t) and put with one
#             connection to it (variant c1); the ceiling: put with one connection (c1)
#   etcd      3-member etcd (Debian's etcd-server; bench/etcd.sh)           ETCD_NET.2-4:2379
#   open loop per system, put mix, at OPEN_RATE (default: 50% of the ceiling's closed-loop PUT
#             throughput); a system whose closed-loop PUT is below 1.25 x that rate also gets a run at
#             50% of its own (label suffix -open-self)
#   memory    a fresh 1x3 causalkv cluster (CKV_NET.32-34:9101): VmRSS before/after
#             `bench --fill --keys MEM_KEYS`, once every replica holds the same number of keys
# Every JSON line goes to RESULTS/runs.jsonl, then bench/report.py writes results.csv, summary.txt,
# throughput.png and latency.png there. RESULTS is bench/results (bench/results/smoke with --smoke).
#
# Environment (defaults in brackets; --smoke / SMOKE=1 changes the defaults marked *):
#   SECONDS / BENCH_SECONDS  measured seconds per run [10, *2]  (SECONDS is read once at start-up:
#                            bash counts it up afterwards)
#   WARMUP [2, *1]  CONNS [32]  VALUE_SIZE [100]  KEYS [10000, *1000]  MEM_KEYS [1000000, *20000]
#   OPEN_RATE        fixed open-loop rate in ops/s [50% of the ceiling's PUT throughput]
#   SKIP_ETCD=1 [0, *1 unless etcd is installed]   SKIP_MEMORY=1 [0]
#   CPUS=split|shared [split]   split: servers and etcd on CPU 0 (taskset -c 0), the load
#                               generator on CPU 1 (taskset -c 1); shared: nothing pinned
#   SKIP_WRK=1 [0]   no wrk rows (wrk is installed from Debian when missing: apt-get, needs root)
#   CKV_BIN=PATH     use this binary instead of target/release/causalkv (no build step)
#   NO_BUILD=1       never run cargo; fail if the binary is missing
#   RESULTS=DIR      where outputs go
#   CKV_NET [127.0.70]  ETCD_NET [127.0.71]   loopback /24s the servers listen on (must be 127.x.y)
set -euo pipefail
ENV_SECONDS="$SECONDS"   # first statement on purpose: bash's SECONDS grows from the environment value

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$REPO/bench"
cd "$REPO"

SMOKE="${SMOKE:-0}"
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$SMOKE" == 1 ]] || SMOKE=0

# ---------------------------------------------------------------- parameters
if [[ -n "${BENCH_SECONDS:-}" ]]; then RUN_SECS="$BENCH_SECONDS"
elif [[ "$ENV_SECONDS" -gt 0 ]]; then RUN_SECS="$ENV_SECONDS"
elif [[ $SMOKE == 1 ]]; then RUN_SECS=2
else RUN_SECS=10
fi
if [[ $SMOKE == 1 ]]; then
    WARMUP="${WARMUP:-1}"; KEYS="${KEYS:-1000}"; MEM_KEYS="${MEM_KEYS:-20000}"
    if [[ -z "${SKIP_ETCD:-}" ]]; then
        if command -v etcd >/dev/null 2>&1; then SKIP_ETCD=0; else SKIP_ETCD=1; fi
    fi
    RESULTS="${RESULTS:-$BENCH/results/smoke}"
fi
WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-32}"
VALUE_SIZE="${VALUE_SIZE:-100}"
KEYS="${KEYS:-10000}"
MEM_KEYS="${MEM_KEYS:-1000000}"
OPEN_RATE="${OPEN_RATE:-}"
SKIP_ETCD="${SKIP_ETCD:-0}"
SKIP_MEMORY="${SKIP_MEMORY:-0}"
CPUS="${CPUS:-split}"
SKIP_WRK="${SKIP_WRK:-0}"
RESULTS="${RESULTS:-$BENCH/results}"
for v in RUN_SECS WARMUP CONNS VALUE_SIZE KEYS MEM_KEYS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "compare.sh: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
[[ -z "$OPEN_RATE" || "$OPEN_RATE" =~ ^[0-9]+$ ]] || { echo "compare.sh: OPEN_RATE must be a whole number" >&2; exit 2; }
[[ "$RUN_SECS" -gt 0 ]] || { echo "compare.sh: SECONDS must be > 0" >&2; exit 2; }

NPROC="$(nproc)"
case "$CPUS" in
    shared) PIN_SERVER=(); PIN_LOAD=() ;;
    split)
        [[ "$NPROC" -ge 2 ]] || { echo "compare.sh: CPUS=split needs 2 CPUs (have $NPROC)" >&2; exit 2; }
        PIN_SERVER=(taskset -c 0); PIN_LOAD=(taskset -c 1) ;;
    *) echo "compare.sh: CPUS must be shared or split (got '$CPUS')" >&2; exit 2 ;;
esac

# Addresses: CKV_NET.x for causalkv and the ceiling, ETCD_NET.2-4 for etcd (both loopback /24s).
CKV_NET="${CKV_NET:-127.0.70}"
export ETCD_NET="${ETCD_NET:-127.0.71}"
for v in CKV_NET ETCD_NET; do
    [[ "${!v}" =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "compare.sh: $v must be 127.A.B (loopback only; got '${!v}')" >&2; exit 2; }
done
CKV13=("$CKV_NET.2:9101" "$CKV_NET.3:9101" "$CKV_NET.4:9101")
CKV23=("$CKV_NET.12:9101" "$CKV_NET.13:9101" "$CKV_NET.14:9101" "$CKV_NET.15:9101" "$CKV_NET.16:9101" "$CKV_NET.17:9101")
CEILING="$CKV_NET.20:9200"
MEMNODES=("$CKV_NET.32:9101" "$CKV_NET.33:9101" "$CKV_NET.34:9101")
ETCD_MEMBERS=("$ETCD_NET.2:2379" "$ETCD_NET.3:2379" "$ETCD_NET.4:2379")

LOGS="$RESULTS/logs"
ETCD_DIR="$RESULTS/etcd"
RUNS="$RESULTS/runs.jsonl"
mkdir -p "$RESULTS" "$LOGS"

# Loopback only: no proxy may route any of this traffic elsewhere.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
lcurl() { curl --noproxy '*' -s --connect-timeout 1 --max-time 3 "$@"; }

say() { echo "compare.sh: $*" >&2; }
step() { printf '\n=== %s ===\n' "$*" >&2; }

# ---------------------------------------------------------------- process bookkeeping
SERVER_PIDS=()       # servers of the system under test (stopped before the next one starts)
SERVER_NAMES=()
ETCD_UP=0
FAILURES=()

stop_servers() {
    local pid i alive
    [[ ${#SERVER_PIDS[@]} -gt 0 ]] || return 0
    for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do            # at most 10 s for a clean exit
        alive=0
        for pid in "${SERVER_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.2
    done
    for pid in "${SERVER_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid did not stop in 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
    SERVER_NAMES=()
}

stop_etcd() {
    if [[ $ETCD_UP == 1 ]]; then
        "$BENCH/etcd.sh" stop "$ETCD_DIR" || true
        ETCD_UP=0
    fi
}

# Long-running children (the load generator, pip) run in the background under `timeout`, and the
# script waits for them with `wait`: a trapped Ctrl-C interrupts `wait` at once (a foreground child
# that survives SIGINT would make bash ignore it), and cleanup then ends them.
BG_PID=""
run_bounded() {   # LIMIT_S STDOUT_FILE STDERR_FILE CMD... -> CMD's exit status (124: timed out)
    local limit="$1" out="$2" err="$3" rc=0
    shift 3
    timeout -k 10 "$limit" "$@" </dev/null >"$out" 2>"$err" &
    BG_PID=$!
    wait "$BG_PID" || rc=$?
    BG_PID=""
    return "$rc"
}

stop_bg() {
    local pid="$BG_PID" kids i
    BG_PID=""
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kids="$(ps -o pid= --ppid "$pid" 2>/dev/null || true)"
    kill -TERM "$pid" 2>/dev/null || true          # timeout passes SIGTERM on to its child
    for ((i = 0; i < 25; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    for pid in $pid $kids; do kill -KILL "$pid" 2>/dev/null || true; done
}

cleanup_all() {
    stop_bg
    stop_servers
    stop_etcd
}

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    cleanup_all
    exit "$rc"
}

on_signal() {     # clean up, then die of the same signal so that a calling shell sees it
    trap - EXIT INT TERM
    say "interrupted by SIG$1: stopping everything this script started"
    cleanup_all
    kill -"$1" $$
}
trap on_exit EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

# ---------------------------------------------------------------- build (the only cargo call)
if [[ -n "${CKV_BIN:-}" ]]; then
    BIN="$CKV_BIN"
else
    BIN="$REPO/target/release/causalkv"
    need_build=0
    if [[ ! -x "$BIN" ]]; then
        need_build=1
    elif [[ -n "$(find src proto build.rs Cargo.toml Cargo.lock -newer "$BIN" -print -quit 2>/dev/null)" ]]; then
        need_build=1
    fi
    if [[ $need_build == 1 ]]; then
        if [[ "${NO_BUILD:-0}" == 1 ]]; then
            [[ -x "$BIN" ]] || { say "NO_BUILD=1 and $BIN is missing"; exit 1; }
            say "NO_BUILD=1: using $BIN although the sources are newer"
        else
            step "BUILD STEP: cargo build --release --locked (binary missing or older than the sources)"
            cargo build --release --locked
        fi
    fi
fi
[[ -x "$BIN" ]] || { say "no binary at $BIN"; exit 1; }
BIN_STALE=0
if [[ -z "${CKV_BIN:-}" && -n "$(find src proto build.rs Cargo.toml Cargo.lock -newer "$BIN" -print -quit 2>/dev/null)" ]]; then
    BIN_STALE=1
fi
if ! "$BIN" bench --help >/dev/null 2>&1; then
    say "$BIN has no 'bench' subcommand (is the load generator built?)"
    exit 1
fi

# ---------------------------------------------------------------- charts' Python (non-fatal)
VENV="$REPO/target/bench-venv"
PY=python3
if "$VENV/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
    PY="$VENV/bin/python"
else
    say "installing matplotlib (PyPI) into $VENV for the charts"
    if python3 -m venv "$VENV" >"$LOGS/pip.log" 2>&1 \
        && run_bounded 600 "$LOGS/pip.stdout" "$LOGS/pip.log" "$VENV/bin/pip" install --quiet --disable-pip-version-check matplotlib \
        && "$VENV/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
        PY="$VENV/bin/python"
    else
        say "WARNING: matplotlib could not be installed (see $LOGS/pip.log): the report will have no charts"
    fi
fi
REPORT=("$PY" "$BENCH/report.py")

# ---------------------------------------------------------------- wrk (the cross-check; non-fatal)
WRK_OK=0
if [[ $SKIP_WRK != 1 ]]; then
    if ! command -v wrk >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing wrk (Debian) for the cross-check"
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y wrk >"$LOGS/apt-wrk.log" 2>&1 || true
    fi
    if command -v wrk >/dev/null 2>&1; then
        WRK_OK=1
    else
        say "WARNING: wrk is not installed and could not be (see $LOGS/apt-wrk.log): no cross-check rows"
    fi
fi

# ---------------------------------------------------------------- machine, commit, placement
CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
KERNEL="$(uname -r)"
COMMIT="$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [[ "$COMMIT" != unknown ]] && ! git -C "$REPO" diff --quiet HEAD -- src proto build.rs Cargo.toml Cargo.lock 2>/dev/null; then
    COMMIT="$COMMIT-dirty"
fi
affinity_of() { taskset -pc "$1" 2>/dev/null | sed 's/.*: //' || echo '?'; }
if [[ $CPUS == split ]]; then CPUS_SERVERS=0; CPUS_LOAD=1; else CPUS_SERVERS="$(affinity_of $$)"; CPUS_LOAD="$CPUS_SERVERS"; fi
ETCD_VERSION=""
if [[ $SKIP_ETCD != 1 ]] && command -v etcd >/dev/null 2>&1; then
    ETCD_VERSION="$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')"
fi

step "machine"
echo "nproc:      $NPROC"
echo "cpu:        ${CPU_MODEL:-unknown}"
echo "kernel:     $KERNEL"
echo "commit:     $COMMIT"
echo "binary:     $BIN$([[ $BIN_STALE == 1 ]] && echo ' (OLDER than the sources: the commit above may not be what runs)')"
echo "placement:  CPUS=$CPUS (servers: $CPUS_SERVERS; load generator: $CPUS_LOAD)"
echo "workload:   ${VALUE_SIZE}-byte values, $CONNS connections, ${RUN_SECS} s + ${WARMUP} s warm-up, $KEYS keys$([[ $SMOKE == 1 ]] && echo ', SMOKE')"
echo "results:    $RESULTS"

[[ -f "$RUNS" ]] && mv -f "$RUNS" "$RUNS.prev"
: > "$RUNS"

# ---------------------------------------------------------------- helpers
ensure_free() {   # refuse to benchmark a stale server left on one of our addresses
    local a
    for a in "$@"; do
        if lcurl -o /dev/null "http://$a/"; then
            say "something already answers on $a: stop it first (a leftover server?)"
            exit 1
        fi
    done
}

start_node() {    # NAME ADDR VIEW SHARD_COUNT
    local name="$1" addr="$2" view="$3" shards="$4"
    SOCKET_ADDRESS="$addr" VIEW="$view" SHARD_COUNT="$shards" \
        ${PIN_SERVER[@]+"${PIN_SERVER[@]}"} "$BIN" serve </dev/null >"$LOGS/$name.log" 2>&1 &
    SERVER_PIDS+=("$!")
    SERVER_NAMES+=("$name")
}

check_alive() {
    local i
    for i in "${!SERVER_PIDS[@]}"; do
        if ! kill -0 "${SERVER_PIDS[$i]}" 2>/dev/null; then
            tail -n 20 "$LOGS/${SERVER_NAMES[$i]}.log" >&2 || true
            say "${SERVER_NAMES[$i]} (pid ${SERVER_PIDS[$i]}) exited; log: $LOGS/${SERVER_NAMES[$i]}.log"
            return 1
        fi
    done
}

report_affinity() {
    local i
    for i in "${!SERVER_PIDS[@]}"; do
        echo "  ${SERVER_NAMES[$i]} pid ${SERVER_PIDS[$i]} affinity $(affinity_of "${SERVER_PIDS[$i]}")" >&2
    done
    echo "  load generator affinity $CPUS_LOAD" >&2
}

# Wait (at most TRIES x 0.1 s in all) until a PUT succeeds on every address.
wait_kvs_ready() {
    local tries="$1"; shift
    local a code try=0
    for a in "$@"; do
        while :; do
            code="$(lcurl -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
                -d '{"value":"x","causal-metadata":null}' "http://$a/kvs/ready-check" || true)"
            [[ "$code" == 200 || "$code" == 201 ]] && break
            check_alive || return 1
            try=$((try + 1))
            if [[ $try -ge $tries ]]; then
                say "$a not serving /kvs after $tries polls (last HTTP code '$code')"
                return 1
            fi
            sleep 0.1
        done
    done
}

start_ckv() {     # PREFIX SHARDS ADDR...
    local prefix="$1" shards="$2"; shift 2
    local view i=0 a
    view="$(IFS=,; echo "$*")"
    ensure_free "$@"
    for a in "$@"; do
        i=$((i + 1))
        start_node "$prefix-n$i" "$a" "$view" "$shards"
    done
    wait_kvs_ready 300 "$@" || return 1
    report_affinity
}

start_ceiling() {
    ensure_free "$CEILING"
    ${PIN_SERVER[@]+"${PIN_SERVER[@]}"} "$BIN" ceiling --listen "$CEILING" </dev/null >"$LOGS/ceiling.log" 2>&1 &
    SERVER_PIDS+=("$!")
    SERVER_NAMES+=(ceiling)
    local try code
    for ((try = 0; try < 100; try++)); do
        code="$(lcurl -o /dev/null -w '%{http_code}' "http://$CEILING/kvs/x" || true)"
        [[ "$code" == 404 || "$code" == 200 ]] && { report_affinity; return 0; }
        check_alive || return 1
        sleep 0.1
    done
    say "ceiling not answering on $CEILING after 100 polls"
    return 1
}

record_failure() {   # LABEL SERIES SYSTEM SHAPE VARIANT MODE MIX REASON
    FAILURES+=("$1 $7: $8")
    say "FAILED: $1 $7: $8"
    printf '{"label":"%s","series":"%s","system":"%s","shape":"%s","variant":"%s","mode":"%s","mix":"%s","cpus":"%s","failed":true,"failure":"%s"}\n' \
        "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$CPUS" "${8//\"/\'}" >> "$RUNS"
}

# run_wrk SERIES SYSTEM SHAPE VARIANT API MIX TARGETS_CSV CONNECTIONS
# wrk thread i sends to target i mod n (bench/wrk/kv.lua); one thread per target, so the
# connections are rounded down to a multiple of the targets (reported in the row).
run_wrk() {
    [[ $WRK_OK == 1 ]] || return 0
    local series="$1" system="$2" shape="$3" variant="$4" api="$5" mix="$6" targets="$7" conns="$8"
    local label="$series" rc=0 threads c
    [[ "$variant" == closed ]] || label="$series-$variant"
    local out="$LOGS/wrk-$label-$mix.json" log="$LOGS/wrk-$label-$mix.log"
    IFS=, read -r -a tlist <<<"$targets"
    threads=${#tlist[@]}
    [[ $threads -gt $conns ]] && threads=$conns
    c=$((conns / threads * threads))
    say "wrk $label $mix: -t$threads -c$c -d${RUN_SECS}s, targets $targets"
    rm -f "$out"
    run_bounded $((RUN_SECS + 60)) "$log" "$log.err" ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} \
        env WRK_API="$api" WRK_MIX="$mix" WRK_KEYS="$KEYS" WRK_VALUE_SIZE="$VALUE_SIZE" \
        WRK_TARGETS="$targets" WRK_JSON="$out" \
        wrk -t"$threads" -c"$c" -d"${RUN_SECS}s" --timeout 5s -s "$BENCH/wrk/kv.lua" "http://${tlist[0]}/" || rc=$?
    if [[ $rc -ne 0 || ! -s "$out" ]]; then
        tail -n 5 "$log" "$log.err" >&2 || true
        record_failure "$label" "$series" "$system" "$shape" "$variant" closed "$mix" "wrk exited $rc (log: $log)"
        return 0
    fi
    "${REPORT[@]}" annotate --label "$label" --series "$series" --system "$system" \
        --shape "$shape" --variant "$variant" --generator wrk --api "$api" --mode closed \
        --mix "$mix" --concurrency "$c" --value-size "$VALUE_SIZE" --keys "$KEYS" \
        --cpus "$CPUS" --cpus-servers "$CPUS_SERVERS" \
        --cpus-load "$CPUS_LOAD" --warmup 0 --commit "$COMMIT" <"$out" >>"$RUNS" \
        || record_failure "$label" "$series" "$system" "$shape" "$variant" closed "$mix" "wrk printed no JSON line ($out)"
}

# run_bench SERIES SYSTEM SHAPE VARIANT API MODE MIX TARGETS_CSV [extra bench args...]
# (RUN_CONNS, when set, replaces CONNS for this run)
run_bench() {
    local series="$1" system="$2" shape="$3" variant="$4" api="$5" mode="$6" mix="$7" targets="$8"
    shift 8
    local label="$series"
    [[ "$variant" == closed ]] || label="$series-$variant"
    local args=() t rc=0 log="$LOGS/bench-$label-$mix.log" out="$LOGS/bench-$label-$mix.json"
    IFS=, read -r -a tlist <<<"$targets"
    for t in "${tlist[@]}"; do args+=(--target "$t"); done
    args+=(--api "$api" --mode "$mode" --concurrency "${RUN_CONNS:-$CONNS}" --seconds "$RUN_SECS" --warmup "$WARMUP"
           --mix "$mix" --value-size "$VALUE_SIZE" --keys "$KEYS" --label "$label" --json "$@")
    say "bench $label: ${args[*]}"
    # Bounded: measured + warm-up + preload/connection slack.
    local limit=$((RUN_SECS + WARMUP + 180))
    run_bounded "$limit" "$out" "$log" ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} "$BIN" bench "${args[@]}" || rc=$?
    if [[ $rc -ne 0 ]]; then
        tail -n 5 "$log" >&2 || true
        record_failure "$label" "$series" "$system" "$shape" "$variant" "$mode" "$mix" "bench exited $rc (log: $log)"
        return 0
    fi
    if ! "${REPORT[@]}" annotate --series "$series" --system "$system" \
            --shape "$shape" --variant "$variant" --cpus "$CPUS" --cpus-servers "$CPUS_SERVERS" \
            --cpus-load "$CPUS_LOAD" --warmup "$WARMUP" --commit "$COMMIT" <"$out" >>"$RUNS"; then
        record_failure "$label" "$series" "$system" "$shape" "$variant" "$mode" "$mix" "bench printed no single JSON line (stdout: $out)"
    fi
}

closed_mixes() {  # SERIES SYSTEM SHAPE API TARGETS  (both generators)
    local mix
    for mix in put mixed read; do
        run_bench "$1" "$2" "$3" closed "$4" closed "$mix" "$5"
        run_wrk "$1" "$2" "$3" closed "$4" "$mix" "$5" "$CONNS"
    done
}

one_target_runs() {  # SERIES SYSTEM SHAPE API FIRST_TARGET [1t]  put at one node: CONNS (1t), 1 (c1)
    if [[ "${6:-}" == 1t ]]; then
        run_bench "$1" "$2" "$3" 1t "$4" closed put "$5"
        run_wrk "$1" "$2" "$3" 1t "$4" put "$5" "$CONNS"
    fi
    RUN_CONNS=1 run_bench "$1" "$2" "$3" c1 "$4" closed put "$5"
    run_wrk "$1" "$2" "$3" c1 "$4" put "$5" 1
}

OPEN_RATE_USED=""
open_runs() {     # SERIES SYSTEM SHAPE API TARGETS
    [[ -n "$OPEN_RATE_USED" ]] || { say "no open-loop rate (ceiling put run missing and OPEN_RATE unset): open loop skipped for $1"; return 0; }
    run_bench "$1" "$2" "$3" open "$4" open put "$5" --rate "$OPEN_RATE_USED"
    local own
    own="$("${REPORT[@]}" get "$RUNS" "$1" put throughput)"
    if [[ -n "$own" ]] && awk -v o="$own" -v r="$OPEN_RATE_USED" 'BEGIN { exit !(o < 1.25 * r) }'; then
        local self
        self="$(awk -v o="$own" 'BEGIN { r = int(o / 2); if (r < 1) r = 1; print r }')"
        say "$1's closed-loop PUT ($own ops/s) is below 1.25 x the common rate: also at 50% of its own ($self ops/s)"
        run_bench "$1" "$2" "$3" open-self "$4" open put "$5" --rate "$self"
    fi
}

csv() { local IFS=,; echo "$*"; }

# ---------------------------------------------------------------- meta line
META_CPU_MODEL="$CPU_MODEL" META_KERNEL="$KERNEL" META_COMMIT="$COMMIT" META_CPUS="$CPUS" \
META_CPUS_SERVERS="$CPUS_SERVERS" META_CPUS_LOAD="$CPUS_LOAD" META_ETCD="$ETCD_VERSION" \
META_STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" META_STALE="$BIN_STALE" \
"$PY" - "$RUNS" "$NPROC" "$VALUE_SIZE" "$CONNS" "$RUN_SECS" "$WARMUP" "$KEYS" "$MEM_KEYS" "$SMOKE" <<'EOF'
import json, os, sys
path = sys.argv[1]
nproc, vsize, conns, secs, warmup, keys, mem_keys, smoke = (int(x) for x in sys.argv[2:10])
e = os.environ
meta = {"label": "meta", "nproc": nproc, "cpu_model": e["META_CPU_MODEL"], "kernel": e["META_KERNEL"],
        "commit": e["META_COMMIT"], "cpus": e["META_CPUS"], "cpus_servers": e["META_CPUS_SERVERS"],
        "cpus_load": e["META_CPUS_LOAD"], "etcd_version": e["META_ETCD"] or None, "value_size": vsize,
        "conns": conns, "seconds": secs, "warmup": warmup, "keys": keys, "mem_keys": mem_keys,
        "open_rate": None, "smoke": bool(smoke), "started": e["META_STARTED"],
        "binary_stale": e["META_STALE"] == "1"}
with open(path, "a") as f:
    f.write(json.dumps(meta) + "\n")
EOF

set_meta_open_rate() {   # the rate is known only after the ceiling ran
    "$PY" - "$RUNS" "$1" <<'EOF'
import json, sys
path, rate = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
out = []
for ln in lines:
    try:
        o = json.loads(ln)
    except json.JSONDecodeError:
        out.append(ln); continue
    if isinstance(o, dict) and o.get("label") == "meta":
        o["open_rate"] = int(rate)
        ln = json.dumps(o)
    out.append(ln)
open(path, "w").write("\n".join(out) + "\n")
EOF
}

# ---------------------------------------------------------------- c. ceiling
step "ceiling ($CEILING)"
if start_ceiling; then
    closed_mixes ceiling ceiling 1 kvs "$CEILING"
    one_target_runs ceiling ceiling 1 kvs "$CEILING"
    if [[ -n "$OPEN_RATE" ]]; then
        OPEN_RATE_USED="$OPEN_RATE"
    else
        ceil_put="$("${REPORT[@]}" get "$RUNS" ceiling put throughput)"
        if [[ -n "$ceil_put" ]]; then
            OPEN_RATE_USED="$(awk -v t="$ceil_put" 'BEGIN { r = int(t / 2); if (r < 1) r = 1; print r }')"
        fi
    fi
    if [[ -n "$OPEN_RATE_USED" ]]; then
        say "open-loop rate: $OPEN_RATE_USED ops/s$([[ -z "$OPEN_RATE" ]] && echo ' (50% of the ceiling PUT throughput)')"
        set_meta_open_rate "$OPEN_RATE_USED"
    fi
    open_runs ceiling ceiling 1 kvs "$CEILING"
else
    record_failure ceiling ceiling ceiling 1 closed closed put "ceiling did not start (log: $LOGS/ceiling.log)"
    if [[ -n "$OPEN_RATE" ]]; then OPEN_RATE_USED="$OPEN_RATE"; set_meta_open_rate "$OPEN_RATE_USED"; fi
fi
stop_servers

# ---------------------------------------------------------------- a. causalkv 1 shard x 3 replicas
step "causalkv 1 shard x 3 replicas (${CKV13[*]})"
if start_ckv ckv13 1 "${CKV13[@]}"; then
    T="$(csv "${CKV13[@]}")"
    closed_mixes ckv-1x3 causalkv 1x3 kvs "$T"
    one_target_runs ckv-1x3 causalkv 1x3 kvs "${CKV13[0]}" 1t
    run_bench ckv-1x3 causalkv 1x3 lag kvs closed put "$T" --lag
    open_runs ckv-1x3 causalkv 1x3 kvs "$T"
else
    record_failure ckv-1x3 ckv-1x3 causalkv 1x3 closed closed put "cluster did not become ready (logs: $LOGS/ckv13-n*.log)"
fi
stop_servers

# ---------------------------------------------------------------- b. causalkv 2 shards x 3 replicas
step "causalkv 2 shards x 3 replicas (${CKV23[*]})"
if start_ckv ckv23 2 "${CKV23[@]}"; then
    T="$(csv "${CKV23[@]}")"
    closed_mixes ckv-2x3 causalkv 2x3 kvs "$T"
    one_target_runs ckv-2x3 causalkv 2x3 kvs "${CKV23[0]}" 1t
    open_runs ckv-2x3 causalkv 2x3 kvs "$T"
else
    record_failure ckv-2x3 ckv-2x3 causalkv 2x3 closed closed put "cluster did not become ready (logs: $LOGS/ckv23-n*.log)"
fi
stop_servers

# ---------------------------------------------------------------- d. etcd
if [[ $SKIP_ETCD == 1 ]]; then
    step "etcd: skipped (SKIP_ETCD=1)"
else
    step "etcd 3 members (${ETCD_MEMBERS[*]})"
    ETCD_UP=1   # from here, cleanup stops whatever etcd.sh started
    if ETCD_CPUS="$([[ $CPUS == split ]] && echo 0 || true)" "$BENCH/etcd.sh" start "$ETCD_DIR"; then
        "$BENCH/etcd.sh" status "$ETCD_DIR" >&2 || true
        ETCD_VERSION="$(cat "$ETCD_DIR/etcd-version.txt" 2>/dev/null || echo "$ETCD_VERSION")"
        T="$(csv "${ETCD_MEMBERS[@]}")"
        closed_mixes etcd etcd 3 etcd "$T"
        open_runs etcd etcd 3 etcd "$T"
    else
        record_failure etcd etcd etcd 3 closed closed put "etcd did not start (logs: $ETCD_DIR/etcd-m*.log)"
    fi
    stop_etcd
    "$PY" - "$RUNS" "$ETCD_VERSION" <<'EOF'
import json, sys
path, ver = sys.argv[1], sys.argv[2]
out = []
for ln in open(path).read().splitlines():
    try:
        o = json.loads(ln)
        if isinstance(o, dict) and o.get("label") == "meta":
            o["etcd_version"] = ver or None
            ln = json.dumps(o)
    except json.JSONDecodeError:
        pass
    out.append(ln)
open(path, "w").write("\n".join(out) + "\n")
EOF
fi

# ---------------------------------------------------------------- f. memory
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

key_count() {    # ADDR -> shard 0 key count or empty
    lcurl "http://$1/shard/key-count/0" | sed -n 's/.*"shard-key-count"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p'
}

if [[ $SKIP_MEMORY == 1 ]]; then
    step "memory: skipped (SKIP_MEMORY=1)"
else
    step "memory: fresh causalkv 1 shard x 3 replicas (${MEMNODES[*]}), $MEM_KEYS keys of $VALUE_SIZE B"
    if start_ckv mem 1 "${MEMNODES[@]}"; then
        sleep 1   # let start-up allocations settle
        before=()
        for pid in "${SERVER_PIDS[@]}"; do before+=("$(rss_kb "$pid")"); done
        say "RSS before: ${before[*]} kB"
        T="$(csv "${MEMNODES[@]}")"
        fill_args=()
        for t in "${MEMNODES[@]}"; do fill_args+=(--target "$t"); done
        fill_args+=(--api kvs --mode closed --concurrency "$CONNS" --mix put --value-size "$VALUE_SIZE"
                    --keys "$MEM_KEYS" --label memory-fill --fill --json)
        say "bench memory-fill: ${fill_args[*]}"
        fill_rc=0
        run_bounded 1800 "$LOGS/bench-memory-fill.json" "$LOGS/bench-memory-fill.log" \
            ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} "$BIN" bench "${fill_args[@]}" || fill_rc=$?
        if [[ $fill_rc -ne 0 ]]; then
            tail -n 5 "$LOGS/bench-memory-fill.log" >&2 || true
            record_failure memory memory causalkv 1x3 fill closed put "fill exited $fill_rc (log: $LOGS/bench-memory-fill.log)"
        else
            # Wait (bounded) until every replica holds the same number of keys, at least MEM_KEYS.
            counts=()
            converged=0
            MEM_WAIT_TRIES="${MEM_WAIT_TRIES:-600}"       # x 0.5 s = 300 s
            for ((try = 0; try < MEM_WAIT_TRIES; try++)); do
                counts=()
                for a in "${MEMNODES[@]}"; do counts+=("$(key_count "$a" || true)"); done
                if [[ -n "${counts[0]}" && "${counts[0]}" -ge "$MEM_KEYS" ]]; then
                    same=1
                    for c in "${counts[@]}"; do [[ "$c" == "${counts[0]}" ]] || same=0; done
                    [[ $same == 1 ]] && { converged=1; break; }
                fi
                check_alive || break
                sleep 0.5
            done
            say "key counts: ${counts[*]} (converged: $converged after $((try / 2)) s)"
            sleep 1
            after=()
            for pid in "${SERVER_PIDS[@]}"; do after+=("$(rss_kb "$pid" || echo 0)"); done
            say "RSS after: ${after[*]} kB"
            if [[ $converged == 1 ]]; then
                FILL_JSON="$(cat "$LOGS/bench-memory-fill.json")" "$PY" - "$RUNS" "$MEM_KEYS" "$VALUE_SIZE" "$CPUS" "$COMMIT" \
                    "${before[*]}" "${after[*]}" "${counts[*]}" <<'EOF'
import json, os, sys
path, keys, vsize, cpus, commit, before, after, counts = sys.argv[1:9]
keys, vsize = int(keys), int(vsize)
before = [int(x) for x in before.split()]
after = [int(x) for x in after.split()]
counts = [int(x) for x in counts.split()]
per = [round((a - b) * 1024 / keys, 1) for a, b in zip(after, before)]
fill = None
try:
    fill = json.loads(os.environ["FILL_JSON"].strip().splitlines()[-1])
except Exception:
    pass
rec = {"label": "memory", "system": "causalkv", "shape": "1x3", "cpus": cpus, "commit": commit,
       "keys": keys, "value_size": vsize, "rss_before_kb": before, "rss_after_kb": after,
       "bytes_per_key_nodes": per, "bytes_per_key": max(per), "overhead_per_key": round(max(per) - vsize, 1),
       "key_counts": counts,
       "fill": {k: fill.get(k) for k in ("ops", "errors", "throughput", "seconds", "latency_ms")} if isinstance(fill, dict) else None}
with open(path, "a") as f:
    f.write(json.dumps(rec) + "\n")
print(f"  -> memory: {per} bytes/key per replica (max {max(per)}), overhead beyond the value {round(max(per) - vsize, 1)} B/key", file=sys.stderr)
EOF
            else
                record_failure memory memory causalkv 1x3 fill closed put "replicas did not converge on one key count >= $MEM_KEYS (counts: ${counts[*]})"
            fi
        fi
    else
        record_failure memory memory causalkv 1x3 fill closed put "cluster did not become ready (logs: $LOGS/mem-n*.log)"
    fi
    stop_servers
fi

# ---------------------------------------------------------------- report
step "report"
report_args=("$RUNS" --out "$RESULTS")
[[ "$PY" == python3 ]] && report_args+=(--no-plots)
"${REPORT[@]}" "${report_args[@]}"

if [[ ${#FAILURES[@]} -gt 0 ]]; then
    say "${#FAILURES[@]} run(s) failed:"
    for f in "${FAILURES[@]}"; do echo "  $f" >&2; done
    exit 1
fi
say "done: $RESULTS"
