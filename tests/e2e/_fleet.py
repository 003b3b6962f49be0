"""Helpers for the fleet suite: a real redis-server on loopback, accounts, a SOCKS5 client that
sends a BitTorrent handshake or plain HTTP through a node, and the `swarmwall strikes` CLI."""
import os
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import swarmwall_bin, wait_until


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args, stdin=None, timeout=60):
    return subprocess.run([swarmwall_bin(), *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout)


def resp_command(port, *args, password=None, host="127.0.0.1", timeout=2.0, ssl_context=None):
    """One Redis command over a plain socket (RESP), after AUTH when `password` is given.
    Returns the reply: str for simple strings, bytes for bulk strings, int, list, None, or
    an Exception instance for an error reply. No redis-cli needed. With `ssl_context`, over
    TLS."""
    def encode(parts):
        out = b"*%d\r\n" % len(parts)
        for part in parts:
            part = part if isinstance(part, bytes) else str(part).encode()
            out += b"$%d\r\n%s\r\n" % (len(part), part)
        return out

    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = ssl_context.wrap_socket(raw, server_hostname=host) if ssl_context else raw
        reader = sock.makefile("rb")
        if password is not None:
            sock.sendall(encode(["AUTH", password]))
            reply = _read_resp(reader)
            if isinstance(reply, Exception):
                return reply
        sock.sendall(encode(args))
        return _read_resp(reader)


def _read_resp(reader):
    line = reader.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = reader.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_resp(reader) for _ in range(n)]
    raise ValueError(f"unexpected RESP reply {line!r}")


class Redis:
    """redis-server on a free loopback port without persistence, protected by a password
    generated per instance (`requirepass`; the URL carries it); stop() and start() keep the
    port and password so nodes can reconnect. `extra` adds redis-server arguments."""

    def __init__(self, extra=()):
        if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
            pytest.skip("SKIP: redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.password = "rp-" + os.urandom(12).hex()
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix="swarmwall-fleet-redis-")
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://:{self.password}@127.0.0.1:{self.port}/"

    def command(self, *args):
        """Run one command as an operator (or an attacker with the password) would."""
        return resp_command(self.port, *args, password=self.password)

    def ping(self):
        try:
            return self.command("PING") == "PONG"
        except OSError:
            return False

    def start(self):
        # The password goes in through a config file: on the command line it would show in
        # `ps`; a 0600 file in the private directory keeps it off the process list.
        conf = os.path.join(self.dir, "redis.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n")
        self.proc = subprocess.Popen(
            ["redis-server", conf, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(self.ping, timeout=10), "redis-server did not start"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        assert wait_until(lambda: not self.ping(), timeout=10)


def serve_available():
    """True when this build's `swarmwall serve` runs (it is written in parallel)."""
    try:
        out = run_cli("serve", "--help")
    except OSError:
        return False  # no binary at SWARMWALL_BIN
    return out.returncode == 0 and "--store" in out.stdout


def write_secret_key(path):
    """The pseudonymisation key every node of the fleet shares (64 hex characters, 0600):
    client addresses reach Redis as keyed hashes, so nodes with different keys would not see
    each other's client-address lockouts or TOTP trusted windows."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    return path


def write_config(path, extra="", security="", server="", secret_key_file=None):
    """Cheap argon2, quick failure delays, and a 100 ms burst window so a test can produce
    three separate incidents in well under a second. `security` and `server` are appended to
    those sections; with `secret_key_file`, every node reading this file shares that key."""
    if secret_key_file:
        security += f'secret_key_file = "{secret_key_file}"\n'
    with open(path, "w") as f:
        f.write(
            "[server]\n" + server + "\n"
            "[security]\nargon2_memory_kib = 1024\nargon2_iterations = 1\n"
            'failure_delay = "10ms"\nfailure_delay_max = "50ms"\n' + security + "\n"
            '[policy.strikes]\nburst_window = "100ms"\n' + extra)
    return path


def add_user(accounts, config, name, password):
    out = run_cli("user", "add", name, "--accounts", accounts, "--config", config,
                  "--password-stdin", stdin=password + "\n")
    if out.returncode != 0 and "not implemented" in out.stderr:
        pytest.skip("`swarmwall user` is not implemented in this build")
    assert out.returncode == 0, out.stderr


def login_status(node, user, password, source=None, balancer="127.0.0.2", timeout=15.0):
    """Greeting + RFC 1929 login; returns the RFC 1929 status byte (0 = accepted), or None
    when the proxy closed the connection instead of answering. With `source`, the connection
    comes from the loopback `balancer` address and starts with a PROXY v1 header naming
    `source` as the client (the nodes must trust `balancer` in proxy_protocol_trusted)."""
    bind = (balancer, 0) if source is not None else None
    with socket.create_connection((node.host, node.port), timeout=timeout,
                                  source_address=bind) as sock:
        if source is not None:
            family = "TCP6" if ":" in source else "TCP4"
            local = "::1" if family == "TCP6" else "127.0.0.1"
            sock.sendall(f"PROXY {family} {source} {local} 40000 {node.port}\r\n".encode())
        sock.sendall(b"\x05\x01\x02")
        try:
            if _recv_exact(sock, 2) != b"\x05\x02":
                return None
            u, p = user.encode(), password.encode()
            sock.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
            reply = _recv_exact(sock, 2)
        except ConnectionResetError:
            return None
        return None if reply is None else reply[1]


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


BT_HANDSHAKE = (b"\x13BitTorrent protocol" + b"\x00\x00\x00\x00\x00\x10\x00\x05"
                + bytes(range(20)) + b"-qB4650-" + b"fleettest123")


def socks5_connect(node, user, password, port, timeout=10.0):
    """Log in and CONNECT to 127.0.0.1:port. Returns (reply code or None, socket or None)."""
    sock = socket.create_connection((node.host, node.port), timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x02")
        if _recv_exact(sock, 2) != b"\x05\x02":
            sock.close()
            return None, None
        u, p = user.encode(), password.encode()
        sock.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        auth = _recv_exact(sock, 2)
        if auth is None or auth[1] != 0:
            sock.close()
            return "auth", None
        sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big"))
        reply = _recv_exact(sock, 10)
        if reply is None:
            sock.close()
            return None, None
        if reply[1] != 0:
            sock.close()
            return reply[1], None
        return 0, sock
    except OSError:
        sock.close()
        return None, None


def send_bittorrent(node, user, password, target_port):
    """One BitTorrent handshake through the node; True when the proxy cut the flow."""
    code, sock = socks5_connect(node, user, password, target_port)
    if code != 0:
        return code
    with sock:
        sock.sendall(BT_HANDSHAKE)
        sock.settimeout(10)
        try:
            return sock.recv(1024) == b""
        except (ConnectionResetError, socket.timeout):
            return True


class Sink:
    """A loopback TCP server that reads and answers every request with a fixed HTTP reply."""

    REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfleet"

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            conn.settimeout(10)
            try:
                data = conn.recv(4096)
                if data.startswith(b"GET "):
                    conn.sendall(self.REPLY)
                else:
                    while conn.recv(4096):
                        pass
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.sock.close()


def http_via(node, user, password, port):
    """A plain HTTP GET through the node: the reply body, or the SOCKS reply code on refusal."""
    code, sock = socks5_connect(node, user, password, port)
    if code != 0:
        return code
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: sink\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n\r\n", 1)[-1]


def metric(node_metrics_text, name):
    """Sum of every sample of `name` (any labels) in Prometheus text."""
    total = 0.0
    for line in node_metrics_text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == name or sample.startswith(name + "{"):
            total += float(value)
    return total
