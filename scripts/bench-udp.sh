#!/usr/bin/env bash
# UDP ASSOCIATE round trips in the relay layout: each proxy pinned to core PROXY_CORE, the load
# generator (client and echo thread, `relay_load --udp`) pinned to core CLIENT_CORE. Targets
# side by side: direct UDP (no proxy), direct with the echo thread on PROXY_CORE (the host's own
# cost of crossing cores), swarmwall with the default configuration (inspection
# on), the same with a customer account (the association's control connection logs in),
# swarmwall with `udp_busy_poll = BUSY_POLL` (default 50us) and danted when installed.
# For each WINDOWS entry (datagrams in flight on one association): round trips per second,
# median of RUNS interleaved runs of UDP_SECONDS each.
#
#   scripts/bench-udp.sh                          # release build; about 1 minute
#   RUNS=5 UDP_SECONDS=3 WINDOWS="1 8 32" UDP_SIZE=512 scripts/bench-udp.sh
#   SWARMWALL_BIN=/path/to/swarmwall scripts/bench-udp.sh   # measure another build
#   PERF=1 scripts/bench-udp.sh                 # also: per round trip, the proxy's system calls,
#                                                # context switches and CPU µs (perf stat,
#                                                # /proc/PID/stat) over one run per window
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
UDP_SECONDS=${UDP_SECONDS:-3}
UDP_SIZE=${UDP_SIZE:-512}
WINDOWS=${WINDOWS:-1 8 32}
BUSY_POLL=${BUSY_POLL:-50us}
PERF=${PERF:-0}
PROXY_CORE=${PROXY_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
BIN=${SWARMWALL_BIN:-target/release/swarmwall}
LOAD_BIN=${LOAD_BIN:-target/release/examples/relay_load}
[ -n "${SWARMWALL_BIN:-}" ] || cargo build --release -p swarmwall
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p swarmwall-server --example relay_load

. scripts/bench-common.sh

# NAME ADDRESS PID [USER PASSWORD], one per entry ("-" = no proxy).
targets=("direct - -" "direct-cross-core - -")
start_swarmwall() { # NAME [SERVER_KEY_LINE [ACCOUNTS_FILE "USER PASSWORD"]]
    printf '[server]\n%s\n' "${2:-}" > "$work/$1.toml"
    local accounts=()
    [ -z "${3:-}" ] || accounts=(--accounts "$3")
    RUST_LOG=warn taskset -c "$PROXY_CORE" "$BIN" serve --listen 127.0.0.1:0 \
        --config "$work/$1.toml" --allow-destination 127.0.0.0/8 --data-dir "$work/$1-data" \
        --admin-listen 127.0.0.1:0 "${accounts[@]}" 2> "$work/$1.log" &
    pids+=($!)
    for _ in $(seq 100); do grep -q "listening on" "$work/$1.log" && break; sleep 0.1; done
    targets+=("$1 $(grep -o 'listening on [0-9.:]*' "$work/$1.log" | awk '{print $3}') $! ${4:-}")
}
password=bench-password-$$
printf '%s\n' "$password" | "$BIN" user add bench --accounts "$work/accounts.toml" \
    --data-dir "$work/user-data" --password-stdin >/dev/null
start_swarmwall swarmwall
start_swarmwall swarmwall-accounts "" "$work/accounts.toml" "bench $password"
# The same with `[server] udp_busy_poll` (BUSY_POLL=0 leaves this row out).
[ "$BUSY_POLL" = 0 ] || start_swarmwall swarmwall-busy-poll "udp_busy_poll = \"$BUSY_POLL\""
if start_danted "$PROXY_CORE"; then
    targets+=("danted 127.0.0.1:$danted_port $danted_pid")
else
    echo "danted not installed (apt-get install dante-server): its rows are left out"
fi
sleep 1

echo "UDP ASSOCIATE: $UDP_SIZE-byte datagrams, proxy on core $PROXY_CORE, client + echo on core" \
     "$CLIENT_CORE; median of $RUNS x $UDP_SECONDS s"
for run in $(seq "$RUNS"); do
    for window in $WINDOWS; do
        for target in "${targets[@]}"; do
            read -r name addr _ user pass <<< "$target"
            args=(--udp "$UDP_SIZE" --window "$window" --seconds "$UDP_SECONDS")
            [ "$addr" = - ] || args+=(--proxy "$addr")
            [ "$name" != direct-cross-core ] || args+=(--peer-core "$PROXY_CORE")
            [ -z "$user" ] || args+=(--user "$user" --password "$pass")
            result=$(taskset -c "$CLIENT_CORE" "$LOAD_BIN" "${args[@]}" \
                | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["round_trips_per_second"], r["lost"])') \
                || result="0 0"
            echo "$name $window $result" >> "$work/samples"
        done
    done
done
python3 - "$work/samples" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, window, rate, lost = line.split()
    rows.setdefault((int(window), name), []).append((float(rate), int(lost)))
print("| in flight | target | round trips/s | / direct | per run | lost |")
print("|---|---|---|---|---|---|")
for (window, name), samples in sorted(rows.items(), key=lambda item: item[0][0]):
    rate = statistics.median(r for r, _ in samples)
    direct = statistics.median(r for r, _ in rows[(window, "direct")])
    runs = ", ".join("%.0f" % r for r, _ in samples)
    lost = sum(l for _, l in samples)
    print("| %d | %s | %.0f | %.2f× | %s | %d |" % (window, name, rate, rate / direct, runs, lost))
PY

if [ "$PERF" = 1 ]; then
    echo
    echo "per round trip, in the proxy (perf stat -p PID and /proc/PID/stat over one run of $UDP_SECONDS s):"
    echo "| in flight | target | system calls | context switches | CPU µs |"
    echo "|---|---|---|---|---|"
    for window in $WINDOWS; do
        for target in "${targets[@]}"; do
            read -r name addr pid user pass <<< "$target"
            [ "$addr" = - ] && continue
            login=()
            [ -z "$user" ] || login=(--user "$user" --password "$pass")
            ticks_before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pid" -o "$work/perf" -- \
                taskset -c "$CLIENT_CORE" "$LOAD_BIN" --udp "$UDP_SIZE" --window "$window" \
                --seconds "$UDP_SECONDS" --proxy "$addr" "${login[@]}" > "$work/perf-run"
            ticks_after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            python3 - "$work/perf" "$work/perf-run" "$window" "$name" \
                "$((ticks_after - ticks_before))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
perf, run, window, name, ticks, hz = sys.argv[1:]
result = json.load(open(run))
round_trips = result["round_trips_per_second"] * result["seconds"] or 1
values = {}
for line in open(perf):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].replace(".", "").isdigit():
        values[fields[2]] = float(fields[0])
print("| %s | %s | %.2f | %.2f | %.1f |" % (
    window, name, values.get("raw_syscalls:sys_enter", 0) / round_trips,
    values.get("context-switches", 0) / round_trips, int(ticks) / int(hz) * 1e6 / round_trips))
PY
        done
    done
fi
