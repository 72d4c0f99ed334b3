#!/usr/bin/env bash
# Bring a causalkv cluster up and down on a Docker network, the documented way.
#
# Usage: deploy/cluster.sh COMMAND [ARGS]
#   up [--replicas3|--replicated]
#                      start the cluster: by default 6 nodes alice..frank with SHARD_COUNT=2;
#                      --replicas3: 3 nodes alice,bob,carol with SHARD_COUNT=1 (one shard, 3 replicas)
#                      --replicated: the replication-only (assignment-3) form: 3 nodes alice,bob,carol
#                      with NO SHARD_COUNT on network asg3net (unless NET is set): one replicated store
#   down               remove every container of the cluster and its network
#   kill NAME          docker kill NAME (a crash: no graceful shutdown)
#   restart NAME       start NAME again, fresh, with the full current VIEW (as after a crash)
#   partition NAME     cut NAME off the network (docker network disconnect)
#   heal NAME          reconnect NAME with its own IP (docker network connect --ip)
#   add NAME           start a node without SHARD_COUNT, VIEW = running nodes + itself: a spare in a
#                      sharded cluster, a new replica in a replication-only one
#   logs NAME [ARGS]   docker logs [ARGS] NAME (e.g. -f, --tail 50)
#   status             containers, addresses, ports, and what each node says about itself
#
# Nodes: alice bob carol dave erin frank grace heidi ivan judy at 10.10.0.2..11:8090, published on
# host ports 8082..8091. Environment overrides:
#   IMAGE (asg4img)  NET (asg4net; asg3net for up --replicated, and for the other commands when only
#   a cluster.sh network asg3net exists)  SUBNET (10.10.0.0/16)  PREFIX (10.10)  PORT (8090)
#   HOST_PORT_BASE (8082)  PUBLISH_ADDR (127.0.0.1; 0.0.0.0 to publish on every host interface)
#   NODE_ENV ("KEY=VAL KEY=VAL", extra env for every node, e.g. "CKV_GRACE_MS=3000 RUST_LOG=debug")
set -euo pipefail

IMAGE="${IMAGE:-asg4img}"
NET_GIVEN="${NET:-}"
NET="${NET:-asg4net}"
SUBNET="${SUBNET:-10.10.0.0/16}"
PREFIX="${PREFIX:-10.10}"
PORT="${PORT:-8090}"
HOST_PORT_BASE="${HOST_PORT_BASE:-8082}"
PUBLISH_ADDR="${PUBLISH_ADDR:-127.0.0.1}"
NODE_ENV="${NODE_ENV:-}"
LABEL="causalkv.cluster=$NET"   # marks what this script created, so `down` removes nothing else

NAMES=(alice bob carol dave erin frank grace heidi ivan judy)

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*" >&2; }

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# index of a node name in NAMES, or die
node_index() {
    local i
    for i in "${!NAMES[@]}"; do
        [[ "${NAMES[$i]}" == "$1" ]] && { echo "$i"; return 0; }
    done
    die "unknown node '$1' (known: ${NAMES[*]})"
}
node_ip()   { echo "$PREFIX.0.$(( $(node_index "$1") + 2 ))"; }
node_addr() { echo "$(node_ip "$1"):$PORT"; }
node_hport() { echo "$(( HOST_PORT_BASE + $(node_index "$1") ))"; }

container_exists()  { docker container inspect "$1" >/dev/null 2>&1; }
container_running() { [[ "$(docker container inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" == "true" ]]; }
container_ours()    { [[ "$(docker container inspect -f "{{index .Config.Labels \"causalkv.cluster\"}}" "$1" 2>/dev/null)" == "$NET" ]]; }
network_exists()    { docker network inspect "$NET" >/dev/null 2>&1; }
connected()         { [[ -n "$(docker container inspect -f "{{with index .NetworkSettings.Networks \"$NET\"}}x{{end}}" "$1" 2>/dev/null)" ]]; }

# A node name must be ours (created by this script for this network) before we touch it.
require_ours() {
    container_exists "$1" || die "no container named '$1' (see: cluster.sh status)"
    container_ours "$1" || die "container '$1' exists but was not created by cluster.sh for network $NET; not touching it"
}

# Our containers, in NAMES order.
our_nodes() {
    local n
    for n in "${NAMES[@]}"; do
        if container_exists "$n" && container_ours "$n"; then echo "$n"; fi
    done
}

# VIEW: the given nodes (comma-separated IP:PORT), in NAMES order, without duplicates.
view_of() {
    local want=" $* " n out=()
    for n in "${NAMES[@]}"; do
        [[ "$want" == *" $n "* ]] && out+=("$(node_addr "$n")")
    done
    local IFS=,; echo "${out[*]}"
}

ensure_network() {
    if network_exists; then
        local sub
        sub="$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "$NET")"
        [[ " $sub " == *" $SUBNET "* ]] || die "network $NET exists with subnet '$sub', expected $SUBNET"
        return 0
    fi
    # A different network on the same subnet makes `docker network create` fail; say which one.
    local other
    for other in $(docker network ls -q); do
        if docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "$other" 2>/dev/null | grep -qw -- "$SUBNET"; then
            die "network '$(docker network inspect -f '{{.Name}}' "$other")' already uses subnet $SUBNET; remove it (a cluster.sh cluster: cluster.sh down) or set SUBNET/PREFIX"
        fi
    done
    docker network create --driver bridge --subnet "$SUBNET" --label "$LABEL" "$NET" >/dev/null
    say "created network $NET ($SUBNET)"
}

# run_node NAME VIEW [SHARD_COUNT]  — start a fresh container for NAME (removing a stopped one of ours).
run_node() {
    local name="$1" view="$2" shards="${3:-}"
    if container_exists "$name"; then
        container_ours "$name" || die "a container named '$name' exists and is not ours; remove or rename it"
        if container_running "$name"; then say "$name already running"; return 0; fi
        docker rm -f "$name" >/dev/null
    fi
    # Never let `docker run` fall back to pulling from a registry.
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found; build it with deploy/build-image.sh"
    local hp; hp="$(node_hport "$name")"
    local args=(run -d --name "$name" --label "$LABEL" --label "causalkv.node=$name"
        --net "$NET" --ip "$(node_ip "$name")" -p "$PUBLISH_ADDR:$hp:$PORT"
        -e "SOCKET_ADDRESS=$(node_addr "$name")" -e "VIEW=$view")
    [[ -n "$shards" ]] && args+=(-e "SHARD_COUNT=$shards") && args+=(--label "causalkv.shard-count=$shards")
    local kv
    for kv in $NODE_ENV; do args+=(-e "$kv"); done
    docker "${args[@]}" "$IMAGE" >/dev/null
    say "started $name at $(node_addr "$name") (host $PUBLISH_ADDR:$hp)${shards:+ SHARD_COUNT=$shards}"
}

cmd_up() {
    local nodes=(alice bob carol dave erin frank) shards=2
    case "${1:-}" in
        "") ;;
        --replicas3) nodes=(alice bob carol); shards=1 ;;
        # Replication-only: no node gets SHARD_COUNT; the cluster is one replicated store.
        --replicated) nodes=(alice bob carol); shards="" ;;
        *) die "up: unknown option '$1' (use --replicas3, --replicated or nothing)" ;;
    esac
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found; build it with deploy/build-image.sh"
    # Refuse to mix topologies: an existing cluster with another node set stays as it is.
    local existing; existing="$(our_nodes | tr '\n' ' ')"
    local n
    for n in $existing; do
        [[ " ${nodes[*]} " == *" $n "* ]] || die "node $n of another topology is present; run 'cluster.sh down' first"
    done
    ensure_network
    local view; view="$(view_of "${nodes[@]}")"
    for n in "${nodes[@]}"; do run_node "$n" "$view" "$shards"; done
    if [[ -n "$shards" ]]; then say "up: ${nodes[*]} on $NET (SHARD_COUNT=$shards)"
    else say "up: ${nodes[*]} on $NET (replication-only: no SHARD_COUNT, one replicated store)"; fi
}

cmd_down() {
    local n removed=0
    for n in "${NAMES[@]}"; do
        if container_exists "$n"; then
            if container_ours "$n"; then docker rm -f "$n" >/dev/null; say "removed $n"; removed=1
            else say "leaving container '$n': not created by cluster.sh"; fi
        fi
    done
    if network_exists; then
        if [[ "$(docker network inspect -f '{{index .Labels "causalkv.cluster"}}' "$NET")" == "$NET" ]]; then
            docker network rm "$NET" >/dev/null && say "removed network $NET"
        else
            say "leaving network $NET: not created by cluster.sh"
        fi
    elif [[ $removed == 0 ]]; then
        say "nothing to do"
    fi
}

cmd_kill() {
    require_ours "$1"
    if container_running "$1"; then docker kill "$1" >/dev/null; say "killed $1"; else say "$1 is not running"; fi
}

cmd_restart() {
    local name="$1"
    node_index "$name" >/dev/null
    network_exists || die "network $NET does not exist; run 'cluster.sh up' first"
    local shards=""
    if container_exists "$name"; then
        require_ours "$name"
        shards="$(docker container inspect -f '{{index .Config.Labels "causalkv.shard-count"}}' "$name")"
        if container_running "$name"; then docker kill "$name" >/dev/null; say "killed running $name first"; fi
        docker rm -f "$name" >/dev/null
    else
        # A node that never existed: give it the cluster's SHARD_COUNT, read off any running node.
        local other
        for other in $(our_nodes); do
            shards="$(docker container inspect -f '{{index .Config.Labels "causalkv.shard-count"}}' "$other")"
            [[ -n "$shards" ]] && break
        done
    fi
    # The full VIEW: every node of the cluster still present, and this one.
    local view members
    mapfile -t members < <(our_nodes)
    view="$(view_of ${members[@]+"${members[@]}"} "$name")"
    run_node "$name" "$view" "$shards"
}

cmd_partition() {
    require_ours "$1"
    if connected "$1"; then docker network disconnect "$NET" "$1"; say "$1 cut off from $NET"
    else say "$1 is already cut off"; fi
}

cmd_heal() {
    require_ours "$1"
    container_running "$1" || die "$1 is not running"
    if connected "$1"; then say "$1 is already connected"
    else docker network connect --ip "$(node_ip "$1")" "$NET" "$1"; say "$1 reconnected at $(node_ip "$1")"; fi
}

cmd_add() {
    local name="$1"
    node_index "$name" >/dev/null
    network_exists || die "network $NET does not exist; run 'cluster.sh up' first"
    if container_exists "$name" && container_running "$name"; then
        require_ours "$name"; say "$name already running"; return 0
    fi
    local view members
    mapfile -t members < <(our_nodes)
    view="$(view_of ${members[@]+"${members[@]}"} "$name")"
    run_node "$name" "$view" ""
}

cmd_logs() { local name="$1"; shift; require_ours "$name"; docker logs "$@" "$name"; }

cmd_status() {
    if network_exists; then echo "network $NET: $(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$NET")"
    else echo "network $NET: absent"; fi
    local n any=0
    printf '%-7s %-9s %-15s %-6s %s\n' NAME STATE ADDRESS HOST SHARD
    for n in $(our_nodes); do
        any=1
        local state ip hp shard="-"
        state="$(docker container inspect -f '{{.State.Status}}' "$n")"
        connected "$n" || state="$state/cut"
        ip="$(node_addr "$n")"; hp="$(node_hport "$n")"
        if [[ "$state" == running ]] && command -v curl >/dev/null; then
            shard="$(curl -sf -m 1 "http://127.0.0.1:$hp/shard/node-shard-id" 2>/dev/null | tr -d '\n' | head -c 80 || true)"
            [[ -n "$shard" ]] || shard="(no answer)"
        fi
        printf '%-7s %-9s %-15s %-6s %s\n' "$n" "$state" "$ip" "$hp" "$shard"
    done
    [[ $any == 1 ]] || echo "(no nodes)"
}

ours_net() { [[ "$(docker network inspect -f '{{index .Labels "causalkv.cluster"}}' "$1" 2>/dev/null)" == "$1" ]]; }

# Without an explicit NET: `up --replicated` uses the seed's asg3net; every other command uses
# asg4net, or asg3net when that is the only network cluster.sh created.
pick_net() {
    [[ -n "$NET_GIVEN" ]] && return 0
    if [[ "${1:-}" == up ]]; then
        # A sharded `up` stays on asg4net (and refuses while asg3net holds the subnet).
        [[ "${2:-}" == --replicated ]] && NET=asg3net
    elif ours_net asg3net && ! ours_net asg4net; then NET=asg3net
    fi
    LABEL="causalkv.cluster=$NET"
}

main() {
    command -v docker >/dev/null || die "docker not found"
    pick_net "$@"
    local cmd="${1:-}"; [[ $# -gt 0 ]] && shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down ;;
        status) cmd_status ;;
        kill|restart|partition|heal|add|logs)
            [[ $# -ge 1 ]] || die "$cmd needs a node name"
            "cmd_$cmd" "$@" ;;
        -h|--help|help) usage ;;
        "") usage; exit 2 ;;
        *) die "unknown command '$cmd' (try: cluster.sh help)" ;;
    esac
}
main "$@"
