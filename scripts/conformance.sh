#!/usr/bin/env bash
# Differential conformance: builds every case of integration/testdata/conformance with stepexec, with rootless
# BuildKit (docker build's own engine: the reference) and with buildah, compares the flattened filesystems and config
# fields with the goldens (made by BuildKit), and prints the report. Exits 1 when stepexec (or BuildKit itself)
# differs in a way integration/KNOWN-DIFFERENCES.md does not list.
#
# usage: scripts/conformance.sh [--update] [--builders stepexec,buildkit,buildah] [--keep DIR] [CASE…]
#   --update   rewrite each case's expected.json from BuildKit's build (review them before committing)
#   --keep DIR keep the results (BUILDER/CASE.json|.error|.log) in DIR
#
# As root (CI) it first sets up what the builders need, for the unprivileged user $STEPEXEC_TEST_USER (default
# stepexec-ci, which must have a /etc/subuid range): rootless buildkitd and a loopback registry serving Alpine
# (../shared/tools/buildkit-reference.sh, or $BUILDKIT_REFERENCE; it builds buildkitd once into
# /var/tmp/buildkit-reference), buildah's storage.conf/containers.conf and Alpine imported for buildah; then it
# runs every build as that user. As a normal user it expects that setup and runs the builds as itself.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH=$PATH:/usr/local/go/bin
die() { echo "conformance.sh: $*" >&2; exit 1; }

update=() builders=stepexec,buildkit,buildah cases=() keep=
while [ $# -gt 0 ]; do
  case $1 in
    --update) update=(-update) ;;
    --builders) [ $# -ge 2 ] || die "--builders needs a list"; builders=$2; shift ;;
    --builders=*) builders=${1#--builders=} ;;
    --keep) [ $# -ge 2 ] || die "--keep needs a directory"; keep=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) die "unknown flag $1" ;;
    *) cases+=("$(basename "$1")") ;;
  esac
  shift
done
has() { [[ ",$builders," == *",$1,"* ]]; }
if [ ${#update[@]} -gt 0 ] && ! has buildkit; then die "--update takes the goldens from BuildKit: include it in --builders"; fi

start=$(date +%s)
corpus=$repo/integration/testdata/conformance
known=$repo/integration/KNOWN-DIFFERENCES.md
alpine=${STEPEXEC_ALPINE_TARBALL:-$(scripts/alpine.sh)}
[ -f "$alpine" ] || die "no Alpine minirootfs at $alpine"
user=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  user=${STEPEXEC_TEST_USER:-stepexec-ci}
  id -u "$user" >/dev/null 2>&1 || die "no user $user (scripts/setup-host.sh --test-user $user makes one with a subuid range)"
fi
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)
[ -n "$home" ] && [ -d "$home" ] || die "$user has no home directory"

work=$(mktemp -d /tmp/conformance-XXXXXX)
started=() # daemons this run started, stopped at the end
cleanup() {
  for pidfile in "${started[@]}"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
  done
  # buildkit-reference.sh takes a socket left behind for a running daemon.
  if [[ " ${started[*]} " == *"/.buildkitd.pid "* ]]; then rm -f "/run/user/$uid/buildkit/buildkitd.sock"; fi
  if [ "$(id -u)" -ne 0 ] && [ -d "$work/run" ]; then
    # The stepexec store holds files of the user's subordinate ids.
    podman unshare rm -rf "$work/run" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
mkdir -p "$work/bin" "$work/tmp" "$work/results" "$work/run"
cp "$alpine" "$work/bin/alpine.tar.gz"

as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$user" -- env -i HOME="$home" USER="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
      XDG_RUNTIME_DIR=/run/user/$uid TMPDIR="$work/tmp" "$@"
  else
    env TMPDIR="$work/tmp" XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/run/user/$uid}" "$@"
  fi
}

echo "== building stepexec and confdiff"
scripts/build.sh
cp stepexec "$work/bin/stepexec"
go build -o "$work/bin/confdiff" ./integration/conformance/cmd/confdiff

setup_buildah() {
  command -v buildah >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null; }
  command -v buildah >/dev/null || die "buildah could not be installed"
  command -v runc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >/dev/null
  # podman 4.3/buildah 1.28 default a rootless user to vfs and crun; the overlay driver and runc are what work here.
  install -d -o "$user" -g "$(id -g "$user")" "$home/.config" "$home/.config/containers" /run/user/$uid
  chmod 700 /run/user/$uid
  printf '[storage]\ndriver = "overlay"\n' > "$home/.config/containers/storage.conf"
  printf '[engine]\nruntime = "runc"\n' > "$home/.config/containers/containers.conf"
  chown "$user:" "$home/.config/containers/storage.conf" "$home/.config/containers/containers.conf"
  if ! as_user buildah inspect --type image localhost/alpine:3.20 >/dev/null 2>&1; then
    as_user podman import -q --change 'CMD ["/bin/sh"]' "$work/bin/alpine.tar.gz" alpine:3.20 >/dev/null \
      || die "podman import of Alpine for buildah failed"
    as_user podman tag alpine:3.20 alpine:latest
  fi
}

if [ "$(id -u)" -eq 0 ]; then
  chown -R "$user:" "$work/tmp" "$work/results" "$work/run"
  if has buildkit; then
    echo "== setting up rootless BuildKit for $user"
    ref=${BUILDKIT_REFERENCE:-$repo/../shared/tools/buildkit-reference.sh}
    [ -x "$ref" ] || die "BuildKit's setup script is not at $ref (set BUILDKIT_REFERENCE)"
    # Stop at the end what this run starts; leave running what was there.
    [ -S "/run/user/$uid/buildkit/buildkitd.sock" ] || started+=("$home/.buildkitd.pid")
    curl -fs "http://127.0.0.1:5055/v2/" >/dev/null 2>&1 || started+=("${BK_HOME:-/var/tmp/buildkit-reference}/reg.pid")
    "$ref" "$user" "$work/bin/alpine.tar.gz" || die "BuildKit could not be set up"
  fi
  if has buildah; then
    echo "== setting up buildah for $user"
    setup_buildah
  fi
fi
for tool in buildkit:buildctl buildah:buildah; do
  if has "${tool%%:*}"; then command -v "${tool#*:}" >/dev/null || die "${tool#*:} is not installed"; fi
done

echo "== building the corpus as $user with $builders"
as_user "$work/bin/confdiff" run -corpus "$corpus" -results "$work/results" -builders "$builders" \
  -stepexec "$work/bin/stepexec" -alpine "$work/bin/alpine.tar.gz" -work "$work/run" "${cases[@]}"

status=0
"$work/bin/confdiff" report -corpus "$corpus" -results "$work/results" -known "$known" "${update[@]}" "${cases[@]}" || status=$?
if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work/results/." "$keep/" && echo "results kept in $keep"; fi
echo "conformance: $(( $(date +%s) - start ))s in all"
exit $status
