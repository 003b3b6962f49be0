#!/usr/bin/env bash
# Global allocator comparison: swarmwall built with glibc's malloc (`--no-default-features`),
# with jemalloc (tikv-jemallocator, the default) and with mimalloc (`--features mimalloc`),
# side by side in one run, default configuration (inspection on), each proxy pinned to core 0,
# the load (the Rust `relay_load` example) on core 1. Reports medians of RUNS interleaved runs:
# RSS at start, 1- and 16-stream throughput, new connections/s (32 concurrent), 64-byte
# ping-pong p50/p99; then idle memory per CONNECT session (`scripts/bench_relay.py
# --idle-only`, fresh processes) read 1 s (inspect phase) and 12 s (fast path) after the last
# session was opened. Cells: median (lowest–highest run).
#
#   scripts/bench-alloc.sh                                   # about 6 minutes with the builds
#   RUNS=3 SECONDS_PER_TEST=2 IDLE=9000 scripts/bench-alloc.sh
#   SKIP_BUILD=1 GLIBC_BIN=... JEMALLOC_BIN=... MIMALLOC_BIN=... scripts/bench-alloc.sh
#   BINS="before=/tmp/swarmwall-old after=target/release/swarmwall" scripts/bench-alloc.sh
#                                  # any binaries side by side (no allocator builds)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SECONDS_PER_TEST=${SECONDS_PER_TEST:-2}
IDLE=${IDLE:-9000}
PROXY_CORE=${PROXY_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
LOAD_BIN=${LOAD_BIN:-target/release/examples/relay_load}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
max_idle=$(( ($(ulimit -n) - 200) / 2 ))
[ "$IDLE" -le "$max_idle" ] || IDLE=$max_idle

. scripts/bench-common.sh

# One binary per allocator (built here unless given; each build replaces target/release/swarmwall,
# and the last one built is jemalloc, the default), or the NAME=PATH pairs of BINS.
declare -A bins
variants=(glibc jemalloc mimalloc)
if [ -n "${BINS:-}" ]; then
    variants=()
    for pair in $BINS; do
        variants+=("${pair%%=*}")
        bins[${pair%%=*}]=${pair#*=}
    done
fi
for variant in glibc mimalloc jemalloc; do
    [ -z "${BINS:-}" ] || break
    given_var="${variant^^}_BIN"
    if [ -n "${!given_var:-}" ]; then
        bins[$variant]=${!given_var}
        continue
    fi
    features=(--no-default-features)
    [ "$variant" = glibc ] || features+=(--features "$variant")
    cargo build --release -p swarmwall "${features[@]}"
    cp target/release/swarmwall "$work/swarmwall-$variant"
    bins[$variant]=$work/swarmwall-$variant
done
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p swarmwall-server --example relay_load

started=()
start() { # VARIANT TAG: appends NAME=ADDRESS:PID to `started`
    local name="$1-$2"
    printf '[server]\nmax_sessions = 30000\n' > "$work/$name.toml"
    RUST_LOG=warn taskset -c "$PROXY_CORE" "${bins[$1]}" serve --listen 127.0.0.1:0 \
        --config "$work/$name.toml" --allow-destination 127.0.0.0/8 \
        --data-dir "$work/$name-data" --admin-listen 127.0.0.1:0 > /dev/null 2> "$work/$name.log" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do grep -q "listening on" "$work/$name.log" && break; sleep 0.1; done
    started+=("$1=$(grep -o 'listening on [0-9.:]*' "$work/$name.log" | awk '{print $3}'):$pid")
}
stop_all() {
    for spec in "${started[@]}"; do kill "${spec##*:}" 2>/dev/null || true; done
    started=()
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
load() { taskset -c "$CLIENT_CORE" "$LOAD_BIN" "$@"; }

for variant in "${variants[@]}"; do start "$variant" load; done
sleep 1
for spec in "${started[@]}"; do
    echo "${spec%%=*} rss_start_kib $(rss_kib "${spec##*:}")" >> "$work/samples"
done
for run in $(seq "$RUNS"); do
    for spec in "${started[@]}"; do
        name=${spec%%=*}
        rest=${spec#*=}
        addr=${rest%:*}
        {
            echo "$name tp1_mbs $(load --streams 1 --seconds "$SECONDS_PER_TEST" --proxy "$addr" \
                | json bytes_per_second | awk '{print $1 / 1e6}')"
            echo "$name tp16_mbs $(load --streams 16 --seconds "$SECONDS_PER_TEST" --proxy "$addr" \
                | json bytes_per_second | awk '{print $1 / 1e6}')"
            echo "$name conn_per_s $(load --concurrency 32 --seconds "$SECONDS_PER_TEST" \
                --proxy "$addr" | json per_second)"
            pingpong=$(load --pingpong 64 --rounds 5000 --proxy "$addr")
            echo "$name p50_us $(echo "$pingpong" | json p50_us)"
            echo "$name p99_us $(echo "$pingpong" | json p99_us)"
        } >> "$work/samples"
    done
done
for spec in "${started[@]}"; do
    echo "${spec%%=*} rss_after_load_kib $(rss_kib "${spec##*:}")" >> "$work/samples"
done
stop_all

# Idle memory per session, on fresh processes (what the load left in the heap would hide it).
for settle in 1 12; do
    targets=()
    for variant in "${variants[@]}"; do start "$variant" "idle$settle"; done
    for spec in "${started[@]}"; do
        targets+=(--target "${spec%%=*}=${spec#*=}")
    done
    python3 scripts/bench_relay.py --core "$CLIENT_CORE" --idle-only --idle-sessions "$IDLE" \
        --idle-settle "$settle" "${targets[@]}" \
        | awk -v settle="$settle" -F'|' '/^\| /{gsub(/ /, "", $2); split($3, v, " "); print $2, "idle_" settle "s_bytes", v[1]}' \
        >> "$work/samples"
    stop_all
done

echo "allocators side by side: proxy on core $PROXY_CORE, load on core $CLIENT_CORE, median of" \
     "$RUNS x $SECONDS_PER_TEST s; idle: $IDLE sessions"
python3 - "$work/samples" "${variants[@]}" <<'PY'
import statistics, sys
values = {}
for line in open(sys.argv[1]):
    name, metric, value = line.split()
    values.setdefault(metric, {}).setdefault(name, []).append(float(value))
metrics = ["rss_start_kib", "rss_after_load_kib", "tp1_mbs", "tp16_mbs", "conn_per_s", "p50_us",
           "p99_us", "idle_1s_bytes", "idle_12s_bytes"]
names = sys.argv[2:]
print("| metric | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for metric in metrics:
    row = values.get(metric, {})
    cells = []
    for name in names:
        samples = row.get(name)
        if not samples:
            cells.append("–")
        elif len(samples) == 1:
            cells.append("%.0f" % samples[0])
        else:
            cells.append("%.0f (%.0f–%.0f)" % (statistics.median(samples), min(samples),
                                               max(samples)))
    print("| %s | %s |" % (metric, " | ".join(cells)))
PY
