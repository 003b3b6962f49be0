# Shared by the relay benchmarks (bench-relay.sh, bench-latency.sh, bench-udp.sh,
# bench-cores.sh): source it, never run it. Gives a scratch directory `$work`, an array `pids`
# of processes killed on exit, `free_port` and `start_danted`.

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Start danted (dante-server) without authentication on CORE, allowing everything; sets
# `danted_port` and `danted_pid` (also added to `pids`). Returns 1 when danted is not installed.
start_danted() { # CORE
    command -v danted >/dev/null || return 1
    danted_port=$(free_port)
    cat > "$work/danted.conf" <<CONF
logoutput: /dev/null
internal: 127.0.0.1 port = $danted_port
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
CONF
    taskset -c "$1" danted -f "$work/danted.conf" -p "$work/danted.pid" >/dev/null 2>&1 &
    danted_pid=$!
    pids+=("$danted_pid")
}
