#!/usr/bin/env bash
# usage: prepare.sh host|guest [integration|all]
# Run on the host before the tree is synced to a VM (the Vagrantfile's
# trigger, or scripts/test-vagrant.sh): fills .vagrant-build/ (git-ignored),
# which travels with the tree. `host`: the binaries and test binaries built
# here (prebuild.sh), for guests without KVM. `guest`: the module graph
# (go mod vendor), for a guest that compiles the suite itself, offline. Both
# get the Alpine minirootfs (scripts/alpine.sh) and the suite's name.
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "prepare.sh: $*" >&2; exit 1; }
mode=${1:-host} suite=${2:-integration}
out=.vagrant-build
export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "no go on PATH: the host builds the suite (or vendors its modules) for the VM"
mkdir -p "$out/alpine"
case $mode in
  host)
    rm -rf "$out/vendor"
    scripts/vagrant/prebuild.sh "$out" "$suite"
    ;;
  guest)
    rm -rf "${out:?}/bin" "${out:?}/tests" "${out:?}/vendor"
    go mod vendor -o "$out/vendor"
    echo "prepare.sh: vendored the module graph into $out/vendor for the guest"
    ;;
  *) die "unknown mode $mode (host or guest)" ;;
esac
tarball=$(scripts/alpine.sh)
cp "$tarball" "$out/alpine/$(basename "$tarball")"
echo "$suite" > "$out/suite"
