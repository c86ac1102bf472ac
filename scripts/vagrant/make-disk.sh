#!/usr/bin/env bash
# usage: make-disk.sh ROOTFS OUT.qcow2 [SIZE_GIB]
# Makes a bootable BIOS disk from a root filesystem directory without loop
# devices or mounts: an MBR (SYSLINUX's mbr.bin) booting partition 1, a FAT
# file system holding SYSLINUX, the kernel and the initrd (mkfs.fat
# --offset, syslinux --offset, mtools), and partition 2, ext4 labelled
# stepexec-root, filled from ROOTFS by mkfs.ext4 -d at its offset. The raw
# image is sparse; the result is qcow2.
set -euo pipefail
die() { echo "make-disk.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: make-disk.sh ROOTFS OUT.qcow2 [SIZE_GIB]"
rootfs=$1 out=$2 size_gib=${3:-20}
kernel=$(ls "$rootfs"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
[ -n "$kernel" ] || die "no kernel in $rootfs/boot"
initrd=$rootfs/boot/initrd.img-${kernel##*/vmlinuz-}
[ -f "$initrd" ] || die "no initrd $initrd"

raw=$out.raw
rm -f "$raw"
truncate -s "${size_gib}G" "$raw"
boot_start=2048 boot_sectors=$((256 * 2048)) # 256 MiB
root_start=$((boot_start + boot_sectors))
root_sectors=$(( size_gib * 1024 * 2048 - root_start ))
sfdisk --quiet "$raw" <<SFDISK
label: dos
start=$boot_start, size=$boot_sectors, type=e, bootable
start=$root_start, size=$root_sectors, type=83
SFDISK
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none

# Partition 1: FAT with SYSLINUX, the kernel and the initrd.
# (Quiet when it works: it warns that the file is larger than the partition.)
if ! msg=$(mkfs.fat -F 16 -n SEBOOT --offset=$boot_start "$raw" $((boot_sectors / 2)) 2>&1); then
  die "mkfs.fat: $msg"
fi
syslinux --install --offset $((boot_start * 512)) "$raw"
fat="$raw@@$((boot_start * 512))"
cat > "$out.syslinux.cfg" <<CFG
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=stepexec-root ro console=ttyS0,115200 console=tty0 net.ifnames=0
CFG
mcopy -o -i "$fat" "$kernel" ::/vmlinuz
mcopy -o -i "$fat" "$initrd" ::/initrd.img
mcopy -o -i "$fat" "$out.syslinux.cfg" ::/syslinux.cfg
rm -f "$out.syslinux.cfg"

# Partition 2: the root file system.
mkfs.ext4 -q -F -L stepexec-root -d "$rootfs" -E offset=$((root_start * 512)) "$raw" $((root_sectors / 2))k

qemu-img convert -O qcow2 "$raw" "$out"
rm -f "$raw"
echo "make-disk.sh: $out (kernel ${kernel##*/})"
