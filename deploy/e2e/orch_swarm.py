"""Orchestrator scenario swarm (issue 15): deploy/swarm.sh up (a replicated and a sharded stack,
one service per node, nodes named by service), a PUT and a GET at every node, a task killed and
rescheduled under its name, then deploy/swarm.sh down, which must leave the daemon's swarm state
as it found it. Shared helpers are in orch.py.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import time
from typing import Any

from harness import Env, Step, body_has, docker, expect, expect_body, wait_for
from orch import (CMD_TIMEOUT_S, MEMBERSHIP_S, REPLICATION_S, STARTUP_S, SWARM_PORT_OFFSET, SWARM_SH,
                  NamedCluster, ports_free, run, save)

# A killed swarm task: restart delay (1 s) + a new container + announce, on a loaded 2-core host.
RESCHEDULE_S = 40.0


class Swarm:
    """deploy/swarm.sh with stacks named after the run id."""

    self_managed = True
    REPL = ["alice", "bob", "carol"]
    SHARD = ["dave", "erin", "frank", "grace"]

    def __init__(self, env: Env, base_port: int) -> None:
        self.env = env
        self.prefix = f"ckve2e{env.run_id[:6]}"
        names = self.REPL + self.SHARD
        ports = {n: base_port + i for i, n in enumerate(names)}
        self.c = NamedCluster(env, ports)
        self.vars = {**os.environ, "IMAGE": env.image, "STACK_PREFIX": self.prefix, "WAIT_S": "60",
                     **{f"{n.upper()}_PORT": str(p) for n, p in ports.items()}}
        self.state_before = ""
        self.deployed = False
        atexit.register(self.teardown, "atexit")  # idempotent; a last line of defence

    def sh(self, *args: str, what: str = "") -> str:
        return run([str(SWARM_SH), *args], self.vars, what or f"swarm.sh {' '.join(args)}")

    def task_containers(self, service: str) -> list[str]:
        """Running containers of one node's service in the replicated stack."""
        return docker("ps", "-q", "--filter",
                      f"label=com.docker.swarm.service.name={self.prefix}-repl_{service}",
                      check=False).split()

    def containers(self) -> list[str]:
        """Every container (running or not) of our two stacks."""
        ids: list[str] = []
        for st in (f"{self.prefix}-repl", f"{self.prefix}-shard"):
            ids += docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={st}",
                          check=False).split()
        return ids

    def save_logs(self, tag: str) -> None:
        logs = []
        for cid in self.containers():
            try:
                p = subprocess.run(["docker", "logs", cid], capture_output=True, text=True,
                                   timeout=30, stdin=subprocess.DEVNULL)
                logs.append(f"=== {cid}\n{p.stdout}{p.stderr}")
            except (OSError, subprocess.TimeoutExpired) as e:
                logs.append(f"=== {cid}: {e}")
        save(self.env, tag, "swarm", "\n".join(logs))

    def teardown(self, tag: str) -> None:
        if not self.deployed:
            return
        self.save_logs(tag)
        try:
            subprocess.run([str(SWARM_SH), "down"], capture_output=True, timeout=CMD_TIMEOUT_S,
                           env=self.vars, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"teardown {tag}: swarm.sh down: {e}", flush=True)
        self.deployed = False


def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}", check=False).strip()


def swarm_steps(env: Env) -> tuple[Swarm, list[Step]]:
    s = Swarm(env, env.nodes["alice"].hport + SWARM_PORT_OFFSET)
    c = s.c
    state: dict[str, Any] = {}

    def up() -> None:
        ports_free(list(c.ports.values()), every_interface=True)
        s.state_before = swarm_state()
        state["gwbridge_before"] = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$").strip())
        expect(s.state_before in ("active", "inactive"), f"swarm state is {s.state_before!r}")
        s.deployed = True
        s.sh("up", what="swarm.sh up")
        c.wait_views(s.REPL, s.REPL, STARTUP_S, "replicated stack: views list the service names")
        c.wait_views(s.SHARD, s.SHARD, STARTUP_S, "sharded stack: views list the service names")

    def replicated() -> None:
        c.value_flow(s.REPL, "sw")
        state["written"] = c.put_get_everywhere(s.REPL, "repl", REPLICATION_S + 0.5)

    def sharded() -> None:
        for n in s.SHARD:
            r = c.req("GET", n, "/shard/ids")
            expect(body_has(r, 200, {"shard-ids": [0, 1]}), f"/shard/ids at {n}: {r}")
        # any node serves any key (forwarded to its shard): a PUT at every node, a GET at every node
        c.meta = None
        written = c.put_get_everywhere(s.SHARD, "shard", REPLICATION_S + 0.5)
        counts = [c.req("GET", s.SHARD[0], f"/shard/key-count/{i}").body for i in (0, 1)]
        total = sum(b.get("shard-key-count", 0) for b in counts if isinstance(b, dict))
        expect(total == len(written), f"key counts {counts} do not add up to {len(written)}")

    def reschedule() -> None:
        old = s.task_containers("carol")
        expect(len(old) == 1, f"want one carol task container, found {old}")
        c.meta = None
        r = c.kv("PUT", "alice", "before-kill", "kept")
        expect(r.status == 201, f"PUT before-kill: {r}")
        meta = c.meta
        t0 = time.monotonic()
        s.sh("kill", "carol", what="swarm.sh kill carol")

        def rescheduled() -> tuple[bool, Any]:
            now = s.task_containers("carol")
            return (len(now) == 1 and now != old), now
        wait_for("Swarm starts a new carol task", rescheduled, RESCHEDULE_S, 0.5)
        c.wait_views(s.REPL, s.REPL, RESCHEDULE_S, "the new carol task in every view")

        def serves() -> tuple[bool, Any]:
            g = c.kv("GET", "carol", "before-kill", meta=meta, chain=False)
            return body_has(g, 200, {"value": "kept"}), g
        wait_for("the new carol task serves the earlier write", serves, MEMBERSHIP_S)
        for key, value in state.get("written", {}).items():
            expect_body(c.kv("GET", "carol", key, meta=meta, chain=False), 200, {"value": value},
                        f"{key} at the new carol")
        state["took"] = time.monotonic() - t0

    def down() -> None:
        s.save_logs("swarm")
        s.sh("down", what="swarm.sh down")
        s.deployed = False
        left = s.containers()
        expect(not left, f"containers left after swarm.sh down: {left}")
        after = swarm_state()
        expect(after == s.state_before,
               f"swarm state {s.state_before!r} before up, {after!r} after down")
        gw = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$").strip())
        expect(gw == state["gwbridge_before"], f"docker_gwbridge existed: {state['gwbridge_before']} before, {gw} after")

    return s, [("swarm.sh up: replicated and sharded stacks serve, views by service name", up, True),
               ("replicated stack: value flow, a PUT at every node and a GET of each at every node", replicated, False),
               ("sharded stack: shard ids, a PUT at every node and a GET of each at every node", sharded, False),
               ("a killed task is rescheduled under its name and serves the earlier keys", reschedule, False),
               ("swarm.sh down removes the stacks (and the swarm if it created it)", down, False)]
