"""Helpers for test_monitor.py: a real opentracker and real libtorrent peers on loopback."""
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import libtorrent as lt

from conftest import wait_until


def free_port(kind=socket.SOCK_STREAM, host="127.0.0.1"):
    """A port free for both TCP and UDP on `host`."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                u.bind((host, port))
                t.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Opentracker:
    """Debian's opentracker on loopback, HTTP and UDP on the same port."""

    def __init__(self, workdir, info_hashes, port=None):
        # Debian builds opentracker with an access whitelist: list the works first.
        self.port = port or free_port()
        os.chmod(str(workdir), 0o755)
        whitelist = os.path.join(str(workdir), "whitelist.txt")
        with open(whitelist, "w") as f:
            f.write("".join(h + "\n" for h in info_hashes))
        os.chmod(whitelist, 0o644)
        self.proc = subprocess.Popen(
            # It chroots into -d and reads the whitelist from there as user nobody.
            ["opentracker", "-i", "127.0.0.1", "-p", str(self.port), "-P", str(self.port),
             "-d", str(workdir), "-w", "whitelist.txt"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if not wait_until(lambda: port_open("127.0.0.1", self.port), timeout=10):
            self.stop()
            raise RuntimeError("opentracker did not start")
        self.http = f"http://127.0.0.1:{self.port}/announce"
        self.udp = f"udp://127.0.0.1:{self.port}/announce"

    @staticmethod
    def urls(port):
        return f"http://127.0.0.1:{port}/announce", f"udp://127.0.0.1:{port}/announce"

    def scrape_complete(self, info_hash_hex):
        # Percent-encode every byte: urlencode's default (quote_plus) writes 0x20 as '+', which
        # opentracker does not decode, so about one hash in seven scraped as unknown.
        query = "info_hash=" + urllib.parse.quote_from_bytes(bytes.fromhex(info_hash_hex), safe="")
        url = f"http://127.0.0.1:{self.port}/scrape?{query}"
        try:
            body = urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            return 0
        # d5:filesd20:<hash>d8:completei<N>e...
        marker = b"8:completei"
        at = body.find(marker)
        if at < 0:
            return 0
        end = body.index(b"e", at + len(marker))
        return int(body[at + len(marker):end])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_torrent(workdir, name, trackers=(), size=64 * 1024):
    """Create a file and its .torrent; returns (torrent path, info-hash hex, save dir)."""
    data_dir = os.path.join(workdir, "data")
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, name), "wb") as f:
        f.write(os.urandom(size))
    fs = lt.file_storage()
    lt.add_files(fs, os.path.join(data_dir, name))
    ct = lt.create_torrent(fs, 16 * 1024)
    for tier, url in enumerate(trackers):
        ct.add_tracker(url, tier)
    lt.set_piece_hashes(ct, data_dir)
    path = os.path.join(workdir, name + ".torrent")
    with open(path, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    info = lt.torrent_info(path)
    # libtorrent 2 makes hybrid v1+v2 torrents; the watchlist and trackers use the v1 hash.
    return path, str(info.info_hashes().v1), data_dir


def session(ip, port, dht_nodes=None):
    """A libtorrent session bound to `ip:port` (TCP and uTP), DHT on only if nodes given."""
    settings = {
        "listen_interfaces": f"{ip}:{port}",
        "outgoing_interfaces": ip,
        "announce_ip": ip,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_dht": dht_nodes is not None,
        "dht_bootstrap_nodes": ",".join(dht_nodes or []),
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        "dht_extended_routing_table": False,
        "dht_announce_interval": 2,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "allow_multiple_connections_per_ip": True,
        "ssrf_mitigation": False,
        "alert_mask": 0,
    }
    return lt.session(settings)


def seed(ses, torrent_path, save_dir):
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent_path)
    params.save_path = save_dir
    handle = ses.add_torrent(params)
    handle.force_recheck()
    return handle
