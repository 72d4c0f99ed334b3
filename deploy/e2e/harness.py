"""Docker end-to-end harness for causalkv: containers, the test network, HTTP, checks.

Python 3 standard library only. Everything this module creates (containers, the network, named
volumes) carries the label ``ckv-e2e.run=<run id>`` and is tracked by name; cleanup removes exactly
that and nothing else.
Traffic goes only to published ports on 127.0.0.1 (HTTP) or to addresses on the test's own Docker
network (gRPC via grpcurl). Every wait is bounded in count and in time.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

LABEL_KEY = "ckv-e2e.run"
CONTAINER_PORT = 8090
# Node names in address order: alice is .2, bob .3, ... grace .8.
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
# One HTTP request never takes longer than this; a node that stalls counts as not answering.
HTTP_TIMEOUT_S = 3.0
# Docker CLI calls are local and quick; a hung daemon must not hang the suite.
DOCKER_TIMEOUT_S = 60.0

_NOBODY = object()


class CheckFailed(Exception):
    """A check's expectation was not met; the message says what was seen."""


class Interrupted(BaseException):
    """A signal or the suite's time limit stopped the run (cleanup still runs)."""


class DockerError(Exception):
    """A docker CLI call failed."""


class PreflightError(Exception):
    """The suite refuses to start: something of its names already exists, or a tool is missing."""


def expect(cond: bool, msg: str) -> None:
    """Raise CheckFailed with `msg` unless `cond` holds."""
    if not cond:
        raise CheckFailed(msg)


def short(v: Any, limit: int = 300) -> str:
    """A value rendered compactly for a failure message."""
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True) if _jsonable(v) else str(v)
    return s if len(s) <= limit else s[:limit] + "..."


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Waiting


def wait_for(desc: str, probe: Callable[[], tuple[bool, Any]], timeout: float,
             interval: float = 0.1) -> Any:
    """Call `probe` until it returns (True, info) or `timeout` seconds pass; return that info.

    Bounded in time and in count (the count bound guards against a clock that does not move).
    """
    deadline = time.monotonic() + timeout
    max_tries = int(timeout / max(interval, 0.01)) + 20
    last: Any = None
    for _ in range(max_tries):
        ok, last = probe()
        if ok:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise CheckFailed(f"{desc}: not within {timeout:g}s; last seen: {short(last)}")


# ---------------------------------------------------------------------------------------------
# HTTP to published ports on loopback


@dataclass
class Resp:
    """One HTTP answer: status None means no answer (refused, reset, timed out)."""

    status: int | None
    body: Any
    raw: bytes | str

    def __str__(self) -> str:
        if self.status is None:
            return f"no answer ({self.raw})"
        return f"{self.status} {short(self.body if self.body is not None else self.raw)}"


class Http:
    """HTTP client that talks only to 127.0.0.1 on the ports the suite published."""

    def __init__(self) -> None:
        # No proxies: an http_proxy in the environment must never receive our traffic.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.allowed_ports: set[int] = set()

    def request(self, method: str, port: int, path: str, body: Any = _NOBODY,
                timeout: float = HTTP_TIMEOUT_S) -> Resp:
        """Send one request to 127.0.0.1:port; JSON body unless `body` is omitted."""
        if port not in self.allowed_ports:
            raise RuntimeError(f"refusing to send to port {port}: not published by this run")
        data = None
        headers = {}
        if body is not _NOBODY:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            return Resp(None, None, f"{type(e).__name__}: {getattr(e, 'reason', e)}")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return Resp(status, parsed, raw)


def body_has(resp: Resp, status: int, expected: dict) -> bool:
    """True if the answer has `status` and its JSON object holds every item of `expected`."""
    return (resp.status == status and isinstance(resp.body, dict)
            and all(k in resp.body and resp.body[k] == v for k, v in expected.items()))


def expect_body(resp: Resp, status: int, expected: dict, what: str) -> dict:
    """CheckFailed unless `body_has`; returns the body."""
    expect(body_has(resp, status, expected),
           f"{what}: expected {status} with {short(expected)}, got {resp}")
    return resp.body


# ---------------------------------------------------------------------------------------------
# Docker


def docker(*args: str, check: bool = True, timeout: float = DOCKER_TIMEOUT_S) -> str:
    """Run `docker ARGS`; return stdout, or raise DockerError when it fails and `check`."""
    try:
        p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise DockerError(f"docker {' '.join(args)}: timed out after {timeout:g}s") from e
    if check and p.returncode != 0:
        raise DockerError(f"docker {' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def _inspect(kind: str, name: str) -> dict | None:
    out = subprocess.run(["docker", kind, "inspect", name], capture_output=True, text=True,
                         timeout=DOCKER_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        return None
    data = json.loads(out.stdout)
    return data[0] if data else None


def network_subnets(net: str) -> list[str]:
    """Subnets of one Docker network (empty if it has none or is gone)."""
    info = _inspect("network", net)
    if not info:
        return []
    return [c.get("Subnet") for c in ((info.get("IPAM") or {}).get("Config") or []) if c.get("Subnet")]


@dataclass(frozen=True)
class Node:
    """One node slot: its name, container name, address on the test network, host port."""

    name: str
    container: str
    ip: str
    hport: int

    @property
    def addr(self) -> str:
        """IP:PORT as the node knows itself (SOCKET_ADDRESS)."""
        return f"{self.ip}:{CONTAINER_PORT}"


@dataclass(frozen=True)
class StartOpts:
    """How a scenario starts its containers.

    The defaults are the suite's own form (named containers, published on 127.0.0.1 only).
    The seed form (the assignment-3 README) is ``named=False, rm=True, publish_all=True``:
    ``docker run --rm -p 8082:8090 --net=asg3net --ip=10.10.0.2 -e SOCKET_ADDRESS=... -e VIEW=... IMAGE``
    with no ``--name``; the harness then addresses the container by the id ``docker run`` printed.
    """

    named: bool = True
    rm: bool = False
    publish_all: bool = False


class Env:
    """The run's Docker resources: one network, containers created on it, and their cleanup."""

    def __init__(self, image: str, network: str, subnet: str, port_base: int, prefix: str,
                 node_env: list[str], log_dir: str) -> None:
        self.image = image
        self.default_network = network
        self.network = network  # the network of the scenario that runs now
        self.subnet = ipaddress.ip_network(subnet)
        self.prefix = prefix
        self.node_env = node_env
        self.log_dir = log_dir
        self.run_id = uuid.uuid4().hex[:12]
        self.label = f"{LABEL_KEY}={self.run_id}"
        self.http = Http()
        # The replication-only (assignment-3) scenarios use the seed's network name and host ports.
        self.asg3_network = "asg3net"
        self.asg3_port_base = 8082
        self.network_created = False
        self.containers: set[str] = set()  # created by this run and not yet removed (names or ids)
        self.refs: dict[Node, str] = {}      # node -> how docker knows its container (id if unnamed)
        self.auto_removed: set[str] = set()  # containers started with --rm
        self._cleaned = False
        self._started_any = False  # an unnamed container may exist even if none is tracked
        self.volumes: set[str] = set()  # named volumes created by this run and not yet removed
        self._volumes_any = False  # a half-created volume still carries our label
        hosts = list(self.subnet.hosts())
        self.nodes = {n: Node(n, f"{prefix}{n}", str(hosts[i + 1]), port_base + i)
                      for i, n in enumerate(NAMES)}
        for node in self.nodes.values():
            self.http.allowed_ports.add(node.hport)

    # -- preflight -------------------------------------------------------------------------

    def preflight(self, extra_networks: Iterable[str] = (), extra_ports: Iterable[int] = ()) -> None:
        """Refuse to start on any conflict; create nothing.

        `extra_networks`/`extra_ports`: what the selected scenarios need beyond the defaults (e.g.
        asg3net and host ports 8082.. published on every interface, as the seed writes them).
        """
        if shutil.which("docker") is None:
            raise PreflightError("docker CLI not found")
        try:
            docker("info", "--format", "{{.ServerVersion}}", timeout=20)
        except DockerError as e:
            raise PreflightError(f"cannot reach the Docker daemon: {e}") from e
        if _inspect("image", self.image) is None:
            raise PreflightError(f"image '{self.image}' not found; build it first "
                                 f"(deploy/build-image.sh, or deploy/e2e.sh which builds it)")
        for name in [self.default_network, *extra_networks]:
            if _inspect("network", name) is not None:
                raise PreflightError(
                    f"a Docker network named '{name}' already exists and was not created by "
                    f"this run; remove it (docker network rm {name}) or pick another name "
                    f"(--network, --asg3-network)")
        for net in docker("network", "ls", "--format", "{{.Name}}").split():
            for sub in network_subnets(net):
                try:
                    overlaps = ipaddress.ip_network(sub, strict=False).overlaps(self.subnet)
                except ValueError:
                    continue
                if overlaps:
                    raise PreflightError(
                        f"Docker network '{net}' already uses subnet {sub}, which overlaps "
                        f"{self.subnet} needed by the suite (a cluster from deploy/cluster.sh? "
                        f"then: deploy/cluster.sh down); refusing to start")
        for node in self.nodes.values():
            if _inspect("container", node.container) is not None:
                raise PreflightError(
                    f"a container named '{node.container}' already exists and was not created "
                    f"by this run; remove it (docker rm -f {node.container}) first")
        for node in self.nodes.values():
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                # SO_REUSEADDR: a port only in TIME_WAIT (from an earlier run) is free; a listener is not.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", node.hport))
                except OSError as e:
                    raise PreflightError(f"host port 127.0.0.1:{node.hport} is in use ({e}); "
                                         f"pick other ports with --port-base") from e
        for port in extra_ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("", port))  # published on every interface, as the seed does
                except OSError as e:
                    raise PreflightError(f"host port {port} is in use ({e}) (a cluster from "
                                         f"deploy/cluster.sh?); pick others with --asg3-port-base") from e

    # -- network and containers ------------------------------------------------------------

    def create_network(self, name: str | None = None) -> None:
        """Create a bridge network on the suite's subnet (tracked for cleanup) and make it current.

        One network at a time: scenarios that need another name (asg3net) get theirs after the
        previous one was removed (drop_network), since two networks cannot share 10.10.0.0/16.
        """
        expect(not self.network_created, f"network {self.network} still exists")
        self.network = name or self.default_network
        docker("network", "create", "--driver", "bridge", "--subnet", str(self.subnet),
               "--label", self.label, self.network)
        self.network_created = True

    def drop_network(self) -> list[str]:
        """Remove the current network if this run created it; return problems (never raises)."""
        errors: list[str] = []
        if not self.network_created:
            return errors
        for attempt in range(5):
            try:
                info = _inspect("network", self.network)
                if info is None:
                    break
                if (info.get("Labels") or {}).get(LABEL_KEY) != self.run_id:
                    errors.append(f"network {self.network} is not ours any more; left alone")
                    break
                docker("network", "rm", self.network, timeout=30)
                break
            except Exception as e:  # noqa: BLE001
                if attempt == 4:
                    errors.append(f"network {self.network}: {e}")
                time.sleep(1)
        self.network_created = False
        return errors

    def ref(self, node: Node) -> str:
        """How docker knows the node's container: the id `docker run` printed, else its name."""
        return self.refs.get(node, node.container)

    def create_volume(self, tag: str) -> str:
        """docker volume create a fresh named volume `<prefix><run id>-<tag>` (labelled, tracked)."""
        name = f"{self.prefix}{self.run_id}-{tag}"
        self._volumes_any = True
        self.volumes.add(name)  # before create: a half-created volume is ours too
        docker("volume", "create", "--label", self.label, name)
        return name

    def remove_volumes(self) -> list[str]:
        """Remove every volume of this run (tracked or labelled); call after its containers are
        gone (a volume in use cannot be removed). Returns problems (never raises)."""
        errors: list[str] = []
        if not self._volumes_any:
            return errors
        try:
            found = set(docker("volume", "ls", "-q", "--filter", f"label={self.label}",
                               check=False).split())
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            found = set()
            errors.append(f"listing labelled volumes: {e}")
        for v in sorted(self.volumes | found):
            info = _inspect("volume", v)
            if info is None:
                self.volumes.discard(v)
                continue
            if (info.get("Labels") or {}).get(LABEL_KEY) != self.run_id:
                errors.append(f"volume {v} is not ours; left alone")
                self.volumes.discard(v)
                continue
            try:
                docker("volume", "rm", "-f", v, timeout=30)
                self.volumes.discard(v)
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                errors.append(f"volume {v}: {e}")
        return errors

    def start(self, node: Node, view: Iterable[Node], shard_count: int | None,
              opts: StartOpts = StartOpts(), volume: str | None = None,
              extra_env: Iterable[str] = ()) -> str:
        """docker run one node with SOCKET_ADDRESS, VIEW and (unless given None) SHARD_COUNT.

        `volume`: a named volume mounted at /data, with DATA_DIR=/data (the node keeps its data there).
        Returns the container id. Unnamed containers are addressed by that id from then on.
        """
        args = ["run", "-d"]
        if opts.rm:
            args.append("--rm")
        publish = (f"{node.hport}:{CONTAINER_PORT}" if opts.publish_all
                   else f"127.0.0.1:{node.hport}:{CONTAINER_PORT}")
        # Same order and spelling as the documented commands.
        args += ["-p", publish, f"--net={self.network}", f"--ip={node.ip}"]
        if opts.named:
            args.append(f"--name={node.container}")
        args += ["--label", self.label]
        if shard_count is not None:
            args += ["-e", f"SHARD_COUNT={shard_count}"]
        args += ["-e", f"SOCKET_ADDRESS={node.addr}", "-e", "VIEW=" + ",".join(n.addr for n in view)]
        if volume is not None:
            args += ["-v", f"{volume}:/data", "-e", "DATA_DIR=/data"]
        for kv in [*self.node_env, *extra_env]:
            args += ["-e", kv]
        self._started_any = True
        if opts.named:
            self.containers.add(node.container)  # before run: a half-created container is ours too
        # (An unnamed half-created container still carries our label: cleanup finds it by label.)
        cid = docker(*args, self.image).strip()
        expect(bool(cid), f"docker run printed no container id for {node.name}")
        self.containers.discard(node.container)
        self.containers.add(cid)
        self.refs[node] = cid
        if opts.rm:
            self.auto_removed.add(cid)
        return cid

    def container_name(self, node: Node) -> str | None:
        """The name docker gave the node's container (without the leading /), None if gone."""
        info = _inspect("container", self.ref(node))
        return (info or {}).get("Name", "").lstrip("/") or None

    def _ours(self, container: str) -> bool:
        info = _inspect("container", container)
        return bool(info) and (info.get("Config", {}).get("Labels") or {}).get(LABEL_KEY) == self.run_id

    def kill(self, node: Node) -> None:
        """docker kill: the process dies at once, no graceful shutdown.

        A container started with --rm disappears with its log, so its log is saved first.
        """
        ref = self.ref(node)
        if ref in self.auto_removed:
            self.save_log(node, "before-kill")
        docker("kill", ref)

    def remove(self, *nodes: Node) -> None:
        """docker rm -f the given nodes (only ones this run created)."""
        refs = [self.ref(n) for n in nodes]
        mine = [r for r in refs if r in self.containers and self._ours(r)]
        if mine:
            docker("rm", "-f", *mine, check=False)
        for n, r in zip(nodes, refs):
            self.containers.discard(r)
            self.auto_removed.discard(r)
            self.refs.pop(n, None)

    def disconnect(self, node: Node) -> None:
        """Cut the node off the test network (a partition; the process keeps running)."""
        docker("network", "disconnect", self.network, self.ref(node))

    def connect(self, node: Node) -> None:
        """Reconnect the node with its own address (no-op if it is connected)."""
        if not self.connected(node):
            docker("network", "connect", "--ip", node.ip, self.network, self.ref(node))

    def connected(self, node: Node) -> bool:
        """Whether the node's container is attached to the test network."""
        info = _inspect("container", self.ref(node))
        nets = ((info or {}).get("NetworkSettings") or {}).get("Networks") or {}
        return self.network in nets

    def running(self, node: Node) -> tuple[bool, str]:
        """(running?, status text) of a node's container."""
        info = _inspect("container", self.ref(node))
        if not info:
            return False, "no such container"
        st = info.get("State", {})
        return bool(st.get("Running")), f"{st.get('Status')} (exit code {st.get('ExitCode')})"

    def log_tail(self, node: Node, lines: int = 5) -> str:
        """The last lines a node printed, for failure messages."""
        p = subprocess.run(["docker", "logs", "--tail", str(lines), self.ref(node)],
                           capture_output=True, text=True, timeout=DOCKER_TIMEOUT_S,
                           stdin=subprocess.DEVNULL)
        text = (p.stdout + p.stderr).strip().replace("\n", " | ")
        return text or "(no output)"

    def _log_name(self, ref: str) -> str:
        for n, r in self.refs.items():
            if r == ref:
                return n.container or f"{n.name}-{ref[:12]}"
        return ref[:12] if len(ref) == 64 else ref

    def save_log(self, node: Node, tag: str) -> None:
        """Write one node's full log to the log directory."""
        os.makedirs(self.log_dir, exist_ok=True)
        ref = self.ref(node)
        p = subprocess.run(["docker", "logs", "--timestamps", ref], capture_output=True,
                           text=True, timeout=DOCKER_TIMEOUT_S, stdin=subprocess.DEVNULL)
        with open(os.path.join(self.log_dir, f"{tag}-{self._log_name(ref)}.log"), "w") as f:
            f.write(p.stdout)
            f.write(p.stderr)

    def save_logs(self, tag: str) -> None:
        """Write every container's full log to the log directory (before removing them)."""
        os.makedirs(self.log_dir, exist_ok=True)
        for c in sorted(self.containers):
            p = subprocess.run(["docker", "logs", "--timestamps", c], capture_output=True,
                               text=True, timeout=DOCKER_TIMEOUT_S, stdin=subprocess.DEVNULL)
            with open(os.path.join(self.log_dir, f"{tag}-{self._log_name(c)}.log"), "w") as f:
                f.write(p.stdout)
                f.write(p.stderr)

    def labelled_containers(self) -> list[str]:
        """Ids of every container that carries this run's label (named or not, running or not)."""
        out = docker("ps", "-aq", "--no-trunc", "--filter", f"label={self.label}", check=False)
        return out.split()

    def remove_all(self) -> list[str]:
        """Remove every container of this run: the tracked ones and any carrying its label.

        Unnamed containers are found by label too, so one whose `docker run` failed half-way
        (no id printed) is not left behind. Returns problems (never raises)."""
        errors = []
        try:
            found = set(self.labelled_containers())
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            found = set()
            errors.append(f"listing labelled containers: {e}")
        for c in sorted(self.containers | found):
            try:
                if c in found or self._ours(c):
                    docker("rm", "-f", c, check=False)
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                errors.append(f"{c}: {e}")
        self.containers.clear()
        self.auto_removed.clear()
        self.refs.clear()
        return errors

    def cleanup(self) -> None:
        """Remove every container, volume and the network this run created. Idempotent, never raises."""
        if self._cleaned:
            return
        self._cleaned = True
        if (not self.containers and not self.network_created and not self._started_any
                and not self._volumes_any):
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
            except (ValueError, OSError):
                pass
        errors = self.remove_all()
        errors += self.remove_volumes()
        errors += self.drop_network()
        if errors:
            print("cleanup problems: " + "; ".join(errors), file=sys.stderr, flush=True)
        else:
            print(f"cleanup: removed this run's containers, volumes and network '{self.network}'",
                  file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Checks


Step = tuple[str, Callable[[], None], bool]  # (name, body, critical: abort the scenario on failure)


class Report:
    """Counts checks and prints one PASS/FAIL line each."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def record(self, name: str, ok: bool, detail: str = "") -> None:
        """Print and count one check."""
        if ok:
            self.passed += 1
            print(f"PASS {name}" + (f" ({detail})" if detail else ""), flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}", flush=True)

    def run_steps(self, scenario: str, steps: list[Step], verbose: bool = False) -> bool:
        """Run steps in order; after a critical failure the rest are reported as not run."""
        aborted = ""
        all_ok = True
        for name, body, critical in steps:
            full = f"{scenario}: {name}"
            if aborted:
                self.record(full, False, f"not run ({aborted})")
                all_ok = False
                continue
            t0 = time.monotonic()
            try:
                body()
                ok, detail = True, ""
            except CheckFailed as e:
                ok, detail = False, str(e)
            except DockerError as e:
                ok, detail = False, f"docker: {e}"
            except Exception as e:  # noqa: BLE001 - a harness bug is one failed check, not a crash
                ok, detail = False, f"{type(e).__name__}: {e}"
                if verbose:
                    traceback.print_exc()
            took = time.monotonic() - t0
            self.record(full, ok, f"{took:.1f}s" if ok else f"{detail} [{took:.1f}s]")
            if not ok:
                all_ok = False
                if critical:
                    aborted = f"'{name}' failed"
        return all_ok

    def summary(self) -> str:
        """The closing line, exactly `N passed, M failed`."""
        return f"{self.passed} passed, {self.failed} failed"
