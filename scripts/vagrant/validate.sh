#!/usr/bin/env bash
# `vagrant validate` of the top-level Vagrantfile, every machine, with the
# libvirt provider's own checks. As root it installs vagrant and
# vagrant-libvirt when missing (no daemon: libvirt's client library only).
# Without them as a normal user it skips, unless STEPEXEC_REQUIRE_ALL=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v vagrant >/dev/null || ! dpkg-query -W -f='${Status}' vagrant-libvirt 2>/dev/null | grep -q "install ok installed"; then
  if [ "$(id -u)" -eq 0 ]; then
    scripts/vagrant/apt-missing.sh vagrant vagrant-libvirt
  elif [ "${STEPEXEC_REQUIRE_ALL:-}" = 1 ]; then
    echo "validate.sh: vagrant and vagrant-libvirt are needed (apt install vagrant vagrant-libvirt)" >&2
    exit 1
  else
    echo "validate.sh: skipped: no vagrant/vagrant-libvirt (apt install vagrant vagrant-libvirt)"
    exit 0
  fi
fi
VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate
