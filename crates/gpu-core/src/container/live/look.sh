# shellcheck shell=sh
# phoenix-gpu live change, the look inside a running container (POSIX sh, busybox or coreutils):
# its NVIDIA device nodes, the character devices its processes hold open, their names and
# device cgroups, and which programs the change needs that it lacks. One line each:
#   node RAWMODE MAJOR MINOR UID GID PATH      (stat %f %t %T: hex)
#   fd RAWMODE MAJOR MINOR /proc/PID/fd/N      (what the fd points at)
#   comm PID NAME
#   cg PID PATH                                (the devices line of /proc/PID/cgroup, cgroup v1)
#   missing PROGRAM
for t in stat mount umount; do
	command -v "$t" >/dev/null 2>&1 || echo "missing $t"
done
if command -v stat >/dev/null 2>&1; then
	for n in /dev/nvidia*; do
		if [ -e "$n" ] || [ -L "$n" ]; then
			stat -c 'node %f %t %T %u %g %n' "$n" 2>/dev/null
		fi
	done
	stat -L -c 'fd %f %t %T %n' /proc/[0-9]*/fd/* 2>/dev/null
fi
for p in /proc/[0-9]*; do
	pid=${p#/proc/}
	c=
	if { read -r c <"$p/comm"; } 2>/dev/null; then
		echo "comm $pid $c"
	fi
	if [ -r "$p/cgroup" ]; then
		while IFS= read -r l; do
			case $l in
			*:devices:*) echo "cg $pid ${l#*:devices:}" ;;
			esac
		done 2>/dev/null <"$p/cgroup"
	fi
done
exit 0
