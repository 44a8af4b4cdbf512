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
# Podman is the other container platform infra deploys to, and docker-registry (the CNCF
# distribution registry 2.8) is what the master droplet serves images from. debootstrap does
# not resolve virtual packages: podman's container network stack (netavark, aardvark-dns), the
# runtime that works on this kind of host (runc; crun fails on hybrid cgroups) and the rest of
# what podman needs are named here.
debootstrap --variant=minbase \
  --include=openssh-server,iproute2,iputils-ping,iputils-arping,ca-certificates,curl,git,rsync,nginx-light,docker.io,docker-compose,iptables,procps,busybox-static,tini,less,podman,runc,conmon,catatonit,golang-github-containers-common,golang-github-containers-image,netavark,aardvark-dns,docker-registry,redis-server \
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
# No message of the day: Debian's pam_motd runs `run-parts /etc/update-motd.d` for every SSH
# session (about 15% of a session's CPU on a droplet), and no one reads it.
sed -i 's/^\(session[[:space:]]\+optional[[:space:]]\+pam_motd\.so.*\)$/# \1/' "$rootfs/etc/pam.d/sshd"
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
# Podman with no systemd and no environment variables: runc (see above), cgroups managed by
# hand, events in a file instead of the journal, and open-file limits root can actually set
# (it lacks CAP_SYS_RESOURCE, so podman's default of raising them fails).
mkdir -p "$rootfs/etc/containers"
cat >"$rootfs/etc/containers/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[network]
network_backend = "netavark"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
# overlay cannot stack on the droplet's own overlay root filesystem (as for dockerd above).
cat >"$rootfs/etc/containers/storage.conf" <<'CONF'
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
# Debian's registry configuration asks for basic authentication from an htpasswd file at
# /etc/docker/registry, which is the configuration's directory: every request is refused (401)
# and no credentials can pass. The same configuration without it; infra's deploy bootstrap
# starts the registry on the master with this file (not at boot: a droplet is not a registry
# until infra makes it one).
cat >"$rootfs/etc/docker/registry/config.yml" <<'CONF'
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
CONF
# Services infra sets up on a droplet (the registry, nginx) put a start script here; the init
# runs them at every boot.
mkdir -p "$rootfs/etc/infra/boot.d"
install -m 0755 "$init" "$rootfs/sbin/droplet-init"
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
# Lean: no documentation or translations (a third of /usr/share), now or from packages
# installed later.
rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/infra-nodoc" <<'CONF'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*/LC_MESSAGES/*.mo
CONF

echo "step: docker import $tag"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/sbin/droplet-init"]' \
  --change 'LABEL infra.droplet-image=1' \
  - "$tag"
echo "step: done"
