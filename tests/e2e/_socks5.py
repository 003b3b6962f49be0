"""A minimal SOCKS5 client (RFC 1928/1929) for the end-to-end suites: CONNECT with the raw
reply code, and UDP ASSOCIATE with datagram wrapping."""
import ipaddress
import socket
import struct


class Socks5Error(Exception):
    def __init__(self, reply):
        super().__init__(f"SOCKS5 reply {reply:#04x}")
        self.reply = reply


def _addr_bytes(host):
    try:
        ip = ipaddress.ip_address(host)
        return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    except ValueError:
        raw = host.encode()
        return b"\x03" + bytes([len(raw)]) + raw


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("proxy closed the connection")
        data += chunk
    return data


def _read_address(sock):
    atyp = _recv_exact(sock, 1)[0]
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, _recv_exact(sock, 4))
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, _recv_exact(sock, 16))
    else:
        host = _recv_exact(sock, _recv_exact(sock, 1)[0]).decode()
    port = struct.unpack("!H", _recv_exact(sock, 2))[0]
    return host, port


def handshake(sock, user=None, password=None):
    if user is None:
        sock.sendall(b"\x05\x01\x00")
    else:
        sock.sendall(b"\x05\x01\x02")
    ver, method = _recv_exact(sock, 2)
    if method == 0x02:
        u, p = user.encode(), password.encode()
        sock.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        if _recv_exact(sock, 2)[1] != 0:
            raise PermissionError("authentication failed")
    elif method != 0x00:
        raise PermissionError(f"no acceptable method ({method:#x})")


def request(sock, command, host, port):
    sock.sendall(b"\x05" + bytes([command]) + b"\x00" + _addr_bytes(host) + struct.pack("!H", port))
    ver, rep, _rsv = _recv_exact(sock, 3)
    bound = _read_address(sock)
    if rep != 0:
        raise Socks5Error(rep)
    return bound


def connect(proxy, host, port, user=None, password=None, timeout=10):
    """CONNECT through `proxy` ((host, port)); returns the socket or raises Socks5Error."""
    sock = socket.create_connection(proxy, timeout=timeout)
    try:
        handshake(sock, user, password)
        request(sock, 0x01, host, port)
    except Exception:
        sock.close()
        raise
    return sock


def connect_reply(proxy, host, port, **kw):
    """The reply code of a CONNECT (0 on success)."""
    try:
        connect(proxy, host, port, **kw).close()
        return 0
    except Socks5Error as e:
        return e.reply


class UdpAssociation:
    """UDP ASSOCIATE: keep the control connection open while datagrams flow."""

    def __init__(self, proxy, user=None, password=None, timeout=5):
        self.control = socket.create_connection(proxy, timeout=timeout)
        handshake(self.control, user, password)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(timeout)
        host, port = request(self.control, 0x03, *self.udp.getsockname())
        if host in ("0.0.0.0", "::"):
            host = proxy[0]
        self.relay = (host, port)

    def send(self, host, port, payload, frag=0):
        header = b"\x00\x00" + bytes([frag]) + _addr_bytes(host) + struct.pack("!H", port)
        self.udp.sendto(header + payload, self.relay)

    def recv(self):
        data, _ = self.udp.recvfrom(65535)
        atyp = data[3]
        offset = {1: 4 + 4, 4: 4 + 16}.get(atyp)
        if offset is None:
            offset = 4 + 1 + data[4]
        return data[offset + 2:]

    def close(self):
        self.udp.close()
        self.control.close()
