#!/usr/bin/env bash
# Small-message latency through the relay: 64-byte ping-pong on one session, with the proxy,
# the client and the echo server all pinned to ONE core (every hop is then a context switch, as
# on a busy server). Targets side by side: direct loopback, swarmwall default (per-core
# runtimes), swarmwall `runtime = "multi_thread"`, swarmwall with accounts (password login),
# microsocks and danted when installed. Medians of RUNS interleaved runs of ROUNDS exchanges.
#
#   scripts/bench-latency.sh                    # release build; about 1 minute
#   RUNS=7 ROUNDS=20000 SIZE=64 CORE=1 scripts/bench-latency.sh
#   PERF=1 scripts/bench-latency.sh             # also: context switches, migrations and
#                                               # syscalls of the proxy per round trip (perf stat)
#
# Then UDP: 512-byte (UDP_SIZE) datagrams echoed through one UDP ASSOCIATE, one in flight, for
# UDP_SECONDS per run, same placement; round trips per second, medians of RUNS (targets that
# speak UDP ASSOCIATE: direct, swarmwall, danted).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-20000}
SIZE=${SIZE:-64}
CORE=${CORE:-1}
PERF=${PERF:-0}
UDP_SIZE=${UDP_SIZE:-512}
UDP_SECONDS=${UDP_SECONDS:-2}
BIN=${SWARMWALL_BIN:-target/release/swarmwall}
LOAD_BIN=${LOAD_BIN:-target/release/examples/relay_load}
[ -n "${SWARMWALL_BIN:-}" ] || cargo build --release -p swarmwall
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p swarmwall-server --example relay_load

. scripts/bench-common.sh

# NAME ADDRESS PID [USER PASSWORD], one per line.
targets=("direct - -")
start_swarmwall() { # NAME RUNTIME [ACCOUNTS_FILE]
    printf '[server]\nruntime = "%s"\n' "$2" > "$work/$1.toml"
    local accounts=()
    [ -z "${3:-}" ] || accounts=(--accounts "$3")
    RUST_LOG=warn taskset -c "$CORE" "$BIN" serve --listen 127.0.0.1:0 --config "$work/$1.toml" \
        --allow-destination 127.0.0.0/8 --data-dir "$work/$1-data" "${accounts[@]}" \
        2> "$work/$1.log" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do grep -q "listening on" "$work/$1.log" && break; sleep 0.1; done
    local addr
    addr=$(grep -o 'listening on [0-9.:]*' "$work/$1.log" | awk '{print $3}')
    targets+=("$1 $addr $pid ${4:-}")
}
password=bench-password-$$
printf '%s\n' "$password" | "$BIN" user add bench --accounts "$work/accounts.toml" \
    --data-dir "$work/user-data" --password-stdin >/dev/null
start_swarmwall swarmwall per_core
start_swarmwall swarmwall-multi-thread multi_thread
start_swarmwall swarmwall-accounts per_core "$work/accounts.toml" "bench $password"
if command -v microsocks >/dev/null; then
    port=$(free_port)
    taskset -c "$CORE" microsocks -i 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    pids+=($!)
    targets+=("microsocks 127.0.0.1:$port $!")
fi
if start_danted "$CORE"; then
    targets+=("danted 127.0.0.1:$danted_port $danted_pid")
fi
sleep 1

# One measurement: prints "p50 p99" (µs) for target line $1.
measure() {
    local name addr pid user pass
    read -r name addr pid user pass <<< "$1"
    local args=(--pingpong "$SIZE" --rounds "$ROUNDS")
    [ "$addr" = - ] || args+=(--proxy "$addr")
    [ -z "$user" ] || args+=(--user "$user" --password "$pass")
    taskset -c "$CORE" "$LOAD_BIN" "${args[@]}" \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["p50_us"], r["p99_us"])'
}

echo "$SIZE-byte ping-pong, proxy + client + echo on core $CORE; median of $RUNS x $ROUNDS round trips"
for run in $(seq "$RUNS"); do
    for target in "${targets[@]}"; do
        echo "${target%% *} $(measure "$target")" >> "$work/samples"
    done
done
python3 - "$work/samples" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, p50, p99 = line.split()
    rows.setdefault(name, []).append((float(p50), float(p99)))
direct = statistics.median(p for p, _ in rows["direct"])
print("| target | p50 µs | p50 / direct | p99 µs | p50 per run |")
print("|---|---|---|---|---|")
for name, samples in rows.items():
    p50 = statistics.median(p for p, _ in samples)
    p99 = statistics.median(p for _, p in samples)
    runs = ", ".join("%.1f" % p for p, _ in samples)
    print("| %s | %.1f | %.2f× | %.1f | %s |" % (name, p50, p50 / direct, p99, runs))
EOF

echo
echo "UDP: $UDP_SIZE-byte datagrams, one in flight, all on core $CORE; median of $RUNS x $UDP_SECONDS s"
for run in $(seq "$RUNS"); do
    for target in "${targets[@]}"; do
        read -r name addr _ user pass <<< "$target"
        case "$name" in microsocks) continue;; esac
        args=(--udp "$UDP_SIZE" --seconds "$UDP_SECONDS")
        [ "$addr" = - ] || args+=(--proxy "$addr")
        [ -z "$user" ] || args+=(--user "$user" --password "$pass")
        rate=$(taskset -c "$CORE" "$LOAD_BIN" "${args[@]}" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["round_trips_per_second"])') \
            || rate=0
        echo "$name $rate" >> "$work/udp"
    done
done
python3 - "$work/udp" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rate = line.split()
    rows.setdefault(name, []).append(float(rate))
direct = statistics.median(rows["direct"])
print("| target | round trips/s | / direct | per run |")
print("|---|---|---|---|")
for name, rates in rows.items():
    rate = statistics.median(rates)
    print("| %s | %.0f | %.2f× | %s |" % (name, rate, rate / direct, ", ".join("%.0f" % r for r in rates)))
EOF

if [ "$PERF" = 1 ]; then
    echo
    echo "per round trip, in the proxy process (perf stat -p PID over one run of $ROUNDS):"
    echo "| target | context switches | cpu migrations | syscalls |"
    echo "|---|---|---|---|"
    for target in "${targets[@]}"; do
        read -r name addr pid _ <<< "$target"
        [ "$addr" = - ] && continue
        # Counts the proxy while the client command runs (one measurement).
        perf stat -x, -e context-switches,cpu-migrations,raw_syscalls:sys_enter -p "$pid" \
            -o "$work/perf-$name" -- bash -c "$(declare -f measure); $(declare -p SIZE ROUNDS CORE LOAD_BIN); measure '$target'" \
            > /dev/null
        python3 - "$work/perf-$name" "$name" "$ROUNDS" <<'EOF'
import sys
path, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]) + 1000
values = {}
for line in open(path):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].replace(".", "").isdigit():
        values[fields[2]] = float(fields[0])
get = lambda key: values.get(key, 0.0) / rounds
print("| %s | %.2f | %.3f | %.2f |" % (name, get("context-switches"), get("cpu-migrations"),
                                      get("raw_syscalls:sys_enter")))
EOF
    done
fi
