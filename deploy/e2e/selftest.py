#!/usr/bin/env python3
"""Self-test of the e2e harness: the scenarios against an in-process fake cluster, no Docker.

The fake implements the documented REST contract just well enough (one process, shared memory,
synchronous replication to connected replicas, a 3 s grace period after a reconnect) for every
check of the replicated and sharded scenarios to pass. It exists to catch bugs in the checks,
not to model causalkv. Fake nodes listen on 127.0.0.1 only (ports 28082+ by default).

Usage: python3 deploy/e2e/selftest.py [SCENARIO,...]   -> PASS/FAIL lines and `N passed, M failed`
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Env, Node, Report, StartOpts  # noqa: E402
from scenarios import run_scenario  # noqa: E402

GRACE_S = 3.0
NS = "Not enough nodes to provide fault tolerance with requested shard count"


def shard_of(key: str, n: int) -> int:
    return int(hashlib.md5(key.encode()).hexdigest(), 16) % n


class FakeNode:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.alive = True
        self.connected = True
        self.grace_until = 0.0
        self.store: dict[str, object] = {}   # key -> value (None = deleted)
        self.applied: dict[int, int] = {}    # shard -> last applied write seq
        self.server: ThreadingHTTPServer | None = None


class World:
    """Shared state of the fake cluster, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.nodes: dict[str, FakeNode] = {}
        self.members: dict[int, list[str]] = {}  # shard -> node names
        self.seq: dict[int, int] = {}
        self.replication_only = False  # started without SHARD_COUNT: one shard 0 = the view

    def live(self) -> list[FakeNode]:
        now = time.monotonic()
        return [f for f in self.nodes.values() if f.alive and f.connected and f.grace_until <= now]

    def shard_id(self, name: str) -> int | None:
        for s, m in self.members.items():
            if name in m:
                return s
        return None

    def sync(self, f: FakeNode) -> None:
        sid = self.shard_id(f.node.name)
        peers = [p for p in self.live() if p is not f and self.shard_id(p.node.name) == sid]
        if sid is not None and peers:
            f.store = {k: v for k, v in peers[0].store.items()}
            f.applied = dict(peers[0].applied)

    def owner(self, key: str) -> FakeNode | None:
        s = shard_of(key, len(self.members))
        cands = [f for f in self.live() if f.node.name in self.members[s]]
        return cands[0] if cands else None

    def handle(self, f: FakeNode, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        with self.lock:
            if path == "/view" and method == "GET":
                return 200, {"view": [x.node.addr for x in self.live()]}
            if path == "/view" and method == "PUT":
                return 200, {"result": "already present"}
            if path == "/view" and method == "DELETE":
                return 404, {"error": "View has no such replica"}
            if path == "/shard/ids":
                return 200, {"shard-ids": sorted(self.members)}
            if path == "/shard/node-shard-id":
                return 200, {"node-shard-id": self.shard_id(f.node.name)}
            if path.startswith("/shard/members/"):
                s = int(path.rsplit("/", 1)[1])
                if s not in self.members:
                    return 404, {"error": "no such shard"}
                return 200, {"shard-members": [self.nodes[n].node.addr for n in self.members[s]]}
            if path.startswith("/shard/key-count/"):
                s = int(path.rsplit("/", 1)[1])
                m = next(x for x in self.nodes.values() if x.node.name in self.members[s])
                return 200, {"shard-key-count": sum(1 for k, v in m.store.items()
                                                    if v is not None and shard_of(k, len(self.members)) == s)}
            if path.startswith("/shard/add-member/"):
                s = int(path.rsplit("/", 1)[1])
                name = next(x.node.name for x in self.nodes.values() if x.node.addr == body["socket-address"])
                self.members[s].append(name)
                self.sync(self.nodes[name])
                return 200, {"result": "node added to shard"}
            if path == "/shard/reshard":
                n = body["shard-count"]
                names = sorted(x.node.name for x in self.live())
                if len(names) // n < 2:
                    return 400, {"error": NS}
                data = {}
                for x in self.nodes.values():
                    data.update({k: v for k, v in x.store.items() if v is not None})
                top = max(self.seq.values())
                self.members = {s: names[s::n] for s in range(n)}
                self.seq = {s: top for s in range(n)}
                for x in self.nodes.values():
                    x.store = dict(data)
                    x.applied = dict(self.seq)
                return 200, {"result": "resharded"}
            if path.startswith("/kvs/"):
                return self.kvs(f, method, path[5:], body)
            return 404, {"error": "no route"}

    def kvs(self, f: FakeNode, method: str, key: str, body: dict | None) -> tuple[int, dict]:
        meta = (body or {}).get("causal-metadata") or {}
        if method == "PUT" and "value" not in (body or {}):
            return 400, {"error": "PUT request does not specify a value"}
        if len(key) > 50:
            return 400, {"error": "Key is too long"}
        s = shard_of(key, len(self.members))
        # The receiving node serves its own shard's keys (even in its grace period); others forward.
        o = f if f.node.name in self.members[s] else self.owner(key)
        if o is None:
            return 503, {"error": "Cannot forward request"}
        if int(meta.get(str(s), 0)) > o.applied.get(s, 0):
            return 503, {"error": "Causal dependencies not satisfied; try again later", "shard-id": s}
        old = o.store.get(key)
        if method == "GET":
            if old is None:
                return 404, {"error": "Key does not exist", "shard-id": s}
            return 200, {"result": "found", "value": old, "causal-metadata": meta, "shard-id": s}
        if method == "DELETE" and old is None:
            return 404, {"error": "Key does not exist", "shard-id": s}
        self.seq[s] = self.seq.get(s, 0) + 1
        new = body["value"] if method == "PUT" else None
        for x in {o, *self.live()}:
            if x.node.name in self.members[s]:
                x.store[key] = new
                x.applied[s] = self.seq[s]
        meta = dict(meta)
        meta[str(s)] = self.seq[s]
        result = "deleted" if method == "DELETE" else "created" if old is None else "replaced"
        return (201 if result == "created" else 200), {"result": result, "causal-metadata": meta, "shard-id": s}


WORLD = World()


def make_handler(f: FakeNode) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def _go(self) -> None:
            if not (f.alive and f.connected):
                self.close_connection = True
                return
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else None
            status, out = WORLD.handle(f, self.command, self.path, body)
            raw = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_PUT = do_DELETE = _go
    return H


class FakeEnv(Env):
    """Env whose 'containers' are fake nodes in this process."""

    def preflight(self) -> None:
        pass

    def create_network(self, name=None) -> None:  # type: ignore[override]
        self.network = name or self.default_network
        self.network_created = True

    def drop_network(self) -> list[str]:
        self.network_created = False
        return []

    def remove_all(self) -> list[str]:
        self.remove(*[f.node for f in list(WORLD.nodes.values())])
        self.refs.clear()
        return []

    def container_name(self, node: Node) -> str | None:
        return node.container or "fake_random_name"

    def start(self, node: Node, view, shard_count, opts=StartOpts()) -> str:  # type: ignore[override]
        with WORLD.lock:
            names = [n.name for n in view]
            if shard_count and not WORLD.members:
                WORLD.members = {s: names[s::shard_count] for s in range(shard_count)}
                WORLD.seq = {s: 0 for s in range(shard_count)}
            elif shard_count is None and not WORLD.members:
                WORLD.members, WORLD.seq, WORLD.replication_only = {0: names}, {0: 0}, True
            elif WORLD.replication_only and node.name not in WORLD.members[0]:
                WORLD.members[0].append(node.name)
            f = FakeNode(node)
            WORLD.nodes[node.name] = f
            WORLD.sync(f)
        srv = ThreadingHTTPServer(("127.0.0.1", node.hport), make_handler(f))
        srv.daemon_threads = True
        f.server = srv
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        cid = hashlib.sha256(f"{node.name}{time.monotonic()}".encode()).hexdigest()
        self.refs[node] = cid
        self.containers.add(cid)
        return cid

    def kill(self, node: Node) -> None:
        WORLD.nodes[node.name].alive = False

    def remove(self, *nodes: Node) -> None:
        for n in nodes:
            f = WORLD.nodes.pop(n.name, None)
            if f and f.server:
                f.server.shutdown()
                f.server.server_close()
            self.containers.discard(self.refs.pop(n, n.container))
        if not WORLD.nodes:
            WORLD.members, WORLD.seq, WORLD.replication_only = {}, {}, False

    def disconnect(self, node: Node) -> None:
        WORLD.nodes[node.name].connected = False

    def connect(self, node: Node) -> None:
        f = WORLD.nodes[node.name]
        if f.connected:
            return
        f.connected = True
        f.grace_until = time.monotonic() + GRACE_S

        def after_grace() -> None:
            with WORLD.lock:
                WORLD.sync(f)
        threading.Timer(GRACE_S, after_grace).start()

    def connected(self, node: Node) -> bool:
        return WORLD.nodes[node.name].connected

    def running(self, node: Node) -> tuple[bool, str]:
        f = WORLD.nodes.get(node.name)
        return (bool(f and f.alive), "fake")

    def log_tail(self, node: Node, lines: int = 5) -> str:
        return "(fake)"

    def save_logs(self, tag: str) -> None:
        pass

    def cleanup(self) -> None:
        self.remove(*self.nodes.values())


def main() -> int:
    env = FakeEnv("fake", "fake-net", "10.10.0.0/16", 28082, "fake-", [], "/tmp")
    env.asg3_port_base = 28092
    report = Report()
    t0 = time.monotonic()
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["replicated", "sharded", "asg3", "asg3-named"]
    try:
        for name in names:
            run_scenario(name, env, report, None, verbose=True)
    finally:
        env.cleanup()
    print(f"selftest: {time.monotonic() - t0:.0f}s")
    print(report.summary())
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
