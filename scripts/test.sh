#!/usr/bin/env bash
# The test command (README "Quick start"): install what the tests need, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
echo "== cargo test"
cargo test --workspace --release 2>&1
echo "== test summary: all suites passed"
