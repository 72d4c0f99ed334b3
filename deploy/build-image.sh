#!/usr/bin/env bash
# Build a statically linked causalkv on this host and package it FROM scratch as a Docker image.
#
# For hosts with no container registry (nothing can be pulled): the image needs no base image.
#
# Usage: deploy/build-image.sh [IMAGE]         (default image name: asg4img, or $IMAGE)
# Environment:
#   IMAGE              image name[:tag] (default asg4img)
#   STATIC_TARGET_DIR  cargo target dir for the static build (default <repo>/target/static, kept
#                      apart from the normal target dir so neither build invalidates the other)
#   CARGO_BUILD_JOBS   passed through to cargo as usual (e.g. 1 on a small machine)
#   SKIP_CARGO=1       package an already built binary from STATIC_TARGET_DIR
#
# glibc static linking is used (no musl target needed): -C target-feature=+crt-static with an
# explicit --target, so the flag applies to the binary only and not to build scripts/proc-macros.
# Requires libc6-dev (its static libc.a). A statically linked glibc cannot load NSS modules; causalkv
# resolves host names with its own pure-Rust resolver (hosts file + /etc/resolv.conf), so names work.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${1:-${IMAGE:-asg4img}}"
TARGET_TRIPLE="x86_64-unknown-linux-gnu"
STATIC_TARGET_DIR="${STATIC_TARGET_DIR:-$REPO/target/static}"
BIN="$STATIC_TARGET_DIR/$TARGET_TRIPLE/release/causalkv"

die() { echo "build-image.sh: error: $*" >&2; exit 1; }
log() { echo "build-image.sh: $*" >&2; }

command -v docker >/dev/null || die "docker not found"
command -v cargo >/dev/null || die "cargo not found"
[[ "$(uname -m)" == "x86_64" ]] || die "this script builds for $TARGET_TRIPLE; host is $(uname -m)"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running, may you use it?)"

if [[ "${SKIP_CARGO:-0}" != "1" ]]; then
    log "building static release binary in $STATIC_TARGET_DIR"
    (cd "$REPO" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        CARGO_TARGET_DIR="$STATIC_TARGET_DIR" \
        cargo build --release --locked --target "$TARGET_TRIPLE" --bin causalkv)
fi
[[ -x "$BIN" ]] || die "binary not found at $BIN"

# The image has no libc: refuse a dynamically linked binary rather than ship one that cannot start.
file_out="$(file -b "$BIN")"
case "$file_out" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "$BIN is not statically linked: $file_out" ;;
esac
# ldd prints "not a dynamic executable" (static) or "statically linked" (static-pie); a dynamic
# binary gets "lib... => /path" lines instead.
ldd_out="$(ldd "$BIN" 2>&1 || true)"
case "$ldd_out" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) die "ldd reports shared library dependencies for $BIN: $(echo "$ldd_out" | tr '\n' ' ')" ;;
esac
log "static binary ok: $file_out"

# A build context holding only the binary: fast, and nothing else of the repo leaks into the image.
ctx="$(mktemp -d "${TMPDIR:-/tmp}/causalkv-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
cp "$BIN" "$ctx/causalkv"
strip "$ctx/causalkv" 2>/dev/null || true
cp "$REPO/deploy/Dockerfile.static" "$ctx/Dockerfile"
# an empty /data for a volume to mount over (a new named volume takes its owner, 65534)
mkdir "$ctx/data"

log "docker build -t $IMAGE"
# Output (including the legacy builder's deprecation notice) is shown only if the build fails.
if ! build_out="$(docker build --quiet -t "$IMAGE" "$ctx" 2>&1)"; then
    die "docker build failed: $build_out"
fi

# Smoke test: the container starts and the binary runs (no network, read-only, as nobody).
if ! out="$(timeout 30 docker run --rm --network none --read-only "$IMAGE" --help 2>&1)"; then
    die "smoke test failed: docker run --rm $IMAGE --help: $out"
fi
size="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
log "image $IMAGE built ($((size / 1024 / 1024)) MiB); smoke test ok"
echo "$IMAGE"
