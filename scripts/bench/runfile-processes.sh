#!/bin/bash
# Benchmark (g): N separate `phoenix-gpu apply` processes, one per container of the fleet
# environment (fleet-env.sh), started together, each installing the runfile userspace from the
# same stand-in runfile (standin-runfile.sh) served by python3's http.server on 127.0.0.1, which
# logs every request. All share one --root tree, so one cache directory
# (ROOT/var/cache/phoenix-gpu). The processes wait on a FIFO and are released at once.
# Prints how many GETs the .run file had, and each process's exit code.
#
#   runfile-processes.sh PHOENIX_GPU DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?PHOENIX_GPU}; dir=${2:?DIR}
# shellcheck source=scripts/bench/runfile-server.sh
. "$here/runfile-server.sh"
gate=$dir/gate; rm -f "$gate"; mkfifo "$gate"
cts=$(ls "$dir/root/var/lib/lxc" | grep -E '^[0-9]+$')
pids=()
for ct in $cts; do
    (
        read -r _ < "$gate" || true
        exec "$bin" -q --root "$dir/root" --target lxc --lxcpath /var/lib/lxc \
            --log-file "$dir/log.$ct" apply "$ct" --phoenix-config "$dir/pc.json" \
            --strategy runfile --runfile-url "http://127.0.0.1:$port/$name" \
            --runfile-sha256 "$sum" --json > "$dir/apply.$ct.json"
    ) &
    pids+=($!)
done
sleep 1
start=$(date +%s.%N)
exec 3> "$gate"; exec 3>&-
codes=()
for p in "${pids[@]}"; do
    if wait "$p"; then codes+=(0); else codes+=($?); fi
done
end=$(date +%s.%N)
rm -f "$gate"
gets=$(grep -c "\"GET /$name " "$dir/http.log" || true)
heads=$(grep -c "\"HEAD /$name " "$dir/http.log" || true)
downloaded=$(cat "$dir"/apply.*.json | grep -c "downloaded $name" || true)
cached=$(cat "$dir"/apply.*.json | grep -c "$name from the cache" || true)
echo "processes=${#pids[@]} exit_codes=${codes[*]} runfile_GETs=$gets runfile_HEADs=$heads downloaded_by=$downloaded from_cache=$cached wall_s=$(echo "$end - $start" | bc)"
