"""Destination names known as BitTorrent infrastructure (spec §1.13): a SOCKS5 request naming a
DHT bootstrap router or a tracker (CONNECT, or a UDP datagram with a domain-name address) is
the `known_destination` form: refused/dropped before any name is resolved, counted and struck
under `block`; counted and let through under `log`. Operators add names with wildcards.

No packet leaves the machine: blocked names are never resolved, and let-through names end in
`.invalid` (RFC 6761), which never resolve (0x04)."""
import socket
import time

from _metrics import scrape, value
from _socks5 import UdpAssociation, connect_reply
from conftest import wait_until

ALLOW = ("--allow-destination", "127.0.0.0/8")


def blocks(node, transport):
    return value(scrape(node.admin_address), "swarmwall_blocks_total",
                 transport=transport, form="known_destination")


def test_dht_routers_and_trackers_are_refused_by_name(start_swarmwall, tmp_path):
    node = start_swarmwall(*ALLOW)
    proxy = (node.host, node.port)
    assert connect_reply(proxy, "router.bittorrent.com", 6881) == 0x02
    assert connect_reply(proxy, "DHT.TransmissionBT.com.", 6881) == 0x02
    assert connect_reply(proxy, "tracker.opentrackr.org", 1337) == 0x02
    assert blocks(node, "tcp") == 3
    samples = scrape(node.admin_address)
    assert value(samples, "swarmwall_sessions_refused_total", reason="bittorrent_destination") == 3
    assert value(samples, "swarmwall_verdicts_total", transport="tcp", label="known_destination") == 3
    # The vendor's web site is not infrastructure: resolved as usual (no DNS here: 0x04).
    assert connect_reply(proxy, "www.bittorrent.invalid", 443) == 0x04

    # UDP: a DHT ping to a router by name is dropped; the association stays usable.
    association = UdpAssociation(proxy)
    try:
        ping = b"d1:ad2:id20:" + b"a" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe"
        association.send("router.utorrent.com", 6881, ping)
        association.send("router.utorrent.com", 6881, ping)
        assert wait_until(lambda: blocks(node, "udp") == 2), blocks(node, "udp")
        # The same association still relays to an ordinary destination.
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind(("127.0.0.1", 0))
        echo.settimeout(5)
        association.send("127.0.0.1", echo.getsockname()[1], b"hello")
        data, peer = echo.recvfrom(100)
        assert data == b"hello"
        echo.close()
    finally:
        association.close()


def test_operator_names_and_log_action(start_swarmwall, tmp_path):
    config = tmp_path / "swarmwall.toml"
    config.write_text(
        '[policy.known_destinations]\n'
        'builtin = false\n'
        'extra = ["tracker.swarm.invalid", "*.dht.invalid"]\n'
        '[policy.forms]\n'
        'known_destination = "log"\n')
    node = start_swarmwall("--config", str(config), *ALLOW)
    proxy = (node.host, node.port)
    # Listed, but `log`: counted as a verdict, not blocked (the name then fails to resolve).
    assert connect_reply(proxy, "tracker.swarm.invalid", 80) == 0x04
    assert connect_reply(proxy, "a.b.dht.invalid", 6881) == 0x04
    # Built-ins are off: not even counted.
    assert connect_reply(proxy, "router.bittorrent.invalid", 6881) == 0x04
    samples = scrape(node.admin_address)
    assert value(samples, "swarmwall_verdicts_total", transport="tcp", label="known_destination") == 2
    assert blocks(node, "tcp") == 0


def test_blocked_names_earn_strikes(start_swarmwall, tmp_path):
    config = tmp_path / "swarmwall.toml"
    config.write_text('[policy.strikes]\nburst_window = "1ms"\nsuspend_incidents = 3\n')
    node = start_swarmwall("--config", str(config), *ALLOW)
    proxy = (node.host, node.port)
    for _ in range(3):
        assert connect_reply(proxy, "router.bittorrent.com", 6881) == 0x02
        time.sleep(0.05)
    # Suspended: even an ordinary destination is refused now.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    assert wait_until(lambda: connect_reply(proxy, "127.0.0.1", listener.getsockname()[1]) == 0x02)
    listener.close()
