# shellcheck shell=sh
# phoenix-gpu live change, on a cgroup v1 host: the rules lxc-cgroup allowed in the container's
# devices cgroup, allowed too in every devices cgroup from there down to its init's (a v1 allow
# does not reach a child cgroup, and LXC may run the container one level down: Proxmox VE's
# `lxc/CTID/ns`). An allow already there, or refused above the container, changes nothing.
# Arguments: INIT_PID RULE...
set -u
pid=$1
shift
path=$(sed -n 's/^[0-9]*:devices:\(.*\)$/\1/p' "/proc/$pid/cgroup")
[ -n "$path" ] || exit 0
dir=/sys/fs/cgroup/devices
rest=${path#/}
while [ -n "$rest" ]; do
	dir="$dir/${rest%%/*}"
	case $rest in
	*/*) rest=${rest#*/} ;;
	*) rest= ;;
	esac
	for rule in "$@"; do
		echo "$rule" >"$dir/devices.allow" 2>/dev/null || :
	done
done
