#!/usr/bin/env bash
# usage: prebuild.sh DIR [integration|all]
# Builds what the suite runs in a VM, so the VM only runs it: DIR/bin holds
# stepexec (as scripts/build.sh builds it) and the helper programs the
# integration suite would compile (stepexec-probe, embed, euid: see
# STEPEXEC_PREBUILT in integration/helpers_test.go), DIR/tests the test
# binaries (go test -c): the integration suite's, or with `all` every
# package's, named after the package's directory (runtime/userns →
# runtime_userns.test). Under TCG compiling in the guest takes ~19 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "prebuild.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: prebuild.sh DIR [integration|all]"
dir=$1 suite=${2:-integration}
tags=$(cat scripts/build-tags)
export CGO_ENABLED=1
mkdir -p "$dir/bin" "$dir/tests"
rm -f "$dir"/tests/*
scripts/build.sh "$dir/bin/stepexec" >/dev/null
CGO_ENABLED=0 go build -o "$dir/bin/stepexec-probe" ./integration/probe
CGO_ENABLED=0 go build -o "$dir/bin/euid" ./integration/testdata/euid
go build -tags "$tags" -o "$dir/bin/embed" ./examples/embed
go build -tags "$tags" -o "$dir/bin/stepexec-init" ./cmd/stepexec-init
case $suite in
  integration) pkgs=(./integration) ;;
  all) mapfile -t pkgs < <(go list -tags "$tags" -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' ./... | sed "s|^$PWD|.|") ;;
  *) die "unknown suite $suite (integration or all)" ;;
esac
: > "$dir/tests/manifest" # NAME.test DIR: where each runs (its package's directory)
for p in "${pkgs[@]}"; do
  rel=${p#./}
  [ "$rel" != . ] || rel=""
  name=${rel:-stepexec}
  name=${name//\//_}.test
  go test -c -tags "$tags" -o "$dir/tests/$name" "$p"
  echo "$name ${rel:-.}" >> "$dir/tests/manifest"
done
echo "prebuild.sh: $dir: $(ls "$dir/bin" | wc -l) programs, $(grep -c . "$dir/tests/manifest") test binaries ($suite)"
