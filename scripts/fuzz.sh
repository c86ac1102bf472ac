#!/usr/bin/env bash
# Runs each fuzz target for a short time, one after another: what CI does
# (scripts/test.sh calls it). FUZZTIME (default 15s) sets the time per
# target, FUZZPARALLEL (default 2) the workers. Longer runs, as before
# resolving a change to a fuzzed package:
#   FUZZTIME=10m scripts/fuzz.sh
# New inputs that raise coverage stay in go's cache; a failing input is
# written to the package's testdata/fuzz/FuzzX/ (commit it with the fix).
# The rootfs and snapshot targets chown to any id, mknod and set xattrs in
# their workers: they run as root only (as CI does); as another user only
# FuzzParse runs, and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
tags=$(cat scripts/build-tags)
fuzztime=${FUZZTIME:-15s}
parallel=${FUZZPARALLEL:-2}
export CGO_ENABLED=1

targets=(
  "FuzzParse ./dockerfile"
  "FuzzUnpack ./rootfs"
  "FuzzWriteLayerTar ./snapshot"
)
for target in "${targets[@]}"; do
  read -r name pkg <<<"$target"
  if [ "$(id -u)" -ne 0 ] && [ "$name" != FuzzParse ]; then
    echo "fuzz: $name not run: it needs root"
    continue
  fi
  echo "fuzz: $name in $pkg for $fuzztime"
  # A short minimization keeps the time on new inputs, not on shrinking them.
  go test -tags "$tags" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" \
    -fuzzminimizetime 3s -parallel "$parallel" "$pkg"
done
