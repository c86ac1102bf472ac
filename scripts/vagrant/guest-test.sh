#!/usr/bin/env bash
# Runs inside a Vagrant VM (the Vagrantfile's provisioners), on the tree
# rsynced to /vagrant.
#   setup    (root)  scripts/setup-host.sh for the test user vagrant; builds
#                    the suite in the guest unless the host shipped it
#                    prebuilt in /vagrant/.vagrant-build (prepare.sh)
#   run      (as vagrant, then as root) runs every test binary of the
#                    suite; root runs the integration suite both as vagrant
#                    (setpriv) and as root. Records a summary; exits 0 so the
#                    next phase runs. STEPEXEC_VAGRANT_RUN, a -test.run
#                    pattern, runs a subset.
#   summary  (any)   prints the phases' summaries; fails if a test failed
#                    or a phase did not run
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
repo=/vagrant
results=/var/tmp/stepexec-vagrant-results
guest_build=/var/tmp/stepexec-vagrant-build
die() { echo "guest-test.sh: $*" >&2; exit 1; }
say() { echo "stepexec-vagrant: $*"; }

build_dir() {
  if [ -x "$repo/.vagrant-build/bin/stepexec" ]; then echo "$repo/.vagrant-build"; else echo "$guest_build"; fi
}

setup() {
  [ "$(id -u)" -eq 0 ] || die "setup runs as root"
  local t0=$SECONDS
  say "kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME"), $(nproc) CPUs"
  "$repo/scripts/setup-host.sh" --test-user vagrant
  rm -rf "$results"
  mkdir -p "$results"
  chmod 1777 "$results"
  if [ ! -x "$repo/.vagrant-build/bin/stepexec" ]; then
    command -v go >/dev/null || die "no prebuilt suite in $repo/.vagrant-build and no Go in the guest to build it"
    [ -d "$repo/vendor" ] || die "no $repo/vendor: the host's scripts/vagrant/prepare.sh guest vendors the modules"
    say "building the suite in the guest ($(go version | cut -d' ' -f3))"
    (cd "$repo" && GOFLAGS=-mod=vendor scripts/vagrant/prebuild.sh "$guest_build" "$(cat .vagrant-build/suite)")
    chmod -R a+rX "$guest_build"
  fi
  apparmor_profiles "$(build_dir)/bin"
  say "phase setup: $((SECONDS - t0)) s"
}

# Where AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+),
# the programs that create them need a profile granting userns, as
# scripts/setup-host.sh --apparmor installs for stepexec.
apparmor_profiles() {
  [ "$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null)" = 1 ] || return 0
  local bin
  for bin in "$1/stepexec" "$1/embed"; do
    "$repo/scripts/apparmor-profile.sh" "$bin" |
      sed "s/^profile stepexec /profile stepexec-vagrant-$(basename "$bin") /" > "/etc/apparmor.d/stepexec-vagrant-$(basename "$bin")"
    apparmor_parser -r "/etc/apparmor.d/stepexec-vagrant-$(basename "$bin")"
  done
  say "AppArmor restricts user namespaces here: profiles installed for $1/stepexec and $1/embed"
}

run() {
  local who dir t0=$SECONDS
  who=$(id -un)
  dir=$(build_dir)
  [ -f "$dir/tests/manifest" ] || die "no test binaries in $dir/tests (setup builds them)"
  local tarball
  tarball=$(ls "$repo"/.vagrant-build/alpine/*.tar.gz 2>/dev/null | head -1 || true)
  [ -n "$tarball" ] || die "no Alpine minirootfs in $repo/.vagrant-build/alpine"
  export STEPEXEC_BINARY=$dir/bin/stepexec STEPEXEC_PREBUILT=$dir/bin STEPEXEC_ALPINE_TARBALL=$tarball
  export STEPEXEC_SMALL_INIT=$dir/bin/stepexec-init # runtime's tests of it
  export STEPEXEC_REQUIRE_ALL=1 STEPEXEC_TEST_USER=vagrant
  # ATTACKS.md records the outcomes on CI's kernel; this one may refuse the
  # same attacks with other errnos: the difference is logged, not failed.
  export STEPEXEC_OTHER_KERNEL=1
  local summary=$results/$who.summary pass=0 fail=0 skip=0 failed=()
  : > "$summary.part"
  say "running the suite as $who ($(wc -l < "$dir/tests/manifest") test binaries from $dir${STEPEXEC_VAGRANT_RUN:+, -test.run $STEPEXEC_VAGRANT_RUN})"
  while read -r name pkg; do
    local log=$results/$who-${name%.test}.log rc=0 t1=$SECONDS
    (cd "$repo/$pkg" && "$dir/tests/$name" -test.v -test.count=1 -test.timeout=90m ${STEPEXEC_VAGRANT_RUN:+-test.run="$STEPEXEC_VAGRANT_RUN"}) > "$log" 2>&1 || rc=$?
    local p f s
    p=$(grep -cE '^ *--- PASS: ' "$log" || true)
    f=$(grep -cE '^ *--- FAIL: ' "$log" || true)
    s=$(grep -cE '^ *--- SKIP: ' "$log" || true)
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
      f=1 # a panic, a timeout or a failed TestMain: no test reported it
      failed+=("$pkg (exit $rc, see $log)")
    fi
    mapfile -t -O "${#failed[@]}" failed < <(awk -v pkg="$pkg" '/^ *--- FAIL: /{print pkg ": " $3}' "$log")
    pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
    say "$who: $pkg: $p passed, $f failed, $s skipped in $((SECONDS - t1)) s"
  done < "$dir/tests/manifest"
  {
    echo "$who: $pass passed, $fail failed, $skip skipped in $((SECONDS - t0)) s"
    for f in "${failed[@]}"; do echo "  FAIL $f"; done
  } > "$summary.part"
  mv "$summary.part" "$summary"
  cat "$summary"
  if [ "$fail" -gt 0 ]; then
    say "failures as $who (test output lines naming a _test.go file):"
    grep -hE '^ *(--- FAIL|[a-z_]+_test\.go:[0-9]+:)' "$results/$who"-*.log | head -60 || true
  fi
  say "phase suite-$who: $((SECONDS - t0)) s"
}

summary() {
  local total_p=0 total_f=0 total_s=0 missing=0 who line
  for who in vagrant root; do
    if [ ! -f "$results/$who.summary" ]; then
      echo "$who: the suite did not run"
      missing=1
      continue
    fi
    cat "$results/$who.summary"
    line=$(head -1 "$results/$who.summary")
    read -r p f s < <(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/')
    total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
  done
  echo "vagrant guest $(hostname) ($(uname -r)): $total_p passed, $total_f failed, $total_s skipped"
  [ "$total_f" -eq 0 ] && [ "$missing" -eq 0 ]
}

case ${1:-} in
  setup) setup ;;
  run) run ;;
  summary) summary ;;
  *) die "usage: guest-test.sh setup|run|summary" ;;
esac
