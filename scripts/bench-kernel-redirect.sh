#!/usr/bin/env bash
# Would an in-kernel relay (eBPF sockmap) bring the relay near direct loopback? Side by side, in
# one run: direct loopback, swarmwall (default configuration) and the kernel-redirect floor
# (`crates/swarmwall-server/examples/sockmap_relay.rs`: a minimal SOCKS5 server that puts both
# sockets of each session into a SOCKHASH with a stream-verdict program, so that no byte passes
# through user space after the reply). Needs root (CAP_BPF, CAP_NET_ADMIN); without it the
# kernel row is left out and said so.
#
#   scripts/bench-kernel-redirect.sh      # release build; about 2 minutes
#   RUNS=5 ROUNDS=20000 SECONDS_PER_TEST=3 scripts/bench-kernel-redirect.sh
#
# Three placements, medians of RUNS interleaved runs (load generator: relay_load):
#   1. 64-byte ping-pong, proxy + client + echo on ONE core (every hop a context switch);
#   2. the same with the proxy on core 0 and the client and echo on core 1 (every hop between
#      the two cores a cross-core wake-up); direct here has its echo thread on core 0, so it
#      pays the host's cross-core cost once each way;
#   3. bulk throughput, 1 and 16 streams, proxy on core 0, client and sink on core 1 (and
#      direct with the sink on core 0: direct loopback across the two cores).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-20000}
SECONDS_PER_TEST=${SECONDS_PER_TEST:-3}
BIN=${SWARMWALL_BIN:-target/release/swarmwall}
LOAD_BIN=${LOAD_BIN:-target/release/examples/relay_load}
KERNEL_BIN=${KERNEL_BIN:-target/release/examples/sockmap_relay}
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -p swarmwall
    cargo build --release -p swarmwall-server --example relay_load --example sockmap_relay
fi

. scripts/bench-common.sh

# Waits for "listening on ADDR" in LOG; prints ADDR.
listening_address() { # LOG
    for _ in $(seq 100); do grep -q "listening on" "$1" && break; sleep 0.1; done
    grep -o 'listening on [0-9.:]*' "$1" | awk '{print $3}'
}

printf '[server]\nmax_sessions = 30000\n' > "$work/swarmwall.toml"
RUST_LOG=warn taskset -c 0 "$BIN" serve --listen 127.0.0.1:0 --config "$work/swarmwall.toml" \
    --allow-destination 127.0.0.0/8 --data-dir "$work/data" 2> "$work/swarmwall.log" &
swarmwall_pid=$!
pids+=("$swarmwall_pid")
targets=("direct -" "swarmwall $(listening_address "$work/swarmwall.log")")

taskset -c 0 "$KERNEL_BIN" --listen 127.0.0.1:0 2> "$work/kernel.log" &
kernel_pid=$!
pids+=("$kernel_pid")
sleep 0.5
if kill -0 "$kernel_pid" 2>/dev/null; then
    targets+=("kernel-redirect $(listening_address "$work/kernel.log")")
else
    echo "kernel redirect left out: $(cat "$work/kernel.log")"
fi

# Moves every thread of the two proxies to CORE.
pin_proxies() { # CORE
    taskset -a -p -c "$1" "$swarmwall_pid" > /dev/null
    ! kill -0 "$kernel_pid" 2>/dev/null || taskset -a -p -c "$1" "$kernel_pid" > /dev/null
}

json_field() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(" ".join(str(r[k]) for k in sys.argv[1:]))' "$@"; }

for run in $(seq "$RUNS"); do
    pin_proxies 1
    for target in "${targets[@]}"; do
        read -r name addr <<< "$target"
        proxy=()
        [ "$addr" = - ] || proxy=(--proxy "$addr")
        echo "same-core $name $(taskset -c 1 "$LOAD_BIN" --pingpong 64 --rounds "$ROUNDS" \
            "${proxy[@]}" | json_field p50_us p99_us)" >> "$work/samples"
    done
    pin_proxies 0
    for target in "${targets[@]}"; do
        read -r name addr <<< "$target"
        proxy=(--peer-core 0)
        [ "$addr" = - ] || proxy=(--proxy "$addr")
        echo "cross-core $name $(taskset -c 1 "$LOAD_BIN" --pingpong 64 --rounds "$ROUNDS" \
            "${proxy[@]}" | json_field p50_us p99_us)" >> "$work/samples"
        for streams in 1 16; do
            runs=("$name")
            [ "$addr" != - ] || runs+=("direct-cross-core")
            for row in "${runs[@]}"; do
                proxy=()
                [ "$addr" = - ] || proxy=(--proxy "$addr")
                [ "$row" != direct-cross-core ] || proxy=(--peer-core 0)
                echo "streams-$streams $row $(taskset -c 1 "$LOAD_BIN" --streams "$streams" \
                    --seconds "$SECONDS_PER_TEST" "${proxy[@]}" | json_field bytes_per_second) 0" \
                    >> "$work/samples"
            done
        done
    done
done

python3 - "$work/samples" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    test, name, first, second = line.split()
    rows.setdefault(test, {}).setdefault(name, []).append((float(first), float(second)))
def median(samples, index):
    return statistics.median(sample[index] for sample in samples)
for test, title in (("same-core", "64-byte ping-pong, proxy + client + echo on core 1"),
                    ("cross-core", "64-byte ping-pong, proxy on core 0, client on core 1 "
                                   "(direct: echo on core 0)")):
    print("\n%s\n\n| target | p50 µs | p50 / direct | p99 µs | p50 per run |\n|---|---|---|---|---|" % title)
    direct = median(rows[test]["direct"], 0)
    for name, samples in rows[test].items():
        p50 = median(samples, 0)
        print("| %s | %.1f | %.2f× | %.1f | %s |" % (name, p50, p50 / direct, median(samples, 1),
              ", ".join("%.1f" % s[0] for s in samples)))
print("\nbulk, proxy on core 0, client and sink on core 1\n")
print("| target | 1 stream MB/s | / direct | 16 streams MB/s | / direct |\n|---|---|---|---|---|")
one, many = rows["streams-1"], rows["streams-16"]
for name in one:
    a, b = median(one[name], 0) / 1e6, median(many[name], 0) / 1e6
    print("| %s | %.0f | %.2f× | %.0f | %.2f× |" % (name, a, a * 1e6 / median(one["direct"], 0),
          b, b * 1e6 / median(many["direct"], 0)))
EOF
