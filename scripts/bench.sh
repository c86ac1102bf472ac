#!/usr/bin/env bash
# Per-RUN-step overhead: builds FROM alpine + N trivial RUN steps and FROM
# alpine + 0 steps, several times each, and reports (t_N - t_0) / N, the cost
# a RUN adds. buildah, when installed, builds the same Dockerfiles on the
# same store in the same run as the reference. Run as the user you build as.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-10}
rounds=${ROUNDS:-5}
[ -x ./stepexec ] || scripts/build.sh >/dev/null
work=$(mktemp -d)
store="$work/store"; run="$work/run"
cleanup() {
  if [ "$(id -u)" -eq 0 ]; then rm -rf "$work"; else ./stepexec --root "$store" --runroot "$run" images >/dev/null 2>&1 || true; podman unshare rm -rf "$work" 2>/dev/null || rm -rf "$work" 2>/dev/null || true; fi
}
trap cleanup EXIT
se() { ./stepexec --root "$store" --runroot "$run" "$@"; }
se import "$(scripts/alpine.sh)" >/dev/null 2>&1

mkdir -p "$work/ctx0" "$work/ctxN"
echo "FROM alpine" > "$work/ctx0/Dockerfile"
{ echo "FROM alpine"; for i in $(seq 1 "$steps"); do echo "RUN echo $i > /step$i"; done; } > "$work/ctxN/Dockerfile"

now() { date +%s%N; }
ms() { awk "BEGIN{printf \"%.1f\", $1/1000000}"; }
# best of $rounds, in ns
best() {
  local b="" t0 t
  for _ in $(seq 1 "$rounds"); do
    t0=$(now)
    if ! "$@" >/dev/null 2>"$work/err"; then
      echo "bench: $* failed:" >&2; cat "$work/err" >&2; return 1
    fi
    t=$(( $(now) - t0 ))
    if [ -z "$b" ] || [ "$t" -lt "$b" ]; then b=$t; fi
  done
  echo "$b"
}
# Flush earlier writes (a previous buildah run leaves plenty) so neither
# tool pays for the other's writeback in its fsyncs.
sync
s0=$(best se build "$work/ctx0")
sN=$(best se build "$work/ctxN")
per=$(( (sN - s0) / steps ))
printf 'stepexec: %d-step build %s ms, empty build %s ms => %s ms per RUN step\n' "$steps" "$(ms $sN)" "$(ms $s0)" "$(ms $per)"

if command -v buildah >/dev/null; then
  bh() { buildah --root "$store" --runroot "$run" --storage-driver overlay bud --pull=never --runtime=runc --network=none --layers --no-cache -q "$@"; }
  if bh "$work/ctx0" >/dev/null 2>&1; then
    sync
    b0=$(best bh "$work/ctx0")
    bN=$(best bh "$work/ctxN")
    bper=$(( (bN - b0) / steps ))
    printf 'buildah:  %d-step build %s ms, empty build %s ms => %s ms per RUN step\n' "$steps" "$(ms $bN)" "$(ms $b0)" "$(ms $bper)"
    printf 'ratio: a stepexec RUN step costs %.2fx a buildah one (lower is better)\n' "$(awk "BEGIN{print $per/$bper}")"
  else
    echo "buildah could not build here; no reference measured" >&2
  fi
fi
