#!/usr/bin/env bash
# bench/etcd.sh start|stop|status DIR
#
# A 3-member etcd cluster on loopback, for the side-by-side benchmark (bench/compare.sh).
#   members  127.0.71.2, 127.0.71.3, 127.0.71.4   client port 2379, peer port 2380
#            (ETCD_NET=127.A.B moves them to 127.A.B.2-4)
#   DIR      holds the data dirs (DIR/data-m1 …, wiped on every start: --initial-cluster-state new),
#            the logs (DIR/etcd-m1.log …) and the pid files (DIR/etcd-m1.pid …)
#
# start   installs Debian's etcd-server with apt-get if `etcd` is missing, starts the three
#         members in the background, waits (bounded) until every member reports healthy and a put
#         + range through the v3 JSON gateway (POST /v3/kv/put, /v3/kv/range) succeeds, then
#         returns 0 with the members still running. On failure it stops what it started.
# stop    stops the members whose pid files are in DIR (SIGTERM, bounded wait, then SIGKILL) and
#         removes their data dirs (ETCD_KEEP_DATA=1 keeps them).
# status  prints the version, each member's pid, health and affinity.
#
# Environment:
#   ETCD_CPUS=LIST   run every member under `taskset -c LIST` (compare.sh's CPUS=split uses 0)
#   ETCD_WAIT_TRIES  health polls, 0.2 s apart (default 150, i.e. 30 s)
#   ETCD_KEEP_DATA=1 keep the data dirs on stop
#
# Flags: etcd's defaults for everything that affects speed or durability (fsync of the WAL on every
# commit, --snapshot-count 100000, heartbeat 100 ms, election 1000 ms, 2 GiB backend quota, no
# auto-compaction); only addresses, names, data dirs and logging are set. Data dirs sit on the same
# disk as everything else (under DIR).
set -euo pipefail

ETCD_NET="${ETCD_NET:-127.0.71}"
[[ "$ETCD_NET" =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "etcd.sh: ETCD_NET must be 127.A.B (got '$ETCD_NET')" >&2; exit 2; }
MEMBER_IPS=("$ETCD_NET.2" "$ETCD_NET.3" "$ETCD_NET.4")
CLIENT_PORT=2379
PEER_PORT=2380
WAIT_TRIES="${ETCD_WAIT_TRIES:-150}"
STARTED_OK=0

die() { echo "etcd.sh: $*" >&2; exit 1; }
say() { echo "etcd.sh: $*" >&2; }

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
CMD="$1"
DIR="$2"

# Loopback only: never let a proxy setting route these requests elsewhere.
lcurl() { curl --noproxy '*' -s --connect-timeout 1 --max-time 3 "$@"; }

ensure_etcd() {
    if command -v etcd >/dev/null 2>&1; then return 0; fi
    command -v apt-get >/dev/null 2>&1 || die "etcd is missing and apt-get is not available"
    [[ $(id -u) == 0 ]] || die "etcd is missing; install it with: sudo apt-get install etcd-server"
    say "installing Debian's etcd-server (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
    command -v etcd >/dev/null 2>&1 || die "apt-get install etcd-server did not provide etcd"
    # Debian's package enables a system etcd service (127.0.0.1:2379) where systemd runs; it does
    # not clash with the loopback addresses used here, but it would share the CPUs.
    if lcurl -o /dev/null http://127.0.0.1:2379/health; then
        say "WARNING: a system etcd answers on 127.0.0.1:2379 (the package's service); it competes for CPU: stop it with 'systemctl stop etcd'"
    fi
}

etcd_version() { etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'; }

# Is PID one of the members started with data dirs under DIR? (guards against pid reuse)
is_ours() {
    local pid="$1" comm cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == etcd ]] || return 1
    cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"--data-dir $DIR/data-"* ]]
}

stop_members() {
    local f pid pids=() files=() i
    shopt -s nullglob
    for f in "$DIR"/etcd-m*.pid; do
        files+=("$f")
        pid="$(cat "$f" 2>/dev/null || true)"
        if is_ours "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    shopt -u nullglob
    # The pid files go only once their processes are gone, so an interrupted stop can be repeated.
    if [[ ${#pids[@]} -eq 0 ]]; then
        rm -f ${files[@]+"${files[@]}"}
        remove_data
        return 0
    fi
    for ((i = 0; i < 50; i++)); do          # at most 10 s for a clean exit
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.2
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            say "member pid $pid did not stop in 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${pids[@]}"; do             # SIGKILLed ones are gone at once; bound it anyway
        for ((i = 0; i < 25; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    done
    rm -f "${files[@]}"
    say "stopped ${#pids[@]} member(s)"
    remove_data
}

# The data dirs (WAL segments are preallocated, 64 MB each) go when the members stop, unless
# ETCD_KEEP_DATA=1; the logs stay.
remove_data() {
    [[ "${ETCD_KEEP_DATA:-0}" == 1 ]] && return 0
    rm -rf "$DIR"/data-m[0-9]
}

b64() { printf '%s' "$1" | base64 | tr -d '\n'; }

# One put and one range through the v3 JSON gateway on member IP; prints the range response.
gateway_check() {
    local ip="$1" key val out
    key="$(b64 ckv-bench-gateway-check)"
    val="$(b64 "ok-$ip")"
    out="$(lcurl -X POST "http://$ip:$CLIENT_PORT/v3/kv/put" \
        -d "{\"key\":\"$key\",\"value\":\"$val\"}")" || return 1
    [[ "$out" == *'"header"'* && "$out" != *'"error"'* ]] || return 1
    out="$(lcurl -X POST "http://$ip:$CLIENT_PORT/v3/kv/range" -d "{\"key\":\"$key\"}")" || return 1
    [[ "$out" == *"\"value\":\"$val\""* ]] || return 1
    printf '%s\n' "$out"
}

on_signal() {     # stop what was started, then die of the same signal (the caller's trap sees it)
    trap - EXIT INT TERM
    [[ $STARTED_OK == 1 ]] || stop_members
    kill -"$1" $$
}

start_members() {
    ensure_etcd
    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd)"
    stop_members                       # leftovers of an earlier run with the same DIR
    local ip
    for ip in "${MEMBER_IPS[@]}"; do
        if lcurl -o /dev/null "http://$ip:$CLIENT_PORT/health" || lcurl -o /dev/null "http://$ip:$PEER_PORT/"; then
            die "something already answers on $ip:$CLIENT_PORT or :$PEER_PORT; stop it first"
        fi
    done

    local pin=()
    if [[ -n "${ETCD_CPUS:-}" ]]; then pin=(taskset -c "$ETCD_CPUS"); fi

    local cluster="" i name
    for i in "${!MEMBER_IPS[@]}"; do
        cluster+="${cluster:+,}m$((i + 1))=http://${MEMBER_IPS[$i]}:$PEER_PORT"
    done
    local token
    token="ckv-bench-$$-$(date +%s)"

    # From here on, a failure (or Ctrl-C) stops whatever was started.
    STARTED_OK=0
    trap 'if [[ $STARTED_OK == 0 ]]; then stop_members; fi' EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM

    for i in "${!MEMBER_IPS[@]}"; do
        name="m$((i + 1))"
        ip="${MEMBER_IPS[$i]}"
        rm -rf "$DIR/data-$name"
        : > "$DIR/etcd-$name.log"
        ${pin[@]+"${pin[@]}"} etcd \
            --name "$name" \
            --data-dir "$DIR/data-$name" \
            --listen-client-urls "http://$ip:$CLIENT_PORT" \
            --advertise-client-urls "http://$ip:$CLIENT_PORT" \
            --listen-peer-urls "http://$ip:$PEER_PORT" \
            --initial-advertise-peer-urls "http://$ip:$PEER_PORT" \
            --initial-cluster "$cluster" \
            --initial-cluster-token "$token" \
            --initial-cluster-state new \
            --logger zap --log-outputs stderr \
            </dev/null >>"$DIR/etcd-$name.log" 2>&1 &
        echo $! > "$DIR/etcd-$name.pid"
    done

    local try healthy pid t0
    t0="$(date +%s%N)"
    for ((try = 0; try < WAIT_TRIES; try++)); do
        for i in "${!MEMBER_IPS[@]}"; do
            pid="$(cat "$DIR/etcd-m$((i + 1)).pid")"
            if ! kill -0 "$pid" 2>/dev/null; then
                tail -n 20 "$DIR/etcd-m$((i + 1)).log" >&2 || true
                die "member m$((i + 1)) (pid $pid) exited during start-up; log: $DIR/etcd-m$((i + 1)).log"
            fi
        done
        healthy=0
        for ip in "${MEMBER_IPS[@]}"; do
            if [[ "$(lcurl "http://$ip:$CLIENT_PORT/health" || true)" == *'"health":"true"'* ]]; then
                healthy=$((healthy + 1))
            fi
        done
        if [[ $healthy == "${#MEMBER_IPS[@]}" ]] && gateway_check "${MEMBER_IPS[0]}" >/dev/null \
            && gateway_check "${MEMBER_IPS[2]}" >/dev/null; then
            break
        fi
        sleep 0.2
    done
    if [[ $try -ge $WAIT_TRIES ]]; then
        for i in "${!MEMBER_IPS[@]}"; do tail -n 5 "$DIR/etcd-m$((i + 1)).log" >&2 || true; done
        die "cluster not healthy after $WAIT_TRIES polls; logs in $DIR"
    fi
    # Leave the store empty for the benchmark.
    lcurl -o /dev/null -X POST "http://${MEMBER_IPS[0]}:$CLIENT_PORT/v3/kv/deleterange" \
        -d "{\"key\":\"$(b64 ckv-bench-gateway-check)\"}" || true
    STARTED_OK=1
    say "etcd $(etcd_version): 3 members healthy after $(( ($(date +%s%N) - t0) / 1000000 )) ms (clients: $(printf 'http://%s:2379 ' "${MEMBER_IPS[@]}"); data: $DIR, $(df -T "$DIR" | awk 'NR==2 {print $2 " on " $1}'))"
    etcd_version > "$DIR/etcd-version.txt"
}

status_members() {
    echo "etcd version: $(etcd_version || echo missing)"
    local i ip pid
    for i in "${!MEMBER_IPS[@]}"; do
        ip="${MEMBER_IPS[$i]}"
        pid="$(cat "$DIR/etcd-m$((i + 1)).pid" 2>/dev/null || echo -)"
        printf 'm%d %s pid %s health %s affinity %s\n' "$((i + 1))" "$ip:$CLIENT_PORT" "$pid" \
            "$(lcurl "http://$ip:$CLIENT_PORT/health" || echo unreachable)" \
            "$( (is_ours "$pid" && taskset -pc "$pid" | sed 's/.*: //') || echo -)"
    done
}

case "$CMD" in
    start) start_members ;;
    stop)
        [[ -d "$DIR" ]] || exit 0
        DIR="$(cd "$DIR" && pwd)"
        trap '' INT TERM     # bounded (at most ~15 s): finish stopping even when interrupted
        stop_members
        ;;
    status)
        DIR="$(cd "$DIR" 2>/dev/null && pwd || echo "$DIR")"
        status_members
        ;;
    *) usage ;;
esac
