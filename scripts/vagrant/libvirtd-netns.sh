#!/usr/bin/env bash
# A private libvirtd for scripts/test-vagrant.sh, in a network and mount
# namespace of its own, so the VMs' networks can reach no address outside:
# the namespace has only its loopback and the bridges libvirt makes in it
# (the isolated management network), no route to the host's network. Its
# /etc/libvirt (a copy of the host's, with no network autostarted),
# /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt
# are directories under STATE bound over those paths inside the namespace,
# so it shares nothing with a system libvirtd. vagrant runs inside it too
# (`run`), talking to it at qemu:///system and to the guest over ssh.
#
# With --no-kvm (a host whose /dev/kvm cannot boot guests: TCG only), an
# empty file hides /dev/kvm in the namespace: else libvirt, finding KVM in
# qemu's capabilities but /dev/kvm closed to its qemu user, probes qemu
# again on every call (a minute before each VM starts).
#
# usage: libvirtd-netns.sh start STATE [--no-kvm] | run STATE CMD [ARG…] | stop STATE
set -euo pipefail
die() { echo "libvirtd-netns.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: libvirtd-netns.sh start|run|stop STATE [CMD…]"
action=$1 state=$2
shift 2
case $state in
  /?*) ;;
  *) die "STATE must be an absolute path: $state" ;;
esac
pidfile=$state/libvirtd.pid
dirs=(etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt cache:/var/cache/libvirt log:/var/log/libvirt)

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

in_ns() { nsenter --target "$(cat "$pidfile")" --net --mount -- "$@"; }

start() {
  [ "$(id -u)" -eq 0 ] || die "run as root"
  command -v libvirtd >/dev/null || die "no libvirtd (apt install libvirt-daemon-system)"
  running && die "a libvirtd of $state is already running (pid $(cat "$pidfile"))"
  rm -rf "$state"
  mkdir -p "$state"
  chmod 755 "$state" # qemu (libvirt-qemu) reaches the images under lib/
  cp -a /etc/libvirt "$state/etc"
  rm -f "$state"/etc/qemu/networks/autostart/*.xml "$state"/etc/qemu/networks/*.xml
  rm -f "$state"/etc/qemu/*.xml "$state"/etc/storage/*.xml "$state"/etc/storage/autostart/*.xml
  # No virtlogd, cgroups or mount namespace of qemu's own (that would try
  # to carry the --no-kvm bind mount into it); local root only (the socket
  # exists only inside the mount namespace).
  cat >> "$state/etc/qemu.conf" <<'CONF'
stdio_handler = "file"
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
CONF
  cat >> "$state/etc/libvirtd.conf" <<'CONF'
auth_unix_ro = "none"
auth_unix_rw = "none"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
CONF
  for d in lib cache log; do
    local target
    target=$(printf '%s\n' "${dirs[@]}" | sed -n "s|^$d:||p")
    if [ -d "$target" ]; then cp -a "$target" "$state/$d"; else mkdir -p "$state/$d"; fi
  done
  mkdir -p "$state/run"
  mkdir -p /run/libvirt # the mount point (empty outside the namespaces), kept
  local binds=""
  for pair in "${dirs[@]}"; do
    binds+="mount --bind '$state/${pair%%:*}' '${pair#*:}'; "
  done
  if [ "${1:-}" = --no-kvm ] && [ -e /dev/kvm ]; then
    install -m 0600 /dev/null "$state/no-kvm"
    binds+="mount --bind '$state/no-kvm' /dev/kvm; "
  fi
  setsid unshare --net --mount --propagation private -- bash -c "
    set -e
    ip link set lo up
    mount -t sysfs sysfs /sys # this namespace's interfaces
    $binds
    exec libvirtd -p '$pidfile'
  " </dev/null >"$state/libvirtd.log" 2>&1 &
  for _ in $(seq 100); do
    if [ -f "$pidfile" ] && in_ns test -S /run/libvirt/libvirt-sock 2>/dev/null &&
      in_ns virsh -q -c qemu:///system version >/dev/null 2>&1; then
      echo "libvirtd-netns.sh: libvirtd $(cat "$pidfile") in its own network namespace ($state)"
      return 0
    fi
    sleep 0.2
  done
  cat "$state/libvirtd.log" >&2
  die "libvirtd did not start (log above)"
}

stop() {
  running || { rm -rf "$state"; return 0; }
  local pid netns
  pid=$(cat "$pidfile")
  netns=$(readlink "/proc/$pid/ns/net")
  [ "$netns" != "$(readlink /proc/self/ns/net)" ] || die "pid $pid is not in a network namespace of its own; not stopping it"
  # Domains and networks it still has (vagrant destroy normally removed them).
  for dom in $(in_ns virsh -q -c qemu:///system list --all --name 2>/dev/null); do
    in_ns virsh -q -c qemu:///system destroy "$dom" >/dev/null 2>&1 || true
    in_ns virsh -q -c qemu:///system undefine --remove-all-storage "$dom" >/dev/null 2>&1 || true
  done
  for net in $(in_ns virsh -q -c qemu:///system net-list --all --name 2>/dev/null); do
    in_ns virsh -q -c qemu:///system net-destroy "$net" >/dev/null 2>&1 || true
    in_ns virsh -q -c qemu:///system net-undefine "$net" >/dev/null 2>&1 || true
  done
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  # Anything else in the namespace (a qemu or dnsmasq libvirt left) is ours.
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$netns" ] || continue
    kill -9 "${p#/proc/}" 2>/dev/null || true
  done
  rm -rf "$state"
  # /run/libvirt stays: removing it would dissolve the bind mounts of every
  # other instance's namespace on it.
  echo "libvirtd-netns.sh: stopped libvirtd $pid and removed $state"
}

case $action in
  start) start "$@" ;;
  stop) stop ;;
  run) running || die "no libvirtd of $state is running (start it first)"; in_ns "$@" ;;
  *) die "unknown action $action" ;;
esac
