# shellcheck shell=sh
# The probe's own questions, run inside a container with `sh -c` (POSIX sh: dash, busybox).
# Positional arguments ($@) are the package names to look for. It prints key=value lines;
# every command is optional and a missing one leaves its keys out. smi.sh follows it in the
# same exec (see probe/mod.rs for the keys).
echo probe=1
if [ -r /etc/os-release ]; then
  while IFS='=' read -r k v; do
    v=${v#\"}; v=${v%\"}; v=${v#\'}; v=${v%\'}
    case "$k" in
      ID) echo "os_id=$v" ;;
      VERSION_ID) echo "os_version_id=$v" ;;
      VERSION_CODENAME) echo "os_codename=$v" ;;
    esac
  done < /etc/os-release
fi
echo "arch=$(uname -m 2>/dev/null)"
command -v apt-get >/dev/null 2>&1 && echo apt_get=1
# What NVIDIA's installer looks up before anything else, even with --no-kernel-module.
for t in ldconfig grep dmesg tail modprobe rmmod lsmod depmod; do
  command -v "$t" >/dev/null 2>&1 || echo "installer_missing=$t"
done
command -v dpkg >/dev/null 2>&1 && echo dpkg=1
df -Pk / 2>/dev/null | { read -r _h; read -r _fs _size _used avail _rest; echo "disk_free_kb=$avail"; }
smi=$(command -v nvidia-smi 2>/dev/null)
if [ -n "$smi" ]; then
  nvidia-smi --version 2>/dev/null | while IFS= read -r l; do
    case "$l" in "NVIDIA-SMI version"*) echo "smi_version=${l#*:}" ;; esac
  done
fi
for d in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /usr/lib /lib64 /lib /usr/local/nvidia/lib64 /usr/local/lib; do
  for f in "$d"/libnvidia-ml.so.* "$d"/libcuda.so.*; do
    [ -f "$f" ] && [ ! -L "$f" ] && echo "lib=$f"
  done
done
if command -v ldconfig >/dev/null 2>&1; then
  ldconfig -p 2>/dev/null | while read -r name _abi _arrow path; do
    case "$name" in
      libcuda.so.1|libnvidia-ml.so.1)
        t=$(readlink -f "$path" 2>/dev/null)
        echo "ldconfig=$name ${t:-$path}" ;;
    esac
  done
fi
if [ -r /usr/local/cuda/version.json ]; then
  v=$(sed -n '/"cuda"/,/}/s/.*"version"[^"]*"\([^"]*\)".*/\1/p' /usr/local/cuda/version.json 2>/dev/null | sed -n 1p)
  [ -n "$v" ] && echo "cuda_json=$v"
fi
if [ -x /usr/local/cuda/bin/nvcc ]; then
  v=$(/usr/local/cuda/bin/nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' | sed -n 1p)
  [ -n "$v" ] && echo "cuda_nvcc=$v"
fi
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${db:Status-Abbrev}|${Package}\n' 'cuda-toolkit-*' "$@" 2>/dev/null | while IFS='|' read -r st name; do
    echo "pkg=$st $name"
  done
fi
for t in "$@"; do
  command -v "$t" >/dev/null 2>&1 && echo "cmd=$t"
done
