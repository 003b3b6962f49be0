"""Helpers for the account-security end-to-end suite: accounts via the real CLI, an RFC 6238
TOTP generator, a SOCKS5 client that can speak the PROXY protocol first, curl through the
proxy, and a loopback HTTP target."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import socket
import struct
import subprocess
import threading
import time

from conftest import swarmwall_bin

CITY_DB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "fixtures", "geoip", "GeoIP2-City-Test.mmdb")

# Addresses that the MaxMind test database places (see tests/fixtures/geoip/SOURCE.md).
LONDON = "81.2.69.142"
BOXFORD = "2.125.160.216"
CHANGCHUN = "175.16.199.0"
LINKOPING = "89.160.20.112"


def run_cli(*args, stdin=None, timeout=60):
    return subprocess.run(
        [swarmwall_bin(), *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )


# The PROXY-protocol "load balancer" connects from this loopback address; curl and other
# plain clients use 127.0.0.1 and are not expected to send a header.
BALANCER = "127.0.0.2"


def write_config(path, security="", server=f'proxy_protocol_trusted = ["{BALANCER}/32"]\n'):
    """A config with cheap argon2 (fast tests), fast failure delays and the given extras."""
    text = (
        "[server]\n" + server + "\n[security]\n"
        "argon2_memory_kib = 1024\nargon2_iterations = 1\n"
        'failure_delay = "10ms"\nfailure_delay_max = "50ms"\n' + security
    )
    with open(path, "w") as f:
        f.write(text)
    return path


def add_user(accounts, config, name, password):
    out = run_cli("user", "add", name, "--accounts", accounts, "--config", config,
                  "--password-stdin", stdin=password + "\n")
    assert out.returncode == 0, out.stderr
    return out


def enrol_totp(accounts, config, name):
    out = run_cli("user", "totp", name, "--accounts", accounts, "--config", config, "--no-qr")
    assert out.returncode == 0, out.stderr
    uri = out.stdout.splitlines()[0]
    assert uri.startswith("otpauth://totp/"), uri
    query = uri.split("?", 1)[1]
    params = dict(part.split("=", 1) for part in query.split("&"))
    return params["secret"]


def totp(secret, at=None, step=30, digits=6):
    """RFC 6238 (SHA-1) code for `secret` (base32) at Unix time `at`."""
    at = time.time() if at is None else at
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at // step)), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 10 ** digits
    return f"{code:0{digits}d}"


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def socks5_login(node, user, password, source=None, timeout=15.0):
    """Greeting + RFC 1929 login; with `source`, from the trusted balancer address after a
    PROXY v1 header naming `source` as the client.
    True when the proxy accepts the credentials."""
    bind = (BALANCER, 0) if source is not None else None
    with socket.create_connection((node.host, node.port), timeout=timeout,
                                  source_address=bind) as sock:
        if source is not None:
            family = "TCP6" if ":" in source else "TCP4"
            destination = "::1" if family == "TCP6" else "127.0.0.1"
            sock.sendall(f"PROXY {family} {source} {destination} 40000 {node.port}\r\n".encode())
        sock.sendall(b"\x05\x01\x02")
        if _recv_exact(sock, 2) != b"\x05\x02":
            return False
        u, p = user.encode(), password.encode()
        sock.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        reply = _recv_exact(sock, 2)
        return reply is not None and reply[1] == 0


def curl_via(node, user, password, url, timeout=30):
    """curl through the proxy; returns (exit code, body)."""
    proxy = f"socks5://{user}:{password}@{node.host}:{node.port}"
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-x", proxy, url],
        capture_output=True, text=True, timeout=timeout,
    )
    return out.returncode, out.stdout


class Target:
    """A loopback HTTP server answering every GET with a fixed body."""

    BODY = "swarmwall-security-target\n"

    def __init__(self):
        body = self.BODY.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def audit_events(path, kind=None):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        events = [json.loads(line) for line in f if line.strip()]
    return [e for e in events if kind is None or e["kind"] == kind]
