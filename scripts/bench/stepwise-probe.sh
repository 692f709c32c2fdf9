#!/bin/bash
# The questions of phoenix-gpu's one container probe (crates/gpu-core/src/container/probe.rs),
# asked the step-by-step way: one lxc-attach per question, as a shell script driving a
# container usually does. Used by docs/BENCHMARKS.md (a) to compare with the tool's converged
# re-run, which asks them all in one exec. It prints the same key=value answers.
#
#   stepwise-probe.sh NAME LXCPATH
set -u
name=${1:?NAME}; lxcpath=${2:?LXCPATH}
count=$(mktemp); trap 'rm -f "$count"' EXIT
in_ct() { echo >> "$count"; lxc-attach -n "$name" -P "$lxcpath" --clear-env \
    --set-var PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --set-var LC_ALL=C -- "$@"; }

# The state, on the host (the tool asks it too, outside the container).
lxc-info -n "$name" -P "$lxcpath" -sH >/dev/null
echo probe=1
# 1. the distribution
in_ct cat /etc/os-release 2>/dev/null | sed -n 's/^ID=/os_id=/p; s/^VERSION_ID=/os_version_id=/p; s/^VERSION_CODENAME=/os_codename=/p' | tr -d '"'
# 2. the architecture
echo "arch=$(in_ct uname -m)"
# 3-4. apt-get and dpkg
in_ct sh -c 'command -v apt-get' >/dev/null 2>&1 && echo apt_get=1
in_ct sh -c 'command -v dpkg' >/dev/null 2>&1 && echo dpkg=1
# 5. free space on /
echo "disk_free_kb=$(in_ct df -Pk / | awk 'NR==2 {print $4}')"
# 6-7. nvidia-smi and its version
smi=$(in_ct sh -c 'command -v nvidia-smi' 2>/dev/null)
if [ -n "$smi" ]; then
    echo "smi_path=$smi"
    in_ct nvidia-smi --version 2>/dev/null | sed -n 's/^NVIDIA-SMI version *:/smi_version=/p'
fi
# 8. the userspace libraries
# shellcheck disable=SC2016 # the container's sh expands them
in_ct sh -c 'for d in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /usr/lib /lib64 /lib /usr/local/nvidia/lib64 /usr/local/lib; do ls "$d"/libnvidia-ml.so.* "$d"/libcuda.so.* 2>/dev/null; done' | sed 's/^/lib=/'
# 9. what ldconfig knows
in_ct sh -c 'command -v ldconfig >/dev/null && ldconfig -p' 2>/dev/null | awk '$1=="libcuda.so.1"||$1=="libnvidia-ml.so.1" {print "ldconfig=" $1 " " $NF}'
# 10-11. CUDA
v=$(in_ct sed -n 's/.*"version"[^"]*"\([^"]*\)".*/\1/p' /usr/local/cuda/version.json 2>/dev/null | sed -n 1p)
[ -n "$v" ] && echo "cuda_json=$v"
v=$(in_ct /usr/local/cuda/bin/nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p')
[ -n "$v" ] && echo "cuda_nvcc=$v"
# 12. installed CUDA packages
in_ct sh -c "command -v dpkg-query >/dev/null && dpkg-query -W -f='\${db:Status-Abbrev}|\${Package}\n' 'cuda-toolkit-*'" 2>/dev/null | sed 's/^/pkg=/'
# 13. the NVIDIA nodes, then each one's numbers
nodes=$(in_ct sh -c 'ls -d /dev/nvidia* /dev/nvidia-caps/* 2>/dev/null')
for f in $nodes; do
    echo "dev=$f $(in_ct stat -c '%F %t:%T' "$f" | sed 's/character special file/c/')"
done
# 14. nvidia-smi's GPUs
if [ -n "$smi" ]; then
    in_ct nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader 2>&1 | sed 's/^/smi=/'
fi
echo "execs=$(wc -l < "$count")" >&2
