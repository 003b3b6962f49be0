#!/usr/bin/env bash
# The test command (README "Quick start"): install what the tests need, build once, then run
# every suite: Rust unit/property/integration tests, the end-to-end suites with real clients
# (curl, python3 SOCKS clients, python3-libtorrent, opentracker, redis-server) and the
# dashboard test in headless Chromium. Exits non-zero if any suite fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/install-test-deps.sh

echo "== formatting (cargo fmt --check)"
cargo fmt --all -- --check

echo "== lint: no module import cycles (scripts/check-module-cycles.py)"
python3 scripts/check-module-cycles.py --quiet

echo "== build"
cargo build --workspace --all-targets --locked

echo "== cargo test (unit, property and integration tests)"
cargo test --workspace --locked

export SWARMWALL_BIN="$root/target/debug/swarmwall"
echo "== end-to-end suites (pytest, /usr/bin/python3 with python3-libtorrent)"
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/e2e

echo "== dashboard in headless Chromium (playwright-core, /usr/bin/chromium)"
# target/debug/examples/admin_demo was built by `--all-targets` above (building it alone
# would re-resolve features and rebuild half the dependencies).
(cd tests/browser && ADMIN_DEMO_BIN="$root/target/debug/examples/admin_demo" npm test)
echo "== all suites passed"
