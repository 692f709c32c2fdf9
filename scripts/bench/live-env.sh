#!/bin/bash
# Benchmark environment of a live GPU change (docs/BENCHMARKS.md (f)): a fake 2-GPU host under
# DIR/root (the captured H200 host of testdata/hosts/h200x2, its /dev nodes made with mknod with
# the captured numbers and modes, this machine's /proc/self/mounts so the tool writes the cgroup
# key LXC honours here) and one real busybox LXC container `live` in DIR/root/var/lib/lxc,
# started, with a default-deny device cgroup (LXC's common.conf list). The tool runs with
# `--root DIR/root --bind-under-root`, so the config's mount entries bind the tree's nodes; no
# driver holds them, so an allowed node opens with ENXIO and a refused one with EPERM.
#
#   live-env.sh create DIR [unprivileged]   build it (root; lxc, lxc-templates, busybox-static;
#                                           unprivileged: root's subordinate ids 100000..)
#   live-env.sh destroy DIR                 stop and destroy the container, remove DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
fixture=$repo/testdata/hosts/h200x2
cmd=${1:?usage: live-env.sh create|destroy DIR [unprivileged]}
dir=${2:?DIR}
lxcpath=$dir/root/var/lib/lxc

case $cmd in
create)
    mkdir -p "$dir/root" "$lxcpath"
    chmod 755 "$dir" "$dir/root"
    cp -r "$fixture/root/." "$dir/root/"
    grep -v '^#' "$fixture/dev.stat" | while read -r p kind major minor mode _; do
        if [ "$kind" = dir ]; then
            mkdir -p "$dir/root$p"
        else
            mkdir -p "$(dirname "$dir/root$p")"
            rm -f "$dir/root$p"
            mknod -m "$mode" "$dir/root$p" c "$major" "$minor"
        fi
    done
    mkdir -p "$dir/root/proc/self"
    cp /proc/self/mounts "$dir/root/proc/self/mounts"
    extra=()
    if [ "${3:-}" = unprivileged ]; then
        printf '%s\n' 'lxc.idmap = u 0 100000 65536' 'lxc.idmap = g 0 100000 65536' >"$dir/idmap.conf"
        extra=(-f "$dir/idmap.conf")
    fi
    lxc-create -q -t busybox -n live -P "$lxcpath" "${extra[@]}" >/dev/null
    cfg=$lxcpath/live/config
    grep -vE '^\s*lxc\.net\.|^\s*lxc\.apparmor\.profile' "$cfg" >"$cfg.tmp"
    {
        cat "$cfg.tmp"
        echo 'lxc.net.0.type = empty'
        echo 'lxc.apparmor.profile = unconfined'
        for v in cgroup cgroup2; do
            echo "lxc.$v.devices.deny = a"
            for r in 'c *:* m' 'b *:* m' 'c 1:3 rwm' 'c 1:5 rwm' 'c 1:7 rwm' 'c 1:8 rwm' 'c 1:9 rwm' \
                'c 5:0 rwm' 'c 5:1 rwm' 'c 5:2 rwm' 'c 136:* rwm' 'c 10:229 rwm'; do
                echo "lxc.$v.devices.allow = $r"
            done
        done
    } >"$cfg"
    rm -f "$cfg.tmp"
    lxc-start -n live -P "$lxcpath" -d
    lxc-wait -n live -P "$lxcpath" -s RUNNING -t 30
    echo "container live running under $lxcpath (init pid $(lxc-info -n live -P "$lxcpath" -pH))"
    ;;
destroy)
    lxc-stop -n live -P "$lxcpath" -k 2>/dev/null || true
    lxc-destroy -n live -P "$lxcpath" -f >/dev/null 2>&1 || true
    rm -rf --one-file-system "$dir"
    ;;
*)
    echo "usage: live-env.sh create|destroy DIR [unprivileged]" >&2
    exit 2
    ;;
esac
