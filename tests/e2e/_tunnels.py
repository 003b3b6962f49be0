"""VPN tunnels for the benign corpus (issue 17): OpenVPN over TCP with `--tls-crypt` through its
own `--socks-proxy`, and WireGuard carried over TCP. Both need tun devices, so each runs with
its server side in a network namespace ("far side", holding the VPN server and the inner
application servers) and its client side in the namespace the caller runs in (the scenario's
hub namespace, where swarmwall runs); see _tunnel_scenario.py.

WireGuard-in-TCP: Debian packages neither udp2raw nor wstunnel, and its `udptunnel` sends each
datagram from a second, connected socket that it never reads, so a WireGuard peer (which always
answers the address the last packet came from) gets no reply through it (tried). The framing
here is udptunnel's own (and mullvad's udp-over-tcp): every datagram prefixed by its 16-bit
big-endian length, one TCP connection per tunnel, opened at the first datagram; the client end
reaches the server end through swarmwall's SOCKS5. WireGuard itself is wireguard-go + wg.
"""
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time

from _mse import stop
from _socks5 import connect


def run(*argv, netns=None, **kwargs):
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run(prefix + list(argv), check=True, capture_output=True, text=True, **kwargs)


def wait_log(path, needle, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and needle in open(path, errors="replace").read():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log = open(path, errors="replace").read()[-3000:] if os.path.exists(path) else ""
    raise RuntimeError(f"no '{needle}' in {path} (rc {proc.poll()}):\n{log}")


# ------------------------------------------------------------------ OpenVPN

def pki(directory):
    """A throw-away CA with one server and one client certificate (EC P-256), and the
    tls-crypt static key; returns the paths."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=swarmwall-test-ca")
    for name in ("server", "client"):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt")
    subprocess.run(["openvpn", "--genkey", "secret", os.path.join(directory, "tc.key")], check=True,
                   capture_output=True)
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o600)
    return {name: os.path.join(directory, name) for name in os.listdir(directory)}


class OpenVpn:
    """OpenVPN 2.6 point-to-point over TCP, TLS mode with `--tls-crypt` (the control channel
    encrypted and authenticated with a static key generated here), AES-256-GCM data channel.
    Server in `far_ns` on `far_ip`:1194 with tun address 10.8.0.1; client here (10.8.0.2),
    its TCP connection through swarmwall with `--socks-proxy`."""

    INNER = "10.8.0.1"

    def __init__(self, far_ns, far_ip, proxy_port):
        self.dir = tempfile.mkdtemp(prefix="sw-ovpn-")
        os.chmod(self.dir, 0o700)
        keys = pki(self.dir)
        common = ["--dev", "tun", "--ca", keys["ca.crt"], "--tls-crypt", keys["tc.key"], "--verb", "3",
                  "--data-ciphers", "AES-256-GCM", "--ping", "5", "--ping-exit", "60"]
        self.server_log = os.path.join(self.dir, "server.log")
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", far_ns, "openvpn", "--proto", "tcp-server", "--local", far_ip, "--lport", "1194",
             "--tls-server", "--dh", "none", "--cert", keys["server.crt"], "--key", keys["server.key"],
             "--ifconfig", self.INNER, "10.8.0.2", "--log", self.server_log] + common,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_log(self.server_log, "Listening for incoming TCP connection", self.server)
        self.client_log = os.path.join(self.dir, "client.log")
        self.client = subprocess.Popen(
            ["openvpn", "--proto", "tcp-client", "--remote", far_ip, "1194", "--nobind",
             "--socks-proxy", "127.0.0.1", str(proxy_port), "--tls-client", "--cert", keys["client.crt"],
             "--key", keys["client.key"], "--verify-x509-name", "server", "name", "--ifconfig", "10.8.0.2", self.INNER, "--log", self.client_log] + common,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_log(self.client_log, "Initialization Sequence Completed", self.client)
        except Exception:
            self.close()
            raise

    def close(self):
        stop(self.client)
        stop(self.server)


# ------------------------------------------------------------------ WireGuard over TCP

def read_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def _pump_udp_to_tcp(udp, tcp, peer=None):
    """Datagrams from `udp` onto the stream (16-bit length prefix); remembers the sender."""
    while True:
        try:
            data, address = udp.recvfrom(65535)
            if peer is not None:
                peer[0] = address
            tcp.sendall(struct.pack(">H", len(data)) + data)
        except OSError:
            return


def _pump_tcp_to_udp(tcp, udp, peer):
    while True:
        try:
            (length,) = struct.unpack(">H", read_exact(tcp, 2))
            data = read_exact(tcp, length)
            if peer[0] is not None:
                udp.sendto(data, peer[0])
        except (OSError, struct.error):
            return


class UdpOverTcp:
    """The two ends of a UDP-over-TCP tunnel (one TCP connection): `client_port` takes the
    local WireGuard's datagrams on 127.0.0.1, the connection goes through the SOCKS5 proxy to
    the server end on `server_host`, which relays to `target` (the far WireGuard) from one UDP
    socket it also reads."""

    def __init__(self, proxy_port, server_host, target):
        self.sockets = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((server_host, 0))
        self.listener.listen(4)
        self.server_address = self.listener.getsockname()
        self.target = target
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.client_port = self.udp.getsockname()[1]
        self.proxy_port = proxy_port
        self.sockets += [self.listener, self.udp]
        threading.Thread(target=self._serve, daemon=True).start()
        threading.Thread(target=self._client, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.connect(self.target)
            self.sockets += [conn, udp]
            threading.Thread(target=_pump_udp_to_tcp, args=(udp, conn), daemon=True).start()
            threading.Thread(target=_pump_tcp_to_udp, args=(conn, udp, [self.target]), daemon=True).start()

    def _client(self):
        # The connection opens at the first datagram (the handshake initiation), as udptunnel's
        # and udp2raw's clients do.
        try:
            data, address = self.udp.recvfrom(65535)
        except OSError:
            return
        peer = [address]
        tcp = connect(("127.0.0.1", self.proxy_port), *self.server_address, timeout=30)
        tcp.settimeout(None)
        self.sockets.append(tcp)
        tcp.sendall(struct.pack(">H", len(data)) + data)
        threading.Thread(target=_pump_tcp_to_udp, args=(tcp, self.udp, peer), daemon=True).start()
        _pump_udp_to_tcp(self.udp, tcp, peer)

    def close(self):
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class WireGuard:
    """wireguard-go pair: server `wgs` in `far_ns` (10.9.0.1, UDP `far_ip`:51820), client
    `wgc` here (10.9.0.2) whose only endpoint is the UDP-over-TCP client end."""

    INNER = "10.9.0.1"

    def __init__(self, far_ns, far_ip, hub_ip, proxy_port):
        self.far_ns = far_ns
        self.dir = tempfile.mkdtemp(prefix="sw-wg-")
        os.chmod(self.dir, 0o700)
        keys = {}
        for side in ("server", "client"):
            private = run("wg", "genkey").stdout.strip()
            public = run("wg", "pubkey", input=private).stdout.strip()
            path = os.path.join(self.dir, side)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(private + "\n")
            keys[side] = (path, public)
        env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
        self.procs = [subprocess.Popen(["ip", "netns", "exec", far_ns, "wireguard-go", "-f", "wgs"], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        self.procs.append(subprocess.Popen(["wireguard-go", "-f", "wgc"], env=env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))
        try:
            self._wait_device("wgs", far_ns)
            self._wait_device("wgc", None)
            run("wg", "set", "wgs", "listen-port", "51820", "private-key", keys["server"][0], "peer",
                keys["client"][1], "allowed-ips", "10.9.0.2/32", netns=far_ns)
            run("ip", "addr", "add", f"{self.INNER}/24", "dev", "wgs", netns=far_ns)
            run("ip", "link", "set", "wgs", "up", netns=far_ns)
            self.tunnel = UdpOverTcp(proxy_port, hub_ip, (far_ip, 51820))
            run("wg", "set", "wgc", "private-key", keys["client"][0], "peer", keys["server"][1], "endpoint",
                f"127.0.0.1:{self.tunnel.client_port}", "allowed-ips", "10.9.0.1/32")
            run("ip", "addr", "add", "10.9.0.2/24", "dev", "wgc")
            run("ip", "link", "set", "wgc", "up")
        except Exception:
            self.close()
            raise

    @staticmethod
    def _wait_device(name, netns):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            prefix = ["ip", "netns", "exec", netns] if netns else []
            if subprocess.run(prefix + ["wg", "show", name], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"wireguard-go: no device {name}")

    def close(self):
        for proc in self.procs:
            stop(proc)
        if hasattr(self, "tunnel"):
            self.tunnel.close()
