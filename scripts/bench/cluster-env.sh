#!/bin/bash
# Benchmark environment: a Proxmox VE cluster of NODES nodes simulated on this machine, with
# CONTAINERS containers spread over them (issue 21's setup). Root only (a private sshd, bind
# mounts).
#
#   cluster-env.sh create DIR NODES CONTAINERS build it and start its sshd
#   cluster-env.sh sessions DIR                SSH sessions and connections sshd served so far
#   cluster-env.sh reset DIR                   every config back to the example, no backups
#   cluster-env.sh delegate DIR BIN            the other design, for comparison: BIN (absolute) run
#                                              on each node (one ssh each, all at once), each
#                                              checking its own containers, and here for pve1's
#   cluster-env.sh destroy DIR                 stop sshd, unmount, remove DIR
#
# - DIR/pve1 is this node (`--root`), DIR/pve2.. the other nodes (`--node-root`); each a copy
#   of the captured 2 x H200 host (testdata/hosts/h200x2, /dev nodes as stand-in files).
# - DIR/pve1/etc/pve is the cluster file system as this node sees it: `.vmlist` places the
#   containers, `nodes/pveK/lxc/ID.conf` holds every node's configs (each a copy of the
#   example CT 101: stale NVIDIA lines, a snapshot), `lxc` is the link to `nodes/pve1/lxc`.
#   Each other node sees its own directory at its `/etc/pve/lxc` (a bind mount of
#   DIR/pve1/etc/pve/nodes/pveK/lxc), as pmxcfs shows it: one file, two views.
# - Container K*1000+i (i = 1..n, n the node's share of CONTAINERS, the first nodes taking one
#   more when they do not divide evenly) lives on pveK; the orchestrator config DIR/pc.json
#   gives them GPUs 0, 1, 0,1 in turn.
# - DIR/pct is a STAND-IN for `pct status` (tests only, NOT pct): every container is stopped,
#   as each node's stand-in /proc/net/unix says too (no LXC command socket listed).
# - One private sshd on 127.0.0.1 serves every node (OpenSSH's default MaxSessions 10),
#   logging at DEBUG1 so that every session it opens is counted (`sessions`). Its sessions run
#   with SHLVL=1, so the login shell (bash, started by sshd) counts itself nested and does not
#   source root's ~/.bashrc: a Proxmox node's stock one costs nothing, this machine's runs
#   `pyenv init` (~0.15 s of CPU, 0.3-0.5 s under load, in every session).
# - DIR/flags: the phoenix-gpu flags that reach this cluster, one per line.
#
#   B=target/release/phoenix-gpu
#   mapfile -t F < DIR/flags; $B "${F[@]}" check --all --json
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
fixture=$repo/testdata/hosts/h200x2
example=$repo/examples/h200x2/etc/pve/lxc/101.conf
cmd=${1:?usage: cluster-env.sh create|sessions|reset|delegate|destroy DIR [NODES CONTAINERS | BIN]}
dir=${2:?DIR}

host_tree() {
    local t=$1
    mkdir -p "$t"
    cp -r "$fixture/root/." "$t/"
    grep -v '^#' "$fixture/dev.stat" | while read -r p kind _; do
        if [ "$kind" = dir ]; then mkdir -p "$t$p"
        else mkdir -p "$(dirname "$t$p")"; : > "$t$p"; fi
    done
    # A node's unix sockets with no LXC command socket: every container is stopped.
    mkdir -p "$t/proc/net"
    printf '%s\n' 'Num       RefCount Protocol Flags    Type St Inode Path' \
        '0000000000000000: 00000003 00000000 00000000 0001 03 20117 /run/systemd/journal/stdout' \
        '0000000000000000: 00000002 00000000 00010000 0001 01 20893 /run/pve-cluster.sock' \
        > "$t/proc/net/unix"
}

case $cmd in
create)
    nodes=${3:?NODES}; total=${4:?CONTAINERS}
    [ ! -e "$dir" ] || { echo "$dir exists" >&2; exit 1; }
    mkdir -p "$dir"
    pve=$dir/pve1/etc/pve
    json='{"lxc_configs": {'
    vmlist='{"version": 1, "ids": {'
    first=1
    for k in $(seq 1 "$nodes"); do
        host_tree "$dir/pve$k"
        mkdir -p "$dir/pve$k/etc"; echo "pve$k" > "$dir/pve$k/etc/hostname"
        mkdir -p "$pve/nodes/pve$k/lxc"
        per=$((total / nodes + (k <= total % nodes ? 1 : 0)))
        for i in $(seq 1 "$per"); do
            id=$((k * 1000 + i))
            sed "s/^hostname: .*/hostname: ct$id/" "$example" > "$pve/nodes/pve$k/lxc/$id.conf"
            case $((i % 3)) in 1) gpus=0;; 2) gpus=1;; 0) gpus=0,1;; esac
            [ $first = 1 ] || { json="$json, "; vmlist="$vmlist, "; }
            first=0
            json="$json\"$id\": {\"gpu_assignment\": \"$gpus\"}"
            vmlist="$vmlist\"$id\": {\"node\": \"pve$k\", \"type\": \"lxc\", \"version\": 1}"
        done
        if [ "$k" -gt 1 ]; then
            mkdir -p "$dir/pve$k/etc/pve/lxc"
            mount --bind "$pve/nodes/pve$k/lxc" "$dir/pve$k/etc/pve/lxc"
        fi
    done
    ln -s nodes/pve1/lxc "$pve/lxc"
    echo "$vmlist}}" > "$pve/.vmlist"
    echo "$json}}" > "$dir/pc.json"
    cat > "$dir/pct" <<'EOF'
#!/bin/sh
# STAND-IN for Proxmox VE's `pct status CTID` (benchmarks only, NOT pct): the real one prints
# "status: running" or "status: stopped" (and takes ~0.5 s); every container here is stopped.
[ "$#" -eq 2 ] && [ "$1" = status ] || { echo "pct stand-in: unexpected argv: $*" >&2; exit 64; }
echo "status: stopped"
EOF
    chmod 755 "$dir/pct"
    {
        echo --root; echo "$dir/pve1"
        echo --target; echo pve
        echo --pct-program; echo "$dir/pct"
        echo --phoenix-config; echo "$dir/pc.json"
        echo --log-file; echo "$dir/phoenix-gpu.log"
    } > "$dir/flags"
    if [ "$nodes" -gt 1 ]; then
        s=$dir/sshd
        mkdir -p "$s" /run/sshd
        ssh-keygen -q -t ed25519 -N '' -C pgb -f "$s/host_ed25519"
        ssh-keygen -q -t ed25519 -N '' -C pgb -f "$s/client_ed25519"
        cp "$s/client_ed25519.pub" "$s/authorized_keys"
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        cat > "$s/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $s/host_ed25519
PidFile $s/sshd.pid
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $s/authorized_keys
StrictModes no
UsePAM no
MaxStartups 50
LogLevel DEBUG1
SetEnv SHLVL=1
EOF
        echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$s/host_ed25519.pub")" > "$s/known_hosts"
        printf 'Host 127.0.0.1\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  BatchMode yes\n' \
            "$s/client_ed25519" "$s/known_hosts" > "$dir/ssh_config"
        /usr/sbin/sshd -f "$s/sshd_config" -E "$s/sshd.log"
        { echo --ssh-config; echo "$dir/ssh_config"; } >> "$dir/flags"
        for k in $(seq 2 "$nodes"); do
            { echo --node; echo "pve$k=ssh://root@127.0.0.1:$port"
              echo --node-root; echo "pve$k=$dir/pve$k"; } >> "$dir/flags"
        done
    fi
    echo "$nodes node(s), $total containers under $dir"
    ;;
sessions)
    log=$dir/sshd/sshd.log
    [ -f "$log" ] || { echo "sessions=0 connections=0"; exit 0; }
    echo "sessions=$(grep -c 'server_input_channel_open: ctype session' "$log" || true)" \
        "connections=$(grep -c 'Accepted publickey' "$log" || true)"
    ;;
reset)
    for c in "$dir"/pve1/etc/pve/nodes/*/lxc/*.conf; do
        id=$(basename "$c" .conf)
        sed "s/^hostname: .*/hostname: ct$id/" "$example" > "$c"
    done
    rm -rf "$dir"/pve*/var/lib/phoenix-gpu
    ;;
delegate)
    bin=${3:?BIN}
    mapfile -t flags < "$dir/flags"
    port=$(grep -o '127.0.0.1:[0-9]*' "$dir/flags" | head -1 | cut -d: -f2)
    common=(--target pve --pct-program "$dir/pct" --phoenix-config "$dir/pc.json"
            --log-file "$dir/delegate.log" -q check --all --json)
    pids=()
    for t in "$dir"/pve[0-9]*; do
        k=${t##*/pve}
        [ "$k" = 1 ] && continue
        # The node's own tree has no guest list: every config under its /etc/pve/lxc is its.
        ssh -F "$dir/ssh_config" -p "$port" root@127.0.0.1 \
            "$bin" --root "$t" "${common[@]}" > "$dir/delegate.pve$k.json" &
        pids+=($!)
    done
    ids=()
    for c in "$dir"/pve1/etc/pve/nodes/pve1/lxc/*.conf; do ids+=("$(basename "$c" .conf)"); done
    "$bin" "${flags[@]}" -q check "${ids[@]}" --json > "$dir/delegate.pve1.json" || true
    for p in "${pids[@]}"; do wait "$p" || true; done
    ;;
destroy)
    if [ -f "$dir/sshd/sshd.pid" ]; then kill "$(cat "$dir/sshd/sshd.pid")" 2>/dev/null || true; fi
    for m in "$dir"/pve*/etc/pve/lxc; do
        mountpoint -q "$m" && umount "$m"
    done
    rm -rf "$dir"
    ;;
*) echo "usage: cluster-env.sh create|sessions|reset|delegate|destroy DIR [NODES CONTAINERS | BIN]" >&2; exit 2 ;;
esac
