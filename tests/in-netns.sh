#!/bin/sh
# in-netns.sh NAMESPACE COMMAND [ARGS...]: runs COMMAND in a test "host" network namespace as `ip netns exec` does,
# with the host's cgroup hierarchies mounted again under /sys/fs/cgroup. `ip netns exec` mounts a fresh /sys, which
# lacks them; a real second host has them, and a jailed kvmps-vmm puts itself into a cgroup below its own
# (docs/confinement.md, "cgroup"). The hierarchies are the ones /proc/self/cgroup names: mounting one again with the
# same controllers gives the same tree, so the process's own cgroup paths hold there too.
set -e
[ $# -ge 2 ] || { echo "usage: in-netns.sh NAMESPACE COMMAND [ARGS...]" >&2; exit 2; }
ns=$1
shift
exec ip netns exec "$ns" sh -c '
set -e
root=/sys/fs/cgroup
if grep -qv "^0::" /proc/self/cgroup; then
  mount -t tmpfs -o mode=755 cgroup "$root"
  grep -v "^0::" /proc/self/cgroup | while IFS=: read -r id controllers path; do
    case $controllers in
      name=*) dir=${controllers#name=}; options=none,$controllers ;;
      *) dir=$controllers; options=$controllers ;;
    esac
    mkdir -p "$root/$dir"
    mount -t cgroup -o "$options" cgroup "$root/$dir"
    # A co-mounted hierarchy (cpu,cpuacct) is found by each controller name, as systemd links it.
    case $controllers in name=*) continue ;; esac
    for c in $(echo "$controllers" | tr , " "); do [ -e "$root/$c" ] || ln -s "$dir" "$root/$c"; done
  done
  if grep -q "^0::" /proc/self/cgroup; then mkdir -p "$root/unified"; mount -t cgroup2 cgroup2 "$root/unified"; fi
else
  mount -t cgroup2 cgroup2 "$root"
fi
exec "$@"' in-netns "$@"
