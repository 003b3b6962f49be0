"""Reply codes that only a routing table can provoke: 0x01 general failure, 0x02 not allowed by
the kernel, 0x03 network unreachable, 0x04 host unreachable and 0x06 TTL expired (connect
timeout). The proxy and its client run inside a network namespace this test creates (only
loopback and a veth pair, so no packet leaves the machine), whose routing table produces
each error:

    no route at all            -> ENETUNREACH  -> 0x03 (IPv4 and IPv6)
    `unreachable` route        -> EHOSTUNREACH -> 0x04
    `prohibit` route           -> EACCES       -> 0x02
    `blackhole` route          -> EINVAL       -> 0x01
    SYN into a veth void       -> no answer    -> 0x06 after `connect_timeout`

Needs root (CAP_SYS_ADMIN for `ip netns`); CI and scripts/test.sh run as root.
"""
import os
import shutil
import subprocess
import time
import uuid

import pytest

from _metrics import parse, value

# Each destination range is allowed explicitly: they are reserved documentation ranges, which
# the lateral-movement guard would otherwise refuse (0x02) before trying to connect.
RANGES = {
    "no_route": "192.0.2.0/24",
    "no_route6": "2001:db8::/32",
    "unreachable": "198.51.100.0/24",
    "prohibit": "203.0.113.0/25",
    "blackhole": "203.0.113.128/25",
    "silent": "10.77.0.0/24",
    "echo": "127.0.0.0/8",
}

CLIENT = r"""
import socket, struct, sys, time
host, port, family = sys.argv[1], int(sys.argv[2]), sys.argv[3]
proxy_host, proxy_port = sys.argv[4], int(sys.argv[5])
s = socket.create_connection((proxy_host, proxy_port), timeout=20)
s.sendall(b"\x05\x01\x00")
assert s.recv(2) == b"\x05\x00"
if family == "4":
    address = b"\x01" + socket.inet_pton(socket.AF_INET, host)
else:
    address = b"\x04" + socket.inet_pton(socket.AF_INET6, host)
started = time.monotonic()
s.sendall(b"\x05\x01\x00" + address + struct.pack(">H", port))
reply = s.recv(512)
if reply[1] == 0 and len(sys.argv) > 6:
    s.sendall(sys.argv[6].encode())
    assert s.recv(64) == sys.argv[6].encode(), "echo"
print(reply[1], round(time.monotonic() - started, 2))
"""


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def namespace():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("this test needs root and iproute2 (scripts/install-test-deps.sh installs it)")
    name = "sw-test-" + uuid.uuid4().hex[:8]
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        # A veth pair wholly inside the namespace; a permanent neighbour entry with a MAC
        # nobody has makes every SYN to 10.77.0.2 vanish (v1 drops frames not addressed to it).
        ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        ip("-n", name, "addr", "add", "10.77.0.1/24", "dev", "v0")
        ip("-n", name, "link", "set", "v0", "up")
        ip("-n", name, "link", "set", "v1", "up")
        ip("-n", name, "neigh", "add", "10.77.0.2", "lladdr", "02:00:00:00:00:99",
           "dev", "v0", "nud", "permanent")
        ip("-n", name, "route", "add", "unreachable", RANGES["unreachable"])
        ip("-n", name, "route", "add", "prohibit", RANGES["prohibit"])
        ip("-n", name, "route", "add", "blackhole", RANGES["blackhole"])
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def ask(namespace, node, host, port=80, family="4", echo=None):
    """Send a CONNECT from inside the namespace (then `echo`, if given, through the relay);
    the reply code and seconds it took."""
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, "/usr/bin/python3", "-c", CLIENT,
         host, str(port), family, node.host, str(node.port)] + ([echo] if echo else []),
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()
    return int(out[0]), float(out[1])


def test_routing_errors_map_to_their_reply_codes(start_swarmwall, namespace, tmp_path):
    config = tmp_path / "swarmwall.toml"
    config.write_text('[server]\nconnect_timeout = "1s"\n')
    allow = []
    for cidr in RANGES.values():
        allow += ["--allow-destination", cidr]
    node = start_swarmwall("--config", str(config), *allow,
                           prefix=("ip", "netns", "exec", namespace))

    assert ask(namespace, node, "192.0.2.1")[0] == 0x03
    assert ask(namespace, node, "2001:db8::1", family="6")[0] == 0x03
    assert ask(namespace, node, "198.51.100.7")[0] == 0x04
    assert ask(namespace, node, "203.0.113.5")[0] == 0x02
    assert ask(namespace, node, "203.0.113.200")[0] == 0x01
    code, seconds = ask(namespace, node, "10.77.0.2")
    assert code == 0x06
    assert 0.8 <= seconds < 5, seconds

    # The same node still relays: a CONNECT to an echo server inside the namespace succeeds
    # (no session above disturbed it).
    echo = subprocess.Popen(
        ["ip", "netns", "exec", namespace, "/usr/bin/python3", "-c",
         "import socket\ns=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
         "print(s.getsockname()[1], flush=True)\nc,_=s.accept(); c.sendall(c.recv(16))"],
        stdout=subprocess.PIPE, text=True)
    try:
        port = int(echo.stdout.readline())
        assert ask(namespace, node, "127.0.0.1", port=port, echo="ping")[0] == 0x00
    finally:
        echo.kill()
        echo.wait()

    # Each refusal was counted under its reason (the admin listener is inside the namespace).
    text = subprocess.run(
        ["ip", "netns", "exec", namespace, "/usr/bin/python3", "-c",
         "import urllib.request, sys; print(urllib.request.urlopen("
         "'http://%s/metrics', timeout=5).read().decode())" % node.admin_address],
        capture_output=True, text=True, timeout=30, check=True).stdout
    samples = parse(text)
    for reason, count in (("network_unreachable", 2), ("host_unreachable", 1), ("policy", 1),
                          ("connect_failed", 1), ("connect_timeout", 1)):
        assert value(samples, "swarmwall_sessions_refused_total", reason=reason) == count, reason
