"""Helpers for the Redis TLS and high-availability tests: certificates made with openssl at
test time, a TLS redis-server, and a primary + replica + sentinels on loopback."""
import os
import shutil
import signal
import ssl
import subprocess
import tempfile

import pytest

from _fleet import free_port, resp_command
from conftest import wait_until


def need(binary):
    if shutil.which(binary) is None:
        pytest.skip(f"SKIP: {binary} is not installed (scripts/install-test-deps.sh)")


def make_ca(directory, name):
    """A CA (key + self-signed certificate); returns (cert, key) paths."""
    need("openssl")
    key, cert = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", f"/CN={name}"], check=True, capture_output=True)
    return cert, key


def make_server_cert(directory, ca_cert, ca_key):
    """A server certificate for 127.0.0.1 / localhost signed by the CA."""
    key = os.path.join(directory, "server.key")
    csr = os.path.join(directory, "server.csr")
    cert = os.path.join(directory, "server.pem")
    ext = os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                "extendedKeyUsage = serverAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


def _write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class TlsRedis:
    """redis-server speaking only TLS (Debian's is built with it), password protected."""

    def __init__(self):
        need("redis-server")
        self.dir = tempfile.mkdtemp(prefix="swarmwall-tls-redis-")
        self.ca_cert, ca_key = make_ca(self.dir, "fleet-ca")
        cert, key = make_server_cert(self.dir, self.ca_cert, ca_key)
        self.port = free_port()
        self.password = "tp-" + os.urandom(12).hex()
        conf = os.path.join(self.dir, "redis.conf")
        _write_private(conf, f"requirepass {self.password}\n")
        self.proc = subprocess.Popen(
            ["redis-server", conf, "--port", "0", "--tls-port", str(self.port),
             "--bind", "127.0.0.1", "--tls-cert-file", cert, "--tls-key-file", key,
             "--tls-ca-cert-file", self.ca_cert, "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        context = ssl.create_default_context(cafile=self.ca_cert)
        self.context = context
        if not wait_until(self.ping, timeout=10):
            self.stop()
            pytest.skip("SKIP: this redis-server does not speak TLS (--tls-port)")

    @property
    def url(self):
        return f"rediss://:{self.password}@127.0.0.1:{self.port}/"

    def command(self, *args):
        return resp_command(self.port, *args, password=self.password, ssl_context=self.context)

    def ping(self):
        try:
            return self.command("PING") == "PONG"
        except (OSError, ssl.SSLError):
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class SentinelSet:
    """A primary, one replica and three sentinels (quorum 2) on loopback, all password
    protected; `kill_primary()` and `primary_port()` drive and watch a failover."""

    def __init__(self, master="swarmwall-primary", sentinel_auth=False):
        need("redis-server")
        need("redis-sentinel")
        self.dir = tempfile.mkdtemp(prefix="swarmwall-sentinel-")
        self.master = master
        self.password = "sp-" + os.urandom(12).hex()
        # With sentinel_auth the sentinels demand the same password (requirepass) and use it
        # among themselves (sentinel-pass).
        self.sentinel_password = self.password if sentinel_auth else None
        self.ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs = {}
        for index, port in enumerate(self.ports):
            conf = os.path.join(self.dir, f"redis-{port}.conf")
            text = f"requirepass {self.password}\nmasterauth {self.password}\n"
            if index > 0:
                text += f"replicaof 127.0.0.1 {self.ports[0]}\n"
            _write_private(conf, text)
            self.procs[port] = subprocess.Popen(
                ["redis-server", conf, "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in self.ports:
            assert wait_until(lambda p=port: self._ping(p), timeout=10), "redis did not start"
        assert wait_until(lambda: self._replicated(), timeout=15), "replica did not sync"
        for port in self.sentinel_ports:
            conf = os.path.join(self.dir, f"sentinel-{port}.conf")
            _write_private(conf, (
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {master} 127.0.0.1 {self.ports[0]} 2\n"
                f"sentinel auth-pass {master} {self.password}\n"
                f"sentinel down-after-milliseconds {master} 1000\n"
                f"sentinel failover-timeout {master} 10000\n"
                f"sentinel parallel-syncs {master} 1\n"
                + (f"requirepass {self.password}\nsentinel sentinel-pass {self.password}\n"
                   if sentinel_auth else "")))
            self.procs[port] = subprocess.Popen(
                ["redis-sentinel", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Every sentinel knows the others (hello messages) before a failover is asked of them.
        assert wait_until(self._sentinels_see_each_other, timeout=20), "sentinels did not meet"

    def _ping(self, port):
        try:
            return resp_command(port, "PING", password=self.password) == "PONG"
        except OSError:
            return False

    def _replicated(self):
        try:
            info = resp_command(self.ports[1], "INFO", "replication", password=self.password)
        except OSError:
            return False
        return b"master_link_status:up" in (info or b"")

    def _sentinels_see_each_other(self):
        try:
            return all(
                len(resp_command(port, "SENTINEL", "sentinels", self.master,
                                 password=self.sentinel_password) or []) >= 2
                for port in self.sentinel_ports)
        except OSError:
            return False

    @property
    def sentinels(self):
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def primary_port(self):
        """The primary's port as the first answering sentinel names it."""
        for port in self.sentinel_ports:
            try:
                reply = resp_command(port, "SENTINEL", "get-master-addr-by-name", self.master,
                                     password=self.sentinel_password)
            except OSError:
                continue
            if reply:
                return int(reply[1])
        return None

    def command(self, port, *args):
        return resp_command(port, *args, password=self.password)

    def kill_primary(self):
        port = self.primary_port()
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return port

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
