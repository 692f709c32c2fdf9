#!/usr/bin/env bash
# Builds the Debian package: the release binary, then the assets generated from its clap
# definitions (man pages, bash/zsh/fish completions, the host-prepare unit as an example) into
# target/assets, then `cargo deb`. Prints the path of the .deb on the last line.
# Needs cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb: cargo-deb is missing; install it with: cargo install cargo-deb --locked" >&2
  exit 1
fi
# cargo-deb's asset paths are relative to crates/cli and name ../../target.
if [ -n "${CARGO_TARGET_DIR:-}" ] && [ "$(realpath -m "$CARGO_TARGET_DIR")" != "$(realpath -m target)" ]; then
  echo "build-deb: CARGO_TARGET_DIR must be unset or ./target (the package's assets live in target/assets)" >&2
  exit 1
fi
cargo build --release --locked -p phoenix-gpu
rm -rf target/assets
target/release/phoenix-gpu generate-assets target/assets >/dev/null
# cargo-deb warns about every asset under ../../target that it does not build; those are ours.
cargo deb -p phoenix-gpu --no-build --locked "$@" \
  2> >(grep -v "Only source paths starting with exactly 'target/release/'" >&2)
ls -t target/debian/phoenix-gpu_*.deb | head -n 1
