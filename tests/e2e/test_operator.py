"""Operator surface end to end (issue 8), against the real `swarmwall serve`.

1. Exact metric deltas after real traffic: one relayed echo CONNECT, one CONNECT closed for a
   BitTorrent peer-wire handshake (the target receives none of it) and one UDP ASSOCIATE whose
   DHT ping is dropped (the target receives nothing). The Prometheus scrape must move by exactly
   those amounts, and GET /api/v1/status must report the same totals; /api/ needs the token.
2. Hot reload during a long download: while curl pulls 64 MiB through the proxy at 8 MiB/s, a
   broken config is signalled with SIGHUP (rejected, the error names file and line, the old
   rules stay), then a valid config that denies the echo server's port is loaded through
   POST /api/v1/reload. The download still completes byte-exact, a new CONNECT to the denied
   port gets 0x02 and a new CONNECT to an allowed port still works.
"""
import hashlib
import os
import re
import signal
import socket
import subprocess
import tempfile

from _metrics import scrape, value
from _opsurface import (TOKEN, Delta, EchoServer, HttpFileServer, TcpSink, admin_request,
                       closed_by_peer, recv_exact, write_atomically, write_token)
from _socks5 import UdpAssociation, connect, connect_reply
from conftest import wait_until

PEER_WIRE_HANDSHAKE = (b"\x13BitTorrent protocol" + bytes(8) + bytes(range(20))
                       + b"-XX0001-" + b"operatore2e!")
assert len(PEER_WIRE_HANDSHAKE) == 68
DHT_PING = b"d1:ad2:id20:" + b"abcdefghij0123456789" + b"e1:q4:ping1:t2:aa1:y1:qe"


def echo_roundtrip(proxy, port, payload):
    """CONNECT to the echo server through `proxy`, send `payload`, read it back, close."""
    sock = connect(proxy, "127.0.0.1", port)
    try:
        sock.sendall(payload)
        assert recv_exact(sock, len(payload)) == payload
    finally:
        sock.close()


def test_metrics_and_status_are_exact_after_real_traffic(start_swarmwall):
    work = tempfile.mkdtemp(prefix="sw-operator-")
    token_file = write_token(work)
    node = start_swarmwall("--allow-destination", "127.0.0.0/8", "--admin-token-file", token_file)
    assert wait_until(lambda: node.admin_address, timeout=10), node.output()
    proxy = (node.host, node.port)
    echo, sink = EchoServer(), TcpSink()
    udp_target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_target.bind(("127.0.0.1", 0))
    udp_target.settimeout(5)
    try:
        delta = Delta(node.admin_address)

        # (a) a relayed CONNECT: N known bytes out and back.
        payload = b"swarmwall operator e2e echo line\n" * 300  # plain text, never BitTorrent
        n = len(payload)
        echo_roundtrip(proxy, echo.port, payload)

        # (b) a CONNECT whose first bytes are a peer-wire handshake: closed, nothing forwarded.
        sock = connect(proxy, "127.0.0.1", sink.port)
        try:
            assert sink.accepted.wait(10), "the proxy never connected to the target"
            sock.sendall(PEER_WIRE_HANDSHAKE)
            assert closed_by_peer(sock), "the proxy kept a peer-wire flow open"
        finally:
            sock.close()
        assert sink.closed.wait(10), "the proxy left the target connection open"
        assert sink.received == b"", f"the target received {len(sink.received)} bytes"

        # (c) a UDP ASSOCIATE carrying a DHT ping: dropped before the target.
        assoc = UdpAssociation(proxy)
        try:
            assoc.send("127.0.0.1", udp_target.getsockname()[1], DHT_PING)
            assert wait_until(lambda: delta.of("swarmwall_udp_datagrams_total", direction="client_to_target",
                                               outcome="dropped_bittorrent") == 1, timeout=10), \
                "the DHT ping was not counted as dropped"
        finally:
            assoc.close()
        # The drop is decided; a marker sent straight to the target must be the first datagram
        # it ever sees, so the DHT ping never reached it.
        marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        marker.sendto(b"marker", udp_target.getsockname())
        marker.close()
        assert udp_target.recvfrom(65535)[0] == b"marker", "the DHT ping reached the target"

        # Bytes are counted as they are written; wait for the relay counters to settle.
        wait_until(lambda: delta.of("swarmwall_relay_bytes_total", direction="target_to_client") >= n
                   and scrape(node.admin_address).get(("swarmwall_sessions_active", frozenset())) == 0,
                   timeout=10)
        after = delta.now()

        def d(name, **labels):
            return delta.of(name, after, **labels)

        assert d("swarmwall_sessions_total", command="connect") == 2
        assert d("swarmwall_sessions_total", command="udp_associate") == 1
        assert d("swarmwall_sessions_total", command="bind") == 0
        assert d("swarmwall_blocks_total", transport="tcp", form="peer_wire") == 1
        assert d("swarmwall_blocks_total", transport="udp", form="dht") == 1
        assert d("swarmwall_blocks_total") == 2
        # Only the echo bytes were relayed: the held handshake and the dropped ping are not.
        assert d("swarmwall_relay_bytes_total", direction="client_to_target") == n
        assert d("swarmwall_relay_bytes_total", direction="target_to_client") == n
        verdict = {(dict(ls)["transport"], dict(ls)["label"]): v - value(delta.before, name, **dict(ls))
                   for (name, ls), v in after.items()
                   if name == "swarmwall_verdicts_total" and dict(ls).get("class") == "bittorrent"}
        assert verdict.get(("tcp", "peer_wire")) == 1, verdict
        assert verdict.get(("udp", "dht")) == 1, verdict
        assert sum(verdict.values()) == 2, verdict
        assert d("swarmwall_udp_datagrams_total", direction="client_to_target", outcome="relayed") == 0
        assert d("swarmwall_sessions_active") == 0

        # The JSON status reads the same counters.
        status, body = admin_request(node.admin_address, "/api/v1/status", TOKEN)
        assert status == 200, body
        current = delta.now()
        assert body["sessions"]["by_command"]["connect"] == value(current, "swarmwall_sessions_total", command="connect")
        assert body["sessions"]["by_command"]["udp_associate"] == value(current, "swarmwall_sessions_total",
                                                                        command="udp_associate")
        assert body["sessions"]["total"] == value(current, "swarmwall_sessions_total") == 3
        assert body["blocks"]["by_form"]["peer_wire"] == value(current, "swarmwall_blocks_total", form="peer_wire") == 1
        assert body["blocks"]["by_form"]["dht"] == value(current, "swarmwall_blocks_total", form="dht") == 1
        assert body["blocks"]["by_transport"] == {"tcp": 1, "udp": 1}
        assert body["blocks"]["total"] == 2
        assert body["bytes"]["client_to_target"] == value(current, "swarmwall_relay_bytes_total",
                                                          direction="client_to_target") == n
        assert body["bytes"]["target_to_client"] == n
        assert body["bytes"]["total"] == 2 * n
        assert body["strikes"] == value(current, "swarmwall_strikes_total")

        # No token, or a wrong one: 401 and counted.
        failures = value(current, "swarmwall_admin_auth_failures_total")
        assert admin_request(node.admin_address, "/api/v1/status")[0] == 401
        assert admin_request(node.admin_address, "/api/v1/status", TOKEN + "x")[0] == 401
        assert admin_request(node.admin_address, "/api/v1/reload", method="POST")[0] == 401
        latest = scrape(node.admin_address)
        assert value(latest, "swarmwall_admin_auth_failures_total") - failures == 3
        assert value(latest, "swarmwall_config_reloads_total") == 0, "an unauthenticated reload ran"
    finally:
        echo.close()
        sink.close()
        udp_target.close()


CONFIG_ALLOW = """\
[[policy.destinations]]
action = "allow"
cidr = "127.0.0.0/8"
"""

CONFIG_BROKEN = CONFIG_ALLOW + "\n[policy\n"  # line 5: unclosed table header
BROKEN_LINE = 5

CONFIG_DENY_ECHO = """\
# The deny rule comes first: first match wins.
[[policy.destinations]]
action = "deny"
cidr = "127.0.0.1/32"
ports = [{port}]

[[policy.destinations]]
action = "allow"
cidr = "127.0.0.0/8"
"""


def test_hot_reload_during_a_long_download(start_swarmwall):
    work = tempfile.mkdtemp(prefix="sw-operator-")
    token_file = write_token(work)
    served = os.path.join(work, "www")
    os.mkdir(served)
    blob = os.urandom(64 * 1024 * 1024)
    with open(os.path.join(served, "big.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(served, "small.txt"), "wb") as f:
        f.write(b"still allowed\n")
    expected = hashlib.sha256(blob).hexdigest()
    del blob
    config = os.path.join(work, "swarmwall.toml")
    write_atomically(config, CONFIG_ALLOW)

    http = HttpFileServer(served)
    echo = EchoServer()
    curl = None
    try:
        node = start_swarmwall("--config", config, "--admin-token-file", token_file)
        assert wait_until(lambda: node.admin_address, timeout=10), node.output()
        admin = node.admin_address
        proxy = (node.host, node.port)
        delta = Delta(admin)

        # Under the first config the echo port is reachable.
        echo_roundtrip(proxy, echo.port, b"before reload\n")

        out = os.path.join(work, "big.out")
        curl = subprocess.Popen(
            ["curl", "-sS", "--fail", "--socks5-hostname", f"127.0.0.1:{node.port}", "--limit-rate", "8M",
             "-o", out, f"http://127.0.0.1:{http.port}/big.bin"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 1024 * 1024
                          or curl.poll() is not None, timeout=20), "the download did not start"
        assert curl.poll() is None, "curl ended early: " + curl.stderr.read().decode()

        # (a) A broken config and SIGHUP: rejected, the log names file and line, old rules stay.
        write_atomically(config, CONFIG_BROKEN)
        node.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: delta.of("swarmwall_config_reloads_total", result="error") == 1, timeout=10), \
            node.output()[-2000:]
        assert delta.of("swarmwall_config_reloads_total", result="ok") == 0
        line = re.search(re.escape(config) + r":(\d+):(\d+): ([^\n]*)", node.output())
        assert line, "no FILE:LINE:COLUMN in the reload error: " + node.output()[-2000:]
        assert int(line.group(1)) == BROKEN_LINE, line.group(0)
        assert "keeping the old" in node.output()
        echo_roundtrip(proxy, echo.port, b"old rules still in force\n")
        assert curl.poll() is None, "the download ended during the failed reload"

        # (b) A valid config denying the echo port, loaded through the API.
        write_atomically(config, CONFIG_DENY_ECHO.format(port=echo.port))
        status, body = admin_request(admin, "/api/v1/reload", TOKEN, method="POST")
        assert status == 200, body
        assert wait_until(lambda: delta.of("swarmwall_config_reloads_total", result="ok") == 1, timeout=10)
        assert delta.of("swarmwall_config_reloads_total", result="error") == 1
        assert delta.of("swarmwall_admin_actions_total", action="reload", result="ok") == 1
        assert curl.poll() is None, "the download was not running across the reload (too fast to test)"

        # (c) The running download finishes byte-exact.
        try:
            curl.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"download did not finish; {os.path.getsize(out)} bytes so far")
        assert curl.returncode == 0, curl.stderr.read().decode()
        with open(out, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == expected, "download corrupted across reloads"

        # (d) New sessions see the new rules: the echo port is denied, HTTP still allowed.
        refused = delta.of("swarmwall_sessions_refused_total", reason="policy")
        assert connect_reply(proxy, "127.0.0.1", echo.port) == 0x02
        assert delta.of("swarmwall_sessions_refused_total", reason="policy") - refused == 1
        assert connect_reply(proxy, "127.0.0.1", http.port) == 0
        small = subprocess.run(
            ["curl", "-sS", "--fail", "--max-time", "20", "--socks5-hostname", f"127.0.0.1:{node.port}",
             f"http://127.0.0.1:{http.port}/small.txt"],
            capture_output=True, timeout=30,
        )
        assert small.returncode == 0 and small.stdout == b"still allowed\n", small.stderr
        assert node.proc.poll() is None, "swarmwall exited"
    finally:
        if curl is not None and curl.poll() is None:
            curl.kill()
            curl.wait()
        http.stop()
        echo.close()
