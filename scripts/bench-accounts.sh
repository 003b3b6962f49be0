#!/usr/bin/env bash
# Accounts at scale: start-up time and RSS of `swarmwall serve --accounts FILE` with generated
# files of 10 k / 100 k / 1 M accounts, memory per account, and a reload with one changed
# account (time until the change is in force, slowest concurrent login meanwhile); then the
# login rate through RADIUS (a real FreeRADIUS on loopback) vs local accounts.
#
#   scripts/bench-accounts.sh                          # builds target/release/swarmwall first
#   SWARMWALL_BIN=target/debug/swarmwall SIZES="10000 100000" scripts/bench-accounts.sh
#   LOGINS=400 CONCURRENCY=8 (login-rate part)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SWARMWALL_BIN:-}" ]; then
    cargo build --release -p swarmwall >&2
    export SWARMWALL_BIN=target/release/swarmwall
fi
python3 scripts/bench_accounts.py
# Login rate: local accounts (argon2id at the default cost) vs RADIUS (real FreeRADIUS).
python3 scripts/bench_login_rate.py
