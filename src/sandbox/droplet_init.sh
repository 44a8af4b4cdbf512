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

# Host keys belong to one droplet: a droplet started from another's snapshot makes its own.
# Ed25519 and ECDSA keys take milliseconds; RSA takes a second of CPU, so it is made once sshd
# already answers (below).
id=${INFRA_DROPLET_ID:-unknown}
if [ "$(cat /etc/infra-droplet-id 2>/dev/null)" != "$id" ] || [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
  rm -f /etc/ssh/ssh_host_*
  ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
  ssh-keygen -q -t ecdsa -N '' -f /etc/ssh/ssh_host_ecdsa_key
  echo "$id" >/etc/infra-droplet-id
fi

# Left behind by a power off or captured by a snapshot: they would stop dockerd from starting.
rm -rf /run/docker /run/docker.pid /run/docker.sock /run/containerd /run/nginx.pid \
  /var/run/docker.pid /var/lib/docker/runtimes /var/lib/docker/tmp

mkdir -p /run/sshd
/usr/sbin/sshd -E /var/log/sshd.log
if [ ! -s /etc/ssh/ssh_host_rsa_key ]; then
  (
    rm -f /etc/ssh/.rsa_key /etc/ssh/.rsa_key.pub
    nice -n 19 ssh-keygen -q -t rsa -N '' -f /etc/ssh/.rsa_key &&
      mv /etc/ssh/.rsa_key.pub /etc/ssh/ssh_host_rsa_key.pub &&
      mv /etc/ssh/.rsa_key /etc/ssh/ssh_host_rsa_key &&
      kill -HUP "$(cat /run/sshd.pid)"
  ) &
fi
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
