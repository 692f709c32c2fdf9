#!/bin/bash
# Benchmark environment: a fake 2-GPU host under DIR/root (the captured H200 host of
# testdata/hosts/h200x2, its /dev nodes as empty stand-in files, a cgroup-v1 devices
# controller like this machine's) and N real LXC containers in DIR/root/var/lib/lxc, named
# 9001.., started, with the orchestrator config DIR/pc.json assigning GPUs 0, 1, 0,1 in turn.
# Each container gets stand-in NVIDIA nodes in its /dev from an lxc.hook.autodev script (this
# machine has no GPU, so the tool's bind mounts of /dev/nvidia* have no source); the tool's
# verification of strategy none then passes. Each config is saved as config.orig so that a
# benchmark can put the containers back to "no GPU yet" before each run (reset).
#
# The containers are busybox (lxc-create -t busybox; busybox init, whose halt is mostly three
# 1 s sleeps), or with "systemd" Debian 12 with systemd as init: a debootstrapped minbase with
# systemd-sysv and dbus, built once into $PHOENIX_TEST_CACHE/debian-bookworm-systemd (default
# /var/tmp/phoenix-test-cache; marked complete as the tests' minbase cache is) and shared
# read-only by every container as the lower layer of an overlay rootfs, each container's
# changes in its own DIR/root/var/lib/lxc/NAME/delta0. All containers are privileged.
#
#   fleet-env.sh create DIR N [busybox|systemd]
#                                 build it (root; needs lxc, and lxc-templates and
#                                 busybox-static, or debootstrap)
#   fleet-env.sh reset DIR        configs back to config.orig, the stand-in userspace of
#                                 standin-runfile.sh and the tool's cache removed
#                                 (containers keep running); with systemd containers, then
#                                 waits until each one's systemd has finished booting
#   fleet-env.sh destroy DIR      stop and destroy the containers, remove DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
fixture=$repo/testdata/hosts/h200x2
usage="usage: fleet-env.sh create DIR N [busybox|systemd] | reset DIR | destroy DIR"
cmd=${1:?$usage}
dir=${2:?DIR}
lxcpath=$dir/root/var/lib/lxc
systemd_cache=${PHOENIX_TEST_CACHE:-/var/tmp/phoenix-test-cache}/debian-bookworm-systemd

names() {
    local d
    for d in "$lxcpath"/*/; do
        d=${d%/}; d=${d##*/}
        case $d in *[!0-9]* | '') ;; *) echo "$d" ;; esac
    done
}

# Debian 12 minbase with systemd as init (and dbus, which logind needs), built next to $1 and
# renamed when complete, as crates/gpu-core/tests/support/build-rootfs.sh builds the minbase.
build_systemd_rootfs() {
    local dest=$1 tmp mirror=${PHOENIX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    tmp=$dest.building.$$
    rm -rf "$tmp"
    mkdir -p "$(dirname "$dest")"
    if ! debootstrap --variant=minbase --include=systemd-sysv,dbus bookworm "$tmp" "$mirror" \
        > "$tmp.log" 2>&1; then
        tail -n 30 "$tmp.log" >&2
        rm -rf "$tmp" "$tmp.log"
        return 1
    fi
    rm -f "$tmp.log"
    # What the Debian LXC template does for systemd: boot to multi-user, no udev.
    ln -sf /lib/systemd/system/multi-user.target "$tmp/etc/systemd/system/default.target"
    ln -sf /dev/null "$tmp/etc/systemd/system/systemd-udevd.service"
    touch "$tmp/.phoenix-complete"
    rm -rf "$dest"
    mv "$tmp" "$dest"
}

# The config of systemd container $1: the Debian LXC defaults, its overlay rootfs.
systemd_config() {
    local name=$1
    echo "lxc.include = /usr/share/lxc/config/debian.common.conf"
    echo "lxc.arch = linux64"
    echo "lxc.uts.name = $name"
    echo "lxc.rootfs.path = overlay:$systemd_cache:$lxcpath/$name/delta0"
}

# Waits until the systemd of every running container has finished booting (running or
# degraded), at most 120 s in all. Right after the start, systemctl cannot reach systemd yet
# and says nothing or "offline": asked again.
wait_booted() {
    local name state deadline=$((SECONDS + 120))
    for name in $(names); do
        while :; do
            state=$(lxc-attach -n "$name" -P "$lxcpath" -- \
                timeout 60 systemctl is-system-running --wait 2>/dev/null) || true
            case $state in running|degraded) break ;; esac
            if [ "$SECONDS" -ge "$deadline" ]; then
                echo "fleet-env.sh: $name: systemd is '$state', not running or degraded" >&2
                return 1
            fi
            sleep 0.2
        done
    done
}

case $cmd in
create)
    n=${3:?N}
    init=${4:-busybox}
    case $init in
        busybox) ;;
        systemd) [ -e "$systemd_cache/.phoenix-complete" ] || build_systemd_rootfs "$systemd_cache" ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
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
        cfg=$lxcpath/$name/config
        if [ "$init" = busybox ]; then
            lxc-create -q -t busybox -n "$name" -P "$lxcpath" >/dev/null
        else
            mkdir -p "$lxcpath/$name/rootfs" "$lxcpath/$name/delta0"
            systemd_config "$name" > "$cfg"
        fi
        grep -vE '^\s*lxc\.net\.|^\s*lxc\.apparmor\.profile' "$cfg" > "$cfg.tmp"
        hook=$dir/hooks/$name.sh
        {
            cat <<'HOOK'
#!/bin/sh
# Benchmark stand-in for the NVIDIA nodes the bind mounts give a container on a GPU host.
set -e; d="$LXC_ROOTFS_MOUNT/dev"
node() { rm -f "$d/$1"; mknod -m 666 "$d/$1" c "$2" "$3"; }
HOOK
            for m in $minors; do echo "node nvidia$m 195 $m"; done
            echo 'node nvidiactl 195 255'
            echo 'node nvidia-uvm 238 0'
            echo 'node nvidia-uvm-tools 238 1'
        } > "$hook"
        chmod 755 "$hook"
        { cat "$cfg.tmp"; echo 'lxc.net.0.type = empty'; echo 'lxc.apparmor.profile = unconfined'
          echo "lxc.hook.autodev = $hook"; } > "$cfg"
        rm -f "$cfg.tmp"
        cp "$cfg" "$cfg.orig"
        if [ "$init" = busybox ]; then
            cat > "$lxcpath/$name/rootfs/sbin/ldconfig" <<'LDCONFIG'
#!/bin/sh
# Benchmark stand-in for glibc ldconfig (busybox has none): lists no library.
[ "${1:-}" = -p ] && echo "0 libs found in cache /etc/ld.so.cache"
exit 0
LDCONFIG
            chmod 755 "$lxcpath/$name/rootfs/sbin/ldconfig"
        fi
        lxc-start -n "$name" -P "$lxcpath" -d
        lxc-wait -n "$name" -P "$lxcpath" -s RUNNING -t 30
        [ "$i" = 1 ] || json="$json, "
        json="$json\"$name\": {\"gpu_assignment\": \"$gpus\"}"
    done
    echo "$json}}" > "$dir/pc.json"
    [ "$init" = busybox ] || wait_booted
    echo "created $n $init containers under $lxcpath"
    ;;
reset)
    systemd=
    for name in $(names); do
        cp "$lxcpath/$name/config.orig" "$lxcpath/$name/config"
        # A systemd container's own files are in its overlay's upper layer.
        for r in rootfs delta0; do
            rm -f "$lxcpath/$name/$r/usr/local/bin/nvidia-smi" "$lxcpath/$name/$r"/usr/local/lib/libnvidia-ml.so.*
        done
        [ -d "$lxcpath/$name/delta0" ] && systemd=1
    done
    rm -rf "$dir/root/var/cache/phoenix-gpu" "$dir/root/var/lib/phoenix-gpu"
    [ -z "$systemd" ] || wait_booted
    ;;
destroy)
    for name in $(names); do
        lxc-stop -k -n "$name" -P "$lxcpath" 2>/dev/null || true
        lxc-destroy -f -n "$name" -P "$lxcpath" >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
    ;;
*) echo "$usage" >&2; exit 2 ;;
esac
