#!/usr/bin/env bash
# Runs every test, then each fuzz target briefly (scripts/fuzz.sh). As root
# (CI) it first prepares the host and the unprivileged test user, runs the
# suite as root — the integration tests run the binary both as that user
# and as root — then runs the packages that enter namespaces again as that
# user. As a normal user it runs all of it as that user.
set -euo pipefail
cd "$(dirname "$0")/.."
tags=$(cat scripts/build-tags)
export STEPEXEC_ALPINE_TARBALL=${STEPEXEC_ALPINE_TARBALL:-$(scripts/alpine.sh)}
export CGO_ENABLED=1

if [ "$(id -u)" -eq 0 ]; then
  scripts/setup-host.sh --test-user "${STEPEXEC_TEST_USER:-stepexec-ci}"
fi
# shellcheck disable=SC2046 # one word per file name (none has spaces)
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed: $unformatted" >&2
  exit 1
fi
go vet -tags "$tags" ./...
# The Vagrantfile's machines, then a subset of the suite in the debian12 VM
# (Debian 12's 6.1 kernel; STEPEXEC_VAGRANT=0 skips it outside CI).
scripts/vagrant/validate.sh
scripts/vagrant/ci.sh
go test -tags "$tags" -count=1 -timeout 20m ./...
if [ "$(id -u)" -eq 0 ]; then
  small_init=$(mktemp)
  trap 'rm -f "$small_init"' EXIT
  go build -tags "$tags" -o "$small_init" ./cmd/stepexec-init
  STEPEXEC_SMALL_INIT=$small_init go test -tags "$tags" -count=1 -timeout 10m -exec "$PWD/scripts/as-test-user" \
    ./image/... ./internal/buildcontext/... ./rootfs/... ./runtime/... ./snapshot/...
fi
# Each fuzz target for a short time (their seed corpora ran above as tests).
scripts/fuzz.sh
if [ "$(id -u)" -eq 0 ]; then
  # The corpus with stepexec, rootless BuildKit (the reference) and buildah,
  # compared: fails on any difference from BuildKit that
  # integration/KNOWN-DIFFERENCES.md does not list.
  STEPEXEC_TEST_USER="${STEPEXEC_TEST_USER:-stepexec-ci}" scripts/conformance.sh
fi
