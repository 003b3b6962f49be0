#!/usr/bin/env bash
# Relay benchmark: direct loopback vs swarmwall (and microsocks / danted when installed), side by
# side in one run. Each proxy is pinned to core 0 with taskset; the client and sink run on core 1.
# Bounded: about 20 s per target plus the idle-session phase (about 2 minutes in all).
#
#   scripts/bench-relay.sh                 # release build, 10,000 idle sessions
#   SECONDS_PER_TEST=2 IDLE=2000 scripts/bench-relay.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TEST=${SECONDS_PER_TEST:-4}
# (10,000 idle sessions need 20,000 descriptors in the proxy; capped by the hard limit.)
IDLE=${IDLE:-10000}
PROXY_CORE=${PROXY_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
BIN=${SWARMWALL_BIN:-target/release/swarmwall}

# The load generator for new connections per second (client side, pinned with the driver).
LOAD_BIN=${LOAD_BIN:-target/release/examples/relay_load}
# Always (re)build what is measured unless a binary was named: a stale build measures old code.
[ -n "${SWARMWALL_BIN:-}" ] || cargo build --release -p swarmwall
cargo build --release -p swarmwall-server --example relay_load
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
max_idle=$(( ($(ulimit -n) - 200) / 2 ))
if [ "$IDLE" -gt "$max_idle" ]; then
    echo "open-file limit $(ulimit -n): measuring $max_idle idle sessions instead of $IDLE"
    IDLE=$max_idle
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

targets=("--target" "direct=direct")

# swarmwall, once per fast path (auto = the default, copy, splice) with the classifier's inspect
# phase on (bulk leaves it once the classifier gives up within its byte budget), and once as a
# plain relay with inspection off (the baseline for "inspection costs only the first bytes").
start_swarmwall() { # NAME FAST_PATH [EXTRA_SERVER_KEY]
    printf '[server]\nmax_sessions = 30000\nfast_path = "%s"\n%s\n' "$2" "${3:-}" \
        > "$work/$1.toml"
    RUST_LOG=warn taskset -c "$PROXY_CORE" "$BIN" serve --listen 127.0.0.1:0 \
        --config "$work/$1.toml" --allow-destination 127.0.0.0/8 --data-dir "$work/$1-data" \
        --admin-listen 127.0.0.1:0 2> "$work/$1.log" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do grep -q "listening on" "$work/$1.log" && break; sleep 0.1; done
    local addr
    addr=$(grep -o 'listening on [0-9.:]*' "$work/$1.log" | awk '{print $3}')
    targets+=("--target" "$1=${addr}:${pid}")
}
start_swarmwall swarmwall auto
start_swarmwall swarmwall-copy copy
start_swarmwall swarmwall-splice splice
start_swarmwall swarmwall-plain auto "danger_disable_inspection = true"

# microsocks
if command -v microsocks >/dev/null; then
    port=$(free_port)
    taskset -c "$PROXY_CORE" microsocks -i 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    pids+=($!)
    targets+=("--target" "microsocks=127.0.0.1:${port}:$!")
fi

# danted (dante-server)
if command -v danted >/dev/null; then
    port=$(free_port)
    cat > "$work/danted.conf" <<EOF
logoutput: /dev/null
internal: 127.0.0.1 port = $port
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
EOF
    taskset -c "$PROXY_CORE" danted -f "$work/danted.conf" -p "$work/danted.pid" >/dev/null 2>&1 &
    pids+=($!)
    targets+=("--target" "danted=127.0.0.1:${port}:$!")
fi

# Wait until every proxy port answers.
for spec in "${targets[@]}"; do
    case "$spec" in *=*:*:*)
        hostport=${spec#*=}; hostport=${hostport%:*}
        for _ in $(seq 100); do
            python3 -c "import socket,sys; socket.create_connection(('${hostport%:*}', ${hostport##*:}), 1)" 2>/dev/null && break
            sleep 0.1
        done;;
    esac
done

echo "proxy core $PROXY_CORE, client core $CLIENT_CORE, $SECONDS_PER_TEST s per test, $IDLE idle sessions"
python3 scripts/bench_relay.py --core "$CLIENT_CORE" --seconds "$SECONDS_PER_TEST" \
    --idle-sessions "$IDLE" --load-bin "$LOAD_BIN" "${targets[@]}"
