#!/usr/bin/env bash
# Builds ./stepexec. cgo is required (the user-namespace re-exec runs C code
# before the Go runtime starts); the tags leave out storage drivers that need
# btrfs/zfs headers and link libseccomp for the steps' seccomp filter.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1
version=$(git describe --always --dirty 2>/dev/null || echo dev)
go build -trimpath -tags "$(cat scripts/build-tags)" -ldflags "-X main.version=$version" -o stepexec ./cmd/stepexec
echo "built ./stepexec"
