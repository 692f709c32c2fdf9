#!/bin/sh
# STAND-IN for nvidia-smi (a test double, not NVIDIA's tool). It answers the two
# queries phoenix-gpu makes the way the real one does on a working or broken container:
# - `--version`: the userspace version lines;
# - `--query-gpu=index,uuid,driver_version --format=csv,noheader`: one line per GPU whose
#   /dev/nvidia<minor> is a character device here, UUIDs from the table below; with no
#   /dev/nvidiactl, or a node the device cgroup denies (open fails with EPERM), it prints
#   "Failed to initialize NVML: Unknown Error" and exits 255 as the real one does; with no GPU,
#   "No devices were found" and exit 6.
VERSION='@VERSION@'
case "${1:-}" in
  --version)
    echo "NVIDIA-SMI version  : $VERSION"
    echo "NVML version        : ${VERSION%.*}"
    echo "DRIVER version      : $VERSION"
    exit 0 ;;
  --query-gpu=index,uuid,driver_version) ;;
  *) echo "stand-in nvidia-smi: unsupported arguments: $*" >&2; exit 2 ;;
esac
denied() {
  # Opening a node with no driver behind it fails with ENXIO; a device-cgroup denial is EPERM.
  msg=$( (: < "$1") 2>&1 )
  case "$msg" in *"not permitted"*) return 0 ;; esac
  return 1
}
if [ ! -c /dev/nvidiactl ] || denied /dev/nvidiactl; then
  echo "Failed to initialize NVML: Unknown Error"; exit 255
fi
i=0; out=""
while read -r minor uuid; do
  [ -n "$minor" ] || continue
  dev=/dev/nvidia$minor
  [ -c "$dev" ] || continue
  if denied "$dev"; then echo "Failed to initialize NVML: Unknown Error"; exit 255; fi
  out="$out$i, $uuid, $VERSION
"
  i=$((i + 1))
done <<'GPUS'
@GPUS@
GPUS
if [ "$i" = 0 ]; then echo "No devices were found"; exit 6; fi
printf '%s' "$out"
