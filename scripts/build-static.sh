#!/usr/bin/env bash
# Builds the binaries the container image and the packages ship: static
# (CGO_ENABLED=0, so they run on scratch or distroless images and any
# distribution), stripped, and reproducible (-trimpath, no VCS stamp: the
# same source and Go give the same bytes). Used by make static, the
# Dockerfile and the deploy tests, so all three ship the same build.
#   scripts/build-static.sh OUT_DIR [VERSION]
set -euo pipefail
out="${1:?usage: build-static.sh OUT_DIR [VERSION]}"
version="${2:-dev}"
cd "$(dirname "$0")/.."
mkdir -p "$out"
flags=(-trimpath -buildvcs=false -ldflags "-s -w -X main.version=$version")
CGO_ENABLED=0 "${GO:-go}" build "${flags[@]}" -o "$out/courier-worker" ./cmd/worker
CGO_ENABLED=0 "${GO:-go}" build "${flags[@]}" -o "$out/emit" ./cmd/emit
