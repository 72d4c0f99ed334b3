#!/usr/bin/env bash
# Build the static image, make sure grpcurl is there, and run the Docker end-to-end suite.
#
# Usage: deploy/e2e.sh [--no-build] [run.py options...]
#   --no-build   use the existing image (default asg4img, or $IMAGE / --image)
# Environment:
#   IMAGE              image name (default asg4img)
#   STATIC_TARGET_DIR  passed to build-image.sh (default <repo>/target/static)
#   CKV_E2E_VENV       venv that holds grpcurl (default <repo>/target/tools-venv, as scripts/test.sh)
#   GRPCURL            use this grpcurl binary instead
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-asg4img}"
export CKV_E2E_VENV="${CKV_E2E_VENV:-$REPO/target/tools-venv}"

build=1
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        *) args+=("$a") ;;
    esac
done

command -v python3 >/dev/null || { echo "e2e.sh: python3 not found" >&2; exit 2; }

if [[ $build == 1 ]]; then
    "$REPO/deploy/build-image.sh" "$IMAGE" >/dev/null
fi

GRPCURL="$("$REPO/scripts/grpcurl.sh" "$CKV_E2E_VENV")"
export GRPCURL

# exec: signals reach run.py directly, which cleans up after itself.
exec python3 "$REPO/deploy/e2e/run.py" --image "$IMAGE" ${args[@]+"${args[@]}"}
