#!/bin/sh
# The recipe of the sandbox's droplet image: a Debian 12 root filesystem made with debootstrap
# from the Debian mirror the machine's apt uses, imported into the local Docker Engine (no
# registry is needed). `infra` embeds this file and tags the image with a hash of it and of
# droplet_init.sh, so changing either one builds a new image.
#
# Usage: droplet_recipe.sh WORKDIR MIRROR IMAGE_TAG INIT_SCRIPT
set -eu
# One stream, in order, for infra's progress lines.
exec 2>&1
workdir=$1 mirror=$2 tag=$3 init=$4
rootfs=$workdir/rootfs

echo "step: debootstrap bookworm from $mirror"
debootstrap --variant=minbase \
  --include=openssh-server,iproute2,iputils-ping,iputils-arping,ca-certificates,curl,git,rsync,nginx-light,docker.io,docker-compose,iptables,procps,busybox-static,tini,less \
  bookworm "$rootfs" "$mirror"

echo "step: configure sshd, dockerd and the init"
# Root logs in with a key only; the keys are written per droplet by the sandbox.
mkdir -p "$rootfs/etc/ssh/sshd_config.d" "$rootfs/root/.ssh" "$rootfs/etc/docker"
cat >"$rootfs/etc/ssh/sshd_config.d/infra-sandbox.conf" <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
CONF
chmod 700 "$rootfs/root/.ssh"
: >"$rootfs/root/.ssh/authorized_keys"
chmod 600 "$rootfs/root/.ssh/authorized_keys"
# Host keys are made at first boot, so every droplet has its own.
rm -f "$rootfs"/etc/ssh/ssh_host_*
# overlay2 cannot run on the droplet's own overlay root filesystem; vfs can, and `docker
# commit` then captures the inner engine's images and containers with the rest of the disk.
cat >"$rootfs/etc/docker/daemon.json" <<'CONF'
{ "storage-driver": "vfs" }
CONF
install -m 0755 "$init" "$rootfs/sbin/droplet-init"
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log

echo "step: docker import $tag"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/sbin/droplet-init"]' \
  --change 'LABEL infra.droplet-image=1' \
  - "$tag"
echo "step: done"
