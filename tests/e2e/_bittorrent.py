"""Real BitTorrent peers for the end-to-end suites (python3-libtorrent, /usr/bin/python3).

A *seeder* runs outside the proxy and never initiates peer connections (so every peer
connection of a swarm is opened by the downloader, through the proxy). A *downloader* sends
its peer, tracker and DHT traffic through a SOCKS5 proxy. Everything listens on loopback.
"""
import hashlib
import os
import socket
import subprocess
import tempfile
import time

import libtorrent as lt

ENC_FORCED = dict(out_enc_policy=int(lt.enc_policy.forced), in_enc_policy=int(lt.enc_policy.forced),
                  allowed_enc_level=int(lt.enc_level.rc4), prefer_rc4=True)
ENC_DISABLED = dict(out_enc_policy=int(lt.enc_policy.disabled), in_enc_policy=int(lt.enc_policy.disabled))


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_udp_port():
    """A port free for both TCP and UDP on 127.0.0.1 (libtorrent listens on both)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free TCP+UDP port")


def base_settings(port, **extra):
    settings = {
        "listen_interfaces": f"127.0.0.1:{port}",
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_dht": False,
        "ssrf_mitigation": False,
        "allow_multiple_connections_per_ip": True,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "dht_prefer_verified_node_ids": False,
        "dht_enforce_node_id": False,
        "dht_extended_routing_table": False,
        "alert_mask": int(lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
                          | lt.alert.category_t.tracker_notification | lt.alert.category_t.dht_notification),
        "user_agent": "swarmwall-e2e/1.0 libtorrent/2.0",
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "min_reconnect_time": 1,
        "peer_connect_timeout": 3,
        "tracker_completion_timeout": 5,
        "tracker_receive_timeout": 3,
        "stop_tracker_timeout": 1,
        "dht_bootstrap_nodes": "",
    }
    settings.update(extra)
    return settings


def make_payload(directory, size=2 * 1024 * 1024, name="payload.bin"):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return path


def make_torrent(path, trackers=(), piece_size=64 * 1024):
    fs = lt.file_storage()
    lt.add_files(fs, path)
    t = lt.create_torrent(fs, piece_size, flags=lt.create_torrent.v1_only)
    for tier, url in enumerate(trackers):
        t.add_tracker(url, tier)
    lt.set_piece_hashes(t, os.path.dirname(path))
    data = lt.bencode(t.generate())
    return lt.torrent_info(lt.bdecode(data)), data


class Peer:
    """One libtorrent session."""

    def __init__(self, settings):
        self.session = lt.session(settings)
        self.handles = []

    def add(self, ti=None, save_path=None, magnet=None, seed_mode=False):
        params = lt.add_torrent_params() if magnet is None else lt.parse_magnet_uri(magnet)
        if ti is not None:
            params.ti = ti
        params.save_path = save_path
        if seed_mode:
            params.flags |= lt.torrent_flags.seed_mode
        handle = self.session.add_torrent(params)
        self.handles.append(handle)
        return handle

    def wait_alert(self, name, timeout):
        """Wait for an alert of type `name` (e.g. `tracker_reply_alert`); True when seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.session.wait_for_alert(200)
            for alert in self.session.pop_alerts():
                if type(alert).__name__ == name:
                    return True
        return False

    def drain_alerts(self):
        return [(type(a).__name__, a.message()) for a in self.session.pop_alerts()]

    def close(self):
        for h in self.handles:
            try:
                self.session.remove_torrent(h)
            except Exception:
                pass
        del self.session


def wait_complete(handle, timeout):
    """True when the torrent finished downloading within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = handle.status()
        if st.is_seeding or st.progress >= 1.0:
            return True
        time.sleep(0.2)
    return False


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OpenTracker:
    """Debian's opentracker on loopback (TCP and UDP on the same port)."""

    def __init__(self, info_hashes):
        """Debian builds opentracker in whitelist mode: pass the hex info-hashes it serves."""
        self.port = free_tcp_udp_port()
        self.dir = tempfile.mkdtemp(prefix="otracker-")
        whitelist = os.path.join(self.dir, "whitelist")
        with open(whitelist, "w") as f:
            f.write("".join(h + "\n" for h in info_hashes))
        # opentracker chroots into -d and drops to "nobody" when started as root.
        os.chmod(self.dir, 0o755)
        os.chmod(whitelist, 0o644)
        self.proc = subprocess.Popen(
            ["opentracker", "-i", "127.0.0.1", "-p", str(self.port), "-P", str(self.port), "-d", self.dir,
             "-w", "whitelist"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._tcp_ready() and self._udp_ready():
                return
            time.sleep(0.05)
        raise RuntimeError("opentracker did not start")

    def _tcp_ready(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _udp_ready(self):
        """A BEP 15 connect request answered: the UDP side is up too (a client whose first
        UDP announce is lost backs off for 15 s or more)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.sendto(bytes.fromhex("0000041727101980") + b"\0\0\0\0" + b"tsid", ("127.0.0.1", self.port))
            try:
                data, _ = s.recvfrom(64)
            except OSError:
                return False
            return len(data) >= 16 and data[4:8] == b"tsid"

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.port}/announce"

    @property
    def udp_url(self):
        return f"udp://127.0.0.1:{self.port}/announce"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
