#!/usr/bin/env bash
# Run causalkv on Docker Swarm (a single-node swarm on this machine is enough): a replicated
# cluster (stack <prefix>-repl: alice, bob, carol, no SHARD_COUNT) and a sharded one (stack
# <prefix>-shard: dave, erin, frank, grace, SHARD_COUNT=2), one service per node, nodes named by
# service name (see deploy/swarm/*.yml).
#
# Usage: deploy/swarm.sh up [--replicated|--sharded]   (default: both)
#        deploy/swarm.sh status
#        deploy/swarm.sh kill SERVICE       (docker kill of that node's task; Swarm starts a new one)
#        deploy/swarm.sh down               (removes the stacks; leaves the swarm only if up created it)
# Environment:
#   IMAGE         image (default asg4img); used as is, never pulled (--resolve-image never)
#   STACK_PREFIX  stack names <prefix>-repl and <prefix>-shard (default ckv)
#   ALICE_PORT..GRACE_PORT  host ports (default 8082..8088), published in host mode on every interface
#   WAIT_S        how long up waits for every node to serve (default 90)
#
# If this machine is not in a swarm, up runs `docker swarm init` on 127.0.0.1 (no other interface
# is advertised or listened on) and marks the node with the label causalkv.swarm=created; down
# leaves the swarm (docker swarm leave --force) only when that label is there and no other
# service is left on it. An existing swarm is used as it is and never left.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export IMAGE="${IMAGE:-asg4img}"
PREFIX="${STACK_PREFIX:-ckv}"
WAIT_S="${WAIT_S:-90}"
# Label on the swarm node that says this script created the swarm (so down may leave it).
MARK="causalkv.swarm"

die() { echo "swarm.sh: error: $*" >&2; exit 1; }
log() { echo "swarm.sh: $*" >&2; }

swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown; }

stack_file() { case "$1" in repl) echo "$REPO/deploy/swarm/stack.replicated.yml" ;; shard) echo "$REPO/deploy/swarm/stack.sharded.yml" ;; esac; }
services_of() { case "$1" in repl) echo "alice bob carol" ;; shard) echo "dave erin frank grace" ;; esac; }
port_of() {
    local up; up="$(echo "$1" | tr '[:lower:]' '[:upper:]')_PORT"
    case "$1" in alice) echo "${!up:-8082}" ;; bob) echo "${!up:-8083}" ;; carol) echo "${!up:-8084}" ;;
        dave) echo "${!up:-8085}" ;; erin) echo "${!up:-8086}" ;; frank) echo "${!up:-8087}" ;; grace) echo "${!up:-8088}" ;; esac
}

ensure_swarm() {
    case "$(swarm_state)" in
        active) log "using the existing swarm" ;;
        inactive)
            local gw=created id
            docker network inspect docker_gwbridge >/dev/null 2>&1 && gw=existed
            log "docker swarm init (single node, on 127.0.0.1)"
            docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
            id="$(docker info --format '{{.Swarm.NodeID}}')"
            if ! docker node update --label-add "$MARK=created" --label-add "$MARK.gwbridge=$gw" "$id" >/dev/null; then
                docker swarm leave --force >/dev/null 2>&1 || true
                die "could not label the new swarm node; left the swarm again"
            fi
            ;;
        *) die "this Docker daemon's swarm state is '$(swarm_state)'; fix it by hand" ;;
    esac
}

created_by_us() {
    [[ "$(swarm_state)" == active ]] &&
        [[ "$(docker node inspect self --format "{{index .Spec.Labels \"$MARK\"}}" 2>/dev/null)" == created ]]
}

# Waits (bounded) until every node of the stack answers /kvs with 200 or 404 (not 503, not nothing).
wait_serving() {
    local kind="$1" deadline=$((SECONDS + WAIT_S)) s port code
    for s in $(services_of "$kind"); do
        port="$(port_of "$s")"
        while :; do
            code="$(curl -s -o /dev/null -w '%{http_code}' -m 2 "http://127.0.0.1:$port/kvs/__probe__" || true)"
            [[ "$code" == 200 || "$code" == 404 ]] && break
            ((SECONDS < deadline)) || die "$PREFIX-$kind: $s (port $port) not serving after ${WAIT_S}s (last: $code)"
            sleep 0.5
        done
        log "$PREFIX-$kind: $s serving on 127.0.0.1:$port"
    done
}

up() {
    local kinds=("$@") kind
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found (deploy/build-image.sh builds it)"
    ensure_swarm
    for kind in "${kinds[@]}"; do
        log "docker stack deploy $PREFIX-$kind (image $IMAGE)"
        docker stack deploy --resolve-image never -c "$(stack_file "$kind")" "$PREFIX-$kind" >/dev/null
    done
    for kind in "${kinds[@]}"; do wait_serving "$kind"; done
}

# Removes the stacks, waits (bounded) until their containers and networks are gone.
down() {
    local kind stacks=() deadline
    for kind in repl shard; do
        if docker stack ls --format '{{.Name}}' 2>/dev/null | grep -qx "$PREFIX-$kind"; then
            log "docker stack rm $PREFIX-$kind"
            # It may fail to remove the network while tasks still stop: removed below, once they are gone.
            docker stack rm "$PREFIX-$kind" >/dev/null 2>&1 || true
            stacks+=("$PREFIX-$kind")
        fi
    done
    ((${#stacks[@]})) || log "no $PREFIX stack deployed"
    deadline=$((SECONDS + 60))
    local st net
    for st in ${stacks[@]+"${stacks[@]}"}; do
        while :; do
            docker service ls -q --filter "label=com.docker.stack.namespace=$st" | xargs -r docker service rm >/dev/null 2>&1 || true
            if [[ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$st")" ]]; then
                for net in $(docker network ls -q --filter "label=com.docker.stack.namespace=$st"); do
                    docker network rm "$net" >/dev/null 2>&1 || true
                done
                [[ -z "$(docker network ls -q --filter "label=com.docker.stack.namespace=$st")" ]] && break
            fi
            ((SECONDS < deadline)) || { log "warning: $st not fully removed after 60s"; break; }
            sleep 1
        done
    done
    if created_by_us; then
        if [[ -n "$(docker service ls -q 2>/dev/null)" ]]; then
            log "the swarm was created by up, but other services run on it: not leaving it"
        else
            local gw
            gw="$(docker node inspect self --format "{{index .Spec.Labels \"$MARK.gwbridge\"}}" 2>/dev/null || true)"
            log "docker swarm leave --force (up created this swarm)"
            docker swarm leave --force >/dev/null
            # swarm init created docker_gwbridge; leaving keeps it: remove it if it was ours.
            if [[ "$gw" == created ]]; then
                docker network rm docker_gwbridge >/dev/null 2>&1 || log "docker_gwbridge still in use: kept"
            fi
        fi
    elif [[ "$(swarm_state)" == active ]]; then
        log "the swarm existed before up: left as it is"
    fi
}

status() {
    [[ "$(swarm_state)" == active ]] || { echo "not in a swarm"; return 0; }
    docker stack ls
    local kind
    for kind in repl shard; do
        docker stack ps "$PREFIX-$kind" --format '{{.Name}} {{.CurrentState}} {{.Error}}' 2>/dev/null || true
    done
}

kill_node() {
    local svc="$1" kind c
    for kind in repl shard; do
        c="$(docker ps -q --filter "label=com.docker.swarm.service.name=$PREFIX-$kind"_"$svc" | head -1)"
        if [[ -n "$c" ]]; then
            log "docker kill $c ($PREFIX-${kind}_$svc); Swarm starts a new task"
            docker kill "$c" >/dev/null
            return 0
        fi
    done
    die "no running task of service $svc"
}

case "${1:-}" in
    up)
        case "${2:-}" in
            "") up repl shard ;;
            --replicated) up repl ;;
            --sharded) up shard ;;
            *) die "up [--replicated|--sharded]" ;;
        esac ;;
    down) down ;;
    status) status ;;
    kill) [[ -n "${2:-}" ]] || die "kill SERVICE"; kill_node "$2" ;;
    *) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
