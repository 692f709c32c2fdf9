# shellcheck shell=sh
# Takes out what phoenix-gpu left in a container, run inside with `sh -c` once the bind mounts
# of host-libs are gone (after a restart). $1: the folder of gpu-check, removed with it when $2
# is `all` (remove); else only placeholders go (a strategy change).
#
# Placeholders are what LXC's `create=file` / `create=dir` made for the bind mounts: an empty
# regular file where a driver library or binary is named (a real library or program is never
# empty, and a live bind mount shows the host's non-empty file, so neither is touched), an
# empty folder under /usr/lib/firmware/nvidia, and the links that pointed at them (ldconfig's
# soname links and ours), which dangle once the placeholder is gone. Prints removed=PATH for
# each, and runs ldconfig when a library went.
libs=
for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
  [ -d "$d" ] || continue
  for f in "$d"/libcuda.so* "$d"/libcudadebugger.so* "$d"/libnvidia-*.so* "$d"/libnvcuvid.so* \
    "$d"/libnvoptix.so* "$d"/libEGL_nvidia.so* "$d"/libGLX_nvidia.so* "$d"/libGLESv1_CM_nvidia.so* \
    "$d"/libGLESv2_nvidia.so* "$d"/libvdpau_nvidia.so*; do
    if [ -f "$f" ] && [ ! -L "$f" ] && [ ! -s "$f" ]; then
      rm -f "$f" && echo "removed=$f" && libs=1
    fi
  done
  for f in "$d"/libcuda.so* "$d"/libcudadebugger.so* "$d"/libnvidia-*.so* "$d"/libnvcuvid.so* \
    "$d"/libnvoptix.so* "$d"/libEGL_nvidia.so* "$d"/libGLX_nvidia.so* "$d"/libGLESv1_CM_nvidia.so* \
    "$d"/libGLESv2_nvidia.so* "$d"/libvdpau_nvidia.so*; do
    if [ -L "$f" ] && [ ! -e "$f" ]; then
      rm -f "$f" && echo "removed=$f" && libs=1
    fi
  done
done
for f in /usr/bin/nvidia-smi /usr/bin/nvidia-debugdump /usr/bin/nvidia-persistenced \
  /usr/bin/nvidia-cuda-mps-control /usr/bin/nvidia-cuda-mps-server; do
  if [ -f "$f" ] && [ ! -L "$f" ] && [ ! -s "$f" ]; then
    rm -f "$f" && echo "removed=$f"
  fi
done
for f in /usr/lib/firmware/nvidia/*; do
  if [ -d "$f" ] && [ ! -L "$f" ] && rmdir "$f" 2>/dev/null; then
    echo "removed=$f"
  fi
done
if [ -d /usr/lib/firmware/nvidia ] && rmdir /usr/lib/firmware/nvidia 2>/dev/null; then
  echo "removed=/usr/lib/firmware/nvidia"
fi
if [ -n "$libs" ] && command -v ldconfig >/dev/null 2>&1; then
  ldconfig && echo ldconfig=1
fi
if [ "$2" = all ] && [ -n "$1" ] && [ -d "$1" ]; then
  for f in "$1"/gpu-check-*; do
    [ -e "$f" ] && rm -f "$f" && echo "removed=$f"
  done
  rmdir "$1" 2>/dev/null && echo "removed=$1"
fi
# How many processes this script started in the container: PIDs are given out in order, so
# from this shell's to that of one last fork (any other process the container started
# meanwhile is counted too).
: &
pid1=$!
wait "$pid1"
[ "$pid1" -ge "$$" ] && echo "pids=$((pid1 - $$ + 1))"
exit 0
