#!/usr/bin/env bash
# Latency of the store calls one login makes (lockout check for the account and for the client,
# a failure-counter update, a TOTP replay claim): the embedded store (redb, fsync per write)
# against Redis on loopback. Each backend runs RUNS times (`swarmwall store bench`, ITERATIONS
# sequential logins per run); the table shows the median across runs of each run's p50 and p99.
# A second table shows throughput with CONCURRENCY logins in flight (the embedded store commits
# concurrent writes together: one fsync per batch).
#
#   scripts/bench-store.sh                 # builds target/release/swarmwall first
#   SWARMWALL_BIN=path RUNS=7 ITERATIONS=5000 DATA_DIR=/var/lib/x scripts/bench-store.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
ITERATIONS=${ITERATIONS:-2000}
CONCURRENCY=${CONCURRENCY:-16}
if [ -z "${SWARMWALL_BIN:-}" ]; then
    cargo build --release -p swarmwall >&2
    SWARMWALL_BIN=target/release/swarmwall
fi
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }

work=$(mktemp -d)
redis_pid=""
cleanup() {
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# A password as in production (swarmwall refuses a password-less Redis); in a 0600 file, not argv.
password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077 && printf 'requirepass %s\n' "$password" >"$work/redis.conf")
redis-server "$work/redis.conf" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" >/dev/null &
redis_pid=$!
for _ in $(seq 1 100); do
    REDISCLI_AUTH="$password" redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.05
done
# The URL with the password goes in a 0600 config file, not on the command line.
(umask 077 && printf '[store]\nurl = "redis://:%s@127.0.0.1:%s/"\n' "$password" "$port" \
    >"$work/redis-store.toml")

data_dir=${DATA_DIR:-$work/embedded}
for run in $(seq 1 "$RUNS"); do
    "$SWARMWALL_BIN" store bench --store "embedded:$data_dir" --iterations "$ITERATIONS" >>"$work/embedded.jsonl"
    "$SWARMWALL_BIN" store bench --config "$work/redis-store.toml" --iterations "$ITERATIONS" >>"$work/redis.jsonl"
    "$SWARMWALL_BIN" store bench --store "embedded:$data_dir" --iterations "$ITERATIONS" \
        --concurrency "$CONCURRENCY" >>"$work/embedded-concurrent.jsonl"
    "$SWARMWALL_BIN" store bench --config "$work/redis-store.toml" --iterations "$ITERATIONS" \
        --concurrency "$CONCURRENCY" >>"$work/redis-concurrent.jsonl"
    echo "run $run/$RUNS done" >&2
done

python3 - "$work" "$RUNS" "$ITERATIONS" "$CONCURRENCY" <<'PY'
import json, statistics, sys
work, runs, iterations, concurrency = sys.argv[1:5]
rows = [("login (all four)", "login")] + [(n, n) for n in
        ("active_until_account", "active_until_client", "record_event", "claim_once")]
data = {name: [json.loads(l) for l in open(f"{work}/{name}.jsonl")]
        for name in ("embedded", "redis", "embedded-concurrent", "redis-concurrent")}
def pick(run, key, q):
    return run[f"login_{q}_us"] if key == "login" else run["operations"][key][f"{q}_us"]
def med(name, key, q):
    return statistics.median(pick(run, key, q) for run in data[name])
print(f"store latency, median of {runs} runs x {iterations} logins (microseconds)")
print("| operation | embedded p50 | embedded p99 | redis p50 | redis p99 | embedded/redis p50 |")
print("|---|---:|---:|---:|---:|---:|")
for label, key in rows:
    e50, e99, r50, r99 = med("embedded", key, "p50"), med("embedded", key, "p99"), med("redis", key, "p50"), med("redis", key, "p99")
    ratio = e50 / r50 if r50 else float("nan")
    print(f"| {label} | {e50:.0f} | {e99:.0f} | {r50:.0f} | {r99:.0f} | {ratio:.2f} |")
print()
print(f"throughput, logins per second (median of {runs} runs)")
print(f"| logins in flight | embedded | redis |")
print("|---:|---:|---:|")
for label, suffix in (("1", ""), (concurrency, "-concurrent")):
    e = statistics.median(r["logins_per_second"] for r in data["embedded" + suffix])
    r = statistics.median(r["logins_per_second"] for r in data["redis" + suffix])
    print(f"| {label} | {e:.0f} | {r:.0f} |")
PY
