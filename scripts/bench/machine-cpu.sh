#!/bin/bash
# Runs CMD and prints its wall time, its exit code and the CPU time the whole machine spent
# (user, nice, system, irq and softirq of /proc/stat: every process, also those the command
# does not wait for, such as a container's init after lxc-start -d) from its start until
# SETTLE seconds after it ended, so that work it leaves running (a container still booting
# when the tool has seen it RUNNING) is counted. What else runs on the machine is counted
# too: measure the baseline with `machine-cpu.sh 0 sleep S`. The figures go to stderr (as
# time(1)'s do), the command's output is left alone.
#
#   machine-cpu.sh SETTLE CMD [ARG...]
#   # wall_s=3.91 exit=0 machine_cpu_s=5.42 settle_s=3
set -uo pipefail
settle=${1:?usage: machine-cpu.sh SETTLE CMD [ARG...]}
shift
[ $# -gt 0 ] || { echo "usage: machine-cpu.sh SETTLE CMD [ARG...]" >&2; exit 2; }
hz=$(getconf CLK_TCK)
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
c0=$(busy)
t0=$(date +%s%N)
"$@"
rc=$?
t1=$(date +%s%N)
sleep "$settle"
c1=$(busy)
awk -v w=$((t1 - t0)) -v c=$((c1 - c0)) -v hz="$hz" -v rc="$rc" -v s="$settle" \
    'BEGIN { printf "wall_s=%.2f exit=%d machine_cpu_s=%.2f settle_s=%s\n", w / 1e9, rc, c / hz, s }' >&2
exit "$rc"
