#!/bin/sh
# First process of a sandbox droplet (under tini): makes the container behave like a small
# host, then starts sshd and the droplet's own Docker Engine. `infra` embeds this file in the
# droplet image (see droplet_recipe.sh).

# The inner engine needs to write to /sys and to the cgroup hierarchies, which Docker mounts
# read-only even with every capability.
mount -o remount,rw /sys 2>/dev/null
for dir in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/mounts); do
  mount -o remount,bind,rw "$dir" 2>/dev/null
done

# Who this droplet is: its id comes from the container's environment. A spare (a container the
# sandbox boots before anyone asks for a droplet, see spares.rs) is told when it becomes a
# droplet: the sandbox writes `<spare id> <droplet id> <hostname>` to /etc/infra-droplet and
# runs `droplet-init identify`. Every later boot reads that file again, because Docker gives the
# container back the spare's hostname; a droplet made from a snapshot of it has another id in
# its environment, so the file is not about it and goes.
# Host keys belong to one droplet: a new id (a spare becoming a droplet, a droplet started from
# another's snapshot) makes its own. Ed25519 and ECDSA keys take milliseconds; RSA takes a
# second of CPU, so it is made once sshd already answers (below).
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
    else
      rm -f /etc/infra-droplet
    fi
  fi
  if [ "$(cat /etc/infra-droplet-id 2>/dev/null)" != "$id" ] || [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
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

identify
if [ "${1:-}" = identify ]; then
  # A running spare becoming a droplet: sshd loads the host keys for each connection, so the
  # new ones are what the next client sees.
  rsa_key_later
  exit 0
fi

# Left behind by a power off or captured by a snapshot: they would stop dockerd from starting.
rm -rf /run/docker /run/docker.pid /run/docker.sock /run/containerd /run/nginx.pid \
  /var/run/docker.pid /var/lib/docker/runtimes /var/lib/docker/tmp

mkdir -p /run/sshd
/usr/sbin/sshd -E /var/log/sshd.log
rsa_key_later
# Below sshd in priority, so that droplets booting together answer SSH sooner.
nice -n 10 dockerd >>/var/log/dockerd.log 2>&1 &
dockerd=$!

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
