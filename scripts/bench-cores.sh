#!/usr/bin/env bash
# Scaling with cores: swarmwall (default configuration: per-core runtimes, inspection on) pinned
# to 1 core and then to 2 cores, measured with the same load (the Rust `relay_load` example,
# unpinned): new connections per second (32 concurrent loops of handshake + 1-byte echo +
# close) and 16-stream throughput. Prints each figure with the speed-up 2 cores / 1 core, as
# medians of RUNS interleaved runs of SECONDS each; RUNTIME=multi_thread measures that layout.
#
#   scripts/bench-cores.sh                       # release build; about 1 minute
#   RUNS=5 SECONDS_PER_TEST=3 scripts/bench-cores.sh
#   ACCOUNTS=1 scripts/bench-cores.sh            # every session logs in to a customer account
#
# On a 2-core machine the load generator shares the cores with the 2-core proxy (and has a core
# of its own against the 1-core proxy), so the speed-up shown is a lower bound.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SECONDS_PER_TEST=${SECONDS_PER_TEST:-3}
ONE=${ONE:-0}
TWO=${TWO:-0,1}
RUNTIME=${RUNTIME:-per_core}
ACCOUNTS=${ACCOUNTS:-0}
BIN=${SWARMWALL_BIN:-target/release/swarmwall}
LOAD_BIN=${LOAD_BIN:-target/release/examples/relay_load}
[ -n "${SWARMWALL_BIN:-}" ] || cargo build --release -p swarmwall
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p swarmwall-server --example relay_load
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

. scripts/bench-common.sh

# With ACCOUNTS=1: one customer account (default argon2id cost) that every session logs in to.
server_accounts=()
login=()
if [ "$ACCOUNTS" = 1 ]; then
    password=bench-password-$$
    printf '%s\n' "$password" | "$BIN" user add bench --accounts "$work/accounts.toml" \
        --data-dir "$work/user-data" --password-stdin >/dev/null
    server_accounts=(--accounts "$work/accounts.toml")
    login=(--user bench --password "$password")
fi
addresses=()
start() { # NAME CORES: appends the listening address to `addresses`
    printf '[server]\nmax_sessions = 30000\nruntime = "%s"\n' "$RUNTIME" > "$work/$1.toml"
    RUST_LOG=warn taskset -c "$2" "$BIN" serve --listen 127.0.0.1:0 --config "$work/$1.toml" \
        --allow-destination 127.0.0.0/8 --data-dir "$work/$1-data" --admin-listen 127.0.0.1:0 \
        "${server_accounts[@]}" > /dev/null 2> "$work/$1.log" &
    pids+=($!)
    for _ in $(seq 100); do grep -q "listening on" "$work/$1.log" && break; sleep 0.1; done
    addresses+=("$(grep -o 'listening on [0-9.:]*' "$work/$1.log" | awk '{print $3}')")
}
start one-core "$ONE"
start two-cores "$TWO"
one=${addresses[0]}
two=${addresses[1]}
sleep 1

json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
for run in $(seq "$RUNS"); do
    for name in one two; do
        addr=${!name}
        cps=$("$LOAD_BIN" --seconds "$SECONDS_PER_TEST" --concurrency 32 --proxy "$addr" \
            "${login[@]}" | json per_second)
        tp=$("$LOAD_BIN" --streams 16 --seconds "$SECONDS_PER_TEST" --proxy "$addr" \
            "${login[@]}" | json bytes_per_second)
        echo "$name $cps $tp" >> "$work/samples"
    done
done
echo "swarmwall runtime = \"$RUNTIME\"$([ "$ACCOUNTS" = 1 ] && echo ", every session logging in") on core(s) $ONE vs $TWO; median of $RUNS x $SECONDS_PER_TEST s"
python3 - "$work/samples" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, cps, tp = line.split()
    rows.setdefault(name, []).append((float(cps), float(tp)))
med = {name: (statistics.median(c for c, _ in s), statistics.median(t for _, t in s))
       for name, s in rows.items()}
print("| proxy cores | new conn/s | 16 streams Gbit/s | per run (conn/s; Gbit/s) |")
print("|---|---|---|---|")
for name, label in (("one", "1"), ("two", "2")):
    cps, tp = med[name]
    runs = "; ".join("%.0f, %.1f" % (c, t * 8 / 1e9) for c, t in rows[name])
    print("| %s | %.0f | %.1f | %s |" % (label, cps, tp * 8 / 1e9, runs))
print("| speed-up | %.2f× | %.2f× | |" % (med["two"][0] / med["one"][0], med["two"][1] / med["one"][1]))
EOF
