#!/bin/sh
# Writes a STAND-IN for NVIDIA-Linux-x86_64-<VERSION>.run (a benchmark double, not NVIDIA's
# installer) to OUT. Run inside a container with the installer's flags, it installs a stand-in
# nvidia-smi (/usr/local/bin) that lists the GPUs whose /dev/nvidia<minor> is a character
# device, with the UUIDs of the captured H200 host, and an empty libnvidia-ml.so.<VERSION>
# (/usr/local/lib). Enough for phoenix-gpu's install, probe and verification.
#
#   standin-runfile.sh VERSION OUT
set -eu
v=${1:?VERSION}; out=${2:?OUT}
cat > "$out" <<RUN
#!/bin/sh
# STAND-IN NVIDIA-Linux-x86_64-$v.run (benchmark double)
set -e
mkdir -p /usr/local/bin /usr/local/lib /var/log
echo "stand-in installer $v: \$*" > /var/log/nvidia-installer.log
: > /usr/local/lib/libnvidia-ml.so.$v
cat > /usr/local/bin/nvidia-smi <<'SMI'
#!/bin/sh
case "\${1:-}" in
  --version) echo "NVIDIA-SMI version  : $v"; exit 0 ;;
esac
# The real tool's words without the node (crates/gpu-core/tests/support/README.md).
[ -c /dev/nvidiactl ] || { echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."; echo; exit 9; }
i=0
for pair in 0:GPU-8ec68ad8-ed9b-8b4b-3e1f-0a019c95b836 1:GPU-7fc3e24c-6572-362c-3b22-0d1167fae655; do
  [ -c "/dev/nvidia\${pair%%:*}" ] || continue
  echo "\$i, \${pair#*:}, $v"; i=\$((i + 1))
done
[ "\$i" -gt 0 ] || { echo "No devices were found"; exit 6; }
SMI
chmod 755 /usr/local/bin/nvidia-smi
RUN
chmod 755 "$out"
