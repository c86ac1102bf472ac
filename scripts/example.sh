#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine: installs what stepexec needs
# (with sudo when not root), builds ./stepexec, imports Alpine and builds
# examples/hello into the store and as an OCI layout in ./hello-oci.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v newuidmap >/dev/null || ! command -v skopeo >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then scripts/setup-host.sh; else sudo scripts/setup-host.sh; fi
fi
if [ "$(id -u)" -ne 0 ] && ! grep -qE "^($(id -un)|$(id -u)):" /etc/subuid; then
  echo "example.sh: $(id -un) has no /etc/subuid range; add one with:" >&2
  echo "  sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $(id -un)" >&2
  exit 1
fi
scripts/build.sh
./stepexec import "$(scripts/alpine.sh)"
rm -rf hello-oci
./stepexec build --progress=plain -t hello --output type=oci,dest=hello-oci examples/hello
./stepexec images
./stepexec inspect hello
if command -v skopeo >/dev/null; then skopeo inspect oci:hello-oci | head -20; fi
