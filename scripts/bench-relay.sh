#!/usr/bin/env bash
# Relay benchmark: direct loopback vs swarmwall (and microsocks / danted when installed), side by
# side in one run. Each proxy is pinned to core 0 with taskset; the client and sink run on core 1.
# Bounded: about 20 s per target plus the idle-session phase (about 2 minutes in all).
#
#   scripts/bench-relay.sh                 # release build, 10,000 idle sessions
#   SECONDS_PER_TEST=2 IDLE=2000 scripts/bench-relay.sh
#   ONLY=auth scripts/bench-relay.sh       # only the authenticated new-connections tables
#   PROXY_CPU_QUOTA=0 ONLY=auth scripts/bench-relay.sh   # without the proxy-bound table
#   ONLY=idle scripts/bench-relay.sh       # only idle memory per session (swarmwall, peers)
#   ONLY=idle IDLE_SETTLE=12 scripts/bench-relay.sh   # read past inspect_timeout (fast path)
#   ONLY=relay scripts/bench-relay.sh      # only the relay table (no auth, latency, UDP tables)
# Last, for a whole run: scripts/bench-latency.sh (64-byte ping-pong p50/p99 and UDP round
# trips with proxy, client and echo on one core), then scripts/bench-udp.sh (UDP ASSOCIATE round
# trips in this layout, 1, 8 and 32 datagrams in flight).
#
# The authenticated table (printed after the relay table; about 40 s): new connections/s, proxy CPU per
# connection and peak RSS for swarmwall without accounts, swarmwall with one account (made
# with `swarmwall user add`, default argon2 cost, password login on every connection) and
# microsocks with and without `-u/-P`; 64 concurrent clients, medians of AUTH_RUNS (3)
# interleaved runs of AUTH_SECONDS (3) each.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TEST=${SECONDS_PER_TEST:-4}
ONLY=${ONLY:-all}
AUTH_SECONDS=${AUTH_SECONDS:-3}
AUTH_RUNS=${AUTH_RUNS:-3}
# (10,000 idle sessions need 20,000 descriptors in the proxy; capped by the hard limit.)
IDLE=${IDLE:-10000}
# Seconds between the last idle session opened and the RSS reading (1: the sessions are still in
# the inspect phase; past inspect_timeout, 10 s by default, they sit on the fast path).
IDLE_SETTLE=${IDLE_SETTLE:-1}
PROXY_CORE=${PROXY_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
BIN=${SWARMWALL_BIN:-target/release/swarmwall}

# The load generator for new connections per second (client side, pinned with the driver).
LOAD_BIN=${LOAD_BIN:-target/release/examples/relay_load}
# Always (re)build what is measured unless a binary was named: a stale build measures old code.
[ -n "${SWARMWALL_BIN:-}" ] || cargo build --release -p swarmwall
[ "$ONLY" = idle ] || cargo build --release -p swarmwall-server --example relay_load
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
max_idle=$(( ($(ulimit -n) - 200) / 2 ))
if [ "$IDLE" -gt "$max_idle" ]; then
    echo "open-file limit $(ulimit -n): measuring $max_idle idle sessions instead of $IDLE"
    IDLE=$max_idle
fi

. scripts/bench-common.sh

targets=("--target" "direct=direct")

# swarmwall, once per fast path (auto = the default, copy, splice) with the classifier's inspect
# phase on (bulk leaves it once the classifier gives up within its byte budget), and once as a
# plain relay with inspection off (the baseline for "inspection costs only the first bytes").
# With ACCOUNTS_FILE and ":USER:PASSWORD", every session the driver opens logs in (RFC 1929).
start_swarmwall() { # NAME FAST_PATH [EXTRA_SERVER_KEY [ACCOUNTS_FILE :USER:PASSWORD]]
    printf '[server]\nmax_sessions = 30000\nfast_path = "%s"\n%s\n' "$2" "${3:-}" \
        > "$work/$1.toml"
    local accounts=()
    [ -z "${4:-}" ] || accounts=(--accounts "$4")
    RUST_LOG=warn taskset -c "$PROXY_CORE" "$BIN" serve --listen 127.0.0.1:0 \
        --config "$work/$1.toml" --allow-destination 127.0.0.0/8 --data-dir "$work/$1-data" \
        --admin-listen 127.0.0.1:0 "${accounts[@]}" 2> "$work/$1.log" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do grep -q "listening on" "$work/$1.log" && break; sleep 0.1; done
    local addr
    addr=$(grep -o 'listening on [0-9.:]*' "$work/$1.log" | awk '{print $3}')
    targets+=("--target" "$1=${addr}:${pid}${5:-}")
}
# The authenticated comparison: NAME=HOST:PORT:PID[:USER:PASSWORD] for scripts/bench_auth.py.
auth_targets=()
start_auth_swarmwall() { # NAME [ACCOUNTS_FILE]
    printf '[server]\nmax_sessions = 30000\n' > "$work/$1.toml"
    local accounts=()
    [ -z "${2:-}" ] || accounts=(--accounts "$2")
    RUST_LOG=warn taskset -c "$PROXY_CORE" "$BIN" serve --listen 127.0.0.1:0 \
        --config "$work/$1.toml" --allow-destination 127.0.0.0/8 --data-dir "$work/$1-data" \
        --audit-log "$work/$1-audit.jsonl" --admin-listen 127.0.0.1:0 "${accounts[@]}" \
        2> "$work/$1.log" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do grep -q "listening on" "$work/$1.log" && break; sleep 0.1; done
    local addr
    addr=$(grep -o 'listening on [0-9.:]*' "$work/$1.log" | awk '{print $3}')
    auth_targets+=("--target" "$1=${addr}:${pid}${3:-}")
}
# One customer account (default argon2id cost) for the rows "with accounts".
bench_password=bench-password-$$
printf '%s\n' "$bench_password" | "$BIN" user add bench --accounts "$work/accounts.toml" \
    --data-dir "$work/user-data" --password-stdin >/dev/null
if [ "$ONLY" = all ] || [ "$ONLY" = auth ]; then
start_auth_swarmwall swarmwall-no-accounts
start_auth_swarmwall swarmwall-one-account "$work/accounts.toml" ":bench:$bench_password"
if command -v microsocks >/dev/null; then
    port=$(free_port)
    taskset -c "$PROXY_CORE" microsocks -i 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    pids+=($!)
    auth_targets+=("--target" "microsocks=127.0.0.1:${port}:$!")
    port=$(free_port)
    taskset -c "$PROXY_CORE" microsocks -i 127.0.0.1 -p "$port" -u bench -P "$bench_password" \
        >/dev/null 2>&1 &
    pids+=($!)
    auth_targets+=("--target" "microsocks-user-password=127.0.0.1:${port}:$!:bench:$bench_password")
else
    echo "microsocks not installed (apt-get install microsocks): its columns are left out"
fi
fi

if [ "$ONLY" != auth ]; then
start_swarmwall swarmwall auto
# The configuration operators run: the same, every session logging in to a customer account.
start_swarmwall swarmwall-accounts auto "" "$work/accounts.toml" ":bench:$bench_password"
if [ "$ONLY" != idle ]; then
start_swarmwall swarmwall-copy copy
start_swarmwall swarmwall-splice splice
fi
start_swarmwall swarmwall-plain auto "danger_disable_inspection = true"

# microsocks
if command -v microsocks >/dev/null; then
    port=$(free_port)
    taskset -c "$PROXY_CORE" microsocks -i 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    pids+=($!)
    targets+=("--target" "microsocks=127.0.0.1:${port}:$!")
fi

# danted (dante-server; not for ONLY=idle: its idle phase alone takes a minute)
if [ "$ONLY" != idle ] && start_danted "$PROXY_CORE"; then
    targets+=("--target" "danted=127.0.0.1:${danted_port}:$danted_pid")
fi

fi

# Wait until every proxy port answers.
for spec in "${targets[@]}" "${auth_targets[@]}"; do
    case "$spec" in *=*:*:*)
        hostport=${spec#*=}; hostport=$(echo "$hostport" | cut -d: -f1,2)
        for _ in $(seq 100); do
            python3 -c "import socket,sys; socket.create_connection(('${hostport%:*}', ${hostport##*:}), 1)" 2>/dev/null && break
            sleep 0.1
        done;;
    esac
done

if [ "$ONLY" = idle ]; then
    echo "idle memory per CONNECT session: $IDLE sessions, RSS read $IDLE_SETTLE s after the last"
    python3 scripts/bench_relay.py --core "$CLIENT_CORE" --idle-only \
        --idle-sessions "$IDLE" --idle-settle "$IDLE_SETTLE" "${targets[@]}"
    exit 0
fi
if [ "$ONLY" != auth ]; then
echo "proxy core $PROXY_CORE, client core $CLIENT_CORE, $SECONDS_PER_TEST s per test, $IDLE idle sessions"
python3 scripts/bench_relay.py --core "$CLIENT_CORE" --seconds "$SECONDS_PER_TEST" \
    --idle-sessions "$IDLE" --idle-settle "$IDLE_SETTLE" --load-bin "$LOAD_BIN" "${targets[@]}"
fi
[ "$ONLY" != relay ] || exit 0

echo
echo "authenticated new connections: 64 clients, connect -> greeting -> login -> CONNECT ->" \
     "1-byte echo -> close; median of $AUTH_RUNS x $AUTH_SECONDS s; proxy core $PROXY_CORE"
python3 scripts/bench_auth.py --core "$CLIENT_CORE" --seconds "$AUTH_SECONDS" \
    --runs "$AUTH_RUNS" --concurrency 64 --load-bin "$LOAD_BIN" "${auth_targets[@]}"

# The same comparison with every proxy held to PROXY_CPU_QUOTA % of one core (a cgroup CPU
# quota), so that the proxy, not the single-threaded load generator, is the bottleneck: without
# the quota, swarmwall without accounts runs close to the load generator's own ceiling (direct
# loopback), and the login's extra round trip is then paid mostly on the *client's* core. With
# the quota the ratio is that of the proxies' own cost per connection.
PROXY_CPU_QUOTA=${PROXY_CPU_QUOTA:-50}
cgroup=""
if [ "$PROXY_CPU_QUOTA" != 0 ]; then
    if [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
        cgroup=/sys/fs/cgroup/swarmwall-bench-$$
        mkdir "$cgroup" && echo "$((PROXY_CPU_QUOTA * 1000)) 100000" > "$cgroup/cpu.max" || cgroup=""
    elif [ -w /sys/fs/cgroup/cpu ]; then
        cgroup=/sys/fs/cgroup/cpu/swarmwall-bench-$$
        mkdir "$cgroup" && echo 100000 > "$cgroup/cpu.cfs_period_us" \
            && echo "$((PROXY_CPU_QUOTA * 1000))" > "$cgroup/cpu.cfs_quota_us" || cgroup=""
    fi
fi
if [ -n "$cgroup" ]; then
    for spec in "${auth_targets[@]}"; do
        case "$spec" in *=*:*:*)
            pid=$(echo "${spec#*=}" | cut -d: -f3)
            echo "$pid" > "$cgroup/cgroup.procs";;
        esac
    done
    echo
    echo "proxy-bound: the same, each proxy held to ${PROXY_CPU_QUOTA} % of core $PROXY_CORE (cgroup CPU quota)"
    python3 scripts/bench_auth.py --core "$CLIENT_CORE" --seconds "$AUTH_SECONDS" \
        --runs "$AUTH_RUNS" --concurrency 64 --load-bin "$LOAD_BIN" "${auth_targets[@]}"
    # Hand the processes back before the group is removed (the exit trap kills them).
    root=$(dirname "$cgroup")
    while read -r pid; do echo "$pid" > "$root/cgroup.procs" 2>/dev/null || true; done < "$cgroup/cgroup.procs"
    rmdir "$cgroup" 2>/dev/null || true
elif [ "$PROXY_CPU_QUOTA" != 0 ]; then
    echo "proxy-bound table skipped: no writable cgroup CPU controller (run as root, or PROXY_CPU_QUOTA=0)"
fi

# Small-message latency and UDP round trips (all on one core; scripts/bench-latency.sh).
if [ "$ONLY" = all ]; then
    echo
    SKIP_BUILD=1 SWARMWALL_BIN="$BIN" LOAD_BIN="$LOAD_BIN" CORE="$CLIENT_CORE" \
        scripts/bench-latency.sh
    echo
    SKIP_BUILD=1 SWARMWALL_BIN="$BIN" LOAD_BIN="$LOAD_BIN" PROXY_CORE="$PROXY_CORE" \
        CLIENT_CORE="$CLIENT_CORE" scripts/bench-udp.sh
fi
