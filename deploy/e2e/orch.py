"""Orchestrator scenarios (issue 15): nodes named by host name instead of fixed IPs.

- compose-names: deploy/docker-compose.names.yml (alice, bob, carol by service name, no fixed IPs)
  through the value flows, a `docker kill` of one service container and its re-creation under the
  same name at a new IP, with the data back.
- swarm (orch_swarm.py): deploy/swarm.sh up (a replicated and a sharded stack, one service per
  node), a PUT and a GET at every node, a task killed and rescheduled, then deploy/swarm.sh down.
- k8s: deploy/k8s/validate.sh (offline; no cluster).

Each scenario manages its own resources (compose project / swarm stacks named after the run id)
and removes them in teardown(), which run_scenario calls on every way out. Traffic goes only to
ports published on this host, through 127.0.0.1. Every wait is bounded.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import CheckFailed, Env, Resp, Step, body_has, docker, expect, expect_body, short, wait_for

DEPLOY = Path(__file__).resolve().parents[1]
NAMES_FILE = DEPLOY / "docker-compose.names.yml"
SWARM_SH = DEPLOY / "swarm.sh"
NO_KEY = {"error": "Key does not exist"}
# Containers starting and first contact by name (DNS included): generous, bounded.
STARTUP_S = 30.0
REPLICATION_S = 1.0
MEMBERSHIP_S = 5.0
RETRY_503_S = 1.3
# docker-compose / swarm.sh calls; swarm.sh bounds its own waits (WAIT_S).
CMD_TIMEOUT_S = 180.0
# Host ports, offset from the suite's --port-base (18082 by default), so nothing collides with
# the other scenarios: compose-names +100.., swarm +200.. (published on every interface).
NAMES_PORT_OFFSET = 100
SWARM_PORT_OFFSET = 200


class NamedCluster:
    """Nodes known by name, reached through host ports; the client's chained metadata."""

    def __init__(self, env: Env, ports: dict[str, int]) -> None:
        self.env = env
        self.ports = ports
        self.meta: Any = None
        env.http.allowed_ports.update(ports.values())

    def addr(self, name: str) -> str:
        return f"{name}:8090"

    def req(self, method: str, name: str, path: str, body: Any = None) -> Resp:
        if body is None:
            return self.env.http.request(method, self.ports[name], path)
        return self.env.http.request(method, self.ports[name], path, body)

    def kv(self, method: str, name: str, key: str, value: Any = ..., meta: Any = ...,
           chain: bool = True) -> Resp:
        body: dict[str, Any] = {"causal-metadata": self.meta if meta is ... else meta}
        if value is not ...:
            body["value"] = value
        r = self.req(method, name, f"/kvs/{key}", body)
        if chain and r.status in (200, 201) and isinstance(r.body, dict) and "causal-metadata" in r.body:
            self.meta = r.body["causal-metadata"]
        return r

    def kv_retry(self, method: str, name: str, key: str, value: Any = ..., meta: Any = ...) -> Resp:
        """A 503 (dependencies not yet replicated) is retried for at most RETRY_503_S."""
        deadline = time.monotonic() + RETRY_503_S
        r = self.kv(method, name, key, value, meta)
        for _ in range(int(RETRY_503_S / 0.05) + 5):
            if r.status != 503 or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
            r = self.kv(method, name, key, value, meta)
        return r

    def view(self, name: str) -> list[str] | None:
        r = self.req("GET", name, "/view")
        if r.status == 200 and isinstance(r.body, dict) and isinstance(r.body.get("view"), list):
            return sorted(r.body["view"])
        return None

    def wait_views(self, observers: list[str], members: list[str], timeout: float, what: str) -> None:
        want = sorted(self.addr(m) for m in members)

        def probe() -> tuple[bool, Any]:
            seen = {o: self.view(o) for o in observers}
            return all(v == want for v in seen.values()), seen
        wait_for(f"{what} (want {want})", probe, timeout)

    def value_flow(self, nodes: list[str], tag: str) -> None:
        """PUT/GET/DELETE with chained metadata, each step at another node."""
        a, b, c = nodes[0], nodes[1 % len(nodes)], nodes[2 % len(nodes)]
        expect_body(self.kv("PUT", a, f"{tag}x", 1), 201, {"result": "created"}, f"PUT at {a}")
        expect_body(self.kv_retry("PUT", b, f"{tag}x", {"v": [2]}), 200, {"result": "replaced"}, f"PUT at {b}")
        expect_body(self.kv_retry("GET", c, f"{tag}x"), 200, {"result": "found", "value": {"v": [2]}}, f"GET at {c}")
        expect_body(self.kv_retry("DELETE", a, f"{tag}x"), 200, {"result": "deleted"}, f"DELETE at {a}")
        expect_body(self.kv_retry("GET", b, f"{tag}x"), 404, NO_KEY, f"GET deleted at {b}")

    def put_get_everywhere(self, nodes: list[str], tag: str, budget: float) -> dict[str, Any]:
        """A PUT at every node (no metadata), then a GET of each key at every node within budget."""
        written = {}
        for n in nodes:
            key = f"{tag}-{n}"
            r = self.kv("PUT", n, key, f"from {n}", meta=None, chain=False)
            expect(r.status == 201, f"PUT {key} at {n}: {r}")
            written[key] = f"from {n}"
        for key, value in written.items():
            for n in nodes:
                def probe(n: str = n, key: str = key, value: Any = value) -> tuple[bool, Any]:
                    g = self.kv("GET", n, key, meta=None, chain=False)
                    return body_has(g, 200, {"value": value}), g
                wait_for(f"{key} readable at {n}", probe, budget, 0.05)
        return written


def ports_free(ports: list[int], every_interface: bool) -> None:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("" if every_interface else "127.0.0.1", port))
            except OSError as e:
                raise CheckFailed(f"host port {port} is in use ({e}); pick another --port-base") from e


def run(cmd: list[str], env: dict[str, str], what: str, timeout: float = CMD_TIMEOUT_S) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise CheckFailed(f"{what}: timed out after {timeout:g}s") from e
    expect(p.returncode == 0, f"{what}: exit {p.returncode}: {short(p.stderr.strip() or p.stdout.strip(), 600)}")
    return p.stdout


def save(env: Env, tag: str, name: str, text: str) -> None:
    try:
        os.makedirs(env.log_dir, exist_ok=True)
        with open(os.path.join(env.log_dir, f"{tag}-{name}.log"), "w") as f:
            f.write(text)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# compose-names


class ComposeNames:
    """deploy/docker-compose.names.yml as project ckv-e2e-names-<run id>."""

    self_managed = True

    def __init__(self, env: Env, base_port: int) -> None:
        from scenarios import compose_cmd
        self.env = env
        self.cmd = compose_cmd()
        self.project = f"ckv-e2e-names-{env.run_id}"
        ports = {n: base_port + i for i, n in enumerate(["alice", "bob", "carol"])}
        self.c = NamedCluster(env, ports)
        self.vars = {**os.environ, "IMAGE": env.image, "PUBLISH_ADDR": "127.0.0.1",
                     **{f"{n.upper()}_PORT": str(p) for n, p in ports.items()}}
        self.started = False
        self.placeholder = ""  # a container holding an address (see `back`)
        atexit.register(self.teardown, "atexit")  # idempotent; a last line of defence

    def compose(self, *args: str, what: str = "") -> str:
        expect(self.cmd is not None, "neither docker-compose nor `docker compose` found")
        return run([*self.cmd, "-p", self.project, "-f", str(NAMES_FILE), *args], self.vars,
                   what or f"docker-compose {' '.join(args)}")

    def container(self, service: str, stopped: bool = False) -> str:
        out = docker("ps", "-aq" if stopped else "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                     "--filter", f"label=com.docker.compose.service={service}")
        ids = out.split()
        expect(len(ids) == 1, f"want one container of {service}, found {ids}")
        return ids[0]

    def ip(self, service: str) -> str:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        return docker("inspect", "-f", fmt, self.container(service)).strip()

    def leftovers(self) -> list[str]:
        return docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}",
                      check=False).split()

    def teardown(self, tag: str) -> None:
        if not self.started or self.cmd is None:
            return
        try:
            p = subprocess.run([*self.cmd, "-p", self.project, "-f", str(NAMES_FILE), "logs", "--no-color"],
                               capture_output=True, text=True, timeout=60, env=self.vars,
                               stdin=subprocess.DEVNULL)
            save(self.env, tag, "compose", p.stdout + p.stderr)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.placeholder:  # before down: a container still attached keeps the network alive
            docker("rm", "-f", self.placeholder, check=False)
            self.placeholder = ""
        try:
            subprocess.run([*self.cmd, "-p", self.project, "-f", str(NAMES_FILE), "--profile", "extra",
                            "down", "-v", "--remove-orphans", "-t", "2"], capture_output=True,
                           timeout=CMD_TIMEOUT_S, env=self.vars, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"teardown {tag}: docker-compose down: {e}", flush=True)
        for c in self.leftovers():  # a down that failed half-way, or the placeholder
            docker("rm", "-f", c, check=False)
        self.started = False


def compose_names_steps(env: Env) -> tuple[ComposeNames, list[Step]]:
    s = ComposeNames(env, env.nodes["alice"].hport + NAMES_PORT_OFFSET)
    c = s.c
    nodes = ["alice", "bob", "carol"]
    state: dict[str, Any] = {}

    def config() -> None:
        out = s.compose("config", what="docker-compose config")
        expect("ipv4_address" not in out and "ipam" not in out, "the names file pins addresses")
        for n in nodes:
            expect(f"SOCKET_ADDRESS: {n}:8090" in out, f"no SOCKET_ADDRESS {n}:8090")
        expect(out.count("VIEW: alice:8090,bob:8090,carol:8090\n") == 3, "VIEW is not the three names")
        expect("SHARD_COUNT" not in out, "the names file sets SHARD_COUNT")

    def up() -> None:
        ports_free(list(c.ports.values()), every_interface=False)
        s.started = True
        s.compose("up", "-d", what="docker-compose up -d")
        c.wait_views(nodes, nodes, STARTUP_S, "every view lists alice, bob, carol by name")

    def flows() -> None:
        c.value_flow(nodes, "n")
        state["written"] = c.put_get_everywhere(nodes, "each", REPLICATION_S + 0.5)
        r = c.kv_retry("PUT", "alice", "chained", "last")
        expect(r.status == 201, f"PUT chained: {r}")

    def kill() -> None:
        state["old_ip"] = s.ip("carol")
        docker("kill", s.container("carol"))
        c.wait_views(["alice", "bob"], ["alice", "bob"], MEMBERSHIP_S, "killed carol out of every view")

    def back() -> None:
        # A new container for service carol (as a rescheduled pod): same name, new address.
        # Docker hands out the lowest free address, i.e. carol's old one again: a placeholder
        # container takes it first (the image's `ceiling` server on the container's loopback).
        net = docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
                     s.container("carol", stopped=True)).strip()
        s.compose("rm", "-f", "-s", "carol", what="docker-compose rm carol")
        s.placeholder = docker("run", "-d", "--network", net, "--label", env.label, "--label",
                               f"com.docker.compose.project={s.project}", env.image,
                               "ceiling", "--listen", "127.0.0.1:9200").strip()
        t0 = time.monotonic()
        s.compose("up", "-d", "--no-deps", "carol", what="docker-compose up -d carol")
        new_ip = s.ip("carol")
        expect(new_ip and new_ip != state["old_ip"],
               f"carol came back at the same address {new_ip} (the check needs a new one)")
        c.wait_views(nodes, nodes, MEMBERSHIP_S, "carol back in every view")
        meta = c.meta
        for key, value in [*state["written"].items(), ("chained", "last")]:
            def probe(key: str = key, value: Any = value) -> tuple[bool, Any]:
                g = c.kv("GET", "carol", key, meta=meta, chain=False)
                return body_has(g, 200, {"value": value}), g
            wait_for(f"{key} at carol after its restart", probe, max(MEMBERSHIP_S - (time.monotonic() - t0), 0.5))
        took = time.monotonic() - t0
        expect(took <= MEMBERSHIP_S + 3, f"carol serving only after {took:.1f}s")
        r = c.kv("PUT", "carol", "after", 1)
        expect(r.status == 201, f"PUT at restarted carol: {r}")
        expect_body(c.kv_retry("GET", "alice", "after"), 200, {"value": 1}, "carol's new write at alice")
        print(f"  carol re-created: {state['old_ip']} -> {new_ip}", flush=True)

    def down() -> None:
        s.teardown("compose-names")
        left = s.leftovers()
        expect(not left, f"containers left after down: {left}")
        nets = docker("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={s.project}").split()
        expect(not nets, f"networks left after down: {nets}")

    return s, [("docker-compose.names.yml: VIEW and SOCKET_ADDRESS by service name, no fixed IPs", config, True),
               ("up by service name: every view lists the three names", up, True),
               ("value flow, and a write at each node readable at every node", flows, True),
               ("docker kill carol: out of every view within 5 s", kill, True),
               ("carol re-created at a new IP under its name: in every view, serving every key", back, False),
               ("docker-compose down removes everything", down, False)]


# ---------------------------------------------------------------------------------------------
# k8s (offline: no cluster is needed, and none is started)


def k8s_steps(env: Env) -> tuple[None, list[Step]]:
    """deploy/k8s/validate.sh: schemas, invariants and the checks' self-test (no Docker)."""

    def validate() -> None:
        out = run([str(DEPLOY / "k8s" / "validate.sh")], dict(os.environ), "deploy/k8s/validate.sh",
                  timeout=300)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        expect(last.endswith(" 0 failed") and not last.startswith("0 passed"), f"validate.sh: {short(last)}")

    return None, [("deploy/k8s manifests: schemas, invariants, self-test (validate.sh)", validate, False)]
