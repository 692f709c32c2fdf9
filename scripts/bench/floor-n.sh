#!/bin/sh
# The floor of a converged fleet run: the floor of docs/BENCHMARKS.md (a) for fl1..flN, one
# after the other.   floor-n.sh LXCPATH N
l=${1:?LXCPATH}; n=${2:?N}
i=1
while [ "$i" -le "$n" ]; do
    lxc-attach -n "fl$i" -P "$l" --clear-env -- nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader >/dev/null
    i=$((i + 1))
done
