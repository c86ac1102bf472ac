#!/usr/bin/env bash
# Prints the path of the Alpine 3.20.3 x86_64 minirootfs tarball: from
# $STEPEXEC_ALPINE_TARBALL, else ../shared/alpine/ beside the repository, else
# downloaded once from Alpine's CDN into ~/.cache/stepexec and checked
# against its sha512.
set -euo pipefail
name=alpine-minirootfs-3.20.3-x86_64.tar.gz
sha512=9d5405f61f8a6ebc02461ba75346fbf1a63a4eab8510a0158dd321cee0c4dafe28c2a3d2cb7c3d75e2a8130dae0c3c92382f5b6adeea309eafc97621c5bf6400
repo=$(cd "$(dirname "$0")/.." && pwd)

if [ -n "${STEPEXEC_ALPINE_TARBALL:-}" ]; then
  [ -r "$STEPEXEC_ALPINE_TARBALL" ] || { echo "alpine.sh: STEPEXEC_ALPINE_TARBALL=$STEPEXEC_ALPINE_TARBALL is not readable" >&2; exit 1; }
  echo "$STEPEXEC_ALPINE_TARBALL"
  exit 0
fi
shared="$repo/../shared/alpine/$name"
if [ -r "$shared" ]; then
  echo "$(cd "$(dirname "$shared")" && pwd)/$name"
  exit 0
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/stepexec"
mkdir -p "$cache"
if [ ! -r "$cache/$name" ]; then
  url="https://dl-cdn.alpinelinux.org/alpine/v3.20/releases/x86_64/$name"
  echo "alpine.sh: downloading $url" >&2
  curl -fsSL -o "$cache/$name.part" "$url"
  if ! echo "$sha512  $cache/$name.part" | sha512sum -c --quiet -; then
    rm -f "$cache/$name.part"
    echo "alpine.sh: $url does not match the known sha512; refusing it" >&2
    exit 1
  fi
  mv "$cache/$name.part" "$cache/$name"
fi
echo "$cache/$name"
