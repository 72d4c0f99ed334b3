#!/usr/bin/env bash
# A/B: the same closed-loop workload against clusters run by two causalkv binaries, alternated
# ROUNDS times in one run (this machine is noisy: compare medians measured side by side).
#   bench/ab.sh BASE_BIN NEW_BIN [SHAPE...]      SHAPE = NODESxSHARDS, default "3x1 6x2"
# Env: ROUNDS (3), BENCH_SECONDS (4), MIX (put), NET (127.0.72). The load generator is NEW_BIN's.
set -euo pipefail
base=$1 new=$2; shift 2
shapes=${*:-3x1 6x2}
rounds=${ROUNDS:-3} secs=${BENCH_SECONDS:-4} mix=${MIX:-put} net=${NET:-127.0.72}
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  pids=()
}
trap stop EXIT INT TERM
start() { # BIN NODES SHARDS
  local bin=$1 n=$2 s=$3 view="" h
  for h in $(seq 2 $((n + 1))); do view+="$net.$h:9101,"; done
  view=${view%,}
  for h in $(seq 2 $((n + 1))); do
    SOCKET_ADDRESS=$net.$h:9101 VIEW=$view SHARD_COUNT=$s "$bin" serve 2>/dev/null &
    pids+=($!)
  done
  for h in $(seq 2 $((n + 1))); do
    for i in $(seq 100); do
      code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
        -d '{"value":"x","causal-metadata":null}' "http://$net.$h:9101/kvs/ab-ready" || true)
      [[ $code == 200 || $code == 201 ]] && break
      [[ $i == 100 ]] && { echo "node $net.$h not ready" >&2; exit 1; }
      sleep 0.1
    done
  done
}
declare -A results
for r in $(seq "$rounds"); do
  for shape in $shapes; do
    n=${shape%x*} s=${shape#*x}
    for which in base new; do
      bin=$base; [[ $which == new ]] && bin=$new
      start "$bin" "$n" "$s"
      targets=()
      for h in $(seq 2 $((n + 1))); do targets+=(--target "$net.$h:9101"); done
      tput=$("$new" bench "${targets[@]}" --seconds "$secs" --warmup 1 --mix "$mix" --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["throughput"], d["latency_ms"]["p99"], d["errors"], d["status"] if d["errors"] else "")')
      echo "round $r $shape $which: ops/s p99_ms errors = $tput"
      results[$shape.$which]+="${tput%% *} "
      stop
    done
  done
done
for shape in $shapes; do
  python3 - "$shape" "${results[$shape.base]}" "${results[$shape.new]}" <<'PY'
import statistics, sys
shape, b, n = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
mb, mn = statistics.median(b), statistics.median(n)
print(f"{shape}: median base {mb:.0f} ops/s, new {mn:.0f} ops/s, new/base {mn/mb:.3f}")
PY
done
