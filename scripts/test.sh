#!/usr/bin/env bash
# The test command: installs what the tests need (when root), then runs every test of the
# workspace. Run it as root, from a root shell (it calls no sudo); without root the tests that
# need root say they are skipped. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${PHOENIX_SKIP_INSTALL:-0}" != 1 ]; then
  scripts/install-test-deps.sh
fi
cargo test --workspace --all-features --locked "$@"
