#!/bin/bash
# Benchmark (c): how many times the runfile is downloaded when every container of the fleet
# environment (fleet-env.sh) gets the runfile userspace in one run. Serves a stand-in runfile
# (standin-runfile.sh) with python3's http.server on 127.0.0.1, logs every request, runs
# `phoenix-gpu apply --all --strategy runfile`, and counts the requests for the .run file.
#
#   runfile-downloads.sh PHOENIX_GPU DIR [JOBS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?PHOENIX_GPU}; dir=${2:?DIR}; jobs=${3:-8}
# shellcheck source=scripts/bench/runfile-server.sh
. "$here/runfile-server.sh"
n=$(ls "$dir/root/var/lib/lxc" | grep -cE '^[0-9]+$')
start=$(date +%s.%N)
"$bin" -q --root "$dir/root" --target lxc --lxcpath /var/lib/lxc --log-file "$dir/log" \
    apply --all --phoenix-config "$dir/pc.json" --strategy runfile \
    --runfile-url "http://127.0.0.1:$port/$name" --runfile-sha256 "$sum" --jobs "$jobs" --json \
    > "$dir/runfile-apply.json" || echo "apply exit code $?"
end=$(date +%s.%N)
gets=$(grep -c "\"GET /$name " "$dir/http.log" || true)
all=$(grep -c "\"[A-Z]* /" "$dir/http.log" || true)
installed=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(sum(1 for r in j["rows"] if any(s["name"]=="userspace" and s["status"]=="changed" for s in r["report"]["steps"])), j["exit_code"])' "$dir/runfile-apply.json")
echo "containers=$n installed_and_exit=$installed runfile_GETs=$gets all_requests=$all wall_s=$(echo "$end - $start" | bc)"
