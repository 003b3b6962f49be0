"""Helpers for test_admin.py: start `swarmwall serve` with its admin listener, talk HTTP to it,
parse the Prometheus text format, make a SOCKS5 request."""
import json
import os
import re
import socket
import subprocess
import urllib.error
import urllib.request

from conftest import Swarmwall, swarmwall_bin, wait_until

ADMIN_LINE = re.compile(r"admin interface on (\S+)")


def serve_supports_admin():
    """True when this build's `swarmwall serve` has the admin flags."""
    try:
        out = subprocess.run([swarmwall_bin(), "serve", "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--admin-listen" in out.stdout + out.stderr


def write_token(directory, token, mode=0o600):
    path = os.path.join(directory, "admin-token")
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, mode)
    return path


def start_with_admin(start_swarmwall, token_file, *extra):
    """Start serve with the admin listener on 127.0.0.1:0; returns (node, admin address)."""
    node = start_swarmwall("--admin-listen", "127.0.0.1:0", "--admin-token-file", token_file, *extra)

    def admin_address():
        for line in node.stderr_lines:
            m = ADMIN_LINE.search(line)
            if m:
                return m.group(1)
        return None

    address = wait_until(admin_address, timeout=20)
    assert address, "no 'admin interface on ADDR' line: " + node.output()[-2000:]
    return node, address


def http(address, path, token=None, method="GET", body=None):
    """One request; returns (status, headers with lower-case names, body text)."""
    headers = {}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request("http://" + address + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode()


def parse_metrics(text):
    """Prometheus/OpenMetrics text -> list of (name, labels dict, value)."""
    samples = []
    pattern = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = pattern.match(line)
        assert m, "bad metrics line: " + line
        labels = dict(label.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_sum(samples, name, **labels):
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items()))


def socks5_connect(proxy_host, proxy_port, target_host, target_port):
    """A no-auth SOCKS5 CONNECT; returns the reply code (0 = succeeded) or None."""
    with socket.create_connection((proxy_host, proxy_port), timeout=10) as s:
        s.sendall(b"\x05\x01\x00")
        if s.recv(2) != b"\x05\x00":
            return None
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target_host) + target_port.to_bytes(2, "big"))
        reply = s.recv(10)
        return reply[1] if len(reply) >= 2 else None
