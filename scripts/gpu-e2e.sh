#!/usr/bin/env bash
# gpu-e2e.sh: real-GPU end-to-end test of phoenix-gpu on plain LXC (docs/e2e.md).
#
#   scripts/gpu-e2e.sh --fetch [DIR] [--no-build]   on a machine with apt: make the bundle
#   gpu-e2e.sh [--bundle DIR] [--keep]               on the GPU host, as root: the scenarios
#   gpu-e2e.sh --selftest [--bundle DIR] [--keep]    on any root host: container + cgroup, no GPU
#   gpu-e2e.sh --explore [--bundle DIR] [--keep]     on the GPU host: host facts + a hand-made GPU
#
# Environment: PHOENIX_GPU (the binary; default <bundle>/phoenix-gpu), REPORT_DIR (default
# ./gpu-e2e-report), E2E_PREFIX (private prefix; default /opt/phoenix-e2e), E2E_NAME (container
# name; default phoenix-e2e).
#
# LXC and the container's rootfs come from Debian packages unpacked into E2E_PREFIX, never over /.
set -Eeuo pipefail
umask 022

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")

# Packages for LXC itself (unpacked into the private prefix, found through LD_LIBRARY_PATH) and for
# the container's rootfs (busybox plus Debian's glibc, so that the driver's nvidia-smi can run).
# The LXC list is what `ldd` shows for lxc-start/-attach/-info/-stop/-destroy and liblxc.so.1 on
# Debian 12, minus glibc and libgcc (every host has those; LXC's binaries need glibc >= 2.36).
LXC_PKGS=(lxc liblxc1 liblxc-common libapparmor1 libseccomp2 libcap2 libselinux1 libpcre2-8-0)
ROOTFS_PKGS=(busybox-static libc6 libc-bin libgcc-s1)
MIN_GLIBC=2.36

E2E_PREFIX=${E2E_PREFIX:-/opt/phoenix-e2e}
E2E_NAME=${E2E_NAME:-phoenix-e2e}
REPORT_DIR=${REPORT_DIR:-./gpu-e2e-report}
PREFIX_MARK=.phoenix-e2e-prefix
SYS_ROOTFS_MOUNT=/usr/lib/x86_64-linux-gnu/lxc/rootfs
CT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/nvidia/bin

KEEP=0
BUNDLE=
MODE=run
FETCH_DIR=
FETCH_BUILD=1

# State for cleanup.
CT_STARTED=0
CT_CREATED=0
EXTRA_CTS=()
PREFIX_MADE=0
CREATED_SYS_DIRS=()

log() { printf '[gpu-e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

usage() {
	sed -n '2,13p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//'
}

# --- bundle --------------------------------------------------------------------------------

fetch_bundle() {
	local dir=$1
	command -v apt-get >/dev/null || die "apt-get not found: run --fetch on a Debian 12 machine"
	mkdir -p "$dir/debs/lxc" "$dir/debs/rootfs"
	dir=$(readlink -f "$dir")
	rm -f "$dir"/debs/lxc/*.deb "$dir"/debs/rootfs/*.deb
	log "downloading ${LXC_PKGS[*]} into $dir/debs/lxc"
	(cd "$dir/debs/lxc" && apt-get download "${LXC_PKGS[@]}" 2>&1 | grep -v 'unsandboxed') >&2
	log "downloading ${ROOTFS_PKGS[*]} into $dir/debs/rootfs"
	(cd "$dir/debs/rootfs" && apt-get download "${ROOTFS_PKGS[@]}" 2>&1 | grep -v 'unsandboxed') >&2
	install -m 0755 "$SCRIPT_PATH" "$dir/gpu-e2e.sh"
	# The bash-style baseline b1 times beside the tool (docs/BENCHMARKS.md (a)).
	install -m 0755 "$SCRIPT_DIR/bench/bash-step.sh" "$dir/bash-step.sh"

	local repo
	repo=$(git -C "$SCRIPT_DIR" rev-parse --show-toplevel 2>/dev/null || true)
	rm -f "$dir/phoenix-gpu"
	if [[ $FETCH_BUILD == 0 ]]; then
		log "--no-build: no phoenix-gpu in the bundle; set PHOENIX_GPU on the GPU host"
	elif [[ -z $repo || ! -f $repo/crates/cli/Cargo.toml ]]; then
		log "no phoenix-gpu workspace around $SCRIPT_DIR: no binary in the bundle; set PHOENIX_GPU on the GPU host"
	elif ! command -v cargo >/dev/null; then
		log "cargo not found: no binary in the bundle; set PHOENIX_GPU on the GPU host"
	elif (cd "$repo" && cargo build --release --locked -p phoenix-gpu >&2) &&
		[[ -x $repo/target/release/phoenix-gpu ]]; then
		if command -v strip >/dev/null; then
			strip -o "$dir/phoenix-gpu" "$repo/target/release/phoenix-gpu"
		else
			install -m 0755 "$repo/target/release/phoenix-gpu" "$dir/phoenix-gpu"
		fi
		log "phoenix-gpu $(git -C "$repo" rev-parse --short HEAD 2>/dev/null) built into the bundle"
	else
		log "cargo build --release -p phoenix-gpu gave no binary: the bundle has none; set PHOENIX_GPU on the GPU host"
	fi

	{
		# shellcheck source=/dev/null
		echo "# phoenix-gpu e2e bundle, made $(date -u +%FT%TZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
		echo "# sha256  file"
		(cd "$dir" && find . -type f ! -name MANIFEST | sort | xargs sha256sum)
	} >"$dir/MANIFEST"
	log "bundle ready: $dir ($(du -sh "$dir" | cut -f1))"
	echo "$dir"
}

default_bundle() {
	if [[ -d $SCRIPT_DIR/debs/lxc ]]; then echo "$SCRIPT_DIR"; else echo ./gpu-e2e-bundle; fi
}

check_bundle() {
	[[ -d $BUNDLE/debs/lxc && -d $BUNDLE/debs/rootfs ]] ||
		die "no bundle at $BUNDLE (debs/lxc, debs/rootfs): make one with --fetch on a machine with apt"
	compgen -G "$BUNDLE/debs/lxc/*.deb" >/dev/null || die "no .deb in $BUNDLE/debs/lxc"
	compgen -G "$BUNDLE/debs/rootfs/*.deb" >/dev/null || die "no .deb in $BUNDLE/debs/rootfs"
	if [[ -f $BUNDLE/MANIFEST ]] && command -v sha256sum >/dev/null; then
		(cd "$BUNDLE" && grep -v '^#' MANIFEST | grep -v ' \./gpu-e2e.sh$' | sha256sum --quiet -c -) ||
			die "bundle files do not match $BUNDLE/MANIFEST"
	fi
}

# Unpacks one .deb under DEST (never /): dpkg-deb if the host has it, else python3.
deb_x() {
	local deb=$1 dest=$2
	[[ $(readlink -f "$dest") != / ]] || die "refusing to unpack $deb over /"
	if command -v dpkg-deb >/dev/null; then
		dpkg-deb -x "$deb" "$dest"
	else
		python3 - "$deb" "$dest" <<-'EOF'
			import io, sys, tarfile
			deb, dest = sys.argv[1], sys.argv[2]
			with open(deb, "rb") as f:
			    data = f.read()
			if not data.startswith(b"!<arch>\n"):
			    sys.exit(f"{deb}: not an ar archive")
			off = 8
			while off < len(data):
			    name = data[off:off + 16].decode().strip().rstrip("/")
			    size = int(data[off + 48:off + 58].decode().strip())
			    body = data[off + 60:off + 60 + size]
			    if name.startswith("data.tar"):
			        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as t:
			            kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
			            t.extractall(dest, **kw)
			        break
			    off += 60 + size + (size & 1)
			else:
			    sys.exit(f"{deb}: no data.tar member")
		EOF
	fi
}

# --- private prefix and LXC ------------------------------------------------------------------

prefix_guard() {
	local p
	p=$(readlink -m "$E2E_PREFIX")
	case "$p" in
	/ | /bin | /boot | /dev | /etc | /home | /lib | /lib64 | /opt | /proc | /root | /run | /sbin | /srv | /sys | /tmp | /usr | /usr/* | /var | /var/lib | /etc/*)
		die "E2E_PREFIX=$p is a system folder: choose a dedicated one such as /opt/phoenix-e2e" ;;
	esac
	if [[ -e $p && ! -e $p/$PREFIX_MARK ]] && [[ -n $(ls -A "$p" 2>/dev/null) ]]; then
		die "E2E_PREFIX=$p exists and was not made by this script: remove it or choose another"
	fi
	E2E_PREFIX=$p
	LXC_ROOT=$E2E_PREFIX/lxc-root
	LXCPATH=$E2E_PREFIX/containers
	CT_DIR=$LXCPATH/$E2E_NAME
	CT_CONF=$CT_DIR/config
	CT_ROOTFS=$CT_DIR/rootfs
}

setup_lxc() {
	local t0 deb
	t0=$(now)
	prefix_guard
	rm -rf "${LXC_ROOT:?}" "${E2E_PREFIX:?}/bin"
	mkdir -p "$E2E_PREFIX" "$LXC_ROOT" "$E2E_PREFIX/bin" "$LXCPATH" "$E2E_PREFIX/rootfs-mount"
	touch "$E2E_PREFIX/$PREFIX_MARK"
	PREFIX_MADE=1
	for deb in "$BUNDLE"/debs/lxc/*.deb; do deb_x "$deb" "$LXC_ROOT"; done
	LXC_LIBS=$LXC_ROOT/usr/lib/x86_64-linux-gnu:$LXC_ROOT/lib/x86_64-linux-gnu
	local b name
	for b in "$LXC_ROOT"/usr/bin/lxc-*; do
		name=${b##*/}
		cat >"$E2E_PREFIX/bin/$name" <<-EOF
			#!/bin/sh
			# LXC from the private prefix $LXC_ROOT (made by gpu-e2e.sh)
			LD_LIBRARY_PATH=$LXC_LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} exec $b "\$@"
		EOF
		chmod 0755 "$E2E_PREFIX/bin/$name"
	done
	export PATH=$E2E_PREFIX/bin:$PATH
	local got
	got=$(command -v lxc-start)
	[[ $got == "$E2E_PREFIX/bin/lxc-start" ]] || die "lxc-start resolves to $got, not the private one"
	local liblxc
	liblxc=$(LD_LIBRARY_PATH=$LXC_LIBS ldd "$LXC_ROOT/usr/bin/lxc-start" | awk '$1 == "liblxc.so.1" { print $3 }')
	[[ $liblxc == "$LXC_ROOT"/* ]] || die "lxc-start from the prefix loads liblxc from '$liblxc', not from $LXC_ROOT"
	if LD_LIBRARY_PATH=$LXC_LIBS ldd "$LXC_ROOT/usr/bin/lxc-start" | grep -q 'not found'; then
		LD_LIBRARY_PATH=$LXC_LIBS ldd "$LXC_ROOT/usr/bin/lxc-start" >&2
		die "lxc-start from the prefix misses libraries (see above)"
	fi
	log "LXC $(lxc-start --version) from $LXC_ROOT (lxc-start=$got, liblxc=$liblxc) in $(elapsed "$t0")s"
}

# The key prefix the host honours: lxc.cgroup (devices controller on cgroup v1, hybrid layout) or
# lxc.cgroup2 (unified). LXC ignores lxc.cgroup2.* on a host whose devices controller is v1.
cgroup_key() {
	if awk '$3 == "cgroup" && $4 ~ /(^|,)devices(,|$)/ { f = 1 } END { exit !f }' /proc/mounts; then
		echo lxc.cgroup
	elif [[ -e /sys/fs/cgroup/cgroup.controllers ]]; then
		echo lxc.cgroup2
	else
		die "cannot tell the cgroup layout: no v1 devices mount and no /sys/fs/cgroup/cgroup.controllers"
	fi
}

uvm_major() { awk '$2 == "nvidia-uvm" { print $1; exit }' /proc/devices; }

# --- the container -------------------------------------------------------------------------

build_rootfs() {
	local t0 deb p
	t0=$(now)
	rm -rf "$CT_DIR"
	mkdir -p "$CT_ROOTFS"
	CT_CREATED=1
	for deb in "$BUNDLE"/debs/rootfs/*.deb; do deb_x "$deb" "$CT_ROOTFS"; done
	[[ -x $CT_ROOTFS/bin/busybox ]] || die "busybox-static gave no /bin/busybox in the rootfs"
	# busybox's applets as links, without overwriting what glibc's packages brought (ldconfig, ldd...).
	while read -r p; do
		[[ -n $p && ! -e $CT_ROOTFS/$p && ! -L $CT_ROOTFS/$p ]] || continue
		mkdir -p "$CT_ROOTFS/$(dirname "$p")"
		ln -s /bin/busybox "$CT_ROOTFS/$p"
	done < <("$CT_ROOTFS/bin/busybox" --list-full)
	mkdir -p "$CT_ROOTFS"/{dev,proc,sys,tmp,run,root,var/log,etc/init.d,etc/ld.so.conf.d,usr/local/bin,usr/local/lib}
	chmod 1777 "$CT_ROOTFS/tmp"
	echo "root:x:0:0:root:/root:/bin/sh" >"$CT_ROOTFS/etc/passwd"
	echo "root:x:0:" >"$CT_ROOTFS/etc/group"
	echo "$E2E_NAME" >"$CT_ROOTFS/etc/hostname"
	printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$E2E_NAME" >"$CT_ROOTFS/etc/hosts"
	echo 'include /etc/ld.so.conf.d/*.conf' >"$CT_ROOTFS/etc/ld.so.conf"
	cat >"$CT_ROOTFS/etc/os-release" <<-'EOF'
		PRETTY_NAME="Debian GNU/Linux 12 (bookworm), minimal: busybox-static and glibc (phoenix-gpu e2e)"
		NAME="Debian GNU/Linux"
		VERSION_ID="12"
		VERSION_CODENAME=bookworm
		ID=debian
		VARIANT_ID=phoenix-e2e-busybox
	EOF
	cat >"$CT_ROOTFS/etc/inittab" <<-'EOF'
		::sysinit:/etc/init.d/rcS
		::shutdown:/bin/sync
	EOF
	cat >"$CT_ROOTFS/etc/init.d/rcS" <<-'EOF'
		#!/bin/sh
		hostname -F /etc/hostname
		echo "rcS done" >/run/rcS.done
	EOF
	chmod 0755 "$CT_ROOTFS/etc/init.d/rcS"
	"$CT_ROOTFS/sbin/ldconfig" -r "$CT_ROOTFS"
	log "rootfs $CT_ROOTFS: $(du -sh "$CT_ROOTFS" | cut -f1), $(find "$CT_ROOTFS" -type l | wc -l) links, in $(elapsed "$t0")s"
}

write_config() {
	local key
	key=$(cgroup_key)
	cat >"$CT_CONF" <<-EOF
		# phoenix-gpu e2e container, written by gpu-e2e.sh; privileged, no network
		lxc.uts.name = $E2E_NAME
		lxc.arch = linux64
		lxc.rootfs.path = dir:$CT_ROOTFS
		lxc.rootfs.mount = $E2E_PREFIX/rootfs-mount
		lxc.net.0.type = empty
		lxc.autodev = 1
		lxc.tty.max = 0
		lxc.pty.max = 16
		lxc.console.path = none
		lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed
		lxc.cap.drop = mac_admin mac_override sys_time sys_module sys_rawio
		lxc.apparmor.profile = unconfined
		lxc.init.cmd = /sbin/init
		lxc.signal.halt = SIGUSR1
		lxc.signal.reboot = SIGTERM
		lxc.log.file = $CT_DIR/lxc.log
		lxc.log.level = INFO
		# default-deny device cgroup with the allow list of LXC's common.conf, as Proxmox uses it
		$key.devices.deny = a
		$key.devices.allow = c *:* m
		$key.devices.allow = b *:* m
		$key.devices.allow = c 1:3 rwm
		$key.devices.allow = c 1:5 rwm
		$key.devices.allow = c 1:7 rwm
		$key.devices.allow = c 5:0 rwm
		$key.devices.allow = c 5:1 rwm
		$key.devices.allow = c 5:2 rwm
		$key.devices.allow = c 1:8 rwm
		$key.devices.allow = c 1:9 rwm
		$key.devices.allow = c 136:* rwm
		$key.devices.allow = c 10:229 rwm
	EOF
	log "config $CT_CONF written with $key.devices.* (default deny)"
}

ct_state() { lxc-info -n "$E2E_NAME" -P "$LXCPATH" -s -H 2>/dev/null || echo UNKNOWN; }

# lxc-attach with a clean environment (the wrappers' LD_LIBRARY_PATH stays outside).
ct_exec() { (cd / && lxc-attach -n "$E2E_NAME" -P "$LXCPATH" --clear-env --set-var "PATH=$CT_PATH" -- "$@"); }

ct_start() {
	local t0 i
	t0=$(now)
	[[ $(ct_state) == RUNNING ]] && return 0
	if ! lxc-start -n "$E2E_NAME" -P "$LXCPATH"; then
		tail -n 40 "$CT_DIR/lxc.log" >&2 || true
		return 1
	fi
	CT_STARTED=1
	for i in $(seq 1 100); do
		if [[ $(ct_state) == RUNNING ]] && ct_exec /bin/true 2>/dev/null; then
			log "container $E2E_NAME running (init pid $(lxc-info -n "$E2E_NAME" -P "$LXCPATH" -p -H)) after $(elapsed "$t0")s"
			return 0
		fi
		sleep 0.2
	done
	log "container $E2E_NAME not running after $(elapsed "$t0")s; state $(ct_state)"
	tail -n 40 "$CT_DIR/lxc.log" >&2 || true
	return 1
}

ct_stop() {
	[[ $(ct_state) == STOPPED ]] && return 0
	lxc-stop -n "$E2E_NAME" -P "$LXCPATH" -t 10 2>/dev/null || lxc-stop -n "$E2E_NAME" -P "$LXCPATH" -k 2>/dev/null || true
	[[ $(ct_state) == STOPPED ]]
}

ct_restart() { ct_stop && ct_start; }

# Takes out the lxc.cgroup*.devices.allow lines that name NVIDIA majors (195, nvidia-uvm, nvidia-caps).
strip_nvidia_allow() {
	local conf=$1 majors=195 m
	for m in $(uvm_major) $(awk '$2 == "nvidia-caps" { print $1 }' /proc/devices); do majors="$majors|$m"; done
	local before after
	before=$(wc -l <"$conf")
	grep -Ev "^[[:space:]]*lxc\.cgroup2?\.devices\.allow[[:space:]]*=[[:space:]]*c[[:space:]]+($majors):" "$conf" >"$conf.tmp" || true
	mv "$conf.tmp" "$conf"
	after=$(wc -l <"$conf")
	log "negative control: took $((before - after)) allow lines for majors $majors out of $conf"
	[[ $before -gt $after ]]
}

prepare_host_dirs() {
	# LXC pins the rootfs under its compiled-in LXCROOTFSMOUNT unless lxc.rootfs.mount says where;
	# the config says where, and this creates the compiled-in folder only if LXC_SYS_ROOTFS_MOUNT=1.
	if [[ ${LXC_SYS_ROOTFS_MOUNT:-0} == 1 && ! -d $SYS_ROOTFS_MOUNT ]]; then
		local d=$SYS_ROOTFS_MOUNT
		local missing=()
		while [[ ! -d $d ]]; do missing=("$d" "${missing[@]}"); d=$(dirname "$d"); done
		mkdir -p "$SYS_ROOTFS_MOUNT"
		CREATED_SYS_DIRS=("${missing[@]}")
		log "created ${missing[*]} (empty) for LXC's rootfs pinning"
	fi
}

make_container() {
	build_rootfs
	write_config
	prepare_host_dirs
	local t0
	t0=$(now)
	ct_start || die "the busybox container did not start (log above, full log $CT_DIR/lxc.log)"
	TIME_CT_START=$(elapsed "$t0")
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT ERR
	if [[ $CT_CREATED == 1 ]]; then
		[[ -n ${REPORT_DIR_ABS:-} && -f $CT_DIR/lxc.log ]] && cp "$CT_DIR/lxc.log" "$REPORT_DIR_ABS/lxc.log"
		[[ -n ${REPORT_DIR_ABS:-} && -f $CT_CONF ]] && cp "$CT_CONF" "$REPORT_DIR_ABS/config.final"
		if [[ $CT_STARTED == 1 ]]; then ct_stop || log "warning: container $E2E_NAME did not stop"; fi
	fi
	local x
	for x in "${EXTRA_CTS[@]}"; do
		lxc-stop -n "$x" -P "$LXCPATH" -k >/dev/null 2>&1
		[[ $KEEP == 1 ]] || { lxc-destroy -n "$x" -P "$LXCPATH" >/dev/null 2>&1; rm -rf --one-file-system "${LXCPATH:?}/$x"; }
	done
	if [[ $KEEP == 1 ]]; then
		[[ $PREFIX_MADE == 1 ]] && log "--keep: left $E2E_PREFIX (container $E2E_NAME stopped, lxcpath $LXCPATH)"
	else
		if [[ $CT_CREATED == 1 ]]; then
			lxc-destroy -n "$E2E_NAME" -P "$LXCPATH" >/dev/null 2>&1 || true
			umount -R "$CT_ROOTFS" 2>/dev/null
			rm -rf --one-file-system "$CT_DIR"
		fi
		if [[ $PREFIX_MADE == 1 && -e $E2E_PREFIX/$PREFIX_MARK ]]; then
			rm -rf --one-file-system "$E2E_PREFIX" && log "removed $E2E_PREFIX"
		fi
		local i
		for ((i = ${#CREATED_SYS_DIRS[@]} - 1; i >= 0; i--)); do rmdir "${CREATED_SYS_DIRS[i]}" 2>/dev/null; done
	fi
	exit "$rc"
}

# REPORT_DIR must be new, empty, or an earlier report of this script (its files get replaced).
open_report_dir() {
	if [[ -d $REPORT_DIR && -n $(ls -A "$REPORT_DIR") && ! -e $REPORT_DIR/.gpu-e2e-report ]]; then
		die "REPORT_DIR=$REPORT_DIR holds other files: choose a new or empty folder"
	fi
	mkdir -p "$REPORT_DIR"
	touch "$REPORT_DIR/.gpu-e2e-report"
	REPORT_DIR_ABS=$(readlink -f "$REPORT_DIR")
}

need_root() { [[ $(id -u) == 0 ]] || die "needs root (LXC containers, device cgroups)"; }

glibc_ok() {
	local v
	v=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
	[[ -n $v ]] || die "cannot read the host's glibc version (getconf GNU_LIBC_VERSION)"
	[[ $(printf '%s\n%s\n' "$MIN_GLIBC" "$v" | sort -V | head -n1) == "$MIN_GLIBC" ]] ||
		die "host glibc $v is older than $MIN_GLIBC, which Debian 12's LXC needs"
	HOST_GLIBC=$v
}

# --- selftest: what needs no GPU -----------------------------------------------------------

# On any root host: the private LXC runs a busybox container under a default-deny device cgroup.
# A stand-in node c 195:0 shows the cgroup at work with no NVIDIA driver: opening it reads ENXIO
# ("No such device or address") when the cgroup allows it, EPERM when it does not.
selftest() {
	need_root
	glibc_ok
	check_bundle
	trap cleanup EXIT
	open_report_dir
	setup_lxc
	make_container
	local fails=0 out key
	key=$(cgroup_key)
	check() { # name, then a command whose success means pass
		local name=$1
		shift
		if "$@"; then log "PASS $name"; else log "FAIL $name"; fails=$((fails + 1)); fi
	}
	out=$(ct_exec /bin/sh -c 'cat /etc/os-release | head -1; getconf GNU_LIBC_VERSION; ldconfig -p | head -2; cat /run/rcS.done; hostname')
	printf '%s\n' "$out" >&2
	check "busybox shell, glibc and ldconfig inside" grep -q 'glibc 2.36' <<<"$out"
	check "init ran rcS" grep -q 'rcS done' <<<"$out"
	out=$(ct_exec /bin/sh -c 'head -c1 /dev/kmsg >/dev/null 2>&1 && echo open || echo denied')
	check "default-deny: /dev/kmsg (c 1:11, not allowed) cannot be opened" [ "$out" = denied ]

	# Stand-in GPU node, bind-mounted and allowed as the tool would do it.
	mkdir -p "$E2E_PREFIX/fake-dev"
	rm -f "$E2E_PREFIX/fake-dev/nvidia0"
	mknod -m 0666 "$E2E_PREFIX/fake-dev/nvidia0" c 195 0
	ct_stop
	{
		echo "$key.devices.allow = c 195:0 rwm"
		echo "lxc.mount.entry = $E2E_PREFIX/fake-dev/nvidia0 dev/nvidia0 none bind,optional,create=file"
	} >>"$CT_CONF"
	ct_start
	out=$(ct_exec /bin/sh -c 'cat /dev/nvidia0 2>&1 >/dev/null; true')
	log "allowed c 195:0: $out"
	check "allowed c 195:0 reaches the kernel (ENXIO, no driver)" grep -q 'No such device or address' <<<"$out"
	strip_nvidia_allow "$CT_CONF" || true
	check "negative control removed the 195 line" bash -c "! grep -q '195:0' '$CT_CONF'"
	check "negative control kept the rest of the allow list" grep -q 'c 136:\* rwm' "$CT_CONF"
	ct_restart
	out=$(ct_exec /bin/sh -c 'cat /dev/nvidia0 2>&1 >/dev/null; true')
	log "without the allow line: $out"
	check "without the allow line c 195:0 is refused (EPERM)" grep -q 'Operation not permitted' <<<"$out"
	check "lxc-start in use is the private one" [ "$(command -v lxc-start)" = "$E2E_PREFIX/bin/lxc-start" ]
	# The container's monitor is the parent of its init; it must be the private lxc-start.
	local pid
	pid=$(ps -o ppid= -p "$(lxc-info -n "$E2E_NAME" -P "$LXCPATH" -p -H)" | tr -d ' ')
	log "monitor pid $pid: exe $(readlink "/proc/$pid/exe"), $(grep -m1 -o '/[^ ]*liblxc.so[^ ]*' "/proc/$pid/maps")"
	check "the container's monitor runs the private lxc-start" [ "$(readlink "/proc/$pid/exe")" = "$LXC_ROOT/usr/bin/lxc-start" ]
	check "the container's monitor maps the private liblxc" grep -q "$LXC_ROOT/usr/lib/x86_64-linux-gnu/liblxc.so" "/proc/$pid/maps"
	log "selftest: $fails failed"
	[[ $fails == 0 ]] || exit 1
}

# --- explore: host facts and a hand-made GPU, no phoenix-gpu --------------------------------

explore() {
	need_root
	set +e
	local c
	# shellcheck disable=SC2016 # each command is run by bash -c below
	for c in 'cat /etc/os-release' 'uname -a' 'getconf GNU_LIBC_VERSION' 'cat /proc/1/comm' \
		'cat /proc/self/cgroup' 'mount | grep -E "cgroup|nvidia"' 'cat /sys/fs/cgroup/cgroup.controllers' \
		'cat /sys/fs/cgroup/cgroup.subtree_control' 'ls /sys/fs/cgroup' \
		'command -v nvidia-smi; nvidia-smi -L' 'cat /usr/bin/nvidia-smi' \
		'nvidia-smi --query-gpu=index,uuid,pci.bus_id,driver_version --format=csv,noheader' \
		'cat /proc/driver/nvidia/version' 'grep -H . /proc/driver/nvidia/gpus/*/information' \
		'cat /proc/devices' 'ls -l /dev/nvidia* /dev/nvidia-caps' 'ldconfig -p | grep -ci nvidia; ldconfig -p | grep -i nvidia | head' \
		'ls /usr/local/nvidia/*' 'ldd $(command -v nvidia-smi)' 'grep nvidia /proc/self/mountinfo' \
		'ls -l /lib/libcuda.so* /lib/libnvidia-ml.so* /usr/lib/x86_64-linux-gnu/libnvidia-ml.so* /usr/bin/nvidia-smi' \
		'grep -E "DeviceFile|ModifyDeviceFiles" /proc/driver/nvidia/params' \
		'ls -ld /usr/lib/x86_64-linux-gnu/lxc /usr/lib/x86_64-linux-gnu/lxc/rootfs /etc/lxc /var/lib/lxc' \
		'cat /sys/module/apparmor/parameters/enabled; ls /sys/kernel/security; cat /sys/kernel/security/lsm' \
		'command -v dpkg-deb python3 jq chroot unshare lxc-start nvidia-container-cli mknod' \
		'ls /etc/ld.so.conf.d; cat /etc/ld.so.conf.d/*' 'df -h / /opt /tmp' 'nproc; free -g'; do
		echo "### $c"
		bash -c "$c" 2>&1
	done
	set -e
	glibc_ok
	check_bundle
	trap cleanup EXIT
	open_report_dir
	setup_lxc
	build_rootfs
	write_config
	local t0
	t0=$(now)
	echo "### start with lxc.rootfs.mount private, $SYS_ROOTFS_MOUNT present: $([[ -d $SYS_ROOTFS_MOUNT ]] && echo yes || echo no)"
	if ! ct_start; then
		echo "### start failed; retrying with $SYS_ROOTFS_MOUNT created"
		LXC_SYS_ROOTFS_MOUNT=1 prepare_host_dirs
		ct_start || die "container did not start"
	fi
	echo "### container started in $(elapsed "$t0")s"
	ct_exec /bin/sh -c 'cat /etc/os-release | head -1; getconf GNU_LIBC_VERSION; cat /run/rcS.done'
	grep -iE 'error|warn' "$CT_DIR/lxc.log" | sort | uniq -c | sort -rn | head -20

	[[ -e /dev/nvidiactl ]] || { echo "### no /dev/nvidiactl: no GPU part"; return 0; }
	set +e
	local key uvm second minor
	key=$(cgroup_key)
	uvm=$(uvm_major)
	# The second GPU in PCI bus order (nvidia-smi's index 1), and its device minor.
	local buses=(/proc/driver/nvidia/gpus/*)
	second=${buses[1]:-${buses[0]}}
	second=${second##*/}
	minor=$(awk -F: '/Device Minor/ { gsub(/[[:space:]]/, "", $2); print $2 }' "/proc/driver/nvidia/gpus/$second/information")
	echo "### hand-made passthrough of GPU $second (minor $minor), uvm major $uvm, key $key"
	ct_stop
	{
		echo "# hand-made GPU passthrough (exploration)"
		echo "$key.devices.allow = c 195:$minor rwm"
		echo "$key.devices.allow = c 195:255 rwm"
		echo "$key.devices.allow = c $uvm:* rwm"
		echo "lxc.mount.entry = /dev/nvidia$minor dev/nvidia$minor none bind,optional,create=file"
		echo "lxc.mount.entry = /dev/nvidiactl dev/nvidiactl none bind,optional,create=file"
		echo "lxc.mount.entry = /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file"
		echo "lxc.mount.entry = /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file"
		echo "lxc.mount.entry = /usr/local/nvidia usr/local/nvidia none bind,ro,create=dir"
	} >>"$CT_CONF"
	t0=$(now)
	ct_start || die "container with the GPU lines did not start"
	echo "### restarted with the GPU lines in $(elapsed "$t0")s"
	local smi=/usr/local/nvidia/bin/nvidia-smi lp=LD_LIBRARY_PATH=/usr/local/nvidia/lib64
	echo "### inside: ls -l /dev/nvidia*; ldd nvidia-smi; mounts"
	ct_exec /bin/sh -c "ls -l /dev/nvidia*; $lp ldd $smi; grep nvidia /proc/self/mountinfo"
	echo "### inside: $lp nvidia-smi -L (expect $second alone)"
	t0=$(now)
	ct_exec /usr/bin/env $lp $smi -L
	echo "rc=$? in $(elapsed "$t0")s"
	ct_exec /usr/bin/env $lp $smi --query-gpu=index,uuid,pci.bus_id,driver_version --format=csv,noheader
	echo "rc=$?"
	echo "### inside: ldconfig route (/etc/ld.so.conf.d/nvidia.conf), nvidia-smi with no LD_LIBRARY_PATH"
	ct_exec /bin/sh -c "echo /usr/local/nvidia/lib64 >/etc/ld.so.conf.d/nvidia.conf && ldconfig && ldconfig -p | grep -c nvidia && $smi -L; echo rc=\$?"
	echo "### inside: with no driver library path (expect a library error)"
	ct_exec /bin/sh -c "rm /etc/ld.so.conf.d/nvidia.conf; ldconfig; $smi -L; echo rc=\$?"
	echo "### negative control: the allow lines taken out, restarted"
	strip_nvidia_allow "$CT_CONF"
	ct_restart || die "container without the allow lines did not start"
	ct_exec /usr/bin/env $lp $smi -L
	echo "rc=$?"
	echo "### both GPUs: every minor allowed and mounted"
	ct_stop
	local b m
	echo "$key.devices.allow = c 195:255 rwm" >>"$CT_CONF"
	echo "$key.devices.allow = c $uvm:* rwm" >>"$CT_CONF"
	for b in /proc/driver/nvidia/gpus/*; do
		m=$(awk -F: '/Device Minor/ { gsub(/[[:space:]]/, "", $2); print $2 }' "$b/information")
		echo "$key.devices.allow = c 195:$m rwm" >>"$CT_CONF"
		[[ $m == "$minor" ]] ||
			echo "lxc.mount.entry = /dev/nvidia$m dev/nvidia$m none bind,optional,create=file" >>"$CT_CONF"
	done
	ct_start || die "container with all GPUs did not start"
	ct_exec /usr/bin/env $lp $smi --query-gpu=index,uuid,pci.bus_id,driver_version --format=csv,noheader
	echo "rc=$?"
	echo "### lxc.log warnings and errors"
	grep -iE 'error|warn' "$CT_DIR/lxc.log" | sed 's/^[^ ]* [^ ]* [^ ]* //' | sort | uniq -c | sort -rn | head -30
	echo "### final config"
	cat "$CT_CONF"
	set -e
}

# --- the scenarios with phoenix-gpu ---------------------------------------------------------

json() { # FILE PYTHON-EXPR (j is the parsed document)
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

RESULTS=()
FAILED=()
# result NAME pass|fail|skip SECONDS DETAIL
result() {
	RESULTS+=("$1	$2	$3	$4")
	[[ $2 == fail ]] && FAILED+=("$1")
	log "$(printf '%-4s' "${2^^}") $1 (${3}s): $4"
}

# tool STEP ARGS...: runs phoenix-gpu, stdout/stderr into the report, sets TOOL_RC and TOOL_SECS.
tool() {
	local step=$1
	shift
	local t0
	t0=$(now)
	echo "\$ $PHOENIX_GPU $*" >"$REPORT_DIR_ABS/$step.cmd"
	set +e
	"$PHOENIX_GPU" "$@" >"$REPORT_DIR_ABS/$step.out" 2>"$REPORT_DIR_ABS/$step.err"
	TOOL_RC=$?
	set -e
	TOOL_SECS=$(elapsed "$t0")
	[[ -z ${CT_CONF:-} || ! -f $CT_CONF ]] || cp "$CT_CONF" "$REPORT_DIR_ABS/$step.config"
	log "$step: phoenix-gpu $1 exit $TOOL_RC in ${TOOL_SECS}s"
}

# What nvidia-smi inside the container lists, one "uuid,driver_version" a line, sorted.
smi_inside() {
	{ ct_exec /bin/sh -c 'nvidia-smi --query-gpu=uuid,driver_version --format=csv,noheader' 2>&1 || true; } |
		sed 's/, */,/g' | sort
}

# sees STEP SEL-INDEXES...: nvidia-smi inside lists exactly those GPUs at the host's version.
sees_exactly() {
	local step=$1
	shift
	local want="" i
	for i in "$@"; do want+="${GPU_UUID[i]},$DRIVER"$'\n'; done
	want=$(printf '%s' "$want" | sort)
	SEEN=$(smi_inside)
	printf '%s\n' "$SEEN" >"$REPORT_DIR_ABS/$step.inside"
	[[ $SEEN == "$want" ]]
}

scenario_assign() { # NAME SEL INDEXES...
	local name=$1 sel=$2
	shift 2
	local secs detail ok=1
	tool "$name-apply" apply "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --strategy host-libs --gpus "$sel" --json --start
	secs=$TOOL_SECS
	detail="apply exit $TOOL_RC ($TOOL_SECS s)"
	[[ $TOOL_RC == 0 ]] || ok=0
	tool "$name-verify" verify "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --gpus "$sel" --json
	secs=$(awk -v a="$secs" -v b="$TOOL_SECS" 'BEGIN { printf "%.2f", a + b }')
	detail+="; verify exit $TOOL_RC ($TOOL_SECS s)"
	[[ $TOOL_RC == 0 ]] || ok=0
	if sees_exactly "$name" "$@"; then
		detail+="; nvidia-smi inside: $(echo "$SEEN" | tr '\n' ' ')"
	else
		ok=0
		detail+="; nvidia-smi inside saw '$(echo "$SEEN" | tr '\n' ' ')', wanted GPU(s) $* at $DRIVER"
	fi
	if [[ $ok == 1 ]]; then result "$name" pass "$secs" "$detail"; else result "$name" fail "$secs" "$detail"; fi
}

# --- issue 15: CUDA, the uvm line, no debris, an unprivileged container ----------------------

# gpu-check, which the tool puts into the container, run there with ARGS (key=value lines).
gpu_check_inside() {
	# shellcheck disable=SC2016 # the container's sh expands them
	ct_exec /bin/sh -c 'for f in /usr/local/lib/phoenix-gpu/gpu-check-*; do [ -x "$f" ] && exec "$f" "$@"; done; echo gpu_check=missing' sh "$@" 2>&1 || true
}

# cuda_sees STEP INDEXES...: CUDA inside initialises and has a context and a 1 MiB round trip on
# exactly those GPUs (gpu-check --ctx, the tool's own program, run by this script).
cuda_sees() {
	local step=$1
	shift
	local out want got i
	out=$(gpu_check_inside --ctx)
	printf '%s\n' "$out" >"$REPORT_DIR_ABS/$step.cuda"
	CUDA_SEEN=$(grep -E '^cuda_(init|count)=' <<<"$out" | tr '\n' ' ')
	grep -q '^cuda_init=0 ' <<<"$out" || return 1
	want=$(for i in "$@"; do echo "${GPU_UUID[i]}"; done | sort)
	got=$(sed -n 's/^cuda_dev[0-9]*_uuid=//p' <<<"$out" | sort)
	[[ $got == "$want" ]] || { CUDA_SEEN+="uuids: $(tr '\n' ' ' <<<"$got")"; return 1; }
	[[ $(grep -c '^cuda_dev[0-9]*_ctx=0 ' <<<"$out") == "$#" && $(grep -c '^cuda_dev[0-9]*_mem=0 ' <<<"$out") == "$#" ]]
}

scenario_cuda() { # NAME INDEXES...
	local name=$1
	shift
	local t0
	t0=$(now)
	if cuda_sees "$name" "$@"; then
		result "$name" pass "$(elapsed "$t0")" "gpu-check --ctx inside: $CUDA_SEEN a context and 1 MiB round trip on GPU(s) $*"
	else
		result "$name" fail "$(elapsed "$t0")" "gpu-check --ctx inside: $CUDA_SEEN (want a context on GPU(s) $*; $name.cuda)"
	fi
}

# Only the uvm allow line goes: nvidia-smi (NVML never opens /dev/nvidia-uvm) still lists the
# GPU, CUDA fails; verify must exit 7 naming the node; apply repairs it.
scenario_uvm() { # NAME SEL INDEXES...
	local name=$1 sel=$2
	shift 2
	local t0 detail ok=1
	t0=$(now)
	if [[ -z $UVM ]]; then
		result "$name" skip 0 "the inventory names no nvidia-uvm major"
		return
	fi
	local before
	before=$(wc -l <"$CT_CONF")
	grep -Ev "^[[:space:]]*lxc\.cgroup2?\.devices\.allow[[:space:]]*=[[:space:]]*c[[:space:]]+$UVM:" "$CT_CONF" >"$CT_CONF.tmp" || true
	mv "$CT_CONF.tmp" "$CT_CONF"
	detail="$((before - $(wc -l <"$CT_CONF"))) uvm allow line(s) out"
	ct_restart || { ok=0; detail+="; restart failed"; }
	tool "$name-verify" verify "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --gpus "$sel" --json
	detail+="; verify exit $TOOL_RC"
	[[ $TOOL_RC == 7 ]] || ok=0
	if grep -q '/dev/nvidia-uvm.*EPERM' "$REPORT_DIR_ABS/$name-verify.out" "$REPORT_DIR_ABS/$name-verify.err"; then
		detail+=" naming /dev/nvidia-uvm (EPERM)"
	else
		ok=0
		detail+=" without naming /dev/nvidia-uvm (EPERM)"
	fi
	if sees_exactly "$name" "$@"; then detail+="; nvidia-smi still lists GPU(s) $*"; else ok=0; detail+="; nvidia-smi inside: $(tr '\n' ' ' <<<"$SEEN")"; fi
	if cuda_sees "$name-broken" "$@"; then ok=0; detail+="; CUDA works without the line?"; else detail+="; CUDA fails: $CUDA_SEEN"; fi
	tool "$name-repair" apply "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --strategy host-libs --gpus "$sel" --json
	detail+="; apply exit $TOOL_RC"
	[[ $TOOL_RC == 0 ]] || ok=0
	if cuda_sees "$name-repaired" "$@"; then detail+=", CUDA back"; else ok=0; detail+=", CUDA still broken: $CUDA_SEEN"; fi
	if [[ $ok == 1 ]]; then result "$name" pass "$(elapsed "$t0")" "$detail"; else result "$name" fail "$(elapsed "$t0")" "$detail"; fi
}

# Every GPU at once: nvidia-smi lists them all, and CUDA creates a context (with its 1 MiB round
# trip) on each one, not only on the first.
scenario_each_gpu() { # NAME
	local name=$1 sel all=() i
	if [[ $GPU_COUNT -lt 2 ]]; then
		result "$name" skip 0 "host has $GPU_COUNT GPU: needs 2 or more"
		return
	fi
	for ((i = 0; i < GPU_COUNT; i++)); do all+=("$i"); done
	sel=$(IFS=,; echo "${all[*]}")
	scenario_assign "$name" "$sel" "${all[@]}"
	scenario_cuda "$name-cuda" "${all[@]}"
}

# What phoenix-gpu could have left inside: NVIDIA-named files and links, its own folder, loader
# cache entries. Empty after remove.
debris_inside() {
	ct_exec /bin/sh -c 'find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o \( -name "libcuda*" -o -name "libnvidia*" -o -name "nvidia-*" \) -print 2>/dev/null; ls -d /usr/local/lib/phoenix-gpu 2>/dev/null; ldconfig -p 2>/dev/null | grep -E "libcuda|libnvidia"; true'
}

scenario_remove_clean() { # NAME
	local name=$1 left restarted
	tool "$name" remove "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --json
	left=$(debris_inside)
	printf '%s\n' "$left" >"$REPORT_DIR_ABS/$name.inside"
	restarted=$(json "$REPORT_DIR_ABS/$name.out" '[s["status"] for s in j["steps"] if s["name"] == "restart"]' 2>/dev/null || echo '?')
	if [[ $TOOL_RC == 0 && -z $left ]] && ! grep -Eq '^[[:space:]]*lxc\.(cgroup2?\.devices\.allow[[:space:]]*=[[:space:]]*c[[:space:]]+195:|mount\.entry[[:space:]]*=[[:space:]]*[^ ]*nvidia)' "$CT_CONF"; then
		result "$name" pass "$TOOL_SECS" "remove exit 0 (restart: $restarted), no NVIDIA line in the config, nothing left inside"
	else
		result "$name" fail "$TOOL_SECS" "remove exit $TOOL_RC (restart: $restarted); left inside: $(head -c 200 <<<"$left" | tr '\n' ' ')"
	fi
}

# converged NAME SEL [STEP]: a second apply is one exec and changes nothing (its report files
# named STEP, default NAME).
scenario_converged() {
	local name=$1 sel=$2 step=${3:-$1} changed execs
	tool "$step" apply "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --strategy host-libs --gpus "$sel" --json --start
	changed=$(json "$REPORT_DIR_ABS/$step.out" 'j["changed"]' 2>/dev/null || echo '?')
	execs=$(json "$REPORT_DIR_ABS/$step.out" 'j["counters"]["container_execs"]' 2>/dev/null || echo '?')
	if [[ $TOOL_RC == 0 && $changed == False && $execs == 1 ]]; then
		result "$name" pass "$TOOL_SECS" "apply again: exit 0, changed false, container_execs 1"
	else
		result "$name" fail "$TOOL_SECS" "apply again: exit $TOOL_RC, changed $changed, container_execs $execs (want 0, False, 1)"
	fi
}

# issue 18: a converged run against its floor, measured here on the GPU host (where the floor's
# nvidia-smi is NVIDIA's binary, not the build machine's stand-in). Interleaved runs, one after
# the other: the floor (one lxc-attach running nvidia-smi --query-gpu inside), a bare lxc-attach,
# the converged apply and check, and the parts that explain the difference (gpu-check answering
# the whole probe alone as a converged apply has it do, without its loader question, NVML alone;
# on the host phoenix-gpu --version and plan, which asks the container nothing), and the
# bash-style baseline (scripts/bench/bash-step.sh: lxc-info, a grep a config line, six
# lxc-attach, as the orchestrator's bash step did it). Median wall
# time and mean CPU (user + system of the command and its children). A command given as several
# joined by " ;; " runs them one after the other and counts as one. A figure for
# docs/BENCHMARKS.md, never a pass/fail on time: status INFO; it fails only when a command fails.
# time_commands RUNS OUT.json NAME CMD [NAME CMD...]: prints one line of figures.
time_commands() {
	(cd / && python3 - "$@" 2>&1 <<-'EOF'
		import json, resource, shlex, statistics, subprocess, sys, time
		runs, out, rest = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
		cmds = [(rest[i], [shlex.split(c) for c in rest[i + 1].split(" ;; ")]) for i in range(0, len(rest), 2)]
		res = {n: {"wall": [], "cpu": []} for n, _ in cmds}
		def once(argvs):
		    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
		    t0 = time.perf_counter()
		    for argv in argvs:
		        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
		        if p.returncode not in (0, 10):
		            sys.exit(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.decode()[-300:]}")
		    t1 = time.perf_counter()
		    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
		    return t1 - t0, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
		for _, argvs in cmds:
		    once(argvs)  # warm-up
		for _ in range(runs):
		    for n, argvs in cmds:
		        w, c = once(argvs)
		        res[n]["wall"].append(w)
		        res[n]["cpu"].append(c)
		fig = {n: {"median_ms": 1e3 * statistics.median(r["wall"]), "min_ms": 1e3 * min(r["wall"]),
		           "cpu_ms": 1e3 * statistics.mean(r["cpu"])} for n, r in res.items()}
		load = open("/proc/loadavg").read().split()[:3]
		json.dump({"runs": runs, "load": load, "figures": fig}, open(out, "w"), indent=2)
		f = fig[cmds[0][0]]
		print(f"load {' '.join(load)}; " + "; ".join(
		    f"{n} median {v['median_ms']:.1f} ms ({v['median_ms'] / f['median_ms']:.2f}x), "
		    f"cpu {v['cpu_ms']:.1f} ms ({v['cpu_ms'] / f['cpu_ms']:.2f}x)" for n, v in fig.items()))
	EOF
	)
}

measure_floor() { # NAME RUNS
	local name=$1 runs=$2 t0 out
	t0=$(now)
	local attach="lxc-attach -n $E2E_NAME -P $LXCPATH --clear-env --set-var PATH=$CT_PATH --"
	local tool_args="$E2E_NAME --target lxc --lxcpath $LXCPATH --gpus 0"
	local nodes=/dev/nvidia0,/dev/nvidiactl,/dev/nvidia-uvm,/dev/nvidia-uvm-tools
	local gc='/usr/local/lib/phoenix-gpu/gpu-check-*'
	if out=$(time_commands "$runs" "$REPORT_DIR_ABS/$name.json" \
		floor "$attach nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader" \
		bare-attach "$attach true" \
		apply "$PHOENIX_GPU apply $tool_args --strategy host-libs" \
		check "$PHOENIX_GPU check $tool_args" \
		gpu-check-alone "$attach /bin/sh -c 'exec $gc --probe --sys --dev --libs --dpkg cuda-toolkit-* --nvml --open $nodes --'" \
		gpu-check-no-libs "$attach /bin/sh -c 'exec $gc --probe --sys --dev --dpkg cuda-toolkit-* --nvml --open $nodes --'" \
		gpu-check-nvml "$attach /bin/sh -c 'exec $gc --nvml'" \
		tool-version "$PHOENIX_GPU --version" \
		tool-plan "$PHOENIX_GPU plan $tool_args --strategy host-libs" \
		bash-step "$BUNDLE/bash-step.sh $E2E_NAME $LXCPATH $(uvm_major)"); then
		result "$name" info "$(elapsed "$t0")" "$runs runs each, interleaved: $out"
	else
		result "$name" fail "$(elapsed "$t0")" "the measurement failed: $out"
	fi
	# Where the host side's time goes: the tool's own debug log (microsecond time stamps of
	# the steps, the reads and the exec), and the system calls where strace is installed.
	local i
	for i in 1 2 3 4 5; do
		# shellcheck disable=SC2086 # tool_args are words
		"$PHOENIX_GPU" -vv --log-file "$REPORT_DIR_ABS/$name-timeline.log" apply $tool_args --strategy host-libs >/dev/null 2>&1 || true
		# shellcheck disable=SC2086
		"$PHOENIX_GPU" -vv --log-file "$REPORT_DIR_ABS/$name-timeline.log" plan $tool_args --strategy host-libs >/dev/null 2>&1 || true
	done
	if command -v strace >/dev/null; then
		# shellcheck disable=SC2086
		strace -f -c -o "$REPORT_DIR_ABS/$name-plan.strace-c" "$PHOENIX_GPU" plan $tool_args --strategy host-libs >/dev/null 2>&1 || true
		# shellcheck disable=SC2086
		strace -f -tt -T -o "$REPORT_DIR_ABS/$name-apply.strace" "$PHOENIX_GPU" apply $tool_args --strategy host-libs >/dev/null 2>&1 || true
	fi
}

# b2: 16 containers (this one and 15 copies of it, privileged, GPU 0 with host-libs): a converged
# apply of all 16 with --jobs 1 and --jobs 8 against the floor 16 times, one after the other.
measure_fleet() { # NAME RUNS
	local name=$1 runs=$2 t0 out main=$E2E_NAME i n names=() floor16="" ok=1
	t0=$(now)
	names=("$main")
	for i in $(seq 2 16); do
		n=$main-f$i
		names+=("$n")
		EXTRA_CTS+=("$n")
		mkdir -p "$LXCPATH/$n"
		cp -a "$LXCPATH/$main/rootfs" "$LXCPATH/$n/rootfs"
		sed -e "s|$LXCPATH/$main/|$LXCPATH/$n/|g" -e "s|^lxc.uts.name = .*|lxc.uts.name = $n|" \
			"$LXCPATH/$main/config.initial" >"$LXCPATH/$n/config"
		E2E_NAME=$n CT_DIR=$LXCPATH/$n ct_start || ok=0
	done
	E2E_NAME=$main
	if [[ $ok == 0 ]]; then
		result "$name" fail "$(elapsed "$t0")" "a copy of the container did not start"
		return
	fi
	local common=(--target lxc --lxcpath "$LXCPATH" --gpus 0 --strategy host-libs)
	tool "$name-first" apply "${names[@]:1}" "${common[@]}" --jobs 8 --json
	if [[ $TOOL_RC != 0 ]]; then
		result "$name" fail "$(elapsed "$t0")" "the first apply of the 15 copies exited $TOOL_RC"
		return
	fi
	for n in "${names[@]}"; do
		floor16+="${floor16:+ ;; }lxc-attach -n $n -P $LXCPATH --clear-env --set-var PATH=$CT_PATH -- nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader"
	done
	tool "$name-converged" apply "${names[@]}" "${common[@]}" --jobs 8 --json
	local changed execs
	changed=$(json "$REPORT_DIR_ABS/$name-converged.out" 'any(r["result"] != "unchanged" for r in j["rows"])' 2>/dev/null || echo '?')
	execs=$(json "$REPORT_DIR_ABS/$name-converged.out" 'sum(r["report"]["counters"]["container_execs"] for r in j["rows"])' 2>/dev/null || echo '?')
	if [[ $TOOL_RC != 0 || $changed != False || $execs != 16 ]]; then
		result "$name" fail "$(elapsed "$t0")" "the 16 were not converged: exit $TOOL_RC, changed $changed, container_execs $execs"
		return
	fi
	if out=$(time_commands "$runs" "$REPORT_DIR_ABS/$name.json" \
		floor-16 "$floor16" \
		apply-16-jobs-1 "$PHOENIX_GPU apply ${names[*]} ${common[*]} --jobs 1" \
		apply-16-jobs-8 "$PHOENIX_GPU apply ${names[*]} ${common[*]} --jobs 8"); then
		result "$name" info "$(elapsed "$t0")" "16 containers converged (16 execs), $runs runs each, interleaved: $out"
	else
		result "$name" fail "$(elapsed "$t0")" "the measurement failed: $out"
	fi
	for n in "${names[@]:1}"; do lxc-stop -n "$n" -P "$LXCPATH" -k >/dev/null 2>&1 || true; done
}

scenario_damaged_gpu_check() { # NAME
	local name=$1 t0 execs detail execs2 changed2
	t0=$(now)
	# shellcheck disable=SC2016 # the loop runs inside
	ct_exec /bin/sh -c 'for f in /usr/local/lib/phoenix-gpu/gpu-check-*; do head -c 20000 /dev/zero > "$f"; done'
	tool "$name-apply" apply "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --strategy host-libs --gpus 0 --json
	execs=$(json "$REPORT_DIR_ABS/$name-apply.out" 'j["counters"]["container_execs"]' 2>/dev/null || echo '?')
	detail=$(json "$REPORT_DIR_ABS/$name-apply.out" '[s["detail"] for s in j["steps"] if s["name"] == "verify"][0]' 2>/dev/null || echo '?')
	local rc1=$TOOL_RC
	tool "$name-again" apply "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --strategy host-libs --gpus 0 --json
	execs2=$(json "$REPORT_DIR_ABS/$name-again.out" 'j["counters"]["container_execs"]' 2>/dev/null || echo '?')
	changed2=$(json "$REPORT_DIR_ABS/$name-again.out" 'j["changed"]' 2>/dev/null || echo '?')
	if [[ $rc1 == 0 && $execs == 3 && $detail == *"gpu-check put in place"* && $TOOL_RC == 0 && $execs2 == 1 && $changed2 == False ]]; then
		result "$name" pass "$(elapsed "$t0")" "zeroed: apply exit 0, container_execs 3 (probe, probe through the shell, verification putting it back); then exit 0, changed false, container_execs 1"
	else
		result "$name" fail "$(elapsed "$t0")" "zeroed: apply exit $rc1, container_execs $execs, verify: $detail; again: exit $TOOL_RC, changed $changed2, container_execs $execs2 (want 0, 3, put in place; 0, False, 1)"
	fi
}

# The same, in an unprivileged container (uid/gid map 0 100000 65536 as Proxmox makes it, its
# rootfs chowned): GPU given, CUDA inside, converged, removed without debris.
scenario_unprivileged() {
	local main=$E2E_NAME u=$E2E_NAME-unpriv t0
	t0=$(now)
	E2E_NAME=$u CT_DIR=$LXCPATH/$u CT_CONF=$LXCPATH/$u/config CT_ROOTFS=$LXCPATH/$u/rootfs
	EXTRA_CTS+=("$u")
	rm -rf "$CT_DIR"
	mkdir -p "$CT_DIR"
	cp -a "$LXCPATH/$main/rootfs" "$CT_ROOTFS"
	chown -R 100000:100000 "$CT_ROOTFS"
	sed -e "s|$LXCPATH/$main/|$CT_DIR/|g" -e "s|^lxc.uts.name = .*|lxc.uts.name = $u|" "$LXCPATH/$main/config.initial" >"$CT_CONF"
	printf '%s\n' "lxc.idmap = u 0 100000 65536" "lxc.idmap = g 0 100000 65536" >>"$CT_CONF"
	if ! ct_start; then
		result "u1-unprivileged-start" fail "$(elapsed "$t0")" "the unprivileged container did not start ($CT_DIR/lxc.log)"
	else
		result "u1-unprivileged-start" pass "$(elapsed "$t0")" "uid/gid map 0 100000 65536, rootfs owned by 100000"
		scenario_assign "u2-unprivileged-gpu" 0 0
		scenario_cuda "u3-unprivileged-cuda" 0
		scenario_converged "u4-unprivileged-converged" 0
		scenario_remove_clean "u5-unprivileged-remove"
		ct_stop || true
	fi
	E2E_NAME=$main CT_DIR=$LXCPATH/$main CT_CONF=$LXCPATH/$main/config CT_ROOTFS=$LXCPATH/$main/rootfs
}

# --- issue 16: GPUs given and taken live -----------------------------------------------------
# A container of its own, $E2E_NAME-live, whose config binds the host's driver userspace itself
# (at /opt/host-nvidia, a line the tool does not own), so that a GPU given with --strategy none
# is a change of device nodes only, which the tool makes in the running container. Every step
# checks the container's init pid and a process started before the first change.

# live_userspace: the host folder to bind as the container's userspace: the folder of
# libcuda.so.1, or, where that is a system library folder, a copy of the CUDA and NVML
# libraries under the prefix.
live_userspace() {
	local lib dir
	lib=$(ldconfig -p | awk '$1 == "libcuda.so.1" { print $NF; exit }')
	[[ -n $lib ]] || return 1
	dir=$(dirname "$(readlink -f "$lib")")
	case $dir in
	/lib | /lib64 | /usr/lib | /usr/lib64 | /lib/* | /usr/lib/*)
		mkdir -p "$E2E_PREFIX/live-userspace"
		cp -L "$dir"/libcuda.so.1 "$dir"/libnvidia-ml.so.1 "$E2E_PREFIX/live-userspace/"
		cp -L "$dir"/libnvidia-ptxjitcompiler.so.1 "$E2E_PREFIX/live-userspace/" 2>/dev/null || true
		dir=$E2E_PREFIX/live-userspace ;;
	esac
	echo "$dir"
}

live_init_pid() { lxc-info -n "$E2E_NAME" -P "$LXCPATH" -p -H; }

live_alive() { ct_exec /bin/kill -0 "$1" 2>/dev/null; }

# gpu-check (the tool puts it into the container at its first verify) with ARGS, or
# gpu_check=missing.
live_gpu_check() {
	# shellcheck disable=SC2016 # the script runs inside, with its own arguments
	ct_exec /bin/sh -c 'for f in /usr/local/lib/phoenix-gpu/gpu-check-*; do [ -x "$f" ] && exec "$f" "$@"; done; echo gpu_check=missing' sh "$@" 2>&1 || true
}

# live_cuda STEP: a new CUDA process inside (gpu-check --ctx); LIVE_CUDA_UUIDS: the GPUs with a
# context and a 1 MiB round trip, sorted; LIVE_CUDA: cuInit and the device count, or missing.
live_cuda() {
	local out i u ids=()
	out=$(live_gpu_check --ctx)
	printf '%s\n' "$out" >"$REPORT_DIR_ABS/$1.cuda"
	LIVE_CUDA_UUIDS=
	if grep -q '^gpu_check=missing' <<<"$out"; then
		LIVE_CUDA=missing
		return
	fi
	# shellcheck disable=SC2013 # one device number a line
	for i in $(sed -n 's/^cuda_dev\([0-9]*\)_uuid=.*/\1/p' <<<"$out"); do
		u=$(sed -n "s/^cuda_dev${i}_uuid=//p" <<<"$out")
		if grep -q "^cuda_dev${i}_ctx=0 " <<<"$out" && grep -q "^cuda_dev${i}_mem=0 " <<<"$out"; then ids+=("$u"); fi
	done
	LIVE_CUDA_UUIDS=$(printf '%s\n' "${ids[@]}" | sort)
	LIVE_CUDA=$(grep -E '^cuda_(init|count)=' <<<"$out" | tr '\n' ' ')
}

# live_cuda_is STEP INDEXES...: a new CUDA process has a context on exactly those GPUs (true when
# the container has no gpu-check: then LIVE_NOTE says so).
live_cuda_is() {
	local step=$1 want i
	shift
	live_cuda "$step"
	if [[ $LIVE_CUDA == missing ]]; then
		LIVE_NOTE="CUDA not checked (no gpu-check in the container)"
		return 0
	fi
	want=$(for i in "$@"; do echo "${GPU_UUID[i]}"; done | sort)
	LIVE_NOTE="CUDA: ${LIVE_CUDA}contexts on [$(tr '\n' ' ' <<<"$LIVE_CUDA_UUIDS")]"
	[[ $LIVE_CUDA_UUIDS == "$want" ]]
}

# live_hold: a process inside holding a CUDA context on every GPU it sees (gpu-check --ctx
# --hold), started in the background; LIVE_HOLDER is its pid inside.
live_hold() {
	local f=/tmp/phoenix-e2e-hold.out i
	LIVE_HOLDER=
	# shellcheck disable=SC2016 # the script runs inside, with its own arguments
	ct_exec /bin/sh -c 'rm -f "$1"; for g in /usr/local/lib/phoenix-gpu/gpu-check-*; do if [ -x "$g" ]; then "$g" --ctx --hold 900 >"$1" 2>&1 </dev/null & exit 0; fi; done; exit 1' sh "$f" || return 1
	for i in $(seq 1 150); do
		LIVE_HOLDER=$(ct_exec /bin/sed -n 's/^hold_pid=//p' "$f" 2>/dev/null || true)
		[[ -z $LIVE_HOLDER ]] || return 0
		sleep 0.1
	done
	return 1
}

# live_end PID: ends a process inside and waits until it is gone.
live_end() {
	local i
	ct_exec /bin/kill "$1" 2>/dev/null || true
	for i in $(seq 1 100); do
		live_alive "$1" || return 0
		sleep 0.1
	done
	return 1
}

# live_apply STEP SEL [ARGS...]: apply --strategy none; LIVE_BY (activation.by), LIVE_RESTARTS,
# LIVE_MSG (the error message, if any).
live_apply() {
	local step=$1 sel=$2
	shift 2
	tool "$step" apply "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --strategy none --gpus "$sel" --json "$@"
	local out=$REPORT_DIR_ABS/$step.out
	LIVE_BY=$(json "$out" '(j.get("activation") or {}).get("by")' 2>/dev/null || echo '?')
	LIVE_RESTARTS=$(json "$out" 'j["counters"]["restarts"]' 2>/dev/null || echo '?')
	LIVE_MSG=$(json "$out" '(j.get("error") or {}).get("message") or ""' 2>/dev/null || echo '?')
}

# live_opens MINOR: whether the device cgroup lets c 195:MINOR open, through a node the script
# makes inside itself (mknod in /tmp, which the container's `c *:* m` allows), so that the
# cgroup answers and not a missing or stale node: "opens", "refused" (EPERM), or the error.
# This is the check of the deny on a cgroup v2 host (LXC's BPF device program), which CI's
# cgroup v1 host cannot make.
live_opens() {
	# shellcheck disable=SC2016 # the script runs inside, with its own arguments
	{ ct_exec /bin/sh -c 'n=/tmp/phoenix-e2e-node; rm -f "$n"; mknod "$n" c 195 "$1" || exit 0
		if (exec 3<"$n") 2>"$n.err"; then echo opens
		elif grep -q "not permitted" "$n.err"; then echo refused
		else cat "$n.err"; fi
		rm -f "$n" "$n.err"' sh "$1" 2>&1 || echo "lxc-attach failed"; } | tr '\n' ' ' | sed 's/ *$//'
}

# live_cgroup STEP MINOR WANT: live_opens is WANT; LIVE_NOTE says what it was.
live_cgroup() {
	local got
	got=$(live_opens "$2")
	echo "$got" >"$REPORT_DIR_ABS/$1.cgroup"
	LIVE_NOTE+="; c 195:$2 through a node made inside: $got (want $3)"
	[[ $got == "$3" ]]
}

# live_same: the container's init and the process started before the first change are there.
live_same() {
	local ok=0
	[[ $(live_init_pid) == "$LIVE_INIT" ]] || { ok=1; LIVE_NOTE+="; init pid $(live_init_pid), was $LIVE_INIT"; }
	live_alive "$LIVE_BYSTANDER" || { ok=1; LIVE_NOTE+="; the process started before is gone"; }
	return $ok
}

live_result() { # NAME OK SECONDS DETAIL
	if [[ $2 == 1 ]]; then result "$1" pass "$3" "$4"; else result "$1" fail "$3" "$4"; fi
}

scenario_live() {
	local main=$E2E_NAME n=$E2E_NAME-live us ok t0 all target target_gpus minor0
	E2E_NAME=$n CT_DIR=$LXCPATH/$n CT_CONF=$LXCPATH/$n/config CT_ROOTFS=$LXCPATH/$n/rootfs
	EXTRA_CTS+=("$n")
	if [[ $GPU_COUNT -ge 2 ]]; then all=0,1 target=1 target_gpus=1; else all=0 target=none target_gpus=; fi
	build_rootfs
	write_config
	if ! us=$(live_userspace); then
		result "L1-live-first-gpu" fail 0 "no libcuda.so.1 in the host's loader cache (ldconfig -p)"
		E2E_NAME=$main CT_DIR=$LXCPATH/$main CT_CONF=$LXCPATH/$main/config CT_ROOTFS=$LXCPATH/$main/rootfs
		return
	fi
	echo "lxc.mount.entry = $us opt/host-nvidia none bind,ro,create=dir" >>"$CT_CONF"
	echo /opt/host-nvidia >"$CT_ROOTFS/etc/ld.so.conf.d/host-nvidia.conf"
	cp "$CT_CONF" "$REPORT_DIR_ABS/L0-live.config"
	if ! ct_start; then
		result "L1-live-first-gpu" fail 0 "the container did not start ($CT_DIR/lxc.log)"
		E2E_NAME=$main CT_DIR=$LXCPATH/$main CT_CONF=$LXCPATH/$main/config CT_ROOTFS=$LXCPATH/$main/rootfs
		return
	fi
	ct_exec /sbin/ldconfig || true
	LIVE_INIT=$(live_init_pid)
	LIVE_BYSTANDER=$(ct_exec /bin/sh -c 'sleep 3600 </dev/null >/dev/null 2>&1 & echo $!')
	minor0=$(json "$REPORT_DIR_ABS/inventory.json" '[g["minor"] for g in j["gpus"] if g["index"] == 0][0]')

	# L1: a first GPU for a container that has its userspace: given live; the device cgroup
	# refused GPU 0 before and lets it open after.
	ok=1
	LIVE_NOTE=
	live_cgroup "L1-live-before" "$minor0" refused || ok=0
	local before_note=$LIVE_NOTE
	live_apply "L1-live-first-gpu" 0
	[[ $TOOL_RC == 0 && $LIVE_BY == live && $LIVE_RESTARTS == 0 ]] || ok=0
	live_cuda_is "L1-live-first-gpu" 0 || ok=0
	LIVE_NOTE+=$before_note
	live_cgroup "L1-live-first-gpu" "$minor0" opens || ok=0
	live_same || ok=0
	live_result "L1-live-first-gpu" "$ok" "$TOOL_SECS" "apply exit $TOOL_RC, by $LIVE_BY, restarts $LIVE_RESTARTS; $LIVE_NOTE"

	# L2: a CUDA process holds GPU 0; GPU 1 given live; a new CUDA process sees both.
	t0=$(now)
	if ! live_hold; then
		result "L2-live-gpu-to-busy-ct" fail "$(elapsed "$t0")" "no CUDA process holding the GPU (gpu-check --ctx --hold): $(live_gpu_check --ctx | head -c 200)"
	elif [[ $GPU_COUNT -lt 2 ]]; then
		result "L2-live-gpu-to-busy-ct" skip 0 "host has $GPU_COUNT GPU: needs 2 or more (CUDA process $LIVE_HOLDER holds GPU 0)"
	else
		ok=1
		live_apply "L2-live-gpu-to-busy-ct" 0,1
		[[ $TOOL_RC == 0 && $LIVE_BY == live && $LIVE_RESTARTS == 0 ]] || ok=0
		live_cuda_is "L2-live-gpu-to-busy-ct" 0 1 || ok=0
		live_alive "$LIVE_HOLDER" || { ok=0; LIVE_NOTE+="; the CUDA process $LIVE_HOLDER is gone"; }
		live_same || ok=0
		live_result "L2-live-gpu-to-busy-ct" "$ok" "$TOOL_SECS" "apply --gpus 0,1 exit $TOOL_RC, by $LIVE_BY; CUDA process $LIVE_HOLDER still runs; $LIVE_NOTE"
	fi

	# L3: GPU 0 taken while the CUDA process holds it: refused (exit 9), naming it; nothing
	# written.
	if [[ -n $LIVE_HOLDER ]]; then
		ok=1
		cp "$CT_CONF" "$REPORT_DIR_ABS/L3.before"
		live_apply "L3-live-held-refused" "$target"
		[[ $TOOL_RC == 9 && $LIVE_MSG == *"pid $LIVE_HOLDER ("* ]] || ok=0
		cmp -s "$CT_CONF" "$REPORT_DIR_ABS/L3.before" || { ok=0; LIVE_NOTE+="; the config changed"; }
		live_alive "$LIVE_HOLDER" || ok=0
		live_result "L3-live-held-refused" "$ok" "$TOOL_SECS" "apply --gpus $target exit $TOOL_RC: $LIVE_MSG"

		# L4: --force takes it; the holder keeps running; a new CUDA process sees the rest.
		ok=1
		live_apply "L4-live-forced" "$target" --force
		[[ $TOOL_RC == 0 && $LIVE_BY == live && $LIVE_RESTARTS == 0 ]] || ok=0
		local held
		held=$(json "$REPORT_DIR_ABS/L4-live-forced.out" '[h["pid"] for h in j["activation"]["held"]]' 2>/dev/null || echo '?')
		[[ $held == *"$LIVE_HOLDER"* ]] || ok=0
		live_alive "$LIVE_HOLDER" || ok=0
		# shellcheck disable=SC2086 # no GPU or one index
		live_cuda_is "L4-live-forced" $target_gpus || ok=0
		live_cgroup "L4-live-forced" "$minor0" refused || ok=0
		live_same || ok=0
		live_result "L4-live-forced" "$ok" "$TOOL_SECS" "apply --gpus $target --force exit $TOOL_RC, by $LIVE_BY, held $held (still running); $LIVE_NOTE"

		# L5: given back, held again, the holder ends: taken without --force.
		ok=1
		live_end "$LIVE_HOLDER" || ok=0
		live_apply "L5-live-given-back" "$all"
		[[ $TOOL_RC == 0 && $LIVE_BY == live ]] || ok=0
		if live_hold; then
			live_apply "L5-live-held-again" "$target"
			[[ $TOOL_RC == 9 ]] || ok=0
			live_end "$LIVE_HOLDER" || ok=0
		else
			ok=0
		fi
		live_apply "L5-live-after-exit" "$target"
		[[ $TOOL_RC == 0 && $LIVE_BY == live && $LIVE_RESTARTS == 0 ]] || ok=0
		# shellcheck disable=SC2086 # no GPU or one index
		live_cuda_is "L5-live-after-exit" $target_gpus || ok=0
		live_same || ok=0
		live_result "L5-live-after-exit" "$ok" "$TOOL_SECS" "refused while held, then apply --gpus $target exit $TOOL_RC once it ended, by $LIVE_BY; $LIVE_NOTE"
	fi

	# L6: converged: after a live change, the same apply again is one exec and writes nothing.
	local changed execs
	live_apply "L6-live-target" "$target"
	LIVE_NOTE=
	local taken_ok=1
	[[ $TOOL_RC == 0 ]] || taken_ok=0
	live_cgroup "L6-live-target" "$minor0" refused || taken_ok=0
	local taken_note="apply --gpus $target exit $TOOL_RC$LIVE_NOTE"
	live_apply "L6-live-converged" "$target"
	changed=$(json "$REPORT_DIR_ABS/L6-live-converged.out" 'j["changed"]' 2>/dev/null || echo '?')
	execs=$(json "$REPORT_DIR_ABS/L6-live-converged.out" 'j["counters"]["container_execs"]' 2>/dev/null || echo '?')
	ok=1
	# One probe; none at all when no GPU is left (nothing inside to look at).
	local want_execs=1
	[[ $target != none ]] || want_execs=0
	[[ $TOOL_RC == 0 && $changed == False && $execs == "$want_execs" && $taken_ok == 1 ]] || ok=0
	live_result "L6-live-converged" "$ok" "$TOOL_SECS" "$taken_note; again: exit $TOOL_RC, changed $changed, container_execs $execs (want $want_execs)"

	# L7: the same change live and by a restart, same container, same run (docs/BENCHMARKS.md).
	local t_live t_restart
	live_apply "L7-live-change" "$all"
	t_live=$TOOL_SECS
	ok=1
	[[ $TOOL_RC == 0 && $LIVE_BY == live ]] || ok=0
	live_same || ok=0
	live_apply "L7-restart-change" "$target" --restart
	t_restart=$TOOL_SECS
	[[ $TOOL_RC == 0 && $LIVE_BY == restart && $LIVE_RESTARTS == 1 ]] || ok=0
	[[ $(live_init_pid) != "$LIVE_INIT" ]] || ok=0
	live_result "L7-live-vs-restart" "$ok" "$(awk -v a="$t_live" -v b="$t_restart" 'BEGIN { printf "%.2f", a + b }')" \
		"apply --gpus $all live in ${t_live}s; apply --gpus $target --restart in ${t_restart}s"

	ct_stop || true
	E2E_NAME=$main CT_DIR=$LXCPATH/$main CT_CONF=$LXCPATH/$main/config CT_ROOTFS=$LXCPATH/$main/rootfs
}

run_scenarios() {
	need_root
	glibc_ok
	command -v python3 >/dev/null || die "python3 not found (reads the tool's JSON)"
	check_bundle
	PHOENIX_GPU=${PHOENIX_GPU:-$BUNDLE/phoenix-gpu}
	[[ -x $PHOENIX_GPU ]] || die "no phoenix-gpu at $PHOENIX_GPU: set PHOENIX_GPU=path or put it in the bundle"
	PHOENIX_GPU=$(readlink -f "$PHOENIX_GPU")
	trap cleanup EXIT
	open_report_dir
	rm -f "${REPORT_DIR_ABS:?}"/*
	local t_all
	t_all=$(now)

	"$PHOENIX_GPU" --version >"$REPORT_DIR_ABS/tool-version.txt" 2>&1 || true
	tool inventory inventory --json
	[[ $TOOL_RC == 0 ]] || die "phoenix-gpu inventory --json failed (exit $TOOL_RC): $(tail -n 5 "$REPORT_DIR_ABS/inventory.err")"
	cp "$REPORT_DIR_ABS/inventory.out" "$REPORT_DIR_ABS/inventory.json"
	json "$REPORT_DIR_ABS/inventory.json" 'j["driver_version"] and [g["uuid"] + str(g["index"]) for g in j["gpus"]]' >/dev/null 2>&1 ||
		die "phoenix-gpu inventory --json gave no {driver_version, gpus:[{index, uuid}]} object (its stdout: $REPORT_DIR_ABS/inventory.out)"
	DRIVER=$(json "$REPORT_DIR_ABS/inventory.json" 'j["driver_version"]')
	GPU_COUNT=$(json "$REPORT_DIR_ABS/inventory.json" 'len(j["gpus"])')
	mapfile -t GPU_UUID < <(json "$REPORT_DIR_ABS/inventory.json" '"\n".join(g["uuid"] for g in sorted(j["gpus"], key=lambda g: g["index"]))')
	[[ $GPU_COUNT -ge 1 ]] || die "phoenix-gpu inventory found no GPU"
	UVM=$(json "$REPORT_DIR_ABS/inventory.json" '(j.get("majors") or {}).get("nvidia_uvm") or ""')
	log "host: $GPU_COUNT GPU(s), driver $DRIVER, cgroup key $(cgroup_key)"
	nvidia-smi --query-gpu=index,uuid,pci.bus_id,name,driver_version --format=csv,noheader \
		>"$REPORT_DIR_ABS/host-nvidia-smi.txt" 2>&1 || true

	local t0
	t0=$(now)
	setup_lxc
	local t_lxc
	t_lxc=$(elapsed "$t0")
	make_container
	cp "$CT_CONF" "$REPORT_DIR_ABS/config.initial"
	cp "$CT_CONF" "$CT_DIR/config.initial"

	# 1. one GPU: exactly that one, at the host's version; CUDA creates a context on it.
	scenario_assign "1-one-gpu" 0 0
	scenario_cuda "7-cuda-context" 0

	# 4. a second apply is a no-op: one probe, nothing changed.
	scenario_converged "4-idempotent" 0 "4-idempotent-apply"

	# b1. the converged apply and check against their floor (a figure, not a test).
	[[ $TOOL_RC != 0 ]] || measure_floor "b1-floor" "${E2E_FLOOR_RUNS:-20}"
	# b2. the same for 16 containers, --jobs 1 and --jobs 8.
	[[ $TOOL_RC != 0 ]] || measure_fleet "b2-fleet" "${E2E_FLEET_RUNS:-10}"

	# 4b. gpu-check zeroed inside: probed through the shell, put in place again, then one exec.
	scenario_damaged_gpu_check "4b-damaged-gpu-check"

	# 2. the second GPU alone.
	local sel=0
	if [[ $GPU_COUNT -ge 2 ]]; then
		scenario_assign "2-second-gpu" 1 1
		sel=1
	else
		result "2-second-gpu" skip 0 "host has $GPU_COUNT GPU: needs 2 or more"
	fi

	# 3. negative control: the tool's cgroup lines out, restarted: verify must exit 7.
	t0=$(now)
	local detail ok=1
	if strip_nvidia_allow "$CT_CONF"; then detail="allow lines removed"; else ok=0; detail="no NVIDIA allow line to remove"; fi
	cp "$CT_CONF" "$REPORT_DIR_ABS/3-negative.config"
	ct_restart || { ok=0; detail+="; restart failed"; }
	tool "3-negative-verify" verify "$E2E_NAME" --target lxc --lxcpath "$LXCPATH" --gpus "$sel" --json
	detail+="; verify exit $TOOL_RC"
	[[ $TOOL_RC == 7 ]] || ok=0
	SEEN=$(smi_inside)
	printf '%s\n' "$SEEN" >"$REPORT_DIR_ABS/3-negative.inside"
	detail+="; nvidia-smi inside: $(head -c 120 <<<"$SEEN" | tr '\n' ' ')"
	if [[ $ok == 1 ]]; then result "3-negative-control" pass "$(elapsed "$t0")" "$detail"; else result "3-negative-control" fail "$(elapsed "$t0")" "$detail (want exit 7)"; fi

	# 5. repair: apply again puts the lines back, verify passes.
	if [[ $sel == 1 ]]; then scenario_assign "5-repair" 1 1; else scenario_assign "5-repair" 0 0; fi

	# 8. the uvm line alone goes: nvidia-smi works, CUDA and verify do not; apply repairs.
	scenario_uvm "8-uvm-refused" "$sel" "$sel"

	# 9. every GPU given at once: a CUDA context on each.
	scenario_each_gpu "9-every-gpu"

	# 6. remove: the lines out, the container restarted, nothing of the tool left inside.
	scenario_remove_clean "6-remove"
	ct_stop || true

	# u1-u5: an unprivileged container.
	scenario_unprivileged

	# L1-L7: GPUs given and taken live, in a container of their own.
	ct_stop || true
	scenario_live

	write_report "$(elapsed "$t_all")" "$t_lxc"
	if [[ ${#FAILED[@]} -gt 0 ]]; then
		log "FAILED: ${FAILED[*]} (report: $REPORT_DIR_ABS/report.txt)"
		exit 1
	fi
	log "all scenarios passed (report: $REPORT_DIR_ABS/report.txt)"
}

write_report() {
	local total=$1 t_lxc=$2
	printf '%s\n' "${RESULTS[@]}" >"$REPORT_DIR_ABS/results.tsv"
	python3 - "$REPORT_DIR_ABS" "$total" "$t_lxc" "${TIME_CT_START:-0}" "$DRIVER" "$(cgroup_key)" \
		"$(uname -r)" "$HOST_GLIBC" "$(lxc-start --version)" "$PHOENIX_GPU" <<-'EOF'
			import json, os, sys
			d, total, t_lxc, t_ct, driver, key, kernel, glibc, lxc, tool = sys.argv[1:]
			inv = json.load(open(os.path.join(d, "inventory.json")))
			res = []
			for line in open(os.path.join(d, "results.tsv")):
			    if line.strip():
			        name, status, secs, detail = line.rstrip("\n").split("\t", 3)
			        res.append({"name": name, "status": status, "seconds": float(secs), "detail": detail})
			version = open(os.path.join(d, "tool-version.txt")).read().strip()
			summary = {
			    "ok": all(r["status"] != "fail" for r in res),
			    "host": {"kernel": kernel, "glibc": glibc, "cgroup_key": key, "lxc": lxc,
			             "driver_version": driver, "gpus": inv.get("gpus", [])},
			    "tool": {"path": tool, "version": version},
			    "timings": {"total": float(total), "lxc_unpack": float(t_lxc), "container_start": float(t_ct)},
			    "scenarios": res,
			}
			json.dump(summary, open(os.path.join(d, "summary.json"), "w"), indent=2)
			with open(os.path.join(d, "report.txt"), "w") as f:
			    f.write(f"phoenix-gpu GPU end-to-end: {'PASS' if summary['ok'] else 'FAIL'}\n")
			    f.write(f"tool     {tool} ({version})\n")
			    f.write(f"host     kernel {kernel}, glibc {glibc}, {key}.devices.*, LXC {lxc} (private prefix)\n")
			    f.write(f"driver   {driver}\n")
			    for g in inv.get("gpus", []):
			        f.write(f"gpu {g.get('index')}    minor {g.get('minor')} {g.get('pci_bus_id')} {g.get('uuid')} {g.get('model')}\n")
			    f.write(f"timings  total {float(total):.1f}s, LXC unpack {float(t_lxc):.1f}s, container start {float(t_ct):.2f}s\n\n")
			    for r in res:
			        f.write(f"{r['status'].upper():4} {r['name']:26} {r['seconds']:7.2f}s  {r['detail']}\n")
			print(open(os.path.join(d, "report.txt")).read())
		EOF
}

# --- main ----------------------------------------------------------------------------------

main() {
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--fetch)
			MODE=fetch
			if [[ $# -gt 1 && $2 != --* ]]; then FETCH_DIR=$2; shift; fi ;;
		--no-build) FETCH_BUILD=0 ;;
		--bundle) BUNDLE=${2:?--bundle needs a folder}; shift ;;
		--keep) KEEP=1 ;;
		--selftest) MODE=selftest ;;
		--explore) MODE=explore ;;
		-h | --help) usage; exit 0 ;;
		*) usage >&2; die "unknown argument: $1" ;;
		esac
		shift
	done
	case "$MODE" in
	fetch) fetch_bundle "${FETCH_DIR:-./gpu-e2e-bundle}" ;;
	*)
		BUNDLE=$(readlink -f "${BUNDLE:-$(default_bundle)}")
		case "$MODE" in
		selftest) selftest ;;
		explore) explore ;;
		run) run_scenarios ;;
		esac ;;
	esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# Says where an unexpected failure stopped the script (only where set -e is in force).
	trap 'rc=$?; [[ $- != *e* ]] || log "stopped: line $LINENO: $BASH_COMMAND (exit $rc)"' ERR
	main "$@"
fi
