"""SOCKS5 server end to end with a Python client: UDP ASSOCIATE carrying a DNS-shaped
request/response to a local UDP echo, and CONNECT through the same node."""
import socket
import struct
import threading

ALLOW = ("--allow-destination", "127.0.0.0/8")


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        assert part, "proxy closed early"
        data += part
    return data


def socks_request(sock, command, host, port):
    sock.sendall(b"\x05\x01\x00")
    assert recv_exact(sock, 2) == b"\x05\x00"
    sock.sendall(b"\x05" + bytes([command]) + b"\x00\x01" + socket.inet_aton(host) + struct.pack(">H", port))
    reply = recv_exact(sock, 10)
    return reply[1], socket.inet_ntoa(reply[4:8]), struct.unpack(">H", reply[8:10])[0]


def udp_echo():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def loop():
        while True:
            data, peer = sock.recvfrom(65535)
            sock.sendto(data, peer)

    threading.Thread(target=loop, daemon=True).start()
    return sock.getsockname()


def dns_query(txid):
    header = struct.pack(">HHHHHH", txid, 0x0100, 1, 0, 0, 0)
    question = b"".join(bytes([len(p)]) + p for p in (b"example", b"com")) + b"\x00\x00\x01\x00\x01"
    return header + question


def test_udp_associate_dns_like_round_trip(start_swarmwall):
    node = start_swarmwall(*ALLOW)
    echo_host, echo_port = udp_echo()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5)
    control = socket.create_connection((node.host, node.port), timeout=10)
    code, relay_host, relay_port = socks_request(control, 0x03, *client.getsockname())
    assert code == 0
    header = b"\x00\x00\x00\x01" + socket.inet_aton(echo_host) + struct.pack(">H", echo_port)
    for txid in range(1, 6):
        query = dns_query(txid)
        client.sendto(header + query, (relay_host, relay_port))
        data, source = client.recvfrom(65535)
        assert source == (relay_host, relay_port)
        assert data == header + query
    control.close()


def test_connect_echo_with_python_client(start_swarmwall):
    node = start_swarmwall(*ALLOW)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        conn.sendall(conn.recv(100).upper())
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    sock = socket.create_connection((node.host, node.port), timeout=10)
    code, _, _ = socks_request(sock, 0x01, *listener.getsockname())
    assert code == 0
    sock.sendall(b"hello")
    assert recv_exact(sock, 5) == b"HELLO"
