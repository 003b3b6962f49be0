"""Helpers for test_operator.py: local TCP echo and sink servers, a UDP sink, an HTTP file
server (python3 -m http.server), the admin HTTP client and metric deltas."""
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from _metrics import scrape, value

TOKEN = "operator-e2e-token-0123456789abcdef"


def write_token(directory, token=TOKEN):
    path = os.path.join(directory, "admin-token")
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def write_atomically(path, text):
    """Replace `path` in one rename, so a reload never reads a half-written file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class EchoServer:
    """TCP echo on 127.0.0.1: every accepted connection gets its bytes back until EOF."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return

    def close(self):
        self.sock.close()


class TcpSink:
    """Accepts one connection on 127.0.0.1 and records every byte until EOF."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.accepted = threading.Event()
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(30)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.accepted.set()
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self.received += data
            except OSError:
                pass
        self.closed.set()

    def close(self):
        self.sock.close()


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def closed_by_peer(sock, timeout=10):
    """True once the peer closed (EOF or reset) within `timeout`; False if data arrived."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def admin_request(address, path, token=None, method="GET"):
    """One admin request; returns (status, parsed JSON body or raw text)."""
    headers = {}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = b"{}" if method == "POST" else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(f"http://{address}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, body = resp.status, resp.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


class Delta:
    """Metric deltas against a baseline scrape."""

    def __init__(self, address):
        self.address = address
        self.before = scrape(address)

    def now(self):
        return scrape(self.address)

    def of(self, name, samples=None, **labels):
        samples = samples if samples is not None else self.now()
        return value(samples, name, **labels) - value(self.before, name, **labels)


class HttpFileServer:
    """`python3 -m http.server` on 127.0.0.1 with an ephemeral port, serving `directory`."""

    def __init__(self, directory, timeout=15):
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", directory],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.port = None
        found = threading.Event()

        def pump():
            for line in self.proc.stdout:
                m = re.search(r"port (\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        found.wait(timeout)
        if self.port is None:
            self.stop()
            raise RuntimeError("http.server did not report its port")
        # The line is printed after bind+listen, so the port already accepts; still confirm.
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
