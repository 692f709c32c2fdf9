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
v=580.159.04; name=NVIDIA-Linux-x86_64-$v.run
srv=$dir/http; mkdir -p "$srv"
"$here/standin-runfile.sh" "$v" "$srv/$name"
sum=$(sha256sum "$srv/$name" | cut -d' ' -f1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$srv" 2> "$dir/http.log" >/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
"$here/fleet-env.sh" reset "$dir"
: > "$dir/http.log"
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
