#!/usr/bin/env bash
# Login flood benchmark (not a timed test): 5,000 connections at once from 50 loopback
# addresses, each logging in as a random unknown user with a wrong password, against swarmwall
# with one account at the default argon2 cost and default [security] settings. Reports the
# proxy's idle, peak and after RSS, what the clients saw, what the proxy counted (argon2
# verifications, refusals as overloaded / locked out, pre-login slots refused), and the round
# trips of a customer session opened before the flood. Bounded: about 20 s.
#
#   scripts/bench-auth-flood.sh
#   CONNECTIONS=2000 SOURCES=20 scripts/bench-auth-flood.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-5000}
SOURCES=${SOURCES:-50}
PROXY_CORE=${PROXY_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
BIN=${SWARMWALL_BIN:-target/release/swarmwall}
[ -n "${SWARMWALL_BIN:-}" ] || cargo build --release -p swarmwall
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pid=
cleanup() {
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

password=flood-bench-$$
printf '%s\n' "$password" | "$BIN" user add customer --accounts "$work/accounts.toml" \
    --data-dir "$work/user-data" --password-stdin >/dev/null
printf '[server]\nmax_sessions = 30000\n' > "$work/swarmwall.toml"
RUST_LOG=warn taskset -c "$PROXY_CORE" "$BIN" serve --listen 127.0.0.1:0 \
    --config "$work/swarmwall.toml" --accounts "$work/accounts.toml" \
    --allow-destination 127.0.0.0/8 --data-dir "$work/data" --audit-log "$work/audit.jsonl" \
    --admin-listen 127.0.0.1:0 2> "$work/swarmwall.log" &
pid=$!
for _ in $(seq 100); do grep -q "admin interface on" "$work/swarmwall.log" && break; sleep 0.1; done
addr=$(grep -o 'listening on [0-9.:]*' "$work/swarmwall.log" | awk '{print $3}')
admin=$(grep -o 'admin interface on [0-9.:]*' "$work/swarmwall.log" | awk '{print $4}')
echo "swarmwall $addr (admin $admin), $CONNECTIONS logins from $SOURCES addresses," \
     "proxy core $PROXY_CORE, client core $CLIENT_CORE"
taskset -c "$CLIENT_CORE" python3 scripts/bench_auth_flood.py --proxy "$addr" --admin "$admin" \
    --pid "$pid" --user customer --password "$password" --connections "$CONNECTIONS" \
    --sources "$SOURCES"
kill -0 "$pid" && echo "swarmwall still running after the flood"
