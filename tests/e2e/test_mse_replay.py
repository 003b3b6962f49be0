"""A recorded single-peer encrypted libtorrent flow in its coalesced form (the handshake joined
flight 3: 124 + PadC bytes), replayed flight by flight through the proxy on loopback.

Whether a live libtorrent coalesces its handshake depends on timing (the live test in
test_mse_clients.py blocks every run, by whichever form appears); this replay makes the
coalesced form certain, so the rule that must catch it (`coalesced_first_block`) is exercised
on every run: blocked on defaults before the client holds the first 16 KiB block, and relayed
byte-exact with `bittorrent = "allow"` (so the test can fail).

The recording (`libtorrent_rc4_coalesced.flow`: a direction byte, a 32-bit length and the
bytes, per segment) was made with python3-libtorrent by
`crates/swarmwall-core/src/classify/tcp/testdata/record.py rc4_coalesced`.
"""
import os
import socket
import struct
import threading

from conftest import ROOT
from _metrics import scrape, value
from _socks5 import connect

FLOW = os.path.join(ROOT, "crates", "swarmwall-core", "src", "classify", "tcp", "testdata",
                    "libtorrent_rc4_coalesced.flow")


def flights():
    """The recording's segments joined into flights: [(direction, bytes)], 'C' or 'S'."""
    data = open(FLOW, "rb").read()
    out, i = [], 0
    while i < len(data):
        direction = chr(data[i])
        (length,) = struct.unpack(">I", data[i + 1:i + 5])
        chunk = data[i + 5:i + 5 + length]
        i += 5 + length
        if out and out[-1][0] == direction:
            out[-1] = (direction, out[-1][1] + chunk)
        else:
            out.append((direction, chunk))
    return out


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            break
        buf += part
    return buf


def replay(node):
    """Play the flow through `node`; returns (flights the client received whole, the index of
    the first flight that did not arrive whole, or None)."""
    plan = flights()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def seeder():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.settimeout(10)
        with conn:
            for direction, chunk in plan:
                try:
                    if direction == "S":
                        conn.sendall(chunk)
                    elif recv_exact(conn, len(chunk)) != chunk:
                        return
                except OSError:
                    return

    thread = threading.Thread(target=seeder, daemon=True)
    thread.start()
    client = connect((node.host, node.port), "127.0.0.1", port)
    client.settimeout(10)
    failed_at = None
    with client:
        for index, (direction, chunk) in enumerate(plan):
            try:
                if direction == "C":
                    client.sendall(chunk)
                elif recv_exact(client, len(chunk)) != chunk:
                    failed_at = index
                    break
            except OSError:
                failed_at = index
                break
    thread.join(10)
    listener.close()
    return failed_at, plan


def test_coalesced_flow_is_cut_at_its_first_block_on_defaults(start_swarmwall):
    node = start_swarmwall("--allow-destination", "127.0.0.0/8")
    failed_at, plan = replay(node)
    # Flights 1-5 are relayed (nothing decides before the sixth); the sixth (the seeder's
    # first 16 KiB block) never arrives whole.
    assert failed_at is not None, "the whole encrypted download passed"
    assert plan[failed_at][0] == "S" and len(plan[failed_at][1]) >= 16_397, (failed_at, len(plan))
    samples = scrape(node.admin_address)
    assert value(samples, "swarmwall_mse_rules_total", reason="coalesced_first_block") >= 1, samples
    assert value(samples, "swarmwall_blocks_total", form="mse") >= 1


def test_coalesced_flow_passes_byte_exact_with_allow(start_swarmwall, tmp_path):
    config = tmp_path / "allow.toml"
    config.write_text('[policy]\nbittorrent = "allow"\n')
    node = start_swarmwall("--config", str(config), "--allow-destination", "127.0.0.0/8")
    failed_at, _ = replay(node)
    assert failed_at is None, f"flight {failed_at} did not arrive whole with bittorrent = allow"
    samples = scrape(node.admin_address)
    # Recognised all the same (detected, let through by policy).
    assert value(samples, "swarmwall_mse_rules_total", reason="coalesced_first_block") >= 1, samples
