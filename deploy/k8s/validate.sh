#!/usr/bin/env bash
# Offline validation of deploy/k8s: installs kubernetes-validate (PyPI; it ships the Kubernetes
# JSON schemas, so validating needs no network and no cluster) and PyYAML into a venv once, then
# runs deploy/k8s/check.py (schemas, cross-manifest invariants, and a self-test of the checks).
# Also renders the kustomization with `kubectl kustomize` when kubectl is installed (offline).
#
# Usage: deploy/k8s/validate.sh
# Environment: CKV_K8S_VENV  the venv (default <repo>/target/k8s-venv)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${CKV_K8S_VENV:-$REPO/target/k8s-venv}"

if ! "$VENV/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    echo "validate.sh: installing kubernetes-validate into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate pyyaml
fi
if command -v kubectl >/dev/null 2>&1; then
    out="$(kubectl kustomize "$REPO/deploy/k8s")" || { echo "FAIL kubectl kustomize deploy/k8s"; exit 1; }
    n="$(grep -c '^kind:' <<<"$out")"
    [[ "$n" == 4 ]] || { echo "FAIL kubectl kustomize rendered $n resources, want 4"; exit 1; }
    echo "validate.sh: kubectl kustomize renders $n resources" >&2
fi
exec "$VENV/bin/python" "$REPO/deploy/k8s/check.py"
