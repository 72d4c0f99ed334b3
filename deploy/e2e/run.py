#!/usr/bin/env python3
"""causalkv Docker end-to-end suite.

Starts nodes of the image (default asg4img) as containers on its own bridge network
(ckv-e2e-net, 10.10.0.0/16, nodes at 10.10.0.2..8:8090), publishes them on 127.0.0.1:18082..18088,
runs the documented scenarios and prints one PASS/FAIL line per check, then `N passed, M failed`.
The replication-only scenarios (asg3, asg3-named) use the assignment-3 seed's exact form instead:
network asg3net on 10.10.0.0/16, `docker run --rm -p 8082:8090 ...` (host ports 8082.. on every
interface), no SHARD_COUNT, and for asg3 no --name. Each scenario gets a fresh network, removed
after it, so scenarios on the same subnet run one after the other. The orchestrator scenarios
(compose-names, swarm, k8s; deploy/e2e/orch.py) name nodes by host name and manage their own
compose project / swarm stacks (host ports --port-base+100.., +200..), removed after each.
The volume scenarios (durable, durable-sharded; deploy/e2e/durable.py) give every node a named
volume of its own (`<prefix><run id>-<node>-data`, labelled), `docker kill` the whole cluster and
check that new containers on the same volumes have every key back; the volumes go with the scenario.
Exit status 0 only if every check passed; 2 if it refused to start.

It refuses to start if its network, any of its containers, or any network on an overlapping
subnet (e.g. asg4net from deploy/cluster.sh) exists, and removes everything it created (containers,
volumes, networks) on every way out: normal end, failure, exception, SIGINT/SIGTERM/SIGHUP, its own time limit.

Usage: python3 deploy/e2e/run.py [--scenario compose,grpc,replicated,sharded,durable,durable-sharded,asg3,asg3-named,compose-names,swarm,k8s] [--image IMG] ...
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Env, Interrupted, PreflightError, Report  # noqa: E402
from scenarios import DEFAULT_SCENARIOS, SCENARIOS, SEED_SCENARIOS, run_scenario  # noqa: E402

# The whole suite must end within 10 minutes on 2 cores; this limit leaves room for cleanup.
DEFAULT_MAX_SECONDS = 540


def find_grpcurl(explicit: str | None) -> str | None:
    """--grpcurl, $GRPCURL, grpcurl on PATH, or the venv deploy/e2e.sh installs it into."""
    repo = Path(__file__).resolve().parents[2]
    venv = Path(os.environ.get("CKV_E2E_VENV", repo / "target" / "tools-venv"))
    for cand in (explicit, os.environ.get("GRPCURL"), shutil.which("grpcurl"), str(venv / "bin" / "grpcurl")):
        if cand and os.access(cand, os.X_OK) and _runs(cand):
            return cand
    return None


def _runs(cmd: str) -> bool:
    """A grpcurl that exists but does not run (e.g. a stale pyenv shim) does not count."""
    try:
        return subprocess.run([cmd, "-version"], capture_output=True, timeout=10,
                              stdin=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default=",".join(DEFAULT_SCENARIOS),
                   help="comma-separated subset of: " + ",".join(SCENARIOS) + " (default: all)")
    p.add_argument("--image", default=os.environ.get("CKV_E2E_IMAGE", "asg4img"))
    p.add_argument("--network", default=os.environ.get("CKV_E2E_NETWORK", "ckv-e2e-net"))
    p.add_argument("--subnet", default=os.environ.get("CKV_E2E_SUBNET", "10.10.0.0/16"))
    p.add_argument("--port-base", type=int, default=int(os.environ.get("CKV_E2E_PORT_BASE", "18082")),
                   help="host port of alice on 127.0.0.1; bob gets +1, ... (default 18082)")
    p.add_argument("--asg3-network", default=os.environ.get("CKV_E2E_ASG3_NETWORK", "asg3net"),
                   help="network of the replication-only scenarios (default asg3net, as the seed)")
    p.add_argument("--asg3-port-base", type=int,
                   default=int(os.environ.get("CKV_E2E_ASG3_PORT_BASE", "8082")),
                   help="host port of alice in the replication-only scenarios, published on every "
                        "interface as the seed does (default 8082; bob +1, ...)")
    p.add_argument("--prefix", default="ckv-e2e-", help="container name prefix (default ckv-e2e-)")
    p.add_argument("--node-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for every node (repeatable), e.g. CKV_GRACE_MS=3000")
    p.add_argument("--grpcurl", default=None, help="path of the grpcurl binary")
    p.add_argument("--log-dir", default=None,
                   help="where container logs are saved (default: a new dir under $TMPDIR)")
    p.add_argument("--max-seconds", type=int, default=DEFAULT_MAX_SECONDS,
                   help=f"stop the suite (and clean up) after this long (default {DEFAULT_MAX_SECONDS})")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of harness errors")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or not args.scenarios:
        p.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    for kv in args.node_env:
        if "=" not in kv:
            p.error(f"--node-env wants KEY=VALUE, got {kv!r}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    log_dir = args.log_dir or os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                           f"ckv-e2e-logs-{time.strftime('%Y%m%d-%H%M%S')}")
    env = Env(args.image, args.network, args.subnet, args.port_base, args.prefix, args.node_env, log_dir)
    env.asg3_network = args.asg3_network
    env.asg3_port_base = args.asg3_port_base
    report = Report()

    def on_signal(signum: int, _frame: object) -> None:
        raise Interrupted(f"signal {signal.Signals(signum).name}")

    def on_alarm(_signum: int, _frame: object) -> None:
        raise Interrupted(f"suite time limit of {args.max_seconds}s reached")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    atexit.register(env.cleanup)  # the last line of defence; cleanup is idempotent

    try:
        seed = [s for s in args.scenarios if s in SEED_SCENARIOS]
        env.preflight(extra_networks=[args.asg3_network] if seed else [],
                      extra_ports=[args.asg3_port_base + i for i in range(4)] if seed else [])
    except PreflightError as e:
        print(f"e2e: refusing to start: {e}", file=sys.stderr, flush=True)
        report.record("preflight", False, f"refusing to start: {e}")
        print(report.summary(), flush=True)
        return 2

    grpcurl = find_grpcurl(args.grpcurl)
    started = time.monotonic()
    signal.alarm(args.max_seconds)
    interrupted = ""
    try:
        nets = args.network + (f" / {args.asg3_network}" if seed else "")
        print(f"e2e: run {env.run_id}, image {args.image}, network {nets} ({args.subnet}), "
              f"grpcurl {grpcurl or 'not found'}, logs in {log_dir}", flush=True)
        for name in args.scenarios:
            run_scenario(name, env, report, grpcurl, args.verbose)
    except Interrupted as e:
        interrupted = str(e)
    except Exception as e:  # noqa: BLE001 - report, clean up, fail
        interrupted = f"harness error: {type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
        env.cleanup()
    if interrupted:
        report.record("suite completed", False, interrupted)
    print(f"e2e: {time.monotonic() - started:.0f}s; container logs in {log_dir}", flush=True)
    print(report.summary(), flush=True)
    return 0 if report.failed == 0 and report.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
