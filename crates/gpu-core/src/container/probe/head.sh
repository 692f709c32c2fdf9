# shellcheck shell=sh
# shellcheck disable=SC2034 # gc_ok is read by questions.sh and gpu.sh
# The start of every probe script, run inside a container with `sh -c` (POSIX sh: dash,
# busybox). Arguments: $1 gpu-check's path in the container, $2 its arguments (words split),
# $3 the mode: `probe` (gpu-check alone where it is in place), `probe-sh` (the shell's probe,
# gpu-check run from it), `verify` (nvidia-smi too), or `install` (verify, after putting
# gpu-check in place from stdin and removing other versions of it); the rest are the probe's
# own arguments (the packages to look for). gpu-check answers the GPU questions in one process;
# where it is missing or cannot run (no glibc) the shell parts ask the usual tools instead.
gc=$1 gc_args=$2 mode=$3
shift 3
# A probe where gpu-check is in place and a glibc loader is there to start it: gpu-check answers
# the whole probe itself (--probe), so the exec is one process. This comes first, so that the
# shell parses nothing more. If it then fails, the caller runs the probe again as `probe-sh`.
if [ "$mode" = probe ] && [ -n "$gc" ] && [ -f "$gc" ] && [ -x "$gc" ] && [ -e /lib64/ld-linux-x86-64.so.2 ]; then
  set -f
  # shellcheck disable=SC2086 # gc_args are words: flags and comma-separated lists
  exec "$gc" --probe $gc_args -- "$@"
fi
echo probe=1
# install: the program on stdin goes in place unless the same bytes are there already (a
# damaged or zeroed file, or a link, is replaced), and other versions go.
if [ "$mode" = install ]; then
  d=${gc%/*}
  [ -d "$d" ] || mkdir -p "$d"
  for f in "$d"/gpu-check-*; do
    if { [ -e "$f" ] || [ -L "$f" ]; } && [ "$f" != "$gc" ]; then rm -f "$f"; fi
  done
  if cat > "$gc.new"; then
    if [ -f "$gc" ] && [ ! -L "$gc" ] && cmp -s "$gc.new" "$gc" 2>/dev/null; then
      rm -f "$gc.new"
    elif [ -d "$gc" ] && [ ! -L "$gc" ]; then
      rm -f "$gc.new"
      echo gpu_check_installed=0
    elif chmod 755 "$gc.new" && mv -f "$gc.new" "$gc"; then
      echo gpu_check_installed=1
    else
      rm -f "$gc.new"
      echo gpu_check_installed=0
    fi
  else
    rm -f "$gc.new"
    echo gpu_check_installed=0
  fi
fi
gc_ok=
gc_out=
if [ -n "$gc" ] && [ -e "$gc" ]; then
  echo gpu_check_present=1
  set -f
  # shellcheck disable=SC2086 # gc_args are words: flags and comma-separated lists
  gc_out=$("$gc" $gc_args 2>&1)
  gc_rc=$?
  set +f
  case "$gc_out" in
    *check_end=1*) gc_ok=1; printf '%s\n' "$gc_out" ;;
    *) echo "gpu_check_rc=$gc_rc"
       printf '%s\n' "$gc_out" | while IFS= read -r l; do echo "gpu_check_error=$l"; done ;;
  esac
fi
