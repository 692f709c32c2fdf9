#!/bin/sh
# STAND-IN for NVIDIA's self-extracting driver installer NVIDIA-Linux-x86_64-<version>.run.
# It is NOT NVIDIA's installer: it is a test double that keeps the parts of its contract that
# phoenix-gpu relies on (see README.md beside this file). The test fills in the version, the
# nvidia-smi stand-in, whether to fail like a broken install, and a base64 tar of stub shared
# objects with the real SONAMEs.
set -u
VERSION='@VERSION@'
LOG=/var/log/nvidia-installer.log
log() { printf '%s\n' "$*" >> "$LOG"; }
mkdir -p /var/log
: > "$LOG"
log "nvidia-installer log file '$LOG'"
log "creation time: $(date)"
log "installer version: $VERSION (stand-in)"
log "command line: $0 $*"

die() {
  log "ERROR: $*"
  log "ERROR: Installation has failed.  Please see the file '$LOG' for details."
  echo "ERROR: $*" >&2
  exit 1
}

# Every option the real installer knows that phoenix-gpu may pass; anything else is an error,
# as with the real installer ("Unrecognized option").
have_nokmod=0; have_silent=0
for a in "$@"; do
  case "$a" in
    --no-kernel-module|--no-kernel-modules) have_nokmod=1 ;;
    --silent|-s) have_silent=1 ;;
    --no-nouveau-check|--no-x-check|--no-nvidia-modprobe|--no-dkms|--no-systemd|\
    --no-distro-scripts|--no-backup|--no-check-for-alternate-installs|--no-questions|\
    --ui=none|--no-kernel-module-source|--no-install-compat32-libs|--no-rpms) ;;
    *) die "Unrecognized option: '$a'" ;;
  esac
done
# nvidia-installer looks these up before it does anything else, --no-kernel-module or not
# (nvidia-installer.c: find_system_utils, then find_module_utils; misc.c): in $PATH, then
# /bin:/usr/bin:/sbin:/usr/sbin:/usr/X11R6/bin:/usr/bin/X11, each a regular executable file.
find_util() {
  saved=$IFS; IFS=:
  for d in $PATH:/bin:/usr/bin:/sbin:/usr/sbin:/usr/X11R6/bin:/usr/bin/X11; do
    if [ -f "$d/$1" ] && [ -x "$d/$1" ]; then IFS=$saved; return 0; fi
  done
  IFS=$saved; return 1
}
for u in ldconfig:glibc grep:grep dmesg:util-linux tail:coreutils; do
  t=${u%%:*} p=${u#*:}
  find_util "$t" || die "Unable to find the system utility \`$t\`; please make sure you have the package '$p' installed.  If you do have $p installed, then please check that \`$t\` is in your PATH."
done
for t in modprobe rmmod lsmod depmod; do
  find_util "$t" || die "Unable to find the module utility \`$t\`; please make sure you have the package 'module-init-tools' or 'kmod' installed.  If you do have 'module-init-tools' or 'kmod' installed, then please check that \`$t\` is in your PATH."
done
[ "$have_nokmod" = 1 ] || die "Unable to load the kernel module 'nvidia.ko' (a container cannot load modules; pass --no-kernel-module)"
[ "$have_silent" = 1 ] || die "no --silent: the installer would ask questions on a terminal"
[ '@FAIL@' = 1 ] && die "An NVIDIA kernel module 'nvidia' appears to be already loaded in your kernel (stand-in failure)"

LIBDIR=/usr/lib/x86_64-linux-gnu
[ -d "$LIBDIR" ] || LIBDIR=/usr/lib
log "-> Uninstalling the previous installation"
for f in "$LIBDIR"/libnvidia-ml.so* "$LIBDIR"/libcuda.so*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  rm -f "$f" && log "   removed $f"
done
log "-> Installing NVIDIA driver userspace $VERSION to $LIBDIR"
tmp=$(mktemp -d) || die "mktemp failed"
base64 -d > "$tmp/libs.tar" <<'LIBS' || die "cannot unpack the libraries"
@LIBS@
LIBS
tar -xf "$tmp/libs.tar" -C "$LIBDIR" || die "cannot unpack the libraries"
rm -rf "$tmp"
ln -sf "libnvidia-ml.so.$VERSION" "$LIBDIR/libnvidia-ml.so.1"
ln -sf "libcuda.so.$VERSION" "$LIBDIR/libcuda.so.1"
ln -sf libcuda.so.1 "$LIBDIR/libcuda.so"

cat > /usr/bin/nvidia-smi <<'SMI'
@SMI@
SMI
chmod 0755 /usr/bin/nvidia-smi
ldconfig || die "ldconfig failed"
log "-> Installation of the NVIDIA Accelerated Graphics Driver for Linux-x86_64 (version: $VERSION) is now complete."
exit 0
