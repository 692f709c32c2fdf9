#!/usr/bin/env bash
# The test command: installs what the tests need (when root), then runs every test of the
# workspace. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${PHOENIX_SKIP_INSTALL:-0}" != 1 ]; then
  scripts/install-test-deps.sh
fi
cargo test --workspace --all-features --locked "$@"
