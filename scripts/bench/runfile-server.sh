# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # here and dir come from the caller; the caller reads sum, port and name
# Sourced by the runfile benchmarks (runfile-downloads.sh, runfile-processes.sh), with `here`
# (this folder) and `dir` (the fleet environment, fleet-env.sh) set: serves a stand-in runfile
# (standin-runfile.sh) with python3's http.server on 127.0.0.1, logging every request to
# $dir/http.log, stops it on exit, and resets the fleet. Sets `v`, `name` (the runfile's file
# name), `sum` (its SHA-256) and `port`.
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
