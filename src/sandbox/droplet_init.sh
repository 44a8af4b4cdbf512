#!/bin/sh
# First process of a sandbox droplet (under tini): makes the container behave like a small
# host, then starts sshd and the droplet's own Docker Engine. `infra` embeds this file in the
# droplet image (see droplet_recipe.sh).

# The inner engine needs to write to /sys and to the cgroup hierarchies, which Docker mounts
# read-only even with every capability. (Done at boot: `identify`, below, runs in a droplet
# already booted.)
if [ "${1:-}" != identify ]; then
  mount -o remount,rw /sys 2>/dev/null
  for dir in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/mounts); do
    mount -o remount,bind,rw "$dir" 2>/dev/null
  done
fi

# Who this droplet is: its id comes from the container's environment. A spare (a container the
# sandbox boots before anyone asks for a droplet, see spares.rs) is told when it becomes a
# droplet: the sandbox has `<spare id> <droplet id> <hostname>` written to /etc/infra-droplet
# and `droplet-init identify` run (by the spare's own watcher below, or by a `docker exec`).
# Every later boot reads that file again, because Docker gives the container back the spare's
# hostname; a droplet made from a snapshot of it has another id in its environment, so the file
# is not about it and goes.
# Host keys belong to one droplet: a droplet started from another's snapshot makes its own.
# Ed25519 and ECDSA keys take milliseconds; RSA takes a second of CPU, so it is made once sshd
# already answers (below). A spare becoming a droplet keeps the keys it made at its own boot:
# nobody has seen them (the sandbox only reads a spare's SSH banner, never a key exchange), each
# spare made its own, and not making new ones spares five droplets created at once five RSA
# keys' worth of CPU while their owner connects to them.
identify() {
  id=${INFRA_DROPLET_ID:-unknown}
  if read -r spare assigned name </etc/infra-droplet 2>/dev/null; then
    if [ "$spare" = "$id" ] && [ -n "$assigned" ] && [ -n "$name" ]; then
      id=$assigned
      hostname "$name"
      echo "$name" >/etc/hostname
      # Docker's /etc/hosts names the container by the spare's hostname. A bind mount: written
      # in place, not replaced.
      hosts=$(sed "s/\([[:space:]]\)$spare\$/\1$name/" /etc/hosts) && printf '%s\n' "$hosts" >/etc/hosts
      # The spare's own keys become the droplet's.
      made=
      { read -r made </etc/infra-droplet-id; } 2>/dev/null
      if [ "$made" = "$spare" ]; then
        echo "$id" >/etc/infra-droplet-id
      fi
    else
      rm -f /etc/infra-droplet
    fi
  fi
  made=
  { read -r made </etc/infra-droplet-id; } 2>/dev/null
  if [ "$made" != "$id" ] || [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
    ssh-keygen -q -t ecdsa -N '' -f /etc/ssh/ssh_host_ecdsa_key
    echo "$id" >/etc/infra-droplet-id
  fi
}

# The RSA host key, in the background at low priority. sshd loads its host keys again for each
# connection (it re-executes itself), so the next client sees it; no SIGHUP, which would close
# the listening socket for a moment and refuse whoever connects then.
rsa_key_later() {
  [ -s /etc/ssh/ssh_host_rsa_key ] && return
  (
    rm -f /etc/ssh/.rsa_key /etc/ssh/.rsa_key.pub
    nice -n 19 ssh-keygen -q -t rsa -N '' -f /etc/ssh/.rsa_key &&
      mv /etc/ssh/.rsa_key.pub /etc/ssh/ssh_host_rsa_key.pub &&
      mv /etc/ssh/.rsa_key /etc/ssh/ssh_host_rsa_key
  ) </dev/null >/dev/null 2>&1 &
}

# A spare waits to become a droplet without any `docker exec` (which this machine's Docker
# Engine runs one at a time): the sandbox bind-mounts a directory of its own at /run/infra-spare.
# Once the RSA host key is made, this watcher says `ready` there, then looks for `take.sh` every
# 20 ms. To hand the spare over, the sandbox writes `take.keys` (the droplet's authorized keys),
# then `take.sh` (the script a `docker exec` would run: identity, keys, reserved IPs, firewall).
# The watcher claims the script by renaming it (so the sandbox, giving up on a spare that does
# not answer, can withdraw it the same way), runs it and answers with its exit status in `ack`.
# See spares.rs. In bash, whose `read -t` on a pipe it holds both ends of is a sleep with no
# process to start: a `sleep` every 20 ms cost each idle spare 6% of a core. (No pipe in the
# sandbox's directory: it is in the project's tree, where anything reading every file would
# block on it.)
spare_dir=/run/infra-spare
spare_watcher='
  exec 3<> <(:)
  until [ -s /etc/ssh/ssh_host_rsa_key ]; do read -r -t 0.1 -u 3 _; done
  : >"$1/ready" || exit
  until [ -e "$1/take.sh" ] && mv "$1/take.sh" "$1/take.run" 2>/dev/null; do
    read -r -t 0.02 -u 3 _
  done
  sh "$1/take.run" <"$1/take.keys" >"$1/take.log" 2>&1
  echo $? >"$1/ack.new" && mv "$1/ack.new" "$1/ack"
'

identify
if [ "${1:-}" = identify ]; then
  # A running spare becoming a droplet by `docker exec`: it keeps its host keys (see above).
  rsa_key_later
  exit 0
fi

# Left behind by a power off or captured by a snapshot: they would stop dockerd from starting,
# and podman (whose run state is meant to live on a tmpfs) from seeing that the host rebooted.
rm -rf /run/docker /run/docker.pid /run/docker.sock /run/containerd /run/nginx.pid \
  /run/docker-registry.pid /run/containers /run/libpod /run/runc /run/crun /run/netns \
  /var/run/docker.pid /var/lib/docker/runtimes /var/lib/docker/tmp

mkdir -p /run/sshd
/usr/sbin/sshd -E /var/log/sshd.log
rsa_key_later
# Below sshd in priority, so that droplets booting together answer SSH sooner.
nice -n 10 dockerd >>/var/log/dockerd.log 2>&1 &
dockerd=$!

# What was running here comes back after a power cycle or in a droplet made from a snapshot,
# in the background, output in /var/log/infra-boot.log. Podman has no daemon to restart its
# containers (dockerd does its own): those with a restart policy are started again, as
# podman-restart.service would, if podman was ever used here. Then the services infra set up
# (its registry, nginx): each executable file in /etc/infra/boot.d, in name order, one after
# the other; each starts its service in the background and returns (dockerd may not answer yet:
# a script that needs it waits for it).
boot_d=/etc/infra/boot.d
(
  if [ -e /var/lib/containers/storage/libpod/bolt_state.db ]; then
    podman start --all --filter restart-policy=always --filter restart-policy=unless-stopped ||
      echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') podman start --all exited with $?"
  fi
  for hook in "$boot_d"/*; do
    [ -f "$hook" ] && [ -x "$hook" ] || continue
    echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') boot.d: $hook"
    "$hook" || echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') boot.d: $hook exited with $?"
  done
) </dev/null >>/var/log/infra-boot.log 2>&1 &
# Still a spare (not yet told otherwise by /etc/infra-droplet), with the sandbox's directory.
case ${INFRA_DROPLET_ID:-} in
  spare-*)
    if [ "$id" = "$INFRA_DROPLET_ID" ] && [ -d "$spare_dir" ]; then
      bash -c "$spare_watcher" watcher "$spare_dir" </dev/null >/dev/null 2>&1 &
    fi
    ;;
esac

# A graceful power off: let dockerd stop its containers so a snapshot taken after it is clean.
stop() {
  kill -TERM "$dockerd" 2>/dev/null
  wait "$dockerd" 2>/dev/null
  exit 0
}
trap stop TERM INT
while :; do
  sleep 3600 &
  wait $!
done
