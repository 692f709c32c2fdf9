# shellcheck shell=sh
# The GPU part, after head.sh (its variables: gc_ok, gc_out, mode): the end of the probe, and
# with head.sh alone the verification exec after a change. Where gpu-check answered, its dev=,
# node=, nvml_* and cuda_* lines stand; else the nodes are listed with stat. nvidia-smi's query
# runs in verification (users run it: it proves the binary works), and in a probe only where
# gpu-check did not run, or NVML was asked and did not answer through it. Prints dev=, smi_path=, smi= and smi_rc= lines.
# shellcheck disable=SC2154 # gc_ok, gc_out and mode come from head.sh
if [ -z "$gc_ok" ]; then
  for f in /dev/nvidia* /dev/nvidia-caps/*; do
    if [ -c "$f" ]; then
      echo "dev=$f c $(stat -c '%t:%T' "$f" 2>/dev/null)"
    elif [ -d "$f" ]; then
      echo "dev=$f d"
    elif [ -e "$f" ]; then
      echo "dev=$f f"
    fi
  done
fi
# nvidia-smi on PATH, as command -v finds it, without the fork of a command substitution.
smi=
ifs=$IFS
IFS=:
set -f
for d in $PATH; do
  if [ -n "$d" ] && [ -f "$d/nvidia-smi" ] && [ -x "$d/nvidia-smi" ]; then
    smi=$d/nvidia-smi
    break
  fi
done
set +f
IFS=$ifs
if [ -n "$smi" ]; then
  echo "smi_path=$smi"
  run_smi=1
  # A probe where gpu-check answered runs it only when NVML was asked and did not answer.
  if [ -n "$gc_ok" ] && { [ "$mode" = probe ] || [ "$mode" = probe-sh ]; }; then
    case "$gc_args" in
      *--nvml*) case "$gc_out" in *"nvml_lib=ok"*) run_smi= ;; esac ;;
      *) run_smi= ;;
    esac
  fi
  if [ -n "$run_smi" ]; then
    if command -v timeout >/dev/null 2>&1; then
      out=$(timeout 60 nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader 2>&1)
    else
      out=$(nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader 2>&1)
    fi
    rc=$?
    printf '%s\n' "$out" | while IFS= read -r l; do [ -n "$l" ] && echo "smi=$l"; done
    echo "smi_rc=$rc"
  fi
fi
# How many processes this script started in the container: PIDs are given out in order, so
# from this shell's to that of one last fork (any other process the container started
# meanwhile is counted too).
: &
pid1=$!
wait "$pid1"
[ "$pid1" -ge "$$" ] && echo "pids=$((pid1 - $$ + 1))"
exit 0
