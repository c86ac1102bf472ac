#!/usr/bin/env bash
# Builds the Debian 12 Vagrant box for the libvirt provider offline, from the
# host's apt mirror, and adds it as stepexec/debian12 (the Vagrantfile's
# primary machine). No box is downloaded: mmdebstrap makes the root
# filesystem (kernel, systemd, openssh, sudo, rsync, the packages the suite
# needs, Go copied from the host's toolchain, a `vagrant` user with Vagrant's
# insecure key, passwordless sudo and a subuid range), and the disk is made
# without loop devices or mounts: an MBR with SYSLINUX booting the kernel
# from a FAT partition, the root filesystem written by mkfs.ext4 -d into the
# second partition, converted to qcow2.
#
# usage: scripts/vagrant-box.sh [--force] [--no-add] [--mirror FILE|URI] [--out DIR]
#   --force   rebuild and re-add even if the box is already added
#   --no-add  build the .box file only
#   --mirror  apt sources for mmdebstrap (default: the host's Debian sources)
#   --out DIR where the .box file goes (default /var/tmp/stepexec-vagrant-box)
# Needs root; installs mmdebstrap, syslinux, mtools, dosfstools, qemu-utils
# when missing. Build time is mostly the package download and dpkg.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
die() { echo "vagrant-box.sh: $*" >&2; exit 1; }

name=stepexec/debian12 force='' add=1 mirror='' out=/var/tmp/stepexec-vagrant-box
while [ $# -gt 0 ]; do
  case $1 in
    --force) force=1 ;;
    --no-add) add= ;;
    --mirror) [ $# -ge 2 ] || die "--mirror needs a value"; mirror=$2; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap builds the root filesystem as root)"
if [ -n "$add" ] && [ -z "$force" ] && vagrant box list 2>/dev/null | grep -q "^$name "; then
  echo "vagrant-box.sh: box $name is already added (--force rebuilds it)"
  exit 0
fi

"$repo/scripts/vagrant/apt-missing.sh" mmdebstrap syslinux syslinux-common mtools dosfstools qemu-utils e2fsprogs fdisk

if [ -z "$mirror" ]; then
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$f" ]; then mirror=$f; break; fi
  done
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
goroot=$(go env GOROOT 2>/dev/null || true)
[ -x "$goroot/bin/go" ] || die "no Go toolchain on the host (go env GOROOT): the box ships the host's Go"

# What the guest runs: boot and login, then what scripts/setup-host.sh
# installs for the suite (kept in step with it), and podman's own helpers.
pkgs=(linux-image-amd64 initramfs-tools systemd-sysv udev dbus libpam-systemd openssh-server sudo rsync
  iproute2 procps kmod less ca-certificates git
  uidmap gcc libc6-dev pkg-config libseccomp-dev slirp4netns passt skopeo umoci podman docker-registry
  bzip2 xz-utils zstd curl conmon crun runc containernetworking-plugins fuse-overlayfs
  golang-github-containers-common iptables)

start=$(date +%s)
work=$(mktemp -d /var/tmp/stepexec-box-XXXXXX)
chmod 755 "$work" # apt downloads as _apt
trap 'rm -rf "$work"' EXIT
cache=/var/cache/stepexec-vagrant-box/debs # downloaded .debs, kept for the next build
mkdir -p "$cache" "$out"
rootfs=$work/rootfs
cp scripts/setup-host.sh scripts/vagrant/box-setup.sh "$work/"
# Vagrant's insecure key: Debian's package, or the upstream installer's.
pub=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
  /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1 || true)
[ -n "$pub" ] || die "Vagrant's insecure public key (keys/vagrant.pub of the vagrant package) not found"
cp "$pub" "$work/vagrant.pub"

echo "vagrant-box.sh: mmdebstrap bookworm from $mirror"
mmdebstrap --variant=apt --include="$(IFS=,; echo "${pkgs[*]}")" \
  --skip=essential/unlink \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $cache /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $cache" \
  --customize-hook="copy-in $work/setup-host.sh $work/box-setup.sh $work/vagrant.pub /tmp/" \
  --customize-hook='chroot "$1" bash /tmp/box-setup.sh' \
  --customize-hook='rm -f "$1"/tmp/setup-host.sh "$1"/tmp/box-setup.sh "$1"/tmp/vagrant.pub' \
  bookworm "$rootfs" "$mirror"
echo "vagrant-box.sh: copying Go from $goroot"
mkdir -p "$rootfs/usr/local"
cp -a "$goroot" "$rootfs/usr/local/go"
echo 'PATH=$PATH:/usr/local/go/bin' > "$rootfs/etc/profile.d/go.sh"

"$repo/scripts/vagrant/make-disk.sh" "$rootfs" "$work/box.img"
rm -rf "$rootfs"
cat > "$work/metadata.json" <<JSON
{"provider": "libvirt", "format": "qcow2", "virtual_size": 20}
JSON
cat > "$work/Vagrantfile" <<'RUBY'
# stepexec/debian12, built by scripts/vagrant-box.sh: boots from /dev/vda.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
RUBY
box=$out/stepexec-debian12.box
tar -C "$work" -cf "$box.part" metadata.json Vagrantfile box.img
mv "$box.part" "$box"
echo "vagrant-box.sh: $box ($(du -h "$box" | cut -f1)) in $(( $(date +%s) - start )) s"
if [ -n "$add" ]; then
  vagrant box add --force --name "$name" "$box"
  rm -f "$box"
fi
