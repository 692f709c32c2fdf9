#!/bin/bash
# Benchmark environment for the converged-run floor (docs/BENCHMARKS.md (a)): a fake 2-GPU host
# under DIR/root (the captured H200 host of testdata/hosts/h200x2) whose /dev/nvidia* are real
# character devices made with mknod (no driver behind them: opening one the device cgroup lets
# through gives ENXIO), the stand-in driver userspace of crates/gpu-core/tests/support
# (standin-driver.c: NVML and the CUDA driver API over those nodes, built as
# libnvidia-ml.so.580.159.04 and libcuda.so.580.159.04; standin-nvidia-smi.sh) in
# DIR/root/usr/local/nvidia, and N running Debian 12 minbase containers (privileged, plain
# LXC, DIR/root/var/lib/lxc, named fl1..flN) with the tool's host-libs passthrough of GPU 0
# applied (--bind-under-root), so the next apply is a converged run.
#
#   floor-env.sh create DIR [N] [unprivileged]   build (root; lxc, debootstrap, gcc); N default 1
#   floor-env.sh destroy DIR
#
# The rootfs is the Debian minbase the container tests cache ($PHOENIX_TEST_CACHE, default
# /var/tmp/phoenix-test-cache/debian-bookworm-minbase; built with debootstrap when missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
support=$repo/crates/gpu-core/tests/support
fixture=$repo/testdata/hosts/h200x2
cmd=${1:?usage: floor-env.sh create|destroy DIR [N]}
dir=${2:?DIR}
lxcpath=$dir/root/var/lib/lxc
ver=580.159.04
gpus="0:GPU-8ec68ad8-ed9b-8b4b-3e1f-0a019c95b836,1:GPU-7fc3e24c-6572-362c-3b22-0d1167fae655"
B=${PHOENIX_GPU:-$repo/target/release/phoenix-gpu}

case $cmd in
create)
    n=${3:-1}
    unpriv=${4:-}
    cache=${PHOENIX_TEST_CACHE:-/var/tmp/phoenix-test-cache}/debian-bookworm-minbase
    [ -e "$cache/.phoenix-complete" ] || sh "$support/build-rootfs.sh" "$cache"
    mkdir -p "$dir/root" "$lxcpath"
    cp -r "$fixture/root/." "$dir/root/"
    grep -v '^#' "$fixture/dev.stat" | while read -r p kind major minor mode _; do
        case $kind in
            dir) mkdir -p "$dir/root$p" ;;
            char) mkdir -p "$(dirname "$dir/root$p")"; rm -f "$dir/root$p"
                  mknod -m "$mode" "$dir/root$p" c "$major" "$minor" ;;
        esac
    done
    # The cgroup layout LXC on this machine honours.
    mkdir -p "$dir/root/proc/self"
    cp /proc/self/mounts "$dir/root/proc/self/mounts"
    cp /proc/self/mounts "$dir/root/proc/mounts"
    lib=$dir/root/usr/local/nvidia/lib64; bin=$dir/root/usr/local/nvidia/bin
    mkdir -p "$lib" "$bin"
    for so in libcuda libnvidia-ml; do
        gcc -shared -fPIC -O2 "-Wl,-soname,$so.so.1" "-DSTANDIN_VERSION=\"$ver\"" \
            "-DSTANDIN_GPUS=\"$gpus\"" -o "$lib/$so.so.$ver" "$support/standin-driver.c"
    done
    sed -e "s/@VERSION@/$ver/" "$support/standin-nvidia-smi.sh" |
        awk -v g="$gpus" '/^@GPUS@$/ { n = split(g, a, ","); for (i = 1; i <= n; i++) { split(a[i], p, ":"); print p[1], p[2] } next } { print }' \
        > "$bin/nvidia-smi"
    chmod 755 "$bin/nvidia-smi"
    for i in $(seq 1 "$n"); do
        name=fl$i
        mkdir -p "$lxcpath/$name"
        cp -a "$cache" "$lxcpath/$name/rootfs"
        {
            echo "lxc.include = /usr/share/lxc/config/common.conf"
            echo "lxc.arch = linux64"
            echo "lxc.uts.name = $name"
            echo "lxc.rootfs.path = dir:$lxcpath/$name/rootfs"
            echo "lxc.net.0.type = none"
            echo "lxc.apparmor.profile = unconfined"
            echo "lxc.init.cmd = /sbin/phoenix-init"
            if [ -n "$unpriv" ]; then
                echo "lxc.idmap = u 0 100000 65536"
                echo "lxc.idmap = g 0 100000 65536"
            fi
        } > "$lxcpath/$name/config"
        if [ -n "$unpriv" ]; then
            chown -R 100000:100000 "$lxcpath/$name/rootfs"
        fi
        lxc-start -n "$name" -P "$lxcpath"
        lxc-wait -n "$name" -P "$lxcpath" -s RUNNING -t 30
        "$B" -q --root "$dir/root" --bind-under-root --target lxc --lxcpath /var/lib/lxc \
            --log-file "$dir/log" apply "$name" --gpus 0 --strategy host-libs --json > "$dir/$name.first.json"
    done
    echo "ready: $n container(s) in $lxcpath"
    ;;
destroy)
    for c in "$lxcpath"/*/; do
        [ -d "$c" ] || continue
        name=$(basename "$c")
        lxc-stop -k -n "$name" -P "$lxcpath" 2>/dev/null || true
        lxc-destroy -n "$name" -P "$lxcpath" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
*) echo "usage: floor-env.sh create|destroy DIR [N]" >&2; exit 2 ;;
esac
