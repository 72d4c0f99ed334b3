#!/usr/bin/env bash
# A/B(/C...): the same closed-loop workload against clusters run by several causalkv binaries,
# alternated ROUNDS times in one run (this machine is noisy: compare medians measured side by
# side, never numbers from different runs).
#   bench/ab.sh BASE_BIN NEW_BIN [MORE_BINS...]
# Env:
#   SHAPES ("3x1 6x2")  NODESxSHARDS clusters to measure
#   ROUNDS (3)  BENCH_SECONDS (4)  MIX (put)  CONNS (32)
#   TARGETS (first)  first: every connection to the first node; all: round-robin over the nodes
#   CPUS (split)     split: servers on CPU 0, load generator on CPU 1; shared: nothing pinned
#   GEN              the load generator binary (default: the last binary's `bench`)
#   NET (127.0.72)   loopback /24 the nodes listen on
# Prints every measurement, then per shape the median ops/s and p99 of each binary and its ratio
# to the first binary's median.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
bins=("$@")
shapes=${SHAPES:-3x1 6x2}
rounds=${ROUNDS:-3} secs=${BENCH_SECONDS:-4} mix=${MIX:-put} net=${NET:-127.0.72}
conns=${CONNS:-32} targets_mode=${TARGETS:-first} cpus=${CPUS:-split}
gen=${GEN:-${bins[-1]}}
case $cpus in
  split) pin_server=(taskset -c 0) pin_load=(taskset -c 1) ;;
  shared) pin_server=() pin_load=() ;;
  *) echo "CPUS must be split or shared" >&2; exit 2 ;;
esac
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  pids=()
}
trap stop EXIT
trap 'stop; exit 130' INT TERM
start() { # BIN NODES SHARDS
  local bin=$1 n=$2 s=$3 view="" h i code
  for h in $(seq 2 $((n + 1))); do view+="$net.$h:9101,"; done
  view=${view%,}
  # a server left running on one of the addresses would be measured instead (a node that
  # cannot bind exits, and the old one answers the readiness probe)
  for h in $(seq 2 $((n + 1))); do
    if curl --noproxy '*' -s -o /dev/null --max-time 1 "http://$net.$h:9101/view"; then
      echo "something already answers on $net.$h:9101: stop it first" >&2; exit 1
    fi
  done
  for h in $(seq 2 $((n + 1))); do
    SOCKET_ADDRESS=$net.$h:9101 VIEW=$view SHARD_COUNT=$s ${pin_server[@]+"${pin_server[@]}"} "$bin" serve 2>/dev/null &
    pids+=($!)
  done
  for h in $(seq 2 $((n + 1))); do
    for i in $(seq 150); do
      code=$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
        -d '{"value":"x","causal-metadata":null}' "http://$net.$h:9101/kvs/ab-ready" || true)
      [[ $code == 200 || $code == 201 ]] && break
      [[ $i == 150 ]] && { echo "node $net.$h not ready" >&2; exit 1; }
      sleep 0.1
    done
    ids=$(curl --noproxy '*' -s "http://$net.$h:9101/shard/ids" || true)
    [[ $(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["shard-ids"]))' "$ids" 2>/dev/null) == "$s" ]] ||
      { echo "node $net.$h: shard ids $ids, expected $s shards" >&2; exit 1; }
  done
}
declare -A results
for r in $(seq "$rounds"); do
  for shape in $shapes; do
    n=${shape%x*} s=${shape#*x}
    for i in "${!bins[@]}"; do
      start "${bins[$i]}" "$n" "$s"
      targets=(--target "$net.2:9101")
      if [[ $targets_mode == all ]]; then
        targets=()
        for h in $(seq 2 $((n + 1))); do targets+=(--target "$net.$h:9101"); done
      fi
      out=$(${pin_load[@]+"${pin_load[@]}"} "$gen" bench "${targets[@]}" --seconds "$secs" --warmup 1 \
          --mix "$mix" --concurrency "$conns" --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["throughput"], d["latency_ms"]["p99"], d["errors"])')
      echo "round $r $shape bin$i (${bins[$i]}): ops/s p99_ms errors = $out"
      results[$shape.$i]+="${out// /,} "
      stop
    done
  done
done
echo "medians (MIX=$mix CONNS=$conns TARGETS=$targets_mode CPUS=$cpus, $rounds rounds of ${secs} s):"
for shape in $shapes; do
  args=()
  for i in "${!bins[@]}"; do args+=("${bins[$i]}" "${results[$shape.$i]}"); done
  python3 - "$shape" "${args[@]}" <<'PY'
import statistics, sys
shape, rest = sys.argv[1], sys.argv[2:]
base = None
for i in range(0, len(rest), 2):
    name, runs = rest[i], [x.split(",") for x in rest[i + 1].split()]
    t = statistics.median(float(x[0]) for x in runs)
    p = statistics.median(float(x[1]) for x in runs)
    base = base or t
    print(f"  {shape} bin{i // 2} {name}: median {t:.0f} ops/s, p99 {p:.2f} ms, ratio to bin0 {t / base:.3f}")
PY
done
