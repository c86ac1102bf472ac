#!/usr/bin/env bash
# The one command that runs the suite in the debian12 Vagrant VM (Debian 12,
# its stock 6.1 kernel) on a bare Debian host, as root: installs what is
# missing (vagrant, vagrant-libvirt, libvirt, qemu), builds the box offline
# if it is not added (scripts/vagrant-box.sh), builds stepexec and the test
# binaries here unless the guest has KVM (scripts/vagrant/prepare.sh), then
# `vagrant up debian12` — boot, rsync, the suite as vagrant, then as root —
# prints the results and the phase timings, and destroys the VM.
#
# libvirtd and the VM run in a network namespace this script creates
# (scripts/vagrant/libvirtd-netns.sh): the VM's only network is the
# isolated management network inside it, which reaches no other address.
#
# usage: scripts/test-vagrant.sh [--suite integration|all] [--run PATTERN] [--keep]
#   --suite  the integration suite (default) or every package's tests
#   --run    only the tests matching PATTERN (go test -run), e.g. for CI
#   --keep   leave the VM and libvirtd running (it prints how to clean up)
# Logs: .vagrant-build/logs/ (vagrant up's timestamped output, each test
# binary's output from the guest).
#
# Each run has its own libvirtd and state (/var/tmp/stepexec-vagrant-libvirt.PID),
# so runs from several checkouts can share a host. On any exit — failure,
# SIGINT, SIGTERM — the VM is destroyed and libvirtd stopped; a run killed
# outright is cleaned up by the next one (an instance whose run is gone).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
die() { echo "test-vagrant.sh: $*" >&2; exit 1; }

suite=integration keep=''
while [ $# -gt 0 ]; do
  case $1 in
    --suite) [ $# -ge 2 ] || die "--suite needs integration or all"; suite=$2; shift ;;
    --run) [ $# -ge 2 ] || die "--run needs a pattern"; export STEPEXEC_VAGRANT_RUN=$2; shift ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and runs a private libvirtd)"
export PATH=$PATH:/usr/local/go/bin
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_DEFAULT_PROVIDER=libvirt STEPEXEC_VAGRANT_SUITE=$suite
states=/var/tmp/stepexec-vagrant-libvirt
state=$states.$$
logs=$repo/.vagrant-build/logs
driver=qemu compile=host started=''
timings=()
job=''
# timed LABEL CMD…: runs CMD, records how long it took. CMD runs in the
# background so that a signal (on_signal) interrupts the wait at once.
timed() {
  local label=$1 t0=$SECONDS rc=0
  shift
  "$@" &
  job=$!
  wait "$job" || rc=$?
  job=''
  timings+=("$(printf '%-28s %5d s' "$label" $((SECONDS - t0)))")
  return "$rc"
}
# A signal fails the run with 128+N (cleanup, the EXIT trap, follows);
# bash's own handling would let it exit 0.
on_signal() {
  [ -z "$job" ] || kill -TERM "$job" 2>/dev/null || true
  echo "test-vagrant.sh: interrupted (signal $(($1 - 128)))" >&2
  exit "$1"
}

install_missing() {
  scripts/vagrant/apt-missing.sh vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 qemu-utils dnsmasq-base
}

# The box is built once per host; the lock keeps concurrent runs from
# building it twice.
box_ready() {
  local rc=0
  exec 9>/var/tmp/stepexec-vagrant-box.lock
  flock 9 &
  job=$!
  wait "$job" # (in the background: a signal interrupts the wait)
  job=''
  if ! vagrant box list 2>/dev/null | grep -q '^stepexec/debian12 '; then
    timed "box build and add" scripts/vagrant-box.sh || rc=$?
  fi
  exec 9>&-
  return "$rc"
}

kvm_usable() {
  [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qE '^flags\s*:.*\b(vmx|svm)\b' /proc/cpuinfo
}

in_ns() { scripts/vagrant/libvirtd-netns.sh run "$state" env -C "$repo" "$@"; }

# Instances left by runs that were killed outright (their pid is not a
# test-vagrant.sh any more) and not kept with --keep.
reap_orphans() {
  local dir pid
  for dir in "$states".*; do
    [ -d "$dir" ] && [ ! -e "$dir/kept" ] || continue
    pid=${dir##*.}
    case $pid in *[!0-9]*) continue ;; esac
    # (one named after this run's pid is an orphan too: this run starts later)
    if [ "$pid" = $$ ] || ! tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'test-vagrant\.sh'; then
      echo "test-vagrant.sh: stopping the libvirtd of a run that is gone ($dir)"
      scripts/vagrant/libvirtd-netns.sh stop "$dir" || true
    fi
  done
}

cleanup() {
  local rc=$? t0=$SECONDS
  trap - EXIT
  trap '' HUP INT TERM # a second ^C does not cut the cleanup short
  if [ -n "$started" ] && [ -n "$keep" ]; then
    touch "$state/kept"
    echo "test-vagrant.sh: --keep: the VM runs; clean up with: scripts/vagrant/libvirtd-netns.sh run $state vagrant destroy -f; scripts/vagrant/libvirtd-netns.sh stop $state"
  elif [ -n "$started" ]; then
    timeout 300 "$repo/scripts/vagrant/libvirtd-netns.sh" run "$state" env -C "$repo" vagrant destroy -f debian12 >/dev/null 2>&1 || true
    scripts/vagrant/libvirtd-netns.sh stop "$state" || true
    rm -rf .vagrant/machines/debian12 # its domain died with that libvirtd
    timings+=("$(printf '%-28s %5d s' "destroy and cleanup" $((SECONDS - t0)))")
  fi
  report
  if [ "$rc" -ne 0 ]; then
    echo "test-vagrant.sh: FAILED (exit $rc); logs in $logs" >&2
  fi
  exit "$rc"
}

# up: vagrant up with each line stamped with the seconds since it started.
up() {
  local t0=$SECONDS rc=0
  in_ns vagrant up debian12 2>&1 | while IFS= read -r line; do
    line=${line##*$'\r'} # progress bars redraw with \r
    line=${line//$'\e[K'/}
    [ -z "$line" ] || printf '%5d %s\n' $((SECONDS - t0)) "$line"
  done | tee "$logs/vagrant-up.log" || rc=$?
  return "$rc"
}

# at PATTERN: the stamp of vagrant up's first line matching PATTERN.
at() { grep -m1 -E "$1" "$logs/vagrant-up.log" 2>/dev/null | awk '{print $1}'; }

report() {
  local imported booted synced
  imported=$(at 'Starting domain' || true)
  booted=$(at 'Machine booted and ready' || true)
  synced=$(at 'Running provisioner: setup' || true)
  if grep -q 'Running provisioner: summary' "$logs/vagrant-up.log" 2>/dev/null; then
    echo
    echo "== results (guest logs in $logs/stepexec-vagrant-results)"
    sed -n '/Running provisioner: summary/,$p' "$logs/vagrant-up.log" | sed -E 's/^ *[0-9]+ //; s/^ *debian12: //' | tail -n +2
  fi
  echo "== phase timings (driver $driver)"
  [ ${#timings[@]} -eq 0 ] || printf '%s\n' "${timings[@]}"
  [ -z "$imported" ] || printf '%-28s %5d s\n' "  box import, domain defined" "$imported"
  [ -z "$imported" ] || [ -z "$booted" ] || printf '%-28s %5d s\n' "  boot (until ssh)" $((booted - imported))
  [ -z "$booted" ] || [ -z "$synced" ] || printf '%-28s %5d s\n' "  rsync of the tree" $((synced - booted))
  grep -E 'stepexec-vagrant: phase ' "$logs/vagrant-up.log" 2>/dev/null | sed -E 's/.*stepexec-vagrant: phase ([^:]+): ([0-9]+) s/\1 \2/' |
    while read -r name secs; do printf '%-28s %5d s\n' "  $name (in the guest)" "$secs"; done
}

mkdir -p "$logs"
rm -rf "$logs/stepexec-vagrant-results" "$logs/vagrant-up.log"
trap cleanup EXIT
trap 'on_signal 129' HUP
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
timed "install packages" install_missing
box_ready
if kvm_usable; then driver=kvm compile=guest; fi
export STEPEXEC_VAGRANT_DRIVER=$driver STEPEXEC_VAGRANT_COMPILE=$compile STEPEXEC_VAGRANT_PREPARED=1
timed "prepare ($compile builds)" scripts/vagrant/prepare.sh "$compile" "$suite"
reap_orphans
rm -rf .vagrant/machines/debian12 # a new libvirtd has no domain yet
no_kvm=()
[ "$driver" = kvm ] || no_kvm=(--no-kvm)
started=1
timed "libvirtd start" scripts/vagrant/libvirtd-netns.sh start "$state" "${no_kvm[@]}"
rc=0
timed "vagrant up debian12" up || rc=$?
in_ns vagrant ssh debian12 -c 'tar -C /var/tmp -cf - stepexec-vagrant-results' 2>/dev/null | tar -C "$logs" -xf - 2>/dev/null || true
exit "$rc"
