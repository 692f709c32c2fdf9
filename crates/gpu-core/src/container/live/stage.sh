# shellcheck shell=sh
# phoenix-gpu live change, on the host: make device nodes at the root of a running container's
# root filesystem, to be bind-mounted onto their places inside (a node made by the host on the
# container's /dev could not be opened in an unprivileged container: that tmpfs belongs to the
# container's user namespace). Each name is one path component under ROOT (/proc/PID/root), so
# no link of the container is followed; `mknod` never follows a final link, nor `chown -h`.
# Arguments: ROOT, then NAME MODE MAJOR MINOR UID GID for each node.
set -eu
root=$1
shift
while [ $# -ge 6 ]; do
	p="$root/$1"
	mknod -m "$2" "$p" c "$3" "$4"
	chown -h "$5:$6" "$p"
	shift 6
done
