#!/usr/bin/env bash
# Proxmox's own code as the judge of the configs phoenix-gpu writes.
#
#   scripts/pve-conformance.sh DIR [PVE_PARSE]
#
# DIR holds one folder per run of the ownership scenario (tests/scenarios/ownership.rs writes
# them to target/conformance/): before.conf, after.conf and expect.json (the device nodes the
# container must get, the NVIDIA allow rules raw mode must give, the lines the case declares
# NVIDIA's). PVE_PARSE is Proxmox's parser and start path as a test oracle (default
# ../shared/tools/pve-oracle/pve-parse beside the repository, or $PVE_PARSE); its README lists
# the Perl packages it needs.
#
# Each run passes when Proxmox, reading after.conf with the captured host's device nodes
# (testdata/hosts/h200x2/dev.stat, plus testdata/corpus/ownership/devices.stat for the other
# devices the cases pass):
# - says nothing it did not already say about before.conf (no new warning), and its start
#   path does not fail;
# - after applying [pve:pending], gives exactly the selected NVIDIA device nodes: as devN
#   nodes with the host node's mode in dev mode, as bind mounts with exactly the expected
#   allow rules in raw mode, none after remove;
# - keeps every line the case does not declare NVIDIA's: the same raw lxc.* entries in the
#   same order, the same keys with the same values, the same pending section and snapshots.
# Exit 0 when every run passes, 1 when one fails, 2 on a usage or harness error.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: scripts/pve-conformance.sh DIR [PVE_PARSE]}
oracle=${2:-${PVE_PARSE:-$repo/../shared/tools/pve-oracle/pve-parse}}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The captured host's NVIDIA nodes, and the other nodes the cases pass (an iGPU, USB serial).
devices=$work/dev.stat
cat "$repo/testdata/hosts/h200x2/dev.stat" "$repo/testdata/corpus/ownership/devices.stat" >"$devices"
[ -d "$dir" ] || { echo "pve-conformance: $dir is not a directory" >&2; exit 2; }
[ -x "$oracle" ] || { echo "pve-conformance: no pve-parse at $oracle" >&2; exit 2; }
command -v python3 >/dev/null || { echo "pve-conformance: needs python3" >&2; exit 2; }

python3 - "$dir" "$oracle" "$devices" <<'PY'
import collections, concurrent.futures, json, os, re, subprocess, sys

root, oracle, devices = sys.argv[1:4]

# The captured host's device nodes: path -> mode, and the NVIDIA majors among them.
modes, nvidia_majors = {}, set()
for line in open(devices):
    f = line.split()
    if not f or f[0].startswith("#") or f[1] != "char":
        continue
    modes[f[0]] = "%04o" % int(f[4], 8)
    if f[0].startswith("/dev/nvidia"):
        nvidia_majors.add(int(f[2]))

NODE = re.compile(r"^/dev/(nvidia\d+|nvidiactl|nvidia-modeset|nvidia-uvm|nvidia-uvm-tools|nvidia-caps(/nvidia-cap\d+)?)$")
RULE = re.compile(r"^lxc\.cgroup2?\.devices\.allow = ([cb]) (\d+):(\S+) (\S+)$")
MOUNT = re.compile(r"^lxc\.mount\.entry = (\S+) ")

cache = {}

def parse(path):
    """pve-parse --start on one config: its JSON (exit 0 or 1; 2 is the harness failing)."""
    data = open(path, "rb").read()
    if data in cache:
        return cache[data]
    p = subprocess.run([oracle, "--start", "--devices", devices, "--compact", path, "101"],
                       capture_output=True)
    if p.returncode not in (0, 1):
        raise SystemExit(f"pve-conformance: pve-parse failed on {path}: {p.stderr.decode()}")
    out = json.loads(p.stdout)
    cache[data] = out
    return out

def problems(j):
    # Line numbers move when lines are added or taken out; the texts are what counts.
    return collections.Counter(re.sub(r"line \d+", "line N", p) for p in j.get("problems", []))

def check(run):
    d = os.path.join(root, run)
    exp = json.load(open(os.path.join(d, "expect.json")))
    before_path, after_path = os.path.join(d, "before.conf"), os.path.join(d, "after.conf")
    a, b = parse(before_path), parse(after_path)
    bad = []
    new = problems(b) - problems(a)
    if new:
        bad.append(f"Proxmox says something new: {sorted(new)}")
    start = b.get("start") or {}
    if start.get("error"):
        bad.append(f"the start path fails: {start['error'].strip()}")
    mode, want = exp["mode"], sorted(exp["selected_nodes"])

    # devN nodes (after pending): the selected ones in dev mode, with the host node's mode.
    dev_nodes = [n for n in start.get("passthrough", []) if NODE.match(n["path"])]
    got_dev = sorted(n["path"] for n in dev_nodes)
    if got_dev != (want if mode == "dev" else []):
        bad.append(f"devN nodes {got_dev}, want {want if mode == 'dev' else []}")
    for n in dev_nodes:
        if n["host_node_mode"] != modes.get(n["path"]):
            bad.append(f"{n['path']} is made {n['host_node_mode']}, the host's is {modes.get(n['path'])}")

    # What LXC gets: NVIDIA bind mounts and allow rules.
    lxc = (start.get("lxc_config") or "").splitlines()
    mounts = sorted(m.group(1) for m in map(MOUNT.match, lxc) if m and NODE.match(m.group(1)))
    if mounts != (want if mode == "raw" else []):
        bad.append(f"bind-mounted nodes {mounts}, want {want if mode == 'raw' else []}")
    rules = sorted(f"{m[1]} {m[2]}:{m[3]} {m[4]}" for m in map(RULE.match, lxc)
                   if m and m[1] == "c" and int(m[2]) in nvidia_majors)
    if mode == "dev":
        want_rules = sorted(f"c {n['major']}:{n['minor']} rw" for n in dev_nodes)
    else:
        want_rules = sorted(exp["raw_rules"])
    if rules != want_rules:
        bad.append(f"NVIDIA allow rules {rules}, want {want_rules}")

    # Every line the case does not declare NVIDIA's, unchanged and in order.
    before_lines = set(open(before_path).read().splitlines())
    owned = set(exp["owned"])
    def theirs(k, v):
        return f"{k}: {v}" not in owned
    def kept(k, v):
        return theirs(k, v) and f"{k}: {v}" in before_lines
    la = [e for e in a["main"].get("lxc", []) if theirs(*e)]
    lb = [e for e in b["main"].get("lxc", []) if kept(*e)]
    if la != lb:
        bad.append(f"raw lines not kept in order: before {la}, after {lb}")
    skip = {"lxc", "digest", "description"}
    if a["main"].get("description") != b["main"].get("description"):
        bad.append("the description changed")
    ka = {k: v for k, v in a["main"].items() if k not in skip and theirs(k, v)}
    kb = {k: v for k, v in b["main"].items() if k not in skip and kept(k, v)}
    if ka != kb:
        bad.append(f"keys not kept: before {ka}, after {kb}")
    for k, v in b["main"].items():
        if k in skip or kept(k, v) or f"{k}: {v}" in owned:
            continue
        if not (re.fullmatch(r"dev\d+", k) and "/dev/nvidia" in v):
            bad.append(f"a key the tool does not write: {k}: {v}")
    for part in ("pending", "snapshots"):
        if (a.get(part) or {}) != (b.get(part) or {}):
            bad.append(f"the {part} changed")
    return run, bad

runs = sorted(r for r in os.listdir(root) if os.path.isfile(os.path.join(root, r, "expect.json")))
if not runs:
    raise SystemExit(f"pve-conformance: no runs under {root} (run the ownership scenario first)")
failed = 0
with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    for run, bad in pool.map(check, runs):
        if bad:
            failed += 1
            print(f"FAIL {run}")
            for b in bad:
                print(f"  {b}")
        else:
            print(f"ok   {run}")
print(f"{len(runs)} runs, {failed} failed (Proxmox: pve-parse --start, devices {os.path.basename(devices)})")
sys.exit(1 if failed else 0)
PY
