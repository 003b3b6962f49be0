"""A resolver that never answers, under floods of requests addressed by name.

Logins: a name lookup is `getaddrinfo` on the blocking pool that the argon2 logins use too,
and it keeps its thread until the system resolver gives up. Before, one customer sending 1,100
CONNECTs to names a silent resolver never answers filled both per-core pools (1,031 threads)
and another customer's first login took 9.8 s instead of 0.03 s. Now a client has at most 16
lookups running and the process at most 256; more wait their turn without a thread.

UDP:
Each UDP ASSOCIATE client may address datagrams by name (ATYP 3); a name not yet cached is
looked up, which a silent resolver stretches to its timeout. Before, each association waiting
for such a lookup kept its receive batch (32 slots of 64 KiB) with every page its datagrams
had touched: 1,000 flooding associations grew the proxy by about 490 MiB. Now a waiting
datagram is held as an exact-size copy within a budget (64 KiB per association, 16 MiB for
the process) and the rest are dropped and counted (`dropped_resolving`).

The proxy runs in a mount namespace of its own (`unshare -m`) whose /etc/resolv.conf names a
black-hole resolver on 127.77.0.53 (a socket that reads queries and never answers). Needs root
(CI and scripts/test.sh run as root).
"""
import os
import resource
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from _metrics import scrape, value
from _socks5 import UdpAssociation, connect, handshake
from conftest import swarmwall_bin

BLACK_HOLE = "127.77.0.53"
FLOODERS = 500
BURST = 32
SIZE = 60_000
# Growth allowed: the 16 MiB budget, the threads of the pending lookups, two receive batches
# per thread's pool. Before the budget the same flood grew the proxy by about 130 MiB.
MAX_GROWTH_MIB = 64

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a mount namespace with its own resolv.conf",
)


@pytest.fixture(autouse=True)
def enough_descriptors():
    """The floods open over a thousand sockets in this process: raise the soft limit (up to the
    hard one) for the test, and put it back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def silent_resolver(tmp_path):
    """A resolv.conf naming a resolver that reads every query and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((BLACK_HOLE, 53))
    sock.settimeout(0.2)
    stop = threading.Event()
    queries = []

    def swallow():
        while not stop.is_set():
            try:
                queries.append(sock.recv(4096))
            except socket.timeout:
                continue

    thread = threading.Thread(target=swallow, daemon=True)
    thread.start()
    resolv = tmp_path / "resolv.conf"
    # One try of 8 s: a lookup holds its thread that long (the old pools made logins wait so).
    resolv.write_text(f"nameserver {BLACK_HOLE}\noptions timeout:8 attempts:1\n")
    yield resolv, queries
    stop.set()
    thread.join()
    sock.close()


def in_namespace_with(resolv):
    """A prefix that runs swarmwall in a mount namespace whose /etc/resolv.conf is `resolv`
    (the shell execs swarmwall, so the process is the proxy itself)."""
    return ["unshare", "-m", "sh", "-c",
            f'mount --bind {resolv} /etc/resolv.conf && exec "$0" "$@"']


def add_account(name, password, accounts, data_dir):
    added = subprocess.run(
        [swarmwall_bin(), "user", "add", name, "--password-stdin", "--accounts", str(accounts),
         "--data-dir", str(data_dir)],
        input=password + "\n", capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr


def test_a_lookup_flood_from_one_customer_does_not_delay_anothers_login(
        start_swarmwall, silent_resolver, tmp_path):
    resolv, queries = silent_resolver
    accounts, data_dir = tmp_path / "accounts.toml", tmp_path / "data"
    add_account("alice", "alice-password-1", accounts, data_dir)
    add_account("bob", "bob-password-12", accounts, data_dir)
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(64)
    config = tmp_path / "swarmwall.toml"
    config.write_text("[server]\nmax_sessions = 3000\n")
    # On one core: one runtime, one blocking pool of 512 threads, which the 600 lookups below
    # filled before the lookup permits.
    node = start_swarmwall("--allow-destination", "127.0.0.0/8", "--accounts", str(accounts),
                           "--data-dir", str(data_dir), "--config", str(config),
                           prefix=["taskset", "-c", "0"] + in_namespace_with(resolv))
    proxy = (node.host, node.port)
    flood = []
    for index in range(600):
        sock = socket.create_connection(proxy, timeout=10)
        handshake(sock, "alice", "alice-password-1")
        name = f"c{index}.flood.test".encode()
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", 80))
        flood.append(sock)
    assert wait_until_queries(queries, 8)
    # Bob's first login (a full argon2 verification) and a CONNECT by address.
    started = time.monotonic()
    connect(proxy, "127.0.0.1", target.getsockname()[1], user="bob",
            password="bob-password-12", timeout=20).close()
    took = time.monotonic() - started
    assert took < 3, f"bob's login and CONNECT took {took:.1f} s during alice's lookup flood"
    # Past her 16 lookups alice's requests wait their turn: no thread is taken for them.
    threads = len(os.listdir(f"/proc/{node.proc.pid}/task"))
    assert threads < 100, f"{threads} threads in the proxy during the lookup flood"
    assert node.proc.poll() is None
    for sock in flood:
        sock.close()
    target.close()


def wait_until_queries(queries, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(queries) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(queries) >= count


def test_a_flood_of_datagrams_to_names_that_never_resolve_holds_bounded_memory(
        start_swarmwall, silent_resolver):
    resolv, queries = silent_resolver
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.settimeout(0.2)
    echo_port = echo.getsockname()[1]
    stop = threading.Event()

    def echo_back():
        while not stop.is_set():
            try:
                data, source = echo.recvfrom(65535)
            except socket.timeout:
                continue
            echo.sendto(data, source)

    echo_thread = threading.Thread(target=echo_back, daemon=True)
    echo_thread.start()
    node = start_swarmwall("--allow-destination", "127.0.0.0/8",
                           prefix=in_namespace_with(resolv))
    proxy = (node.host, node.port)
    pid = node.proc.pid

    customer = UdpAssociation(proxy, timeout=2)
    customer.send("127.0.0.1", echo_port, b"before")
    assert customer.recv() == b"before"
    flooders = [UdpAssociation(proxy, timeout=2) for _ in range(FLOODERS)]
    time.sleep(0.5)  # a measurement window: let the proxy settle before the baseline
    before = rss_mib(pid)
    filler = bytes(SIZE)
    for index, flooder in enumerate(flooders):
        flooder.udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        for burst in range(BURST):
            name = f"n{index}-{burst}.flood.test".encode()
            header = b"\x00\x00\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", 9)
            try:
                flooder.udp.sendto(header + filler, flooder.relay)
            except BlockingIOError:
                pass
    peak = before
    deadline = time.monotonic() + 4
    customer_rounds = 0
    while time.monotonic() < deadline:
        peak = max(peak, rss_mib(pid))
        # A customer addressing by IP is not held behind the flood.
        customer.send("127.0.0.1", echo_port, b"during %d" % customer_rounds)
        assert customer.recv() == b"during %d" % customer_rounds
        customer_rounds += 1
        time.sleep(0.05)
    assert node.proc.poll() is None, node.output()[-2000:]
    assert queries, "the proxy's lookups reached the silent resolver"
    growth = peak - before
    assert growth < MAX_GROWTH_MIB, (
        f"RSS grew {growth:.0f} MiB ({before:.0f} -> {peak:.0f}) under {FLOODERS} associations "
        f"flooding names that never resolve")
    metrics = scrape(node.admin_address)
    dropped = value(metrics, "swarmwall_udp_datagrams_total", outcome="dropped_resolving")
    assert dropped > 0, "past the budget, datagrams waiting for a name are dropped and counted"
    stop.set()
    echo_thread.join()
    for flooder in flooders:
        flooder.close()
    customer.close()
    echo.close()
