#!/bin/bash
# Benchmark environment: a fake 2-GPU host under DIR/root (the captured H200 host of
# testdata/hosts/h200x2, its /dev nodes as empty stand-in files, a cgroup-v1 devices
# controller like this machine's) and N real busybox LXC containers in DIR/root/var/lib/lxc,
# named 9001.., started, with the orchestrator config DIR/pc.json assigning GPUs 0, 1, 0,1 in
# turn. Each container gets stand-in NVIDIA nodes in its /dev from an lxc.hook.autodev script
# (this machine has no GPU, so the tool's bind mounts of /dev/nvidia* have no source); the
# tool's verification of strategy none then passes. Each config is saved as config.orig so that
# a benchmark can put the containers back to "no GPU yet" before each run (reset).
#
#   fleet-env.sh create DIR N     build it (root; needs lxc, lxc-templates, busybox-static)
#   fleet-env.sh reset DIR        configs back to config.orig, the stand-in userspace of
#                                 standin-runfile.sh and the tool's cache removed
#                                 (containers keep running)
#   fleet-env.sh destroy DIR      stop and destroy the containers, remove DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
fixture=$repo/testdata/hosts/h200x2
cmd=${1:?usage: fleet-env.sh create|reset|destroy DIR [N]}
dir=${2:?DIR}
lxcpath=$dir/root/var/lib/lxc

names() { ls "$lxcpath" 2>/dev/null | grep -E '^[0-9]+$' || true; }

case $cmd in
create)
    n=${3:?N}
    mkdir -p "$dir/root" "$dir/hooks" "$lxcpath"
    cp -r "$fixture/root/." "$dir/root/"
    grep -v '^#' "$fixture/dev.stat" | while read -r p kind _; do
        if [ "$kind" = dir ]; then mkdir -p "$dir/root$p"
        else mkdir -p "$(dirname "$dir/root$p")"; : > "$dir/root$p"; fi
    done
    mkdir -p "$dir/root/proc/self"
    printf '%s\n' \
        'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0' \
        'cgroup /sys/fs/cgroup/devices cgroup rw,nosuid,nodev,noexec,relatime,devices 0 0' \
        > "$dir/root/proc/self/mounts"
    json='{"nvidia_driver_version": "580.159.04", "lxc_configs": {'
    for i in $(seq 1 "$n"); do
        name=$((9000 + i))
        case $((i % 3)) in 1) gpus=0; minors=0;; 2) gpus=1; minors=1;; 0) gpus=0,1; minors="0 1";; esac
        lxc-create -q -t busybox -n "$name" -P "$lxcpath" >/dev/null
        cfg=$lxcpath/$name/config
        grep -vE '^\s*lxc\.net\.|^\s*lxc\.apparmor\.profile' "$cfg" > "$cfg.tmp"
        hook=$dir/hooks/$name.sh
        {
            echo '#!/bin/sh'
            echo '# Benchmark stand-in for the NVIDIA nodes the bind mounts give a container on a GPU host.'
            echo 'set -e; d="$LXC_ROOTFS_MOUNT/dev"'
            for m in $minors; do echo "rm -f \"\$d/nvidia$m\"; mknod -m 666 \"\$d/nvidia$m\" c 195 $m"; done
            echo 'rm -f "$d/nvidiactl"; mknod -m 666 "$d/nvidiactl" c 195 255'
            echo 'rm -f "$d/nvidia-uvm"; mknod -m 666 "$d/nvidia-uvm" c 238 0'
            echo 'rm -f "$d/nvidia-uvm-tools"; mknod -m 666 "$d/nvidia-uvm-tools" c 238 1'
        } > "$hook"
        chmod 755 "$hook"
        { cat "$cfg.tmp"; echo 'lxc.net.0.type = empty'; echo 'lxc.apparmor.profile = unconfined'
          echo "lxc.hook.autodev = $hook"; } > "$cfg"
        rm -f "$cfg.tmp"
        cp "$cfg" "$cfg.orig"
        printf '%s\n' '#!/bin/sh' \
            '# Benchmark stand-in for glibc ldconfig (busybox has none): lists no library.' \
            '[ "${1:-}" = -p ] && echo "0 libs found in cache /etc/ld.so.cache"' 'exit 0' \
            > "$lxcpath/$name/rootfs/sbin/ldconfig"
        chmod 755 "$lxcpath/$name/rootfs/sbin/ldconfig"
        lxc-start -n "$name" -P "$lxcpath" -d
        lxc-wait -n "$name" -P "$lxcpath" -s RUNNING -t 30
        [ "$i" = 1 ] || json="$json, "
        json="$json\"$name\": {\"gpu_assignment\": \"$gpus\"}"
    done
    echo "$json}}" > "$dir/pc.json"
    echo "created $n containers under $lxcpath"
    ;;
reset)
    for name in $(names); do
        cp "$lxcpath/$name/config.orig" "$lxcpath/$name/config"
        rm -f "$lxcpath/$name/rootfs/usr/local/bin/nvidia-smi" "$lxcpath/$name"/rootfs/usr/local/lib/libnvidia-ml.so.*
    done
    rm -rf "$dir/root/var/cache/phoenix-gpu" "$dir/root/var/lib/phoenix-gpu"
    ;;
destroy)
    for name in $(names); do
        lxc-stop -k -n "$name" -P "$lxcpath" 2>/dev/null || true
        lxc-destroy -f -n "$name" -P "$lxcpath" >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
    ;;
*) echo "usage: fleet-env.sh create|reset|destroy DIR [N]" >&2; exit 2 ;;
esac
