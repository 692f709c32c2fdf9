# shellcheck shell=sh
# phoenix-gpu live change, inside a running container (POSIX sh): take device nodes away and
# bind the nodes the host staged at the root of the container's root filesystem onto their
# places. Arguments: a list of `del PATH` and `add STAGED PATH`.
# Exit 3: a program is missing (nothing was changed); 1: a step failed.
set -u
for t in mount umount; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "no $t command in the container" >&2
		exit 3
	fi
done
# Takes whatever is at $1 away: every mount on it (detached: a process that holds the node open
# keeps its handle, the path is free at once), then the file. A symbolic link is removed, never
# followed.
clear() {
	if [ -L "$1" ]; then
		rm -f "$1"
		return
	fi
	while umount -l "$1" 2>/dev/null; do :; done
	if [ -e "$1" ]; then
		rm -f "$1"
	fi
}
while [ $# -gt 0 ]; do
	case $1 in
	del)
		clear "$2" || exit 1
		shift 2
		;;
	add)
		clear "$3"
		if ! : >"$3"; then
			echo "cannot make $3" >&2
			exit 1
		fi
		if ! mount -o bind "$2" "$3"; then
			echo "cannot bind $2 onto $3" >&2
			exit 1
		fi
		shift 3
		;;
	*)
		echo "unknown operation $1" >&2
		exit 2
		;;
	esac
done
