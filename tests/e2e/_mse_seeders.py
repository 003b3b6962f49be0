"""Encrypted-only seeders that are not (only) libtorrent, for the client x seeder matrix of
test_mse_seeders.py: transmission-daemon (encryption required), rtorrent (encryption required,
RC4 only), aria2c (`--bt-require-crypto`, `--bt-min-crypto-level=arc4`) and, for reference,
the libtorrent seeder of _mse.py. Each runs outside the proxy on its own address of the swarm
network (198.18.0.0/24 inside the test's namespace), DHT, LSD, PEX and uTP off, on its
defaults otherwise (its own unchoke policy).

The client's only tracker is HTTPS (nginx TLS) and hands over exactly one peer, the seeder: a
static compact announce reply served by nginx (`/files/announce`), so that every cell has one
seeder and nothing else (fan-out cannot help). The seeders' own torrent names an HTTPS tracker
that answers with no peer (`/files/empty`): they announce, learn nothing and only listen.
"""
import base64
import json
import os
import socket
import subprocess
import tempfile
import time

from _bittorrent import Peer, base_settings, free_port, free_tcp_udp_port, make_payload, make_torrent
from _mse import NET, SEED_RC4, TRACKER_HOST, Nginx, TransmissionRpc, rtorrent_rc, stop, wait_tcp

SEEDERS = ("libtorrent", "transmission", "rtorrent", "aria2")


def announce_reply(peers):
    """A bencoded compact announce reply (BEP 23) naming `peers` [(host, port)]."""
    compact = b"".join(socket.inet_aton(host) + port.to_bytes(2, "big") for host, port in peers)
    return b"d8:intervali1800e12:min intervali30e5:peers%d:%se" % (len(compact), compact)


class StaticHttpsTracker:
    """nginx TLS serving fixed announce replies: `announce` (the seeder) and `empty`."""

    def __init__(self, peers):
        self.root = tempfile.mkdtemp(prefix="sw-static-tracker-")
        os.chmod(self.root, 0o755)
        for name, reply in (("announce", announce_reply(peers)), ("empty", announce_reply([]))):
            path = os.path.join(self.root, name)
            with open(path, "wb") as f:
                f.write(reply)
            os.chmod(path, 0o644)
        self.nginx = Nginx(root=self.root, host=TRACKER_HOST)
        # _mse_scenario.py's capture option names both ports; there is no separate tracker.
        self.tracker = self.nginx

    def url(self, name):
        return f"https://{TRACKER_HOST}:{self.nginx.port}/files/{name}"

    def stop(self):
        self.nginx.stop()


class TransmissionSeeder:
    """transmission-daemon 3.00, encryption required (`encryption: 2`), on `host:port`."""

    def __init__(self, directory, torrent, host, port):
        self.dir = tempfile.mkdtemp(prefix="sw-trseed-")
        config = os.path.join(self.dir, "config")
        os.makedirs(config)
        rpc_port = free_port()
        settings = {"dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
                    "encryption": 2, "download-dir": directory, "incomplete-dir-enabled": False,
                    "bind-address-ipv4": host, "peer-port": port, "peer-port-random-on-start": False,
                    "port-forwarding-enabled": False, "rpc-port": rpc_port, "rpc-bind-address": "127.0.0.1",
                    "rpc-authentication-required": False, "rpc-whitelist-enabled": False,
                    "rpc-host-whitelist-enabled": False, "ratio-limit-enabled": False,
                    "idle-seeding-limit-enabled": False, "start-added-torrents": True, "message-level": 2}
        with open(os.path.join(config, "settings.json"), "w") as f:
            json.dump(settings, f)
        self.proc = subprocess.Popen(["transmission-daemon", "-f", "-g", config, "-e", os.path.join(self.dir, "log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "TR_CURL_SSL_NO_VERIFY": "1"})
        try:
            wait_tcp(rpc_port)
            self.rpc = TransmissionRpc(rpc_port)
            with open(torrent, "rb") as f:
                metainfo = base64.b64encode(f.read()).decode()
            reply = self.rpc.call("torrent-add", {"metainfo": metainfo, "download-dir": directory})
            assert reply["result"] == "success", reply
        except Exception:
            stop(self.proc)
            raise

    def ready(self):
        # Status 6: seeding (the data was verified).
        torrents = self.rpc.call("torrent-get", {"fields": ["status", "percentDone"]})["arguments"]["torrents"]
        return bool(torrents) and torrents[0]["status"] == 6

    def close(self):
        stop(self.proc)


class RTorrentSeeder:
    """rtorrent 0.9.8, encryption required, RC4 only, bound to `host:port`."""

    def __init__(self, directory, torrent, host, port):
        self.dir = tempfile.mkdtemp(prefix="sw-rtseed-")
        rc = rtorrent_rc(self.dir, directory, torrent, port, "allow_incoming,require,require_RC4",
                         bind=host)
        self.proc = subprocess.Popen(["rtorrent", "-n", "-o", f"import={rc}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def ready(self):
        return self.proc.poll() is None

    def close(self):
        stop(self.proc)


class Aria2Seeder:
    """aria2c 1.36 seeding (integrity checked first), `--bt-require-crypto`,
    `--bt-min-crypto-level=arc4`, listening on `port`."""

    def __init__(self, directory, torrent, host, port):
        self.dir = tempfile.mkdtemp(prefix="sw-a2seed-")
        argv = ["aria2c", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                "--enable-peer-exchange=false", "--bt-require-crypto=true", "--bt-min-crypto-level=arc4",
                "--check-certificate=false", "--check-integrity=true", "--seed-ratio=0.0",
                f"--listen-port={port}", "--summary-interval=0", "--console-log-level=warn",
                "--file-allocation=none", "--bt-external-ip", host, "--dir", directory, torrent]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, cwd=self.dir)

    def ready(self):
        return self.proc.poll() is None

    def close(self):
        stop(self.proc)


class LibtorrentSeeder:
    """python3-libtorrent 2.0, encryption required, RC4 only (the seeder of _mse.py)."""

    def __init__(self, directory, torrent, host, port, info):
        settings = base_settings(port, enable_outgoing_tcp=False, enable_outgoing_utp=False,
                                 enable_incoming_utp=False, validate_https_trackers=False, **SEED_RC4)
        settings["listen_interfaces"] = f"{host}:{port}"
        settings["outgoing_interfaces"] = host
        self.peer = Peer(settings)
        self.peer.add(info, directory, seed_mode=True)

    def ready(self):
        return True

    def close(self):
        self.peer.close()


class SeederSwarm:
    """One torrent, one encrypted-only seeder of kind `seeder` on NET.10, the client's HTTPS
    tracker handing over that one peer. Attributes as _mse.EncryptedSwarm's (for the clients
    and _mse_scenario.py)."""

    def __init__(self, seeder, size=2 * 1024 * 1024, ready_timeout=30):
        self.dir = tempfile.mkdtemp(prefix="sw-mseseed-")
        os.chmod(self.dir, 0o755)
        self.source = make_payload(self.dir, size=size)
        self.bare_info, _ = make_torrent(self.source, [])
        self.info_hash = str(self.bare_info.info_hash())
        host, port = f"{NET}.10", free_tcp_udp_port()
        self.seed_addresses = [(host, port)]
        self.tracker = StaticHttpsTracker(self.seed_addresses)
        self.info, data = make_torrent(self.source, [self.tracker.url("announce")])
        self.torrent = os.path.join(self.dir, "swarm.torrent")
        with open(self.torrent, "wb") as f:
            f.write(data)
        seed_info, seed_data = make_torrent(self.source, [self.tracker.url("empty")])
        seed_torrent = os.path.join(self.dir, "seed.torrent")
        with open(seed_torrent, "wb") as f:
            f.write(seed_data)
        kinds = {"transmission": TransmissionSeeder, "rtorrent": RTorrentSeeder, "aria2": Aria2Seeder}
        if seeder == "libtorrent":
            self.seeder = LibtorrentSeeder(self.dir, seed_torrent, host, port, seed_info)
        else:
            self.seeder = kinds[seeder](self.dir, seed_torrent, host, port)
        try:
            deadline = time.monotonic() + ready_timeout
            while not self.seeder.ready():
                assert time.monotonic() < deadline, f"{seeder} seeder did not verify its data"
                time.sleep(0.2)
            wait_tcp(port, host, timeout=ready_timeout)
            # rtorrent and aria2 listen before their hash check ends: 2 MiB takes well under 1 s.
            time.sleep(1.0)
        except Exception:
            self.close()
            raise

    def close(self):
        self.seeder.close()
        self.tracker.stop()
