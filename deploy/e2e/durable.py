"""Volume-backed clusters: a whole-cluster `docker kill` and restart loses nothing (issue 12).

- durable (alice, bob, carol; no SHARD_COUNT, the replication-only form) and
- durable-sharded (alice..dave; SHARD_COUNT=2, two shards of two)

start every node with a fresh named volume of its own (`-v <vol>:/data -e DATA_DIR=/data`, the
volume created by this run and labelled with its id), check that the image's numeric user (65534)
wrote its data into that fresh volume, PUT 200 keys (rotating over the nodes, one chained causal
metadata value) and DELETE 10 of them, then `docker kill` every container at once right after the
last acknowledgement, remove the containers, and start new ones on the same volumes. Every key must
read back with its value (deleted ones 404) at every node under the metadata from before the kill,
within a bounded wait (no 503 left, no 400: the old token is still accepted), key counts must agree,
the shard map must be the one from before, and a new write with the old metadata must replicate.
The volumes are removed with the containers after the scenario, and by the suite's cleanup on
every way out.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from typing import Any

from harness import Env, Node, Step, body_has, docker, expect, short, wait_for
from scenarios import MEMBERSHIP_S, NO_KEY, STARTUP_S, Cluster

N_KEYS = 200
DELETED = set(range(0, N_KEYS, 20))  # 10 keys deleted after the writes: tombstones must survive too
# A whole cluster starting from its volumes: every node reads its directory, then pulls deltas.
RECOVER_S = 30.0
NOBODY = 65534


class VolumeCluster(Cluster):
    """A Cluster whose nodes each keep their data in a named volume of this run."""

    def __init__(self, env: Env, names: list[str], shard_count: int | None) -> None:
        super().__init__(env, names, shard_count)
        self.vols: dict[str, str] = {}  # node name -> volume name

    def start(self, node: Node, view: list[Node] | None = None) -> None:
        if node.name not in self.vols:
            self.vols[node.name] = self.env.create_volume(f"{node.name}-data")
        self.env.start(node, view if view is not None else self.nodes, self.shard_count,
                       self.opts, volume=self.vols[node.name])

    def teardown(self, tag: str) -> None:
        """Save logs, remove the containers, then their volumes."""
        try:
            super().teardown(tag)
        finally:
            problems = self.env.remove_volumes()
            self.vols.clear()
            if problems:
                print(f"teardown {tag}: " + "; ".join(problems), flush=True)


def _data_tree(env: Env, node: Node) -> list[tarfile.TarInfo]:
    """`docker cp CONTAINER:/data -`: the entries of the node's /data (the volume), with owners."""
    import subprocess
    p = subprocess.run(["docker", "cp", f"{env.ref(node)}:/data", "-"], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    expect(p.returncode == 0, f"docker cp {node.name}:/data: {p.stderr.decode(errors='replace')[:300]}")
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
        return tar.getmembers()


def durable_steps(env: Env) -> tuple[Cluster, list[Step]]:
    """3 nodes without SHARD_COUNT, each on its own volume: whole-cluster kill, all data back."""
    return _steps(env, ["alice", "bob", "carol"], None, "durable")


def durable_sharded_steps(env: Env) -> tuple[Cluster, list[Step]]:
    """4 nodes with SHARD_COUNT=2, each on its own volume: whole-cluster kill, all data back."""
    return _steps(env, ["alice", "bob", "carol", "dave"], 2, "durable-sharded")


def _steps(env: Env, names: list[str], shard_count: int | None,
           tag: str) -> tuple[Cluster, list[Step]]:
    c = VolumeCluster(env, names, shard_count)
    n_shards = shard_count or 1
    model: dict[str, Any] = {}  # key -> value, None once deleted
    st: dict[str, Any] = {}

    def up() -> None:
        c.start_all()
        time.sleep(0.5)
        c.expect_running(c.nodes)
        c.wait_views(c.nodes, c.nodes, STARTUP_S, f"every node's view holds all {len(c.nodes)}")

    def writes() -> None:
        t0 = time.monotonic()
        failures = []
        for i in range(N_KEYS):
            node = c.nodes[i % len(c.nodes)]
            key, value = f"dur{i}", {"i": i, "s": f"value-{i}-" + "x" * (i % 37)}
            r = c.kv_retry("PUT", node, key, value)
            if r.status == 201:
                model[key] = value
            else:
                failures.append(f"PUT {key} at {node.name}: {r}")
            expect(len(failures) < 5 and time.monotonic() - t0 < 60,
                   f"PUTs failing or slow (at {key}): {failures[:3]}")
        for i in sorted(DELETED):
            node = c.nodes[(i + 1) % len(c.nodes)]
            key = f"dur{i}"
            r = c.kv_retry("DELETE", node, key)
            if body_has(r, 200, {"result": "deleted"}):
                model[key] = None
            else:
                failures.append(f"DELETE {key} at {node.name}: {r}")
        expect(not failures, f"{len(failures)} writes not acknowledged, e.g. {failures[:3]}")
        st["meta"] = c.meta
        st["ids"] = c.get_json(c.nodes[0], "/shard/ids", "shard-ids")
        st["members"] = {i: sorted(c.get_json(c.nodes[0], f"/shard/members/{i}", "shard-members"))
                         for i in st["ids"]}

    def kill_all() -> None:
        # One `docker kill` for every container, straight after the last acknowledgement.
        docker("kill", *[env.ref(n) for n in c.nodes])

        def probe() -> tuple[bool, Any]:
            states = {n.name: env.running(n) for n in c.nodes}
            return not any(up for up, _ in states.values()), states
        wait_for("every container stopped", probe, 10.0, 0.2)

    def fresh_volume_owned() -> None:
        user = json.loads(docker("image", "inspect", "--format", "{{json .Config.User}}", env.image))
        expect(user in (str(NOBODY), f"{NOBODY}:{NOBODY}"), f"image user is {user!r}, want {NOBODY}")
        for n in c.nodes:
            entries = _data_tree(env, n)
            files = [e for e in entries if e.isfile()]
            expect(bool(files), f"{n.name}: no file in its volume at /data "
                                f"({[e.name for e in entries][:5]})")
            alien = [f"{e.name} uid {e.uid}" for e in entries if e.uid != NOBODY]
            expect(not alien, f"{n.name}: /data entries not owned by {NOBODY}: {alien[:5]}")

    def restart_all() -> None:
        env.save_logs(f"{tag}-killed")
        env.remove(*c.nodes)  # new containers: the data can only come from the volumes
        c.start_all()
        st["t_restart"] = time.monotonic()
        time.sleep(0.5)
        c.expect_running(c.nodes)
        c.wait_views(c.nodes, c.nodes, STARTUP_S, f"every restarted node's view holds all {len(c.nodes)}")

    def all_back() -> None:
        expect("meta" in st, "no metadata from the writes")
        expect(len(model) == N_KEYS, f"only {len(model)} keys were written")
        pending = {(n, k) for n in c.nodes for k in model}

        def probe() -> tuple[bool, Any]:
            bad: dict[str, str] = {}
            for n, k in sorted(pending, key=lambda p: (p[0].name, p[1])):
                r = c.kv("GET", n, k, meta=st["meta"], chain=False)
                want = model[k]
                if body_has(r, 404, NO_KEY) if want is None else body_has(r, 200, {"value": want}):
                    pending.discard((n, k))
                else:
                    bad[f"{k}@{n.name}"] = str(r)
            return not pending, {"left": len(pending), "e.g.": dict(list(bad.items())[:3])}
        left = max(RECOVER_S - (time.monotonic() - st.get("t_restart", time.monotonic())), 5.0)
        wait_for(f"all {len(model)} keys (values and deletions) at all {len(c.nodes)} nodes under "
                 f"the pre-kill metadata", probe, left, 0.25)

    def counts_and_map() -> None:
        live = sum(v is not None for v in model.values())

        def probe() -> tuple[bool, Any]:
            seen = {n.name: [c.get_json(n, f"/shard/key-count/{i}", "shard-key-count")
                             for i in range(n_shards)] for n in c.nodes}
            return all(sum(v) == live for v in seen.values()), seen
        wait_for(f"key counts sum to {live} at every node", probe, MEMBERSHIP_S, 0.25)
        for n in c.nodes:
            ids = c.get_json(n, "/shard/ids", "shard-ids")
            expect(ids == st["ids"], f"shard ids at {n.name}: {ids}, before the kill {st['ids']}")
            members = {i: sorted(c.get_json(n, f"/shard/members/{i}", "shard-members")) for i in ids}
            expect(members == st["members"],
                   f"members at {n.name}: {short(members)}, before the kill {short(st['members'])}")

    def new_write() -> None:
        r = c.kv_retry("PUT", c.nodes[-1], "after-restart", "new", meta=st["meta"])
        expect(r.status == 201, f"PUT with the pre-kill metadata: {r}")
        meta = c.meta

        def probe() -> tuple[bool, Any]:
            got = {n.name: str(c.kv("GET", n, "after-restart", meta=meta, chain=False))
                   for n in c.nodes}
            return all(g.startswith("200") and '"new"' in g for g in got.values()), got
        wait_for("the new write readable at every node", probe, MEMBERSHIP_S, 0.1)

    kind = f"{len(c.nodes)} nodes, " + (f"SHARD_COUNT={shard_count}" if shard_count else "no SHARD_COUNT")
    return c, [
        (f"{kind}, each on a fresh named volume with DATA_DIR=/data, start", up, True),
        (f"{N_KEYS} PUTs and {len(DELETED)} DELETEs acknowledged", writes, True),
        ("docker kill of every container right after the last write", kill_all, True),
        (f"the image's user {NOBODY} wrote its data into each fresh volume", fresh_volume_owned, False),
        ("new containers on the same volumes start, every view complete", restart_all, True),
        ("every key back at every node, pre-kill metadata accepted (no 503/400 left)", all_back, False),
        ("key counts and the shard map are those from before the kill", counts_and_map, False),
        ("a write with the pre-kill metadata replicates to every node", new_write, False),
    ]
