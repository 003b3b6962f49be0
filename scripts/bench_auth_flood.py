#!/usr/bin/env python3
"""Login flood against a running swarmwall (driven by scripts/bench-auth-flood.sh).

Opens `--connections` connections at once from `--sources` loopback addresses (127.0.1.x),
each: greeting, then an RFC 1929 login as a random unknown user with a wrong password. Samples
the proxy's RSS every 20 ms during the flood (peak), waits `--settle` seconds and reads it
again (after). A customer logged in before the flood keeps a CONNECT session to a local echo
server and exchanges one message every 50 ms during the flood; its round trips are reported.
Prints the outcome counts seen by the clients and the proxy's own counters (/metrics).
"""
import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import time
import urllib.request


def rss_mib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape(admin):
    text = urllib.request.urlopen("http://%s/metrics" % admin, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("swarmwall_auth_results_total") or \
                line.startswith("swarmwall_auth_verifications_total") or \
                line.startswith("swarmwall_sessions_refused_total"):
            name, value = line.rsplit(" ", 1)
            if float(value):
                out[name] = float(value)
    return out


async def flood_one(host, port, source, stats):
    name = ("nobody-%016x" % random.getrandbits(64)).encode()
    password = b"wrong-password"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0)), 30)
    except (OSError, asyncio.TimeoutError):
        stats["connect_failed"] += 1
        return
    try:
        writer.write(b"\x05\x01\x02")
        await writer.drain()
        choice = await asyncio.wait_for(reader.readexactly(2), 60)
        if choice != b"\x05\x02":
            stats["other"] += 1
            return
        writer.write(bytes([1, len(name)]) + name + bytes([len(password)]) + password)
        await writer.drain()
        status = await asyncio.wait_for(reader.readexactly(2), 60)
        stats["refused_login" if status[1] != 0 else "accepted"] += 1
    except asyncio.IncompleteReadError:
        stats["closed_without_answer"] += 1
    except (OSError, asyncio.TimeoutError):
        stats["reset_or_timeout"] += 1
    finally:
        writer.close()


async def customer(host, port, user, password, echo_port, stop, rtts, failures):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"\x05\x01\x02")
    assert await reader.readexactly(2) == b"\x05\x02"
    u, p = user.encode(), password.encode()
    writer.write(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
    assert (await reader.readexactly(2))[1] == 0, "customer login refused"
    writer.write(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + echo_port.to_bytes(2, "big"))
    reply = await reader.readexactly(10)
    assert reply[1] == 0, "customer CONNECT refused"
    while not stop.is_set():
        started = time.perf_counter()
        try:
            writer.write(b"ping-ping-ping-1")
            await writer.drain()
            await asyncio.wait_for(reader.readexactly(16), 10)
            rtts.append(time.perf_counter() - started)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            failures.append(1)
            return
        await asyncio.sleep(0.05)
    writer.close()


async def echo_server():
    async def handle(reader, writer):
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def main_async(args):
    host, port = args.proxy.rsplit(":", 1)
    port = int(port)
    server, echo_port = await echo_server()
    idle = rss_mib(args.pid)
    stop = asyncio.Event()
    rtts, failures = [], []
    customer_task = asyncio.create_task(
        customer(host, port, args.user, args.password, echo_port, stop, rtts, failures))
    await asyncio.sleep(1.0)
    before = scrape(args.admin)
    peak = [idle]

    async def sample():
        while not stop.is_set():
            peak.append(rss_mib(args.pid))
            await asyncio.sleep(0.02)
    sampler = asyncio.create_task(sample())
    stats = {k: 0 for k in ("accepted", "refused_login", "closed_without_answer",
                            "reset_or_timeout", "connect_failed", "other")}
    sources = ["127.0.1.%d" % (i + 1) for i in range(args.sources)]
    started = time.monotonic()
    await asyncio.gather(*(flood_one(host, port, sources[i % len(sources)], stats)
                           for i in range(args.connections)))
    flood_seconds = time.monotonic() - started
    rtts_during = list(rtts)
    await asyncio.sleep(args.settle)
    stop.set()
    await sampler
    await customer_task
    after = rss_mib(args.pid)
    server.close()
    metrics = scrape(args.admin)
    delta = {k: v - before.get(k, 0) for k, v in metrics.items() if v - before.get(k, 0)}
    result = {
        "connections": args.connections, "sources": args.sources,
        "flood_seconds": round(flood_seconds, 2),
        "rss_idle_mib": round(idle, 1), "rss_peak_mib": round(max(peak), 1),
        "rss_after_mib": round(after, 1), "clients_saw": stats, "proxy_counted": delta,
        "customer_round_trips": len(rtts_during), "customer_failures": len(failures),
        "customer_rtt_median_ms": round(1000 * statistics.median(rtts_during), 2) if rtts_during else None,
        "customer_rtt_max_ms": round(1000 * max(rtts_during), 2) if rtts_during else None,
    }
    print(json.dumps(result, indent=2))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--admin", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    if not 1 <= args.connections <= 20000 or not 1 <= args.sources <= 250:
        parser.error("--connections in 1..20000, --sources in 1..250")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
