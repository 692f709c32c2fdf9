#!/bin/bash
# A captured host (testdata/hosts/h200x2) under DIR with N Proxmox container
# configs, /etc/pve/lxc/1000.conf.., each the example CT 101 (stale NVIDIA lines, a snapshot
# section) with its own hostname: the input of the peak-memory benchmark of check --all.
#
#   many-configs.sh DIR N
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
fixture=$repo/testdata/hosts/h200x2
dir=${1:?DIR}; n=${2:?N}
mkdir -p "$dir"
cp -r "$fixture/root/." "$dir/"
grep -v '^#' "$fixture/dev.stat" | while read -r p kind _; do
    if [ "$kind" = dir ]; then mkdir -p "$dir$p"
    else mkdir -p "$(dirname "$dir$p")"; : > "$dir$p"; fi
done
mkdir -p "$dir/etc/pve/lxc"
example=$repo/examples/h200x2/etc/pve/lxc/101.conf
for i in $(seq 1000 $((999 + n))); do
    sed "s/^hostname: .*/hostname: ct$i/" "$example" > "$dir/etc/pve/lxc/$i.conf"
done
echo "$n configs, $(du -sk "$dir/etc/pve/lxc" | cut -f1) KiB, under $dir/etc/pve/lxc"
