#!/bin/sh
# STAND-IN for nvidia-smi (a test double, not NVIDIA's tool). It answers the two queries
# phoenix-gpu makes the way the real one does on a working or broken container, with the real
# tool's words and exit statuses (README.md beside it names where each comes from):
# - `--version`: the userspace version lines;
# - `--query-gpu=index,uuid,driver_version --format=csv,noheader`, in the order NVML fails:
#   1. no /dev/nvidiactl: "NVIDIA-SMI has failed because it couldn't communicate with the
#      NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running." and a
#      blank line, exit 9 (NVML: driver not loaded);
#   2. /dev/nvidiactl there but the device cgroup denies it (open fails with EPERM):
#      "Failed to initialize NVML: Unknown Error", exit 255;
#   3. the loaded module is another version than this userspace: "Failed to initialize NVML:
#      Driver/library version mismatch" and "NVML library version: X.Y", exit 18;
#   4. one line per GPU whose /dev/nvidia<minor> is a character device here, UUIDs from the
#      table below; a GPU node the cgroup denies gives "Unknown Error", exit 255 as in 2;
#      with no GPU, "No devices were found", exit 6.
# The module's version: the real tool asks the driver through /dev/nvidiactl; with no driver
# behind the node, this reads /proc/driver/nvidia/version when the machine has it, else
# /etc/standin-nvidia-module-version (a test writes it to play a host whose module changed),
# else takes the module to be this userspace's version.
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
unknown_error() { echo "Failed to initialize NVML: Unknown Error"; exit 255; }
if [ ! -c /dev/nvidiactl ]; then
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
  echo
  exit 9
fi
if denied /dev/nvidiactl; then unknown_error; fi
module=$VERSION
if [ -r /proc/driver/nvidia/version ]; then
  # "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..."
  module=$(sed -n 's/^NVRM version:.*  \([0-9][0-9.]*\)  .*/\1/p' /proc/driver/nvidia/version)
elif [ -r /etc/standin-nvidia-module-version ]; then
  read -r module < /etc/standin-nvidia-module-version
fi
if [ "$module" != "$VERSION" ]; then
  echo "Failed to initialize NVML: Driver/library version mismatch"
  echo "NVML library version: $(echo "$VERSION" | cut -d. -f1-2)"
  exit 18
fi
i=0; out=""
while read -r minor uuid; do
  [ -n "$minor" ] || continue
  dev=/dev/nvidia$minor
  [ -c "$dev" ] || continue
  if denied "$dev"; then unknown_error; fi
  out="$out$i, $uuid, $VERSION
"
  i=$((i + 1))
done <<'GPUS'
@GPUS@
GPUS
if [ "$i" = 0 ]; then echo "No devices were found"; exit 6; fi
printf '%s' "$out"
