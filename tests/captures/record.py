#!/usr/bin/python3
"""Record small loopback captures of real BitTorrent clients (python3-libtorrent) and benign
traffic for `swarmwall inspect` tests. Run as root (tcpdump); see record.sh.

Every capture uses addresses in 127.0.5.0/24 only, so the capture filter `net 127.0.5.0/24`
keeps other loopback traffic out. Hosts:
  127.0.5.1  trackers (HTTP tracker in this script, opentracker for UDP), curl client
  127.0.5.2  libtorrent seeder        (peer port 28881)
  127.0.5.3  libtorrent downloader    (peer port 28882)
  127.0.5.4  benign servers (HTTP 28080, TLS 28443)
  127.0.5.5  microsocks SOCKS5 proxy  (port 21080)

Usage: record.py OUTDIR [MODE...]   (modes: see MODES; default all)
"""
import hashlib
import http.server
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import libtorrent as lt

TRACKER = "127.0.5.1"
SEED = ("127.0.5.2", 28881)
LEECH = ("127.0.5.3", 28882)
BENIGN = "127.0.5.4"
PROXY = ("127.0.5.5", 21080)
HTTP_TRACKER_PORT = 28969
UDP_TRACKER_PORT = 28970
SNAPLEN = 2048
DEADLINE = 60.0


def log(*args):
    print("record:", *args, file=sys.stderr, flush=True)


def wait_for(predicate, what, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    raise TimeoutError(what)


def port_open(host, port):
    """Readiness probe; from 127.0.0.1 so the labels can tell probes from test traffic."""
    try:
        with socket.create_connection((host, port), timeout=0.2, source_address=("127.0.0.1", 0)):
            return True
    except OSError:
        return False


class Tcpdump:
    """tcpdump on lo with a filter; stops with SIGINT so the file is complete."""

    def __init__(self, path, extra_filter=""):
        flt = "net 127.0.5.0/24" + (f" and ({extra_filter})" if extra_filter else "")
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-s", str(SNAPLEN), "-w", path, flt],
            stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()  # "listening on lo, ..."
        if "listening" not in line:
            raise RuntimeError("tcpdump did not start: " + line)

    def stop(self):
        time.sleep(0.5)  # let the last packets reach the file (immediate mode, -U)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)


class TrackerHandler(http.server.BaseHTTPRequestHandler):
    """A minimal BEP 3/23 HTTP tracker: remembers announcers, answers with compact peers."""
    peers = {}

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, encoding="latin-1")
        info_hash = query.get("info_hash", [""])[0]
        port = int(query.get("port", ["0"])[0])
        peers = TrackerHandler.peers.setdefault(info_hash, set())
        peers.add((self.client_address[0], port))
        compact = b"".join(socket.inet_aton(ip) + struct.pack(">H", p)
                           for ip, p in sorted(peers) if p)
        body = b"d8:intervali60e5:peers%d:%se" % (len(compact), compact)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (libtorrent's stop announce at shutdown)

    def log_message(self, *args):
        pass


def start_http_tracker():
    server = http.server.ThreadingHTTPServer((TRACKER, HTTP_TRACKER_PORT), TrackerHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_torrent(workdir, trackers, size=64 * 1024):
    seed_dir = os.path.join(workdir, "seed")
    os.makedirs(seed_dir, exist_ok=True)
    path = os.path.join(seed_dir, "payload.bin")
    with open(path, "wb") as fh:
        fh.write(os.urandom(size))
    fs = lt.file_storage()
    lt.add_files(fs, path)
    t = lt.create_torrent(fs, piece_size=16384)
    for url in trackers:
        t.add_tracker(url)
    lt.set_piece_hashes(t, seed_dir)
    return lt.torrent_info(lt.bdecode(lt.bencode(t.generate()))), seed_dir


def session(addr, **overrides):
    ip, port = addr
    settings = {
        "listen_interfaces": f"{ip}:{port}",
        "outgoing_interfaces": ip,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_tcp": True,
        "enable_incoming_tcp": True,
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.disabled),
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "alert_mask": 0,
        "user_agent": "swarmwall-test/1.0",
    }
    settings.update(overrides)
    return lt.session(settings)


def add(ses, ti, save_path, magnet=None):
    if magnet:
        params = lt.parse_magnet_uri(magnet)
    else:
        params = lt.add_torrent_params()
        params.ti = ti
    params.save_path = save_path
    return ses.add_torrent(params)


def transfer(workdir, ti, seed_dir, seed_opts, leech_opts, magnet=None, connect=True):
    seeder = session(SEED, **seed_opts)
    leecher = session(LEECH, **leech_opts)
    try:
        hs = add(seeder, ti, seed_dir)
        wait_for(lambda: hs.status().is_seeding, "seeder checked its files")
        hl = add(leecher, ti, os.path.join(workdir, "leech"), magnet=magnet)
        if connect:
            hl.connect_peer(SEED)
        wait_for(lambda: hl.status().is_seeding, "download finished")
        log("  downloaded", hl.status().total_wanted, "bytes")
    finally:
        del leecher, seeder


def mode_tcp_http_tracker(workdir):
    tracker = start_http_tracker()
    try:
        ti, seed_dir = make_torrent(workdir, [f"http://{TRACKER}:{HTTP_TRACKER_PORT}/announce"])
        transfer(workdir, ti, seed_dir, {}, {}, connect=False)
    finally:
        tracker.shutdown()
        tracker.server_close()


def mode_mse_forced(workdir):
    enc = {
        "out_enc_policy": int(lt.enc_policy.forced),
        "in_enc_policy": int(lt.enc_policy.forced),
        "allowed_enc_level": int(lt.enc_level.rc4),
        "prefer_rc4": True,
    }
    ti, seed_dir = make_torrent(workdir, [])
    transfer(workdir, ti, seed_dir, enc, enc)


def mode_utp(workdir):
    utp = {
        "enable_outgoing_utp": True,
        "enable_incoming_utp": True,
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
    }
    ti, seed_dir = make_torrent(workdir, [])
    transfer(workdir, ti, seed_dir, utp, utp)


def mode_udp_tracker(workdir):
    proc = subprocess.Popen(["opentracker", "-i", TRACKER, "-p", str(UDP_TRACKER_PORT),
                             "-P", str(UDP_TRACKER_PORT)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(TRACKER, UDP_TRACKER_PORT), "opentracker listening", 10)
        ti, seed_dir = make_torrent(workdir, [f"udp://{TRACKER}:{UDP_TRACKER_PORT}/announce"])
        # opentracker does not hand loopback peers out; the announces are what this capture
        # is for, the transfer is connected directly.
        transfer(workdir, ti, seed_dir, {}, {})
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def mode_dht_magnet(workdir):
    dht = {
        "enable_dht": True,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
    }
    ti, seed_dir = make_torrent(workdir, [])
    magnet = lt.make_magnet_uri(ti)
    seed = dict(dht, dht_bootstrap_nodes=f"{LEECH[0]}:{LEECH[1]}")
    leech = dict(dht, dht_bootstrap_nodes=f"{SEED[0]}:{SEED[1]}")
    # Peers are found through the DHT when it works on loopback; a direct connect_peer after
    # a while guarantees the transfer either way (the DHT traffic is in the capture).
    seeder = session(SEED, **seed)
    leecher = session(LEECH, **leech)
    try:
        hs = add(seeder, ti, seed_dir)
        wait_for(lambda: hs.status().is_seeding, "seeder checked its files")
        hl = add(leecher, None, os.path.join(workdir, "leech"), magnet=magnet)
        try:
            wait_for(lambda: hl.status().has_metadata, "metadata via DHT", 15)
            log("  metadata found through the DHT")
        except TimeoutError:
            log("  DHT found no peer in 15 s; connecting directly")
            hl.connect_peer(SEED)
        wait_for(lambda: hl.status().is_seeding, "download finished")
    finally:
        del leecher, seeder


def socks5_connect(proxy, target):
    """Open a TCP connection through a SOCKS5 proxy (no auth, CONNECT to an IPv4 target)."""
    sock = socket.create_connection(proxy, timeout=10, source_address=(LEECH[0], 0))
    sock.sendall(b"\x05\x01\x00")
    if sock.recv(2) != b"\x05\x00":
        raise RuntimeError("SOCKS5 method refused")
    sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target[0]) + struct.pack(">H", target[1]))
    reply = b""
    while len(reply) < 10:
        chunk = sock.recv(10 - len(reply))
        if not chunk:
            raise RuntimeError("SOCKS5 proxy closed")
        reply += chunk
    if reply[1] != 0:
        raise RuntimeError(f"SOCKS5 CONNECT failed: {reply[1]}")
    return sock


def mode_socks5_peer(workdir):
    """A peer-wire handshake through microsocks (SOCKS5 CONNECT) to a libtorrent seeder.

    libtorrent 2.0 as a SOCKS5 client stalls behind microsocks (it first asks for UDP
    ASSOCIATE, which microsocks refuses), so the client side is a small Python peer that sends
    a real BEP 3 handshake and reads the seeder's handshake and bitfield."""
    proc = subprocess.Popen(["microsocks", "-i", PROXY[0], "-p", str(PROXY[1])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seeder = session(SEED)
    try:
        wait_for(lambda: port_open(*PROXY), "microsocks listening", 10)
        ti, seed_dir = make_torrent(workdir, [])
        hs = add(seeder, ti, seed_dir)
        wait_for(lambda: hs.status().is_seeding, "seeder checked its files")
        info_hash = bytes.fromhex(str(ti.info_hashes().v1))
        sock = socks5_connect(PROXY, SEED)
        with sock:
            sock.sendall(b"\x13BitTorrent protocol" + b"\x00" * 5 + b"\x10\x00\x00"
                         + info_hash + b"-PY0001-" + os.urandom(12))
            got = b""
            end = time.monotonic() + 10
            while len(got) < 68 + 4 and time.monotonic() < end:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                got += chunk
            if not got.startswith(b"\x13BitTorrent protocol"):
                raise RuntimeError("no handshake from the seeder through SOCKS5")
            log("  seeder answered through SOCKS5 with", len(got), "bytes")
    finally:
        del seeder
        proc.terminate()
        proc.wait(timeout=10)


def mode_benign(workdir):
    """curl: plain HTTP and TLS (self-signed) to local servers, and HTTP through SOCKS5."""
    www = os.path.join(workdir, "www")
    os.makedirs(www)
    with open(os.path.join(www, "index.html"), "w") as fh:
        fh.write("<html><body>hello</body></html>\n" * 20)
    key, cert = os.path.join(workdir, "key.pem"), os.path.join(workdir, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=benign.test", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    procs = [
        subprocess.Popen([sys.executable, "-m", "http.server", "-b", BENIGN, "28080"], cwd=www,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["openssl", "s_server", "-accept", f"{BENIGN}:28443", "-key", key,
                          "-cert", cert, "-www", "-quiet"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
        subprocess.Popen(["microsocks", "-i", PROXY[0], "-p", str(PROXY[1])],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        wait_for(lambda: port_open(BENIGN, 28080), "http.server", 10)
        wait_for(lambda: port_open(BENIGN, 28443), "s_server", 10)
        wait_for(lambda: port_open(*PROXY), "microsocks", 10)
        curl = ["curl", "-sS", "-o", "/dev/null", "--interface", TRACKER, "--max-time", "10"]
        subprocess.run(curl + [f"http://{BENIGN}:28080/index.html"], check=True)
        subprocess.run(curl + ["-k", "--resolve", f"benign.test:28443:{BENIGN}",
                               "https://benign.test:28443/"], check=True)
        subprocess.run(curl + ["--socks5", f"{PROXY[0]}:{PROXY[1]}",
                               f"http://{BENIGN}:28080/index.html"], check=True)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


MODES = {
    "tcp_http_tracker": mode_tcp_http_tracker,
    "mse_forced": mode_mse_forced,
    "utp": mode_utp,
    "udp_tracker": mode_udp_tracker,
    "dht_magnet": mode_dht_magnet,
    "socks5_peer": mode_socks5_peer,
    "benign": mode_benign,
}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    outdir = sys.argv[1]
    modes = sys.argv[2:] or list(MODES)
    os.makedirs(outdir, exist_ok=True)
    for mode in modes:
        workdir = tempfile.mkdtemp(prefix=f"swarmwall-rec-{mode}-")
        path = os.path.join(outdir, f"lt_{mode}.pcap")
        log(mode, "->", path)
        dump = Tcpdump(path)
        try:
            MODES[mode](workdir)
        finally:
            dump.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        if os.path.getsize(path) <= 24:
            sys.exit(f"record: {path}: no packets captured")
        log("  ", os.path.getsize(path), "bytes;",
            hashlib.sha256(open(path, "rb").read()).hexdigest()[:12])


if __name__ == "__main__":
    main()
