# shellcheck shell=sh
# shellcheck disable=SC2154 # gc_ok and gc_out come from head.sh
# The probe's own questions, after head.sh in the same script (its variables: gc_ok, and $@
# the package names to look for). It prints key=value lines; every command is optional and a
# missing one leaves its keys out. Where gpu-check answered (gc_ok), its answers stand and the
# tools are not run. gpu.sh follows in the same exec (see probe/mod.rs for the keys).
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
if [ -z "$gc_ok" ]; then
  if [ -r /proc/sys/kernel/arch ]; then
    read -r a < /proc/sys/kernel/arch && echo "arch=$a"
  else
    echo "arch=$(uname -m 2>/dev/null)"
  fi
  df -Pk / 2>/dev/null | { read -r _h; read -r _fs _size _used avail _rest; echo "disk_free_kb=$avail"; }
fi
command -v apt-get >/dev/null 2>&1 && echo apt_get=1
command -v dpkg >/dev/null 2>&1 && echo dpkg=1
if [ -z "$gc_ok" ] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --version 2>/dev/null | while IFS= read -r l; do
    case "$l" in "NVIDIA-SMI version"*) echo "smi_version=${l#*:}" ;; esac
  done
fi
# Versioned driver libraries; an empty one is a placeholder that a bind mount left behind
# (always in the multiarch folder, where host-libs binds). Where gpu-check answered, the loader's
# own answer (loaded=) stands and only that folder is listed.
dirs="/usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /usr/lib /lib64 /lib /usr/local/nvidia/lib64 /usr/local/lib"
[ -n "$gc_ok" ] && dirs=/usr/lib/x86_64-linux-gnu
for d in $dirs; do
  for f in "$d"/libnvidia-ml.so.* "$d"/libcuda.so.*; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then
      if [ -s "$f" ]; then echo "lib=$f"; else echo "placeholder=$f"; fi
    fi
  done
done
if [ -z "$gc_ok" ] && command -v ldconfig >/dev/null 2>&1; then
  ldconfig -p 2>/dev/null | while read -r name _abi _arrow path; do
    case "$name" in
      libcuda.so.1|libnvidia-ml.so.1)
        t=$(readlink -f "$path" 2>/dev/null)
        echo "ldconfig=$name ${t:-$path}" ;;
    esac
  done
fi
cuda_json=
if [ -r /usr/local/cuda/version.json ]; then
  in_cuda=
  while IFS= read -r l; do
    case "$l" in *'"cuda"'*) in_cuda=1 ;; esac
    if [ -n "$in_cuda" ]; then
      case "$l" in
        *'"version"'*)
          v=${l#*\"version\"}; v=${v#*\"}; v=${v%%\"*}
          [ -n "$v" ] && cuda_json=$v && echo "cuda_json=$v"
          break ;;
      esac
    fi
  done < /usr/local/cuda/version.json
fi
if [ -z "$cuda_json" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  v=$(/usr/local/cuda/bin/nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' | sed -n 1p)
  [ -n "$v" ] && echo "cuda_nvcc=$v"
fi
# gpu-check read dpkg's status file for these packages (dpkg_db=ok); else dpkg-query.
case "$gc_out" in *dpkg_db=ok*) dpkg_read=1 ;; *) dpkg_read= ;; esac
if [ -z "$dpkg_read" ] && command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${db:Status-Abbrev}|${Package}\n' 'cuda-toolkit-*' "$@" 2>/dev/null | while IFS='|' read -r st name; do
    echo "pkg=$st $name"
  done
fi
for t in "$@"; do
  command -v "$t" >/dev/null 2>&1 && echo "cmd=$t"
done
