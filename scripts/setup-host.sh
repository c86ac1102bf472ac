#!/usr/bin/env bash
# Prepares a Debian/Ubuntu (or Fedora) host for stepexec: the packages it
# and its tests need, and (with --test-user NAME) an unprivileged user with a
# subuid/subgid range for the integration suite. With --apparmor[=PATH], on hosts where
# AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+), it
# installs a profile letting the binary at PATH (default
# /usr/local/bin/stepexec) create them. Needs root; safe to run again.
set -euo pipefail

test_user=""
apparmor=""
while [ $# -gt 0 ]; do
  case "$1" in
    --test-user) test_user="$2"; shift 2 ;;
    --apparmor) apparmor=/usr/local/bin/stepexec; shift ;;
    --apparmor=*) apparmor=${1#--apparmor=}; shift ;;
    *) echo "setup-host.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host.sh: run as root (it installs packages and creates users)" >&2
  exit 1
fi

# uidmap: newuidmap/newgidmap. libseccomp-dev: the seccomp build tag.
# slirp4netns, passt (pasta): RUN steps' private network, both tested.
# skopeo, umoci, podman: interop checks in the integration suite;
# docker-registry: the registry the pull/push tests start on 127.0.0.1;
# bzip2, xz-utils, zstd: compressed base tarballs for import tests.
pkgs=(uidmap gcc pkg-config libseccomp-dev slirp4netns passt skopeo umoci podman docker-registry
  bzip2 xz-utils zstd ca-certificates curl)
# The same on Fedora (the Vagrantfile's fedora machine); glibc-static for
# the seccomp tests' static program, docker-distribution's registry under
# Debian's name.
rpms=(shadow-utils gcc pkgconf-pkg-config libseccomp-devel glibc-static slirp4netns passt skopeo umoci podman
  docker-distribution bzip2 xz zstd ca-certificates curl util-linux)
if command -v dpkg-query >/dev/null; then
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
elif command -v dnf >/dev/null; then
  missing=()
  for p in "${rpms[@]}"; do rpm -q "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    dnf install -y -q "${missing[@]}"
  fi
  if ! command -v docker-registry >/dev/null && [ -x /usr/bin/registry ]; then
    ln -s /usr/bin/registry /usr/local/bin/docker-registry
  fi
else
  echo "setup-host.sh: neither apt (Debian, Ubuntu) nor dnf (Fedora) here: install by hand: ${pkgs[*]}" >&2
  exit 1
fi

# Ubuntu's AppArmor lets an unprivileged program use a user namespace only
# under a profile granting `userns`, as its packages do for podman and
# buildah. Only where that restriction is on.
if [ -n "$apparmor" ]; then
  restrict=/proc/sys/kernel/apparmor_restrict_unprivileged_userns
  if [ "$(cat "$restrict" 2>/dev/null)" = 1 ]; then
    case "$apparmor" in
      /*) ;;
      *) echo "setup-host.sh: --apparmor=$apparmor: give the binary's absolute path" >&2; exit 2 ;;
    esac
    "$(dirname "$0")/apparmor-profile.sh" "$apparmor" > /etc/apparmor.d/stepexec
    apparmor_parser -r /etc/apparmor.d/stepexec
    echo "setup-host.sh: /etc/apparmor.d/stepexec lets $apparmor create user namespaces (keep it where only root can write)"
  else
    echo "setup-host.sh: --apparmor: $restrict is not 1 here (AppArmor does not restrict user namespaces): no profile needed"
  fi
fi

# The NAT helpers make each private step's tap device through /dev/net/tun
# with the user's own rights: most distributions ship it 0666, some 0600.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  chmod 0666 /dev/net/tun
fi

# As root, stepexec runs RUN steps as root's subordinate ids (never as host
# root): give root 65536 of them, above useradd's allocation area
# (SUB_UID_MIN 100000 .. SUB_UID_MAX 600100000), unless it has a range.
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if ! grep -qE '^(root|0):' "$f"; then
    if awk -F: -v lo=1000000000 -v hi=1000065535 '$2 <= hi && $2 + $3 - 1 >= lo { found = 1 } END { exit !found }' "$f"; then
      echo "setup-host.sh: ids 1000000000-1000065535 are already given out in $f; give root 65536 subordinate ids by hand" >&2
      exit 1
    fi
    echo "root:1000000000:65536" >> "$f"
  fi
done

if [ -n "$test_user" ]; then
  if ! id -u "$test_user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$test_user"
  fi
  # A range of its own that overlaps no other entry: 65536 ids from 200000.
  for f in /etc/subuid /etc/subgid; do
    touch "$f"
    grep -q "^$test_user:" "$f" || echo "$test_user:200000:65536" >> "$f"
  done
  # A second user without any subordinate ids, to test the diagnosis.
  if ! id -u stepexec-nosub >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 stepexec-nosub
  fi
  sed -i '/^stepexec-nosub:/d' /etc/subuid /etc/subgid
fi
