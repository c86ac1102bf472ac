#!/usr/bin/env bash
# usage: apt-missing.sh PKG…
# Installs those of the Debian packages PKG… that are not installed
# (--no-install-recommends, noninteractive), refreshing the package lists
# first: on a fresh machine they may be stale or absent. Waits up to 10
# minutes for another apt or dpkg (a fresh machine's unattended-upgrades,
# another job's install) instead of failing at once on its lock. Prints what
# it installs; on failure names the packages and shows apt's output.
set -euo pipefail
die() { echo "apt-missing.sh: $*" >&2; exit 1; }
[ $# -gt 0 ] || die "usage: apt-missing.sh PKG…"
need=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -gt 0 ] || exit 0
[ "$(id -u)" -eq 0 ] || die "${need[*]} not installed, and installing needs root"
command -v apt-get >/dev/null || die "${need[*]} not installed, and there is no apt-get here: install them by hand"
echo "apt-missing.sh: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
lock=(-o DPkg::Lock::Timeout=600)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! apt-get "${lock[@]}" update -qq >"$log" 2>&1 ||
  ! apt-get "${lock[@]}" install -y -qq --no-install-recommends "${need[@]}" >>"$log" 2>&1; then
  cat "$log" >&2
  die "could not install ${need[*]} (apt's output above)"
fi
