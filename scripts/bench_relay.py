#!/usr/bin/env python3
"""Relay benchmark driver (called by scripts/bench-relay.sh): direct loopback vs SOCKS5 proxies.

For each target (direct, swarmwall, and microsocks/danted when installed) it measures, in one run:
bulk throughput (1 and 16 streams), new connections per second (handshake + 1-byte echo +
close; from the Rust `relay_load` example with 32 concurrent loops, and from 4 Python threads),
request/response latency p50/p99 (1-byte ping-pong on one session), proxy CPU seconds
per GB forwarded (utime+stime from /proc/PID/stat over the whole process tree), and memory per
idle session (RSS delta over N idle CONNECT sessions / N). Prints a Markdown table.

The proxy runs pinned to one core (the shell script starts it with taskset); this driver (client
and sink) pins itself to the other core.
"""
import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

CHUNK = 256 * 1024


def pin(core):
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass


# ---------------------------------------------------------------- servers (sink + echo)

class Sink:
    """Counts bytes received on every connection; for idle sessions it just holds sockets."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4096)
        self.address = self.listener.getsockname()
        self.received = 0
        self.lock = threading.Lock()
        self.held = []
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.drain, args=(conn,), daemon=True).start()

    def drain(self, conn):
        total = 0
        buffer = bytearray(CHUNK)
        try:
            while True:
                n = conn.recv_into(buffer)
                if n == 0:
                    break
                total += n
        except OSError:
            pass
        with self.lock:
            self.received += total
        conn.close()


HOLDER_SCRIPT = """
import socket, sys, time
listener = socket.socket()
# After the connection-rate tests the ephemeral ports may all be in TIME_WAIT: SO_REUSEADDR lets
# the listener take one of those, and the retries cover the rest of the TIME_WAIT period.
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
for attempt in range(120):
    try:
        listener.bind(("127.0.0.1", 0))
        break
    except OSError:
        time.sleep(0.5)
listener.listen(65535)
print(listener.getsockname()[1], flush=True)
held = []
while True:
    conn, _ = listener.accept()
    held.append(conn)
"""


class Holder:
    """Accepts and keeps connections open (idle-session targets), in its own process so the
    file-descriptor limit is shared with nobody."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT], stdout=subprocess.PIPE, text=True)
        self.address = ("127.0.0.1", int(self.proc.stdout.readline()))

    def close(self):
        self.proc.kill()
        self.proc.wait()


class Echo:
    """Echoes every byte back; closes when the client does."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4096)
        self.address = self.listener.getsockname()
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    @staticmethod
    def serve(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        conn.close()


# ---------------------------------------------------------------- clients

# The RFC 1929 login (user, password) as bytes, or None: set from the target being measured
# (every session of a target with an account logs in, as a customer's client does).
LOGIN = None


def open_session(proxy, target):
    """A TCP connection to `target`, through the SOCKS5 `proxy` when given (with the RFC 1929
    login of `LOGIN` when set)."""
    if proxy is None:
        sock = socket.create_connection(target)
    else:
        sock = socket.create_connection(proxy)
        if LOGIN is None:
            sock.sendall(b"\x05\x01\x00")
            if recv_exact(sock, 2) != b"\x05\x00":
                raise RuntimeError("greeting refused")
        else:
            user, password = LOGIN
            sock.sendall(b"\x05\x01\x02")
            if recv_exact(sock, 2) != b"\x05\x02":
                raise RuntimeError("password method refused")
            sock.sendall(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
            if recv_exact(sock, 2) != b"\x01\x00":
                raise RuntimeError("login refused")
        sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target[0]) + struct.pack(">H", target[1]))
        reply = recv_exact(sock, 10)
        if reply[1] != 0:
            raise RuntimeError("CONNECT refused: %d" % reply[1])
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise RuntimeError("closed early")
        data += part
    return data


def throughput(proxy, sink, streams, seconds):
    """Bytes per second delivered to the sink with `streams` parallel senders."""
    payload = b"\x00" * CHUNK
    start_received = sink.received
    stop = time.monotonic() + seconds
    sent = [0] * streams

    def sender(index):
        sock = open_session(proxy, sink.address)
        while time.monotonic() < stop:
            sock.sendall(payload)
            sent[index] += len(payload)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(30)
        try:
            sock.recv(1)
        except OSError:
            pass
        sock.close()

    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 30
    while sink.received - start_received < sum(sent) and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    return (sink.received - start_received) / elapsed, sink.received - start_received


def connections_per_second(proxy, echo, seconds, workers=4):
    count = [0] * workers
    stop = time.monotonic() + seconds

    def worker(index):
        while time.monotonic() < stop:
            sock = open_session(proxy, echo.address)
            sock.sendall(b"x")
            recv_exact(sock, 1)
            sock.close()
            count[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(count) / (time.monotonic() - started)


def connections_per_second_native(load_bin, proxy, seconds, concurrency=32, login=None):
    """New connections per second from the Rust load generator (`relay_load` example):
    `concurrency` loops of connect + SOCKS5 handshake + 1-byte echo + close, so the client is
    not the bottleneck (the Python loops above saturate their own core first)."""
    command = [load_bin, "--seconds", str(seconds), "--concurrency", str(concurrency)]
    if proxy is not None:
        command += ["--proxy", "%s:%d" % proxy]
    if login is not None:
        command += ["--user", login[0].decode(), "--password", login[1].decode()]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    result = json.loads(out.stdout)
    if result["errors"]:
        print("relay_load: %d failed connections" % result["errors"], file=sys.stderr)
    return result["per_second"]


def latency(proxy, echo, rounds):
    sock = open_session(proxy, echo.address)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        sock.sendall(b"x")
        recv_exact(sock, 1)
        samples.append((time.perf_counter_ns() - started) / 1000.0)
    sock.close()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


# ---------------------------------------------------------------- /proc accounting

def tree(pid):
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    for child in out.split():
        pids.extend(tree(int(child)))
    return pids


def cpu_seconds(pid):
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        try:
            fields = open("/proc/%d/stat" % p).read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


def rss_bytes(pid):
    total = 0
    for p in tree(pid):
        try:
            for line in open("/proc/%d/status" % p):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def idle_memory(proxy, pid, holder, sessions, settle=1.0):
    """RSS delta per idle CONNECT session (sessions held open with no traffic), measured
    `settle` seconds after the last was opened (past `inspect_timeout`, 10 s by default, the
    sessions have left the inspect phase for the fast path)."""
    before = rss_bytes(pid)
    socks = []
    try:
        deadline = time.monotonic() + 60
        for _ in range(sessions):
            if time.monotonic() > deadline:
                break
            try:
                socks.append(open_session(proxy, holder.address))
            except (OSError, RuntimeError):
                break
        time.sleep(settle)  # let the proxy settle (not synchronisation: a measurement window)
        after = rss_bytes(pid)
    finally:
        for sock in socks:
            sock.close()
        holder.close()
    return (after - before) / max(1, len(socks)), len(socks)


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", action="append", default=[],
                        help="NAME=HOST:PORT:PID[:USER:PASSWORD] of a SOCKS5 proxy (with the "
                             "login every session of it uses), or direct")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--idle-sessions", type=int, default=10000)
    parser.add_argument("--idle-settle", type=float, default=1.0,
                        help="seconds between the last idle session opened and the RSS reading")
    parser.add_argument("--idle-only", action="store_true",
                        help="measure only idle memory per session (no throughput/latency)")
    parser.add_argument("--latency-rounds", type=int, default=3000)
    parser.add_argument("--core", type=int, default=1)
    parser.add_argument("--load-bin", help="the relay_load example binary (new connections/s)")
    args = parser.parse_args()
    pin(args.core)
    sink, echo = Sink(), Echo()
    rows = []
    global LOGIN
    for spec in args.target:
        name, _, rest = spec.partition("=")
        LOGIN = None
        if rest == "direct":
            proxy, pid = None, None
        else:
            host, port, pid, *login = rest.split(":")
            proxy, pid = (host, int(port)), int(pid)
            if login:
                user, password = login
                LOGIN = (user.encode(), password.encode())
        row = {"name": name}
        if args.idle_only:
            if pid:
                row["idle"], row["idle_n"] = idle_memory(proxy, pid, Holder(), args.idle_sessions,
                                                         args.idle_settle)
                rows.append(row)
                print("| %s | %.0f (n=%d, read %.0f s after the last was opened) |" % (
                    name, row["idle"], row["idle_n"], args.idle_settle), flush=True)
            continue
        cpu0 = cpu_seconds(pid) if pid else 0.0
        row["tp1"], moved1 = throughput(proxy, sink, 1, args.seconds)
        row["tp16"], moved16 = throughput(proxy, sink, 16, args.seconds)
        cpu1 = cpu_seconds(pid) if pid else 0.0
        moved = moved1 + moved16
        row["cpu_per_gb"] = (cpu1 - cpu0) / (moved / 1e9) if pid and moved else None
        row["cps"] = connections_per_second(proxy, echo, args.seconds / 2)
        row["cps_native"] = (connections_per_second_native(args.load_bin, proxy, args.seconds,
                                                           login=LOGIN)
                             if args.load_bin else None)
        row["p50"], row["p99"] = latency(proxy, echo, args.latency_rounds)
        if pid:
            row["idle"], row["idle_n"] = idle_memory(proxy, pid, Holder(), args.idle_sessions,
                                                     args.idle_settle)
        else:
            row["idle"], row["idle_n"] = None, 0
        rows.append(row)
        print("measured %s" % name, flush=True)

    if args.idle_only:
        return
    direct = next((r for r in rows if r["name"] == "direct"), None)
    print()
    print("| target | 1 stream MB/s | 16 streams MB/s | new conn/s (32 concurrent) | new conn/s (4 Python) | p50 µs | p99 µs | CPU s/GB | idle session bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = ""
        if direct and r is not direct and direct["tp1"]:
            ratio = " (%.2f×)" % (r["tp1"] / direct["tp1"])
        cpu = "%.2f" % r["cpu_per_gb"] if r["cpu_per_gb"] is not None else "–"
        idle = "%.0f (n=%d)" % (r["idle"], r["idle_n"]) if r["idle"] is not None else "–"
        native = "%.0f" % r["cps_native"] if r["cps_native"] is not None else "–"
        print("| %s | %.0f%s | %.0f | %s | %.0f | %.0f | %.0f | %s | %s |" % (
            r["name"], r["tp1"] / 1e6, ratio, r["tp16"] / 1e6, native, r["cps"], r["p50"], r["p99"],
            cpu, idle))


if __name__ == "__main__":
    main()
