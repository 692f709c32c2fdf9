#!/bin/bash
# The BASELINE of docs/BENCHMARKS.md (a): a converged run of the NVIDIA step the way the
# orchestrator's bash did it (docs/orchestrator-history.md), transcribed for plain LXC:
# the container's state with lxc-info, one `grep -Fxq` of the config per line it would add
# (the allow rules and mount entries of one GPU), then six lxc-attach: the node, `command -v
# nvidia-smi`, `nvidia-smi --version`, `nvcc --version`, `command -v nvtop`, and
# `nvidia-smi --query-gpu`. It changes nothing and prints what it found.
#
#   bash-step.sh NAME LXCPATH [UVM_MAJOR]
set -u
name=${1:?NAME}; lxcpath=${2:?LXCPATH}; uvm=${3:-238}
cfg=$lxcpath/$name/config
in_ct() { lxc-attach -n "$name" -P "$lxcpath" --clear-env \
    --set-var PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --set-var LC_ALL=C -- "$@"; }

lxc-info -n "$name" -P "$lxcpath" -sH | grep -q RUNNING || { echo "not running"; exit 1; }
key=lxc.cgroup2.devices.allow
grep -q '^cgroup /sys/fs/cgroup/devices ' /proc/self/mounts && key=lxc.cgroup.devices.allow
missing=0
for line in \
    "$key = c 195:0 rwm" "$key = c 195:255 rwm" "$key = c $uvm:* rwm" \
    "lxc.mount.entry = /dev/nvidia0 dev/nvidia0 none bind,optional,create=file" \
    "lxc.mount.entry = /dev/nvidiactl dev/nvidiactl none bind,optional,create=file" \
    "lxc.mount.entry = /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file" \
    "lxc.mount.entry = /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file"; do
    grep -Fxq "$line" "$cfg" || missing=$((missing + 1))
done
echo "config lines missing: $missing"
in_ct test -e /dev/nvidia0 && echo "node: ok"
in_ct sh -c 'command -v nvidia-smi' >/dev/null && echo "nvidia-smi: present"
in_ct nvidia-smi --version | head -n 1
in_ct /usr/local/cuda/bin/nvcc --version 2>/dev/null | tail -n 1
in_ct sh -c 'command -v nvtop' >/dev/null && echo "nvtop: present"
in_ct nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader
exit 0
