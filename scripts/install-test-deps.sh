#!/usr/bin/env bash
# Installs what the test suite needs on a Debian/Ubuntu machine (run as root).
# Real LXC containers, a real sshd on 127.0.0.1, debootstrap for a Debian container, the
# tools that build the stand-in apt repository (dpkg-deb, gpg to sign it, gcc for stub
# ELF libraries with real sonames), zsh and fish for the generated completions, logrotate
# for the packaged rotation file, shellcheck for the probe scripts (.ci/run), and strace (the
# SSH tests check that no host name is looked up).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: needs root (apt-get); skipping. Root-only tests will say they are skipped." >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  lxc lxc-templates debootstrap busybox-static uidmap \
  openssh-server openssh-client util-linux coreutils procps \
  curl ca-certificates dpkg-dev xz-utils python3 tar \
  gnupg gcc libc6-dev shellcheck \
  zsh fish logrotate strace \
  >/dev/null
mkdir -p /run/sshd
# Unprivileged test containers map their ids to 100000.. as Proxmox VE does; LXC maps them with
# newuidmap/newgidmap, which allow only root's subordinate ranges.
for f in /etc/subuid /etc/subgid; do
  grep -qs '^root:100000:65536$' "$f" || echo 'root:100000:65536' >>"$f"
done
