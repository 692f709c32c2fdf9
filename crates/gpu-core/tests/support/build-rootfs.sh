#!/bin/sh
# Builds the cached Debian minbase rootfs for the container tests once: $1 is the target
# directory; it is built next to it and renamed when complete. Run under flock by the tests.
set -eu
dest=$1
mirror=${PHOENIX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ -e "$dest/.phoenix-complete" ] && exit 0
tmp="$dest.building.$$"
rm -rf "$tmp"
debootstrap --variant=minbase bookworm "$tmp" "$mirror" >"$tmp.log" 2>&1 || {
  tail -n 30 "$tmp.log" >&2
  rm -rf "$tmp"
  exit 1
}
rm -f "$tmp.log"
# apt in the tests sees only the local repository.
: > "$tmp/etc/apt/sources.list"
rm -rf "$tmp/var/lib/apt/lists/"*
cat > "$tmp/sbin/phoenix-init" <<'INIT'
#!/bin/sh
# A minimal init for test containers: sleeps until lxc-stop (SIGPWR) or SIGTERM.
trap 'exit 0' PWR TERM INT
while :; do sleep 1000 & wait $!; done
INIT
chmod 0755 "$tmp/sbin/phoenix-init"
touch "$tmp/.phoenix-complete"
rm -rf "$dest"
mv "$tmp" "$dest"
