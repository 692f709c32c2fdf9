# shellcheck shell=sh
# The device nodes and the nvidia-smi query inside a container: the end of the probe, and on
# its own the verification after an install. Prints dev=, smi_path=, smi= and smi_rc= lines.
for f in /dev/nvidia* /dev/nvidia-caps/*; do
  if [ -c "$f" ]; then
    echo "dev=$f c $(stat -c '%t:%T' "$f" 2>/dev/null)"
  elif [ -d "$f" ]; then
    echo "dev=$f d"
  elif [ -e "$f" ]; then
    echo "dev=$f f"
  fi
done
smi=$(command -v nvidia-smi 2>/dev/null)
if [ -n "$smi" ]; then
  echo "smi_path=$smi"
  if command -v timeout >/dev/null 2>&1; then
    out=$(timeout 60 nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader 2>&1)
  else
    out=$(nvidia-smi --query-gpu=index,uuid,driver_version --format=csv,noheader 2>&1)
  fi
  rc=$?
  printf '%s\n' "$out" | while IFS= read -r l; do [ -n "$l" ] && echo "smi=$l"; done
  echo "smi_rc=$rc"
fi
exit 0
