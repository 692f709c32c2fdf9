#!/usr/bin/env bash
# Builds the Debian package: the release binary, then the assets generated from its clap
# definitions (man pages, bash/zsh/fish completions, the host-prepare unit as an example) into
# target/assets, then `cargo deb` with the files of pkg/ (changelog, copyright, lintian
# overrides, logrotate), then what debhelper would add and cargo-deb does not: md5sums, and the
# binary without the linker's .comment section. Prints the path of the .deb on the last line.
# Needs cargo-deb (`cargo install cargo-deb --locked`), dpkg-dev and binutils.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb: cargo-deb is missing; install it with: cargo install cargo-deb --locked" >&2
  exit 1
fi
for tool in dpkg-parsechangelog objcopy; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-deb: $tool is missing; install it with: apt-get install dpkg-dev binutils" >&2
    exit 1
  fi
done
# cargo-deb's asset paths are relative to crates/cli and name ../../target.
if [ -n "${CARGO_TARGET_DIR:-}" ] && [ "$(realpath -m "$CARGO_TARGET_DIR")" != "$(realpath -m target)" ]; then
  echo "build-deb: CARGO_TARGET_DIR must be unset or ./target (the package's assets live in target/assets)" >&2
  exit 1
fi
cargo build --release --locked -p phoenix-gpu
rm -rf target/assets
target/release/phoenix-gpu generate-assets target/assets >/dev/null
# cargo-deb warns about every asset under ../../target that it does not build; those are ours.
# It prints the path of the .deb last.
deb=$(cargo deb -p phoenix-gpu --no-build --locked "$@" \
  2> >(grep -v "Only source paths starting with exactly 'target/release/'" >&2) | tail -n 1)

version=$(dpkg-deb --field "$deb" Version)
top=$(dpkg-parsechangelog --file pkg/changelog --show-field Version)
if [ "$top" != "$version" ]; then
  echo "build-deb: the package is $version but the top entry of pkg/changelog is $top; add an entry for $version (dch --changelog pkg/changelog -v $version)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb --raw-extract "$deb" "$work/root"
objcopy --preserve-dates --remove-section=.comment "$work/root/usr/bin/phoenix-gpu"
# md5sums lists every file but the conffiles (dpkg keeps their sums itself), as dh_md5sums does.
(
  cd "$work/root"
  find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort \
    | grep -vxFf <(sed 's|^/||' DEBIAN/conffiles) | xargs -d '\n' md5sum
) >"$work/md5sums"
install -m 644 "$work/md5sums" "$work/root/DEBIAN/md5sums"
# Every file keeps the timestamp cargo-deb gave it (the binary's): dpkg-deb clamps to it.
SOURCE_DATE_EPOCH=$(stat -c %Y "$work/root/usr/bin/phoenix-gpu") \
  dpkg-deb --root-owner-group --build "$work/root" "$deb" >/dev/null
echo "$deb"
