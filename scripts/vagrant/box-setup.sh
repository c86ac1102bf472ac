#!/usr/bin/env bash
# Runs inside the box's root filesystem (chroot) while scripts/vagrant-box.sh
# builds it: the vagrant user, ssh, networking, boot settings, and
# scripts/setup-host.sh for the suite's users and ids.
set -euo pipefail

echo debian12 > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 debian12\n::1 localhost ip6-localhost ip6-loopback\n' > /etc/hosts
# The guest resolves nothing outside: its only network is the host-only
# management network.
echo 'nameserver 127.0.0.1' > /etc/resolv.conf
: > /etc/machine-id # systemd makes one at first boot

# useradd gives the user a subuid/subgid range (login.defs SUB_UID_*).
useradd --create-home --shell /bin/bash vagrant
echo 'vagrant:vagrant' | chpasswd
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 0600 -o vagrant -g vagrant /tmp/vagrant.pub /home/vagrant/.ssh/authorized_keys
grep -q "^vagrant:" /etc/subuid || { echo "box-setup.sh: useradd gave vagrant no subuid range" >&2; exit 1; }

# DHCP on the one NIC through systemd-networkd; nothing waits for it.
cat > /etc/systemd/network/10-wired.network <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NET
systemctl enable systemd-networkd.service ssh.service >/dev/null 2>&1
# docker-registry's own service would hold :5000; the suite starts its own
# registries on loopback, as on a host without systemd.
systemctl mask systemd-networkd-wait-online.service docker-registry.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer man-db.timer >/dev/null 2>&1
# Vagrant connects soon after boot: skip reverse DNS in sshd.
echo 'UseDNS no' > /etc/ssh/sshd_config.d/vagrant.conf
# A serial console, for the boot log.
systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true

# The root filesystem is the second partition, found by label (make-disk.sh).
printf 'LABEL=stepexec-root / ext4 errors=remount-ro 0 1\n' > /etc/fstab

# The suite's users and ids, as on any host: vagrant is the test user.
bash /tmp/setup-host.sh --test-user vagrant
apt-get clean
