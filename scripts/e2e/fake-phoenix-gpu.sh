#!/usr/bin/env bash
# A stand-in for phoenix-gpu that lets scripts/gpu-e2e.sh run all its scenarios on a root host
# with no GPU (docs/e2e.md, "Trying the script without a GPU"). It is a test double, not the tool.
#
# It speaks the CLI contract (inventory/apply/check/verify/remove, --json, exit 7 and 10) for two pretend GPUs
# whose device nodes it makes with mknod (c 195:0, c 195:1, c 195:255) under FAKE_GPU_ROOT. With no
# NVIDIA driver loaded, opening such a node fails with ENXIO when the device cgroup lets it through
# and with EPERM when it does not, so the fake nvidia-smi it binds into the container lists a GPU
# only when the container's cgroup allows its node, and fails like NVML when nvidiactl is denied.
# The negative control therefore exercises the real device cgroup.
set -euo pipefail

# FAKE_GPUS=1 pretends a one-GPU host; FAKE_BREAK=verify makes verify always pass (a broken tool
# that the negative control must catch); FAKE_BREAK=idempotence makes every apply write;
# FAKE_BREAK=uvm makes verify ignore /dev/nvidia-uvm (as a verify that only asks NVML would);
# FAKE_BREAK=debris makes remove leave its files in the container.
#
# Like the tool, apply puts a gpu-check into the container (/usr/local/lib/phoenix-gpu/): here a
# shell double that answers --ctx the way the stand-in driver does (cuInit 999 unless nvidiactl
# and nvidia-uvm open; a context on each GPU whose node opens), and remove restarts a running
# container and takes it and the nvidia-smi placeholder out. The stand-in uvm major is
# FAKE_UVM_MAJOR (default 509; any major works, no driver is behind it).
FAKE_GPU_ROOT=${FAKE_GPU_ROOT:-/run/phoenix-e2e-fake-gpu}
FAKE_GPUS=${FAKE_GPUS:-2}
FAKE_BREAK=${FAKE_BREAK:-}
UVM=${FAKE_UVM_MAJOR:-509}
DRIVER=580.159.04
UUIDS=(GPU-8ec68ad8-ed9b-8b4b-3e1f-0a019c95b836 GPU-7fc3e24c-6572-362c-3b22-0d1167fae655)
BUSES=(00000000:00:06.0 00000000:00:07.0)

die() { echo "fake-phoenix-gpu: $*" >&2; exit "${2:-1}"; }

cgroup_key() {
	if awk '$3 == "cgroup" && $4 ~ /(^|,)devices(,|$)/ { f = 1 } END { exit !f }' /proc/mounts; then
		echo lxc.cgroup
	else
		echo lxc.cgroup2
	fi
}

make_nodes() {
	mkdir -p "$FAKE_GPU_ROOT/dev" "$FAKE_GPU_ROOT/bin"
	local m
	for m in 0 1; do [[ -c $FAKE_GPU_ROOT/dev/nvidia$m ]] || mknod -m 0666 "$FAKE_GPU_ROOT/dev/nvidia$m" c 195 "$m"; done
	[[ -c $FAKE_GPU_ROOT/dev/nvidiactl ]] || mknod -m 0666 "$FAKE_GPU_ROOT/dev/nvidiactl" c 195 255
	[[ -c $FAKE_GPU_ROOT/dev/nvidia-uvm ]] || mknod -m 0666 "$FAKE_GPU_ROOT/dev/nvidia-uvm" c "$UVM" 0
	[[ -c $FAKE_GPU_ROOT/dev/nvidia-uvm-tools ]] || mknod -m 0666 "$FAKE_GPU_ROOT/dev/nvidia-uvm-tools" c "$UVM" 1
	# The container's gpu-check double (busybox sh).
	cat >"$FAKE_GPU_ROOT/bin/gpu-check" <<-EOF
		#!/bin/sh
		# fake gpu-check (test double of scripts/e2e/fake-phoenix-gpu.sh)
		denied() { cat "\$1" 2>&1 >/dev/null | grep -q 'not permitted'; }
		echo check_version=1
		case "\$*" in *--ctx*|*--cuda*) ;; *) echo check_end=1; exit 0 ;; esac
		echo cuda_lib=ok
		if [ ! -e /dev/nvidiactl ] || denied /dev/nvidiactl || [ ! -e /dev/nvidia-uvm ] || denied /dev/nvidia-uvm; then
		    echo "cuda_init=999 CUDA_ERROR_UNKNOWN"; echo check_end=1; exit 0
		fi
		echo "cuda_init=0 CUDA_SUCCESS"
		i=0
		for m in 0 1; do
		    [ -e /dev/nvidia\$m ] && ! denied /dev/nvidia\$m || continue
		    case \$m in 0) u=${UUIDS[0]} ;; 1) u=${UUIDS[1]} ;; esac
		    echo "cuda_dev\${i}_uuid=\$u"; echo "cuda_dev\${i}_ctx=0 CUDA_SUCCESS"; echo "cuda_dev\${i}_mem=0 CUDA_SUCCESS"
		    i=\$((i + 1))
		done
		echo "cuda_count=\$i"; echo check_end=1
	EOF
	chmod 0755 "$FAKE_GPU_ROOT/bin/gpu-check"
	# The container's nvidia-smi: busybox sh, answers -L and --query-gpu=uuid,driver_version.
	cat >"$FAKE_GPU_ROOT/bin/nvidia-smi" <<-EOF
		#!/bin/sh
		denied() { cat "\$1" 2>&1 >/dev/null | grep -q 'not permitted'; }
		# The real tool's words (crates/gpu-core/tests/support/README.md): no node, exit 9;
		# a node the device cgroup denies, exit 255.
		if [ ! -e /dev/nvidiactl ]; then
		    echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."; echo; exit 9
		fi
		if denied /dev/nvidiactl; then
		    echo "Failed to initialize NVML: Unknown Error"; exit 255
		fi
		i=0
		for m in 0 1; do
		    [ -e /dev/nvidia\$m ] && ! denied /dev/nvidia\$m || continue
		    case \$m in 0) u=${UUIDS[0]} ;; 1) u=${UUIDS[1]} ;; esac
		    case "\$*" in
		    *--query-gpu*) echo "\$u, $DRIVER" ;;
		    *) echo "GPU \$i: Fake H200 (UUID: \$u)" ;;
		    esac
		    i=\$((i + 1))
		done
		[ \$i -gt 0 ] || { echo "No devices were found"; exit 6; }
	EOF
	chmod 0755 "$FAKE_GPU_ROOT/bin/nvidia-smi"
}

# Options after the subcommand: NAME --target lxc --lxcpath DIR [--strategy S] [--gpus SEL] [--json] [--start]
parse() {
	NAME=$1
	shift
	LXCPATH=/var/lib/lxc SEL='' JSON=0 START=0
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--target) [[ $2 == lxc ]] || die "only --target lxc" 2; shift ;;
		--lxcpath) LXCPATH=$2; shift ;;
		--strategy) shift ;;
		--gpus) SEL=$2; shift ;;
		--json) JSON=1 ;;
		--start) START=1 ;;
		*) die "unknown argument $1" 2 ;;
		esac
		shift
	done
	CONF=$LXCPATH/$NAME/config
	[[ -f $CONF ]] || die "container $NAME not found under $LXCPATH" 3
}

minors() { # SEL -> minors (index = minor here)
	local s
	for s in ${SEL//,/ }; do
		case "$s" in
		0 | "${UUIDS[0]}") echo 0 ;;
		1 | "${UUIDS[1]}") echo 1 ;;
		*) die "no GPU $s" 8 ;;
		esac
	done
}

ours() { grep -E "195:|c $UVM:|/dev/nvidia|$FAKE_GPU_ROOT/bin" "$CONF" || true; }
without_ours() { grep -vE "195:|c $UVM:|/dev/nvidia|$FAKE_GPU_ROOT/bin" "$CONF" || true; }

wanted() {
	local key m
	key=$(cgroup_key)
	for m in $(minors); do
		echo "$key.devices.allow = c 195:$m rwm"
		echo "lxc.mount.entry = $FAKE_GPU_ROOT/dev/nvidia$m dev/nvidia$m none bind,optional,create=file"
	done
	echo "$key.devices.allow = c 195:255 rwm"
	echo "$key.devices.allow = c $UVM:* rwm"
	echo "lxc.mount.entry = $FAKE_GPU_ROOT/dev/nvidiactl dev/nvidiactl none bind,optional,create=file"
	echo "lxc.mount.entry = $FAKE_GPU_ROOT/dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file"
	echo "lxc.mount.entry = $FAKE_GPU_ROOT/dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file"
	echo "lxc.mount.entry = $FAKE_GPU_ROOT/bin/nvidia-smi usr/bin/nvidia-smi none bind,ro,optional,create=file"
}

running() { [[ $(lxc-info -n "$NAME" -P "$LXCPATH" -s -H) == RUNNING ]]; }

restart() {
	lxc-stop -n "$NAME" -P "$LXCPATH" -t 10 || lxc-stop -n "$NAME" -P "$LXCPATH" -k
	lxc-start -n "$NAME" -P "$LXCPATH" || die "restart failed" 6
}

cmd=${1:-}
shift || true
case "$cmd" in
inventory)
	[[ ${1:-} == --json ]] || die "inventory needs --json here" 2
	printf '{"driver_version":"%s","gpus":[' "$DRIVER"
	printf '{"index":0,"minor":0,"pci_bus_id":"%s","uuid":"%s","model":"Fake H200"}' "${BUSES[0]}" "${UUIDS[0]}"
	[[ $FAKE_GPUS == 1 ]] ||
		printf ',{"index":1,"minor":1,"pci_bus_id":"%s","uuid":"%s","model":"Fake H200"}' "${BUSES[1]}" "${UUIDS[1]}"
	printf '],'
	printf '"majors":{"nvidia":195,"nvidia_uvm":%s,"nvidia_caps":null},"nodes":[]}\n' "$UVM"
	;;
apply)
	parse "$@"
	make_nodes
	execs=1 writes=0 restarts=0 changed=false
	running && lxc-attach -n "$NAME" -P "$LXCPATH" -- /bin/true # the one probe
	if [[ $(ours) != "$(wanted)" || $FAKE_BREAK == idempotence ]]; then
		{ without_ours; wanted; } >"$CONF.new"
		mv "$CONF.new" "$CONF"
		writes=1 changed=true
		if running; then restart; restarts=1; fi
	fi
	if [[ $START == 1 ]] && ! running; then lxc-start -n "$NAME" -P "$LXCPATH" || die "start failed" 6; fi
	# Like the tool's verification exec, put gpu-check in place.
	if running; then
		lxc-wait -n "$NAME" -P "$LXCPATH" -s RUNNING -t 10
		lxc-attach -n "$NAME" -P "$LXCPATH" --clear-env -- /bin/sh -c \
			'[ -x /usr/local/lib/phoenix-gpu/gpu-check-fake ] || { mkdir -p /usr/local/lib/phoenix-gpu && cat > /usr/local/lib/phoenix-gpu/gpu-check-fake && chmod 755 /usr/local/lib/phoenix-gpu/gpu-check-fake; }' \
			<"$FAKE_GPU_ROOT/bin/gpu-check"
	fi
	[[ $JSON == 1 ]] && printf '{"changed":%s,"exit_code":0,"steps":[{"name":"config","status":"%s","detail":"fake"}],"counters":{"container_execs":%d,"host_commands":0,"config_writes":%d,"restarts":%d}}\n' \
		"$changed" "$([[ $changed == true ]] && echo changed || echo ok)" "$execs" "$writes" "$restarts"
	;;
check)
	# Drift: exit 10 when the config's lines are not the ones apply writes (probing once, as
	# the tool does for a running container).
	parse "$@"
	lxc-attach -n "$NAME" -P "$LXCPATH" -- /bin/true 2>/dev/null || true
	[[ $(ours) == "$(wanted)" ]] || exit 10
	;;
verify)
	parse "$@"
	want=$(for m in $(minors); do echo "${UUIDS[m]}, $DRIVER"; done | sort)
	got=$(lxc-attach -n "$NAME" -P "$LXCPATH" --clear-env -- /usr/bin/nvidia-smi --query-gpu=uuid,driver_version --format=csv,noheader 2>&1 | sort) || true
	[[ $JSON == 1 ]] && printf '{"ok":%s,"seen":"%s"}\n' "$([[ $got == "$want" ]] && echo true || echo false)" "$(echo "$got" | tr '\n' ';')"
	[[ $got == "$want" || $FAKE_BREAK == verify ]] || exit 7
	# Every passed node opens (the device cgroup refuses with EPERM).
	[[ $FAKE_BREAK == uvm || $FAKE_BREAK == verify ]] && exit 0
	for n in /dev/nvidiactl /dev/nvidia-uvm $(for m in $(minors); do echo "/dev/nvidia$m"; done); do
		out=$(lxc-attach -n "$NAME" -P "$LXCPATH" --clear-env -- /bin/sh -c "cat $n 2>&1 >/dev/null" || true)
		if grep -q 'not permitted' <<<"$out"; then
			echo "verification failed in container $NAME: $n cannot be opened in the container (EPERM: the device cgroup refuses it)" >&2
			exit 7
		fi
	done
	;;
remove)
	parse "$@"
	without_ours >"$CONF.new"
	mv "$CONF.new" "$CONF"
	restarted=skipped
	if running; then
		restart
		restarted=changed
		lxc-wait -n "$NAME" -P "$LXCPATH" -s RUNNING -t 10
		[[ $FAKE_BREAK == debris ]] || lxc-attach -n "$NAME" -P "$LXCPATH" --clear-env -- /bin/sh -c \
			'rm -rf /usr/local/lib/phoenix-gpu; if [ -f /usr/bin/nvidia-smi ] && [ ! -s /usr/bin/nvidia-smi ]; then rm -f /usr/bin/nvidia-smi; fi'
	fi
	[[ $JSON == 1 ]] && printf '{"changed":true,"steps":[{"name":"remove","status":"changed","detail":"fake"},{"name":"restart","status":"%s","detail":"fake"}]}\n' "$restarted"
	;;
--version) echo "fake-phoenix-gpu (test double of scripts/e2e)" ;;
*) die "usage: inventory|apply|check|verify|remove" 2 ;;
esac
exit 0 # every failure above exits with its own code
