#!/usr/bin/env python3
"""Offline checks of deploy/k8s (no cluster needed): schema validation of every manifest with
kubernetes-validate (strict: unknown fields are errors; the schemas ship inside the package), and
the invariants the manifests must keep with each other:

- VIEW lists exactly the StatefulSet's pod DNS names kv-0..kv-(replicas-1) under its headless
  Service (serviceName), and SOCKET_ADDRESS is the pod's own such name, on the same port;
- the headless Service is headless (clusterIP None), publishes not-ready addresses, and selects the
  pods; the client Service selects them too; the PodDisruptionBudget selects them;
- container port, both Services' target ports and the probes' ports agree;
- readinessProbe is GET /readyz, livenessProbe GET /healthz;
- CKV_CLUSTER_KEY comes from a secretKeyRef; resources have requests and a memory limit;
- kustomization.yaml lists every manifest.
A self-test then breaks copies of the manifests (a wrong VIEW, a probe path, a port, an unknown
field) and requires each break to be caught, so the checks cannot pass vacuously.

Usage: python3 deploy/k8s/check.py   (needs PyYAML and kubernetes-validate: deploy/k8s/validate.sh
installs them into a venv). Prints one PASS/FAIL line per check and `N passed, M failed`.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any, Callable

import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
MANIFESTS = ["service-headless.yaml", "service-client.yaml", "statefulset.yaml", "pdb.yaml"]
# Oldest Kubernetes the manifests must work on (policy/v1 PDB is there since 1.21), and newest.
K8S_VERSIONS = ["1.25", kubernetes_validate.utils.latest_version()]
NAMESPACE = "default"  # the expansion of $(POD_NAMESPACE) used to check the names


class Bad(Exception):
    pass


def need(cond: bool, msg: str) -> None:
    if not cond:
        raise Bad(msg)


def load() -> dict[str, dict]:
    docs = {}
    for f in MANIFESTS:
        for d in yaml.safe_load_all((HERE / f).read_text()):
            if d:
                docs[f"{d['kind']}/{d['metadata']['name']}"] = d
    return docs


def schema(docs: dict[str, dict]) -> None:
    for key, d in docs.items():
        for v in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                raise Bad(f"{key} against {v}: {e.message} at {'.'.join(map(str, e.path))}") from e


def env_of(container: dict) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def expand(value: str, pod: str) -> str:
    """Kubernetes' $(VAR) expansion for the two variables the manifest defines."""
    return value.replace("$(POD_NAME)", pod).replace("$(POD_NAMESPACE)", NAMESPACE)


def invariants(docs: dict[str, dict]) -> None:
    sts = next(d for d in docs.values() if d["kind"] == "StatefulSet")
    svcs = [d for d in docs.values() if d["kind"] == "Service"]
    pdb = next(d for d in docs.values() if d["kind"] == "PodDisruptionBudget")
    name, replicas = sts["metadata"]["name"], sts["spec"]["replicas"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    need(sts["spec"]["selector"]["matchLabels"].items() <= labels.items(), "StatefulSet selector misses its pods")
    headless = next((s for s in svcs if s["metadata"]["name"] == sts["spec"]["serviceName"]), None)
    need(headless is not None, f"no Service named serviceName {sts['spec']['serviceName']!r}")
    need(headless["spec"].get("clusterIP") == "None", "the StatefulSet's Service is not headless")
    need(headless["spec"].get("publishNotReadyAddresses") is True, "headless Service must publish not-ready addresses")
    need(sts["spec"].get("podManagementPolicy") == "Parallel", "pods must start together (podManagementPolicy Parallel)")
    for s in svcs + [pdb]:
        sel = s["spec"]["selector"]
        sel = sel.get("matchLabels", sel)
        need(sel and sel.items() <= labels.items(), f"{s['kind']}/{s['metadata']['name']} does not select the pods")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    need(len(ports) == 1, f"one container port expected: {ports}")
    (pname, port), = ports.items()
    for s in svcs:
        for p in s["spec"]["ports"]:
            need(p["targetPort"] in (pname, port), f"{s['metadata']['name']} targets {p['targetPort']}, not {pname}")
            need(p["port"] == port, f"{s['metadata']['name']} port {p['port']} != container port {port}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c.get(probe, {}).get("httpGet")
        need(get is not None, f"no {probe}.httpGet")
        need(get["path"] == path, f"{probe} path {get['path']!r}, want {path}")
        need(get["port"] in (pname, port), f"{probe} port {get['port']!r} is not the container port")
    env = env_of(c)
    fields = {k: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for k, e in env.items()}
    need(fields.get("POD_NAME") == "metadata.name", "POD_NAME must come from metadata.name")
    need(fields.get("POD_NAMESPACE") == "metadata.namespace", "POD_NAMESPACE must come from metadata.namespace")
    order = list(env)
    svc = headless["metadata"]["name"]
    want = [f"{name}-{i}.{svc}.{NAMESPACE}.svc.cluster.local:{port}" for i in range(replicas)]
    view = [expand(v, "?") for v in env["VIEW"]["value"].split(",")]
    need(view == want, f"VIEW {view} != the pods' DNS names {want}")
    for i in range(replicas):
        pod = f"{name}-{i}"
        own = expand(env["SOCKET_ADDRESS"]["value"], pod)
        need(own == want[i], f"SOCKET_ADDRESS of {pod} is {own}, want {want[i]}")
    for var in ("SOCKET_ADDRESS", "VIEW"):
        for ref in re.findall(r"\$\((\w+)\)", env[var]["value"]):
            need(ref in order[: order.index(var)], f"{var} uses $({ref}) before it is defined")
    need("SHARD_COUNT" not in env, "SHARD_COUNT set: the StatefulSet starts replication-only")
    key = env.get("CKV_CLUSTER_KEY", {}).get("valueFrom", {}).get("secretKeyRef")
    need(bool(key and key.get("name") and key.get("key")), "CKV_CLUSTER_KEY must come from a secretKeyRef")
    res = c.get("resources", {})
    need(bool(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory")), "no cpu/memory requests")
    need(bool(res.get("limits", {}).get("memory")), "no memory limit")
    need(pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable"), "PDB allows no bound")
    kust = yaml.safe_load((HERE / "kustomization.yaml").read_text())
    need(sorted(kust["resources"]) == sorted(MANIFESTS), f"kustomization lists {kust['resources']}")


def breaks(docs: dict[str, dict]) -> list[tuple[str, Callable[[dict], None], Callable[[dict], None]]]:
    def c(d: dict) -> dict:
        return d["StatefulSet/kv"]["spec"]["template"]["spec"]["containers"][0]

    def env(d: dict, k: str) -> dict:
        return next(e for e in c(d)["env"] if e["name"] == k)
    return [
        ("VIEW missing a pod", lambda d: env(d, "VIEW").update(value=",".join(env(d, "VIEW")["value"].split(",")[:2])), invariants),
        ("replicas without VIEW", lambda d: d["StatefulSet/kv"]["spec"].update(replicas=4), invariants),
        ("readiness on /healthz", lambda d: c(d)["readinessProbe"]["httpGet"].update(path="/healthz"), invariants),
        ("liveness on another port", lambda d: c(d)["livenessProbe"]["httpGet"].update(port=9999), invariants),
        ("client Service on another port", lambda d: d["Service/kv-client"]["spec"]["ports"][0].update(port=80), invariants),
        ("headless Service hides not-ready pods", lambda d: d["Service/kv"]["spec"].update(publishNotReadyAddresses=False), invariants),
        ("cluster key in plain text", lambda d: env(d, "CKV_CLUSTER_KEY").update(value="x") or env(d, "CKV_CLUSTER_KEY").pop("valueFrom"), invariants),
        ("unknown field (schema, strict)", lambda d: c(d).update(readinesProbe={}), schema),
        ("wrong type (schema)", lambda d: d["StatefulSet/kv"]["spec"].update(replicas="three"), schema),
    ]


def main() -> int:
    passed = failed = 0

    def record(name: str, fn: Callable[[], None]) -> None:
        nonlocal passed, failed
        try:
            fn()
            passed += 1
            print(f"PASS {name}", flush=True)
        except (Bad, KeyError, StopIteration, TypeError, ValueError) as e:
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)

    docs = load()
    record(f"schemas ({', '.join(K8S_VERSIONS)}, strict): {', '.join(docs)}", lambda: schema(docs))
    record("invariants: VIEW = pod DNS names, ports, probes, secret, selectors", lambda: invariants(docs))
    for what, mutate, check in breaks(docs):
        def caught(mutate: Callable[[dict], None] = mutate, check: Callable[[dict], None] = check) -> None:
            d = copy.deepcopy(docs)
            mutate(d)
            try:
                check(d)
            except Bad:
                return
            raise Bad("not caught")
        record(f"self-test: a broken manifest is caught ({what})", caught)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
