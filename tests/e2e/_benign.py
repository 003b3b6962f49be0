"""The benign corpus for the MSE suites: random-looking protocols from real implementations,
driven through swarmwall as a customer would, every flow checked byte for byte.

Inner application (what the tunnels carry, and what the direct "bulk" flows are): three tiny
servers on loopback, all bounded per connection.
- upload: the client writes random bytes (first write 1..2048 bytes, then the rest), half-closes;
  the server answers with the SHA-256 of everything it received.
- download: the client writes a random request (first write 1..2048 bytes) and half-closes; the
  server answers with N random bytes derived from the request's SHA-256 (N from the request).
- echo: rounds of random writes (1..2048 bytes), each echoed back.
- rpc: 3..6 request/response rounds; each request 16..2048 random bytes, each response
  log-uniform 1 B .. 1 MiB, both sizes derived from the request's first 16 bytes (a keep-alive
  API over an encrypted tunnel: the workload that can meet the coalesced libtorrent layout).
Sizes and rounds come from a seeded generator, so a run is reproducible.
"""
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _bittorrent import free_port
from _mse import proxied, stop, wait_tcp
from _socks5 import connect

MAX_FLOW_BYTES = 80 * 1024 * 1024
# Download sizes: mostly small (log-uniform 1 B .. 1 MiB), a few large ones up to 64 MiB.
LARGE_SIZES = [16 << 20, 64 << 20]
HEAD = 16


def flow_sizes(head):
    """(request length, upload length, download length) for a flow whose first 16 bytes are
    `head`: both ends derive them from its digest, so every byte on the wire stays random and
    no half-close is needed (tunnels such as ss-local close both ways on EOF)."""
    rng = random.Random(hashlib.sha256(head).digest())
    request = rng.randint(HEAD, 2048)
    upload = max(HEAD, int(2 ** rng.uniform(0, 21)))
    download = rng.choice(LARGE_SIZES) if rng.random() < 0.002 else max(1, int(2 ** rng.uniform(0, 20)))
    return request, upload, download


def rpc_sizes(head):
    """(request length, response length) of one rpc round whose request starts with `head`."""
    rng = random.Random(hashlib.sha256(b"rpc" + head).digest())
    return rng.randint(HEAD, 2048), max(1, int(2 ** rng.uniform(0, 20)))


def download_body(head, size):
    return random.Random(hashlib.sha256(head).digest() + b"body").randbytes(size)


def recv_all(sock, limit=MAX_FLOW_BYTES):
    chunks, total = [], 0
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        total += len(data)
        if total > limit:
            raise ValueError("flow over its byte limit")


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(1 << 16, n - len(data)))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


class AppServers:
    """The three inner servers (threads; each connection bounded in bytes and time)."""

    def __init__(self, host="127.0.0.1"):
        self.socks = {}
        self.ports = {}
        for kind in ("upload", "download", "echo", "rpc"):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            s.listen(512)
            self.socks[kind] = s
            self.ports[kind] = s.getsockname()[1]
            threading.Thread(target=self.accept, args=(kind, s), daemon=True).start()

    def accept(self, kind, listener):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.settimeout(60)
            threading.Thread(target=self.serve, args=(kind, conn), daemon=True).start()

    @staticmethod
    def serve(kind, conn):
        try:
            with conn:
                if kind == "echo":
                    while True:
                        data = conn.recv(1 << 16)
                        if not data:
                            return
                        conn.sendall(data)
                if kind == "rpc":
                    while True:
                        first = conn.recv(1)
                        if not first:
                            return
                        head = first + recv_exact(conn, HEAD - 1)
                        request, response = rpc_sizes(head)
                        recv_exact(conn, request - HEAD)
                        conn.sendall(download_body(head, response))
                head = recv_exact(conn, HEAD)
                request, upload, download = flow_sizes(head)
                if kind == "upload":
                    h = hashlib.sha256(head)
                    left = upload - HEAD
                    while left > 0:
                        data = conn.recv(min(1 << 16, left))
                        if not data:
                            return
                        h.update(data)
                        left -= len(data)
                    conn.sendall(h.digest())
                else:
                    recv_exact(conn, request - HEAD)
                    conn.sendall(download_body(head, download))
                conn.recv(1)  # until the client closes
        except OSError:
            pass

    def close(self):
        for s in self.socks.values():
            s.close()


def run_app_flow(kind, rng, open_socket):
    """One flow of the inner application over the socket `open_socket()` returns; True when
    every byte came back as expected. The first write is 1..2048 random bytes."""
    first = rng.randint(1, 2048)
    sock = open_socket()
    try:
        sock.settimeout(60)
        if kind == "rpc":
            # Sizes from the seeded generator: a run is reproducible down to every flight.
            for _ in range(rng.randint(3, 6)):
                head = rng.randbytes(HEAD)
                request, response = rpc_sizes(head)
                sock.sendall(head + os.urandom(request - HEAD))
                if recv_exact(sock, response) != download_body(head, response):
                    return False
            return True
        if kind == "echo":
            for _ in range(rng.randint(1, 6)):
                data = os.urandom(first)
                sock.sendall(data)
                if recv_exact(sock, len(data)) != data:
                    return False
                first = rng.randint(1, 2048)
            return True
        head = os.urandom(HEAD)
        request, upload, download = flow_sizes(head)
        if kind == "upload":
            payload = head + os.urandom(upload - HEAD)
            sock.sendall(payload[:first])
            sock.sendall(payload[first:])
            return recv_exact(sock, 32) == hashlib.sha256(payload).digest()
        # download: the request is the first write
        sock.sendall(head + os.urandom(request - HEAD))
        return recv_exact(sock, download) == download_body(head, download)
    finally:
        sock.close()


def run_many(count, work, parallel=12, seed=0):
    """Run `work(rng, index)` `count` times on a thread pool; returns the list of results
    (exceptions count as failures and are kept as strings)."""
    def one(index):
        rng = random.Random(seed * 1_000_003 + index)
        try:
            return bool(work(rng, index))
        except Exception as error:  # a failed flow is a finding, not a crash of the suite
            return f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, range(count)))


def socks_opener(proxy, host, port, user=None, password=None):
    return lambda: connect(proxy, host, port, user=user, password=password, timeout=30)


# ------------------------------------------------------------------ real implementations

class Shadowsocks:
    """ss-server (AEAD `cipher`) on loopback; ss-local under proxychains4, so that every
    ss-local → ss-server connection goes through swarmwall. `socks` is ss-local's SOCKS5."""

    def __init__(self, proxy_port, cipher):
        self.dir = tempfile.mkdtemp(prefix="sw-ss-")
        self.server_port, self.local_port = free_port(), free_port()
        password = os.urandom(12).hex()
        common = ["-m", cipher, "-k", password, "-t", "60"]
        self.server = subprocess.Popen(["ss-server", "-s", "127.0.0.1", "-p", str(self.server_port)] + common,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_tcp(self.server_port)
        argv = ["ss-local", "-s", "127.0.0.1", "-p", str(self.server_port), "-b", "127.0.0.1",
                "-l", str(self.local_port)] + common
        self.local = subprocess.Popen(proxied(self.dir, proxy_port, argv), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        wait_tcp(self.local_port)
        self.socks = ("127.0.0.1", self.local_port)

    def close(self):
        stop(self.local)
        stop(self.server)


def _pt_env(state, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOR_PT")}
    env.update(TOR_PT_MANAGED_TRANSPORT_VER="1", TOR_PT_STATE_LOCATION=state, TOR_PT_EXIT_ON_STDIN_CLOSE="1")
    env.update(extra)
    return env


def _pt_line(proc, prefix, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.split()
    raise RuntimeError(f"obfs4proxy: no {prefix}")


class Obfs4:
    """obfs4proxy as server (in front of `target_port`) and as client, the client's upstream
    proxy being swarmwall (TOR_PT_PROXY): every obfs4 connection goes through swarmwall."""

    def __init__(self, proxy_port, target_port):
        self.dir = tempfile.mkdtemp(prefix="sw-obfs4-")
        server_state, client_state = os.path.join(self.dir, "s"), os.path.join(self.dir, "c")
        os.makedirs(server_state)
        os.makedirs(client_state)
        self.server_port = free_port()
        self.server = subprocess.Popen(
            ["obfs4proxy"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=_pt_env(server_state, TOR_PT_SERVER_TRANSPORTS="obfs4",
                        TOR_PT_SERVER_BINDADDR=f"obfs4-127.0.0.1:{self.server_port}",
                        TOR_PT_ORPORT=f"127.0.0.1:{target_port}"))
        _pt_line(self.server, "SMETHOD obfs4")
        with open(os.path.join(server_state, "obfs4_bridgeline.txt")) as f:
            bridge = [line for line in f if line.startswith("Bridge obfs4")][0]
        cert = bridge.split("cert=")[1].split()[0]
        self.args = f"cert={cert};iat-mode=0"
        self.client = subprocess.Popen(
            ["obfs4proxy"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=_pt_env(client_state, TOR_PT_CLIENT_TRANSPORTS="obfs4",
                        TOR_PT_PROXY=f"socks5://127.0.0.1:{proxy_port}"))
        _pt_line(self.client, "PROXY DONE")
        host, port = _pt_line(self.client, "CMETHOD obfs4")[3].rsplit(":", 1)
        self.socks = (host, int(port))

    def opener(self):
        # Tor's convention: the bridge arguments travel as the SOCKS5 username/password.
        half = len(self.args) // 2
        return socks_opener(self.socks, "127.0.0.1", self.server_port, self.args[:half],
                            self.args[half:] or "\0")

    def close(self):
        for proc in (self.client, self.server):
            try:
                proc.stdin.close()
            except OSError:
                pass
            stop(proc)


class V2Ray:
    """v2ray server (VMess or VLESS inbound, freedom outbound) and client (SOCKS5 inbound,
    VMess/VLESS outbound whose connections go through swarmwall via a SOCKS outbound)."""

    def __init__(self, proxy_port, protocol):
        self.dir = tempfile.mkdtemp(prefix=f"sw-{protocol}-")
        self.server_port, self.local_port = free_port(), free_port()
        uid = "b831381d-6324-4d53-ad4f-8cda48b30811"
        if protocol == "vmess":
            inbound_settings = {"clients": [{"id": uid, "alterId": 0}]}
            user = {"id": uid, "alterId": 0, "security": "aes-128-gcm"}
        else:
            inbound_settings = {"clients": [{"id": uid}], "decryption": "none"}
            user = {"id": uid, "encryption": "none"}
        server = {"log": {"loglevel": "none"},
                  "inbounds": [{"listen": "127.0.0.1", "port": self.server_port, "protocol": protocol,
                                "settings": inbound_settings}],
                  "outbounds": [{"protocol": "freedom"}]}
        client = {"log": {"loglevel": "none"},
                  "inbounds": [{"listen": "127.0.0.1", "port": self.local_port, "protocol": "socks",
                                "settings": {"udp": False}}],
                  "outbounds": [{"protocol": protocol,
                                 "settings": {"vnext": [{"address": "127.0.0.1", "port": self.server_port,
                                                         "users": [user]}]},
                                 "proxySettings": {"tag": "swarmwall"}},
                                {"tag": "swarmwall", "protocol": "socks",
                                 "settings": {"servers": [{"address": "127.0.0.1", "port": proxy_port}]}}]}
        self.procs = []
        for name, config in (("server", server), ("client", client)):
            path = os.path.join(self.dir, f"{name}.json")
            with open(path, "w") as f:
                json.dump(config, f)
            self.procs.append(subprocess.Popen(["v2ray", "-config", path], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        wait_tcp(self.server_port)
        wait_tcp(self.local_port)
        self.socks = ("127.0.0.1", self.local_port)

    def close(self):
        for proc in self.procs:
            stop(proc)


class Sshd:
    """OpenSSH server on loopback with a throw-away host key and one authorised key."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sw-ssh-")
        os.chmod(self.dir, 0o700)
        self.port = free_port()
        host_key, self.key = os.path.join(self.dir, "host"), os.path.join(self.dir, "id")
        for path in (host_key, self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        shutil.copy(self.key + ".pub", os.path.join(self.dir, "authorized_keys"))
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as f:
            f.write(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
                    f"AuthorizedKeysFile {self.dir}/authorized_keys\nPasswordAuthentication no\n"
                    f"PidFile {self.dir}/sshd.pid\nStrictModes no\nUsePAM no\nAllowTcpForwarding yes\n"
                    f"MaxStartups 100:30:200\nMaxSessions 50\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_tcp(self.port)

    def client_argv(self, proxy_port, *extra):
        return proxied(self.dir, proxy_port, [
            "ssh", "-F", "/dev/null", "-i", self.key, "-p", str(self.port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={self.dir}/known_hosts",
            "-o", "LogLevel=ERROR", *extra, "root@127.0.0.1"])

    def close(self):
        stop(self.proc)

