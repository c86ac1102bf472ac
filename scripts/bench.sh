#!/usr/bin/env bash
# Per-RUN-step overhead: builds FROM alpine + N trivial RUN steps and FROM
# alpine + 0 steps, several times each, and reports (t_N - t_0) / N, the cost
# a RUN adds. Then the cost of a COPY of 1,000 small files and of one 200 MB
# file (t_copy - t_0). buildah, when installed, builds the same Dockerfiles
# on the same store in the same run as the reference. Run as the user you
# build as. Prints a Markdown table for BENCHMARKS.md at the end.
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

mkdir -p "$work/ctx0" "$work/ctxN" "$work/ctxsmall/files" "$work/ctxbig"
echo "FROM alpine" > "$work/ctx0/Dockerfile"
{ echo "FROM alpine"; for i in $(seq 1 "$steps"); do echo "RUN echo $i > /step$i"; done; } > "$work/ctxN/Dockerfile"
printf 'FROM alpine\nCOPY files/ /files/\n' > "$work/ctxsmall/Dockerfile"
printf 'FROM alpine\nCOPY big /big\n' > "$work/ctxbig/Dockerfile"
# 1,000 files of 512 B to 4 KiB of random bytes, in 10 directories.
awk 'BEGIN{srand(1); for(i=0;i<1000;i++) print i, 512+int(rand()*3585)}' | while read -r i size; do
  d="$work/ctxsmall/files/d$((i % 10))"; mkdir -p "$d"
  head -c "$size" /dev/urandom > "$d/f$i"
done
head -c $((200 * 1024 * 1024)) /dev/urandom > "$work/ctxbig/big"

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
sync
ssmall=$(( $(best se build "$work/ctxsmall") - s0 ))
sync
sbig=$(( $(best se build "$work/ctxbig") - s0 ))
printf 'stepexec: COPY of 1,000 small files %s ms, of one 200 MB file %s ms (beyond the empty build)\n' "$(ms $ssmall)" "$(ms $sbig)"

if command -v buildah >/dev/null; then
  bh() { buildah --root "$store" --runroot "$run" --storage-driver overlay bud --pull=never --runtime=runc --network=none --layers --no-cache -q "$@"; }
  if bh "$work/ctx0" >/dev/null 2>&1; then
    sync
    b0=$(best bh "$work/ctx0")
    bN=$(best bh "$work/ctxN")
    bper=$(( (bN - b0) / steps ))
    printf 'buildah:  %d-step build %s ms, empty build %s ms => %s ms per RUN step\n' "$steps" "$(ms $bN)" "$(ms $b0)" "$(ms $bper)"
    printf 'ratio: a stepexec RUN step costs %.2fx a buildah one (lower is better)\n' "$(awk "BEGIN{print $per/$bper}")"
    sync
    bsmall=$(( $(best bh "$work/ctxsmall") - b0 ))
    sync
    bbig=$(( $(best bh "$work/ctxbig") - b0 ))
    printf 'buildah:  COPY of 1,000 small files %s ms, of one 200 MB file %s ms (beyond the empty build)\n' "$(ms $bsmall)" "$(ms $bbig)"
    ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
    echo
    echo "| workload | stepexec | buildah 1.28 | stepexec/buildah |"
    echo "|---|---|---|---|"
    echo "| per RUN step, ($steps-step - empty)/$steps | $(ms $per) ms | $(ms $bper) ms | $(ratio $per $bper) |"
    echo "| COPY of 1,000 small files (512 B-4 KiB) | $(ms $ssmall) ms | $(ms $bsmall) ms | $(ratio $ssmall $bsmall) |"
    echo "| COPY of one 200 MB file | $(ms $sbig) ms | $(ms $bbig) ms | $(ratio $sbig $bbig) |"
  else
    echo "buildah could not build here; no reference measured" >&2
  fi
fi
