#!/usr/bin/env bash
# Prints the AppArmor profile that lets the stepexec binary at PATH create
# user namespaces on hosts with kernel.apparmor_restrict_unprivileged_userns=1
# (Ubuntu 23.10+), in the form Ubuntu's apparmor package uses for podman and
# buildah. It must match userns.AppArmorProfile (TestAppArmorProfileScript).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: apparmor-profile.sh /absolute/path/to/stepexec" >&2
  exit 2
fi
cat <<PROFILE
abi <abi/4.0>,
include <tunables/global>

profile stepexec "$1" flags=(unconfined) {
  userns,

  include if exists <local/stepexec>
}
PROFILE
