#!/bin/bash
# docs/BENCHMARKS.md (a): a converged run against its floor, paired in one hyperfine run, and
# the processes each command starts (execve calls under strace -f, on the host and in the
# container), in the environment of floor-env.sh (DIR, containers fl1..flN, host-libs, GPU 0).
#
#   converged.sh DIR [N]     N > 1 also times apply of fl1..flN with --jobs 8 and --jobs 1
#
# The floor is one lxc-attach that runs the userspace check a run needs anyway:
# `nvidia-smi --query-gpu` inside (here the stand-in nvidia-smi of crates/gpu-core/tests/support,
# a shell script; on a GPU host NVIDIA's binary), and a bare `lxc-attach -- true` beside it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${1:?DIR}; n=${2:-1}
B=${PHOENIX_GPU:-$repo/target/release/phoenix-gpu}
L=$dir/root/var/lib/lxc
R="--root $dir/root --bind-under-root --target lxc --lxcpath /var/lib/lxc --log-file $dir/log"
smi="lxc-attach -n fl1 -P $L --clear-env -- nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader"
bare="lxc-attach -n fl1 -P $L --clear-env -- true"
apply="$B -q $R apply fl1 --gpus 0 --strategy host-libs"
check="$B -q $R check fl1"
bashstep="$here/bash-step.sh fl1 $L"

echo "# $(date -u +%FT%TZ) $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
"$B" -q $R apply fl1 --gpus 0 --strategy host-libs --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("# converged apply: changed", j["changed"], "counters", j["counters"])'
# shellcheck disable=SC2086
"$B" -q $R check fl1 --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print("# check: drift", j.get("drift"))' || true

# Processes: every execve under strace -f (lxc-attach's children in the container included).
count() {
    local t
    t=$(mktemp)
    # shellcheck disable=SC2086
    strace -f -qq -e trace=execve -o "$t" $1 >/dev/null 2>&1 || true
    # Successful execve calls only (a PATH search also tries the folders where it is not).
    local all
    all=$(grep 'execve(' "$t" | grep -c '= 0$' || true)
    printf '%-45s processes (execve): %3s  %s\n' "$2" "$all" \
        "$(grep 'execve(' "$t" | grep '= 0$' | sed 's/.*execve("\([^"]*\)".*/\1/' | xargs -n1 basename | sort | uniq -c | tr -s ' \n' ' ')"
    rm -f "$t"
}
count "$smi" "floor: lxc-attach + nvidia-smi"
count "$bare" "floor: lxc-attach -- true"
count "$apply" "phoenix-gpu apply (converged)"
count "$check" "phoenix-gpu check"
count "$bashstep" "bash-step.sh (the orchestrator's way)"

hyperfine -N -w 3 -r "${RUNS:-30}" --export-markdown "$dir/converged.md" --export-json "$dir/converged.json" \
    -n floor "$smi" -n bare-attach "$bare" -n apply "$apply" -n check "$check" -n bash-step "$bashstep"
cat "$dir/converged.md"
cpu() { # the mean user+system CPU time of each command, from hyperfine's JSON
    python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]:
    print("%-12s cpu %.1f ms (user %.1f + system %.1f), wall min %.1f ms, median %.1f ms" % (r["command"], 1e3 * (r["user"] + r["system"]), 1e3 * r["user"], 1e3 * r["system"], 1e3 * r["min"], 1e3 * r["median"]))' "$1"
}
cpu "$dir/converged.json"

if [ "$n" -gt 1 ]; then
    names=$(seq -f 'fl%g' 1 "$n" | tr '\n' ' ')
    echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
    hyperfine -N -w 1 -r "${FLEET_RUNS:-10}" --export-markdown "$dir/fleet.md" --export-json "$dir/fleet.json" \
        -n "jobs 8" "$B -q $R apply $names --gpus 0 --strategy host-libs --jobs 8" \
        -n "jobs 1" "$B -q $R apply $names --gpus 0 --strategy host-libs --jobs 1" \
        -n "floor x$n" "$here/floor-n.sh $L $n"
    cat "$dir/fleet.md"
    cpu "$dir/fleet.json"
fi
