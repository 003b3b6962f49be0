"""Helpers for the encrypted-BitTorrent (MSE) suites: an HTTPS tracker (nginx TLS in front of
Debian's opentracker), encrypted-only libtorrent seeders outside the proxy, and the real
clients (aria2c, transmission-daemon, rtorrent under proxychains4; qbittorrent-nox through its
own SOCKS5 setting driven by the WebUI API; python3-libtorrent). Everything on loopback.
"""
import base64
import json
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from _bittorrent import (Peer, base_settings, free_port, free_tcp_udp_port, lt,
                         make_payload, make_torrent)

# Where the swarm lives. Transmission treats every 127.0.0.0/8 peer as a martian address and
# never connects to it (libtransmission/net.c, isMartianAddr), so the client suites run inside
# a network namespace they create, with the tracker and seeders on a dummy interface holding
# 198.18.0.0/24 (RFC 2544 benchmarking range; nothing leaves the namespace). Without one, on
# loopback.
NET = os.environ.get("SWARMWALL_MSE_NET", "127.0.0")
TRACKER_HOST = f"{NET}.2" if NET != "127.0.0" else "127.0.0.1"

# Seeder policies: encryption required, RC4 only; or required with plaintext allowed after the
# key exchange and preferred (the peer then selects plaintext when the client offers both).
SEED_RC4 = dict(out_enc_policy=int(lt.enc_policy.forced), in_enc_policy=int(lt.enc_policy.forced),
                allowed_enc_level=int(lt.enc_level.rc4), prefer_rc4=True)
SEED_PLAINTEXT = dict(out_enc_policy=int(lt.enc_policy.forced), in_enc_policy=int(lt.enc_policy.forced),
                      allowed_enc_level=int(lt.enc_level.both), prefer_rc4=False)


def self_signed(directory, host):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=IP:{host}"], check=True, capture_output=True)
    return cert, key


class Nginx:
    """nginx with TLS (and HTTP/2) on loopback: `/announce` to opentracker, `/files/` static."""

    def __init__(self, upstream_port=None, root=None, host="127.0.0.1"):
        self.dir = tempfile.mkdtemp(prefix="sw-nginx-")
        os.chmod(self.dir, 0o755)
        self.host = host
        self.cert, key = self_signed(self.dir, host)
        self.port = free_port()
        self.root = root or os.path.join(self.dir, "www")
        os.makedirs(self.root, exist_ok=True)
        announce = (f"location /announce {{ proxy_pass http://{host}:{upstream_port}; }}"
                    if upstream_port else "")
        conf = os.path.join(self.dir, "nginx.conf")
        temp = {name: os.path.join(self.dir, name) for name in ("body", "proxy", "fcgi", "uwsgi", "scgi")}
        with open(conf, "w") as f:
            f.write(f"""daemon off; master_process off; worker_processes 1; user root;
pid {self.dir}/nginx.pid; error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {temp['body']}; proxy_temp_path {temp['proxy']};
  fastcgi_temp_path {temp['fcgi']}; uwsgi_temp_path {temp['uwsgi']}; scgi_temp_path {temp['scgi']};
  keepalive_requests 100000;
  server {{
    listen {host}:{self.port} ssl http2;
    ssl_certificate {self.cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    {announce}
    location /files/ {{ alias {self.root}/; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", self.dir], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_tcp(self.port, host)

    def stop(self):
        stop(self.proc)


class Tracker:
    """Debian's opentracker (whitelist build) on `host`, HTTP only (the seeders' tracker)."""

    def __init__(self, info_hashes, host):
        self.host, self.port = host, free_port()
        self.dir = tempfile.mkdtemp(prefix="otracker-")
        with open(os.path.join(self.dir, "whitelist"), "w") as f:
            f.write("".join(h + "\n" for h in info_hashes))
        # opentracker chroots into -d and drops to "nobody" when started as root.
        os.chmod(self.dir, 0o755)
        os.chmod(os.path.join(self.dir, "whitelist"), 0o644)
        self.proc = subprocess.Popen(["opentracker", "-i", host, "-p", str(self.port), "-d", self.dir,
                                      "-w", "whitelist"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_tcp(self.port, host)

    @property
    def http_url(self):
        return f"http://{self.host}:{self.port}/announce"

    def stop(self):
        stop(self.proc)


class HttpsTracker:
    """opentracker behind nginx TLS: announces only over HTTPS (the client's only tracker)."""

    def __init__(self, info_hashes):
        self.tracker = Tracker(info_hashes, TRACKER_HOST)
        self.nginx = Nginx(upstream_port=self.tracker.port, host=TRACKER_HOST)

    @property
    def url(self):
        return f"https://{TRACKER_HOST}:{self.nginx.port}/announce"

    def stop(self):
        self.nginx.stop()
        self.tracker.stop()


def wait_tcp(port, host="127.0.0.1", timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port}")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EncryptedSwarm:
    """One torrent on an HTTPS tracker, `seeders` encrypted-only libtorrent seeders outside the
    proxy (each on its own 127.0.0.x address, so that a client reaches distinct peers)."""

    def __init__(self, seeders=1, seed_policy=SEED_RC4, size=2 * 1024 * 1024):
        self.dir = tempfile.mkdtemp(prefix="sw-mse-")
        os.chmod(self.dir, 0o755)
        self.source = make_payload(self.dir, size=size)
        info, _ = make_torrent(self.source, [])
        # The same torrent without any tracker: for clients given their peer directly.
        self.bare_info = info
        self.info_hash = str(info.info_hash())
        self.tracker = HttpsTracker([self.info_hash])
        self.info, self.torrent_data = make_torrent(self.source, [self.tracker.url])
        self.torrent = os.path.join(self.dir, "swarm.torrent")
        with open(self.torrent, "wb") as f:
            f.write(self.torrent_data)
        self.seeders = []
        self.seed_addresses = []
        for index in range(seeders):
            host = f"{NET}.{10 + index}"
            port = free_tcp_udp_port()
            settings = base_settings(port, enable_outgoing_tcp=False, enable_outgoing_utp=False,
                                     enable_incoming_utp=False, validate_https_trackers=False,
                                     **seed_policy)
            settings["listen_interfaces"] = f"{host}:{port}"
            settings["outgoing_interfaces"] = host
            peer = Peer(settings)
            # Seeders announce straight to opentracker over HTTP from their own address (nginx
            # would hide it); the client's only tracker URL is the HTTPS one.
            peer.add(make_torrent(self.source, [self.tracker.tracker.http_url])[0], self.dir, seed_mode=True)
            self.seeders.append(peer)
            self.seed_addresses.append((host, port))
        for peer in self.seeders:
            # The seeder announces directly; wait until the tracker knows it.
            assert peer.wait_alert("tracker_reply_alert", 20), "seeder announce over HTTPS failed"

    def close(self):
        for peer in self.seeders:
            peer.close()
        self.tracker.stop()


def proxychains_conf(directory, proxy_port):
    path = os.path.join(directory, "proxychains.conf")
    with open(path, "w") as f:
        # SWARMWALL_MSE_DIRECT_TRACKER (capture recording): the tracker is reached directly, so
        # that every connection through the proxy is a peer connection.
        localnet = (f"localnet {TRACKER_HOST}/255.255.255.255\n"
                    if os.environ.get("SWARMWALL_MSE_DIRECT_TRACKER") else "")
        f.write(f"strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n{localnet}"
                f"[ProxyList]\nsocks5 127.0.0.1 {proxy_port}\n")
    return path


def proxied(directory, proxy_port, argv):
    return ["proxychains4", "-q", "-f", proxychains_conf(directory, proxy_port)] + argv


class Aria2:
    """aria2c under proxychains4: DHT, LPD, PEX off; encryption required (ARC4)."""

    def __init__(self, swarm, proxy_port):
        self.dir = tempfile.mkdtemp(prefix="sw-aria2-")
        argv = ["aria2c", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                "--enable-peer-exchange=false", "--bt-require-crypto=true", "--bt-min-crypto-level=arc4",
                "--check-certificate=false", "--seed-time=0", "--listen-port", str(free_port()),
                "--bt-stop-timeout=120", "--summary-interval=0", "--console-log-level=warn",
                "--file-allocation=none", "--dir", self.dir, swarm.torrent]
        self.proc = subprocess.Popen(proxied(self.dir, proxy_port, argv), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.path = os.path.join(self.dir, "payload.bin")

    def complete(self, source_size):
        # aria2 writes the file in place; its control file disappears when the download is done.
        return (os.path.exists(self.path) and os.path.getsize(self.path) == source_size
                and not os.path.exists(self.path + ".aria2"))

    def close(self):
        stop(self.proc)


class TransmissionRpc:
    """Transmission RPC (JSON over HTTP, with its session-id handshake) on 127.0.0.1:`port`."""

    def __init__(self, port):
        self.port = port
        self.session = ""

    def call(self, method, arguments):
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        url = f"http://127.0.0.1:{self.port}/transmission/rpc"
        for _ in range(2):
            request = urllib.request.Request(url, data=body, headers={"X-Transmission-Session-Id": self.session})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                if error.code != 409:
                    raise
                self.session = error.headers.get("X-Transmission-Session-Id", "")
        raise RuntimeError("transmission RPC: no session id")


class Transmission:
    """transmission-daemon under proxychains4: DHT, LPD, PEX, uTP off; encryption required."""

    def __init__(self, swarm, proxy_port):
        self.dir = tempfile.mkdtemp(prefix="sw-tr-")
        config = os.path.join(self.dir, "config")
        os.makedirs(config)
        rpc_port = free_port()
        settings = {"dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False,
                    "encryption": 2, "download-dir": self.dir, "incomplete-dir-enabled": False,
                    "rpc-port": rpc_port, "rpc-bind-address": "127.0.0.1", "rpc-authentication-required": False,
                    "rpc-whitelist-enabled": False, "rpc-host-whitelist-enabled": False,
                    "peer-port": free_port(), "port-forwarding-enabled": False, "ratio-limit-enabled": True,
                    "ratio-limit": 0, "start-added-torrents": True, "message-level": 3}
        with open(os.path.join(config, "settings.json"), "w") as f:
            json.dump(settings, f)
        argv = ["transmission-daemon", "-f", "-g", config, "-e", os.path.join(self.dir, "log")]
        self.proc = subprocess.Popen(proxied(self.dir, proxy_port, argv), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env={**os.environ, "TR_CURL_SSL_NO_VERIFY": "1"})
        try:
            wait_tcp(rpc_port)
            self.rpc = TransmissionRpc(rpc_port)
            with open(swarm.torrent, "rb") as f:
                metainfo = base64.b64encode(f.read()).decode()
            reply = self.call("torrent-add", {"metainfo": metainfo, "download-dir": self.dir})
            assert reply["result"] == "success", reply
        except Exception:
            stop(self.proc)
            raise
        self.path = os.path.join(self.dir, "payload.bin")

    def call(self, method, arguments):
        return self.rpc.call(method, arguments)

    def complete(self, source_size):
        try:
            reply = self.call("torrent-get", {"fields": ["percentDone"]})
        except OSError:
            return False
        torrents = reply.get("arguments", {}).get("torrents", [])
        return bool(torrents) and all(t["percentDone"] >= 1.0 for t in torrents)

    def close(self):
        stop(self.proc)


def rtorrent_rc(workdir, directory, torrent, port, encryption, bind=None):
    """Write `workdir`/rtorrent.rc for one torrent (saved in `directory`), listening on `port`
    (on `bind` when given), DHT, PEX and UDP trackers off, encryption `encryption`; its path."""
    session = os.path.join(workdir, "session")
    os.makedirs(session)
    rc = os.path.join(workdir, "rtorrent.rc")
    bind_line = f"network.bind_address.set = {bind}\n" if bind else ""
    with open(rc, "w") as f:
        f.write(f"""system.daemon.set = true
directory.default.set = {directory}
session.path.set = {session}
{bind_line}network.port_range.set = {port}-{port}
network.port_random.set = no
dht.mode.set = disable
protocol.pex.set = no
trackers.use_udp.set = no
network.http.ssl_verify_peer.set = 0
network.http.ssl_verify_host.set = 0
protocol.encryption.set = {encryption}
load.start = {torrent}
""")
    return rc


class RTorrent:
    """rtorrent (no terminal: `system.daemon`) under proxychains4; DHT, PEX off; encryption
    required (RC4 only)."""

    def __init__(self, swarm, proxy_port):
        self.dir = tempfile.mkdtemp(prefix="sw-rt-")
        rc = rtorrent_rc(self.dir, self.dir, swarm.torrent, free_port(),
                         "allow_incoming,try_outgoing,require,require_RC4")
        argv = ["rtorrent", "-n", "-o", f"import={rc}"]
        self.proc = subprocess.Popen(proxied(self.dir, proxy_port, argv), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.path = os.path.join(self.dir, "payload.bin")
        self.source = swarm.source

    def complete(self, source_size):
        if not (os.path.exists(self.path) and os.path.getsize(self.path) == source_size):
            return False
        # rtorrent preallocates nothing but writes pieces in place: compare the contents.
        with open(self.path, "rb") as a, open(self.source, "rb") as b:
            return a.read() == b.read()

    def close(self):
        stop(self.proc)


class DelayRelay:
    """A plain TCP relay on `host` in front of one seeder that holds every chunk the seeder
    sends for `delay` seconds (from its arrival) before passing it on: a network round trip,
    which loopback lacks and no netem qdisc can add here. The bytes are untouched."""

    def __init__(self, host, target, delay):
        self.target, self.delay = target, delay
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.address = self.listener.getsockname()
        self.sockets = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                return
            server.settimeout(None)
            self.sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.delay), daemon=True).start()

    @staticmethod
    def _pipe(source, sink, delay):
        chunks = queue.Queue()

        def send():
            while True:
                item = chunks.get()
                if item is None:
                    break
                due, data = item
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    sink.sendall(data)
                except OSError:
                    break
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                chunks.put(None)
                return
            chunks.put((time.monotonic() + delay, data))

    def close(self):
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass


class Libtorrent:
    """python3-libtorrent (the engine of qBittorrent and Deluge) with encryption required, TCP
    only, its peer and tracker connections through the SOCKS5 proxy. With `direct_peers`, the
    torrent has no tracker and the client is handed those peers (`connect_peer`)."""

    def __init__(self, swarm, proxy_port, allowed=lt.enc_level.rc4, direct_peers=None):
        self.dir = tempfile.mkdtemp(prefix="sw-lt-")
        proxy = dict(proxy_type=int(lt.proxy_type_t.socks5), proxy_hostname="127.0.0.1",
                     proxy_port=proxy_port, proxy_peer_connections=True,
                     proxy_tracker_connections=True, proxy_hostnames=True)
        settings = base_settings(free_tcp_udp_port(), enable_outgoing_utp=False, enable_incoming_utp=False,
                                 validate_https_trackers=False, out_enc_policy=int(lt.enc_policy.forced),
                                 in_enc_policy=int(lt.enc_policy.forced), allowed_enc_level=int(allowed),
                                 prefer_rc4=True, **proxy)
        self.peer = Peer(settings)
        self.handle = self.peer.add(swarm.bare_info if direct_peers else swarm.info, self.dir)
        for address in direct_peers or []:
            self.handle.connect_peer(address)
        self.path = os.path.join(self.dir, "payload.bin")

    def complete(self, source_size):
        st = self.handle.status()
        return st.is_seeding or st.progress >= 1.0

    def close(self):
        self.peer.close()


class QBittorrent:
    """qbittorrent-nox 4.5 driven by its WebUI API: SOCKS5 proxy for peers and trackers,
    encryption required (its "require" mode offers RC4 and plaintext), DHT/PeX/LSD/uTP off."""

    def __init__(self, swarm, proxy_port):
        self.dir = tempfile.mkdtemp(prefix="sw-qbt-")
        self.web = free_port()
        profile = os.path.join(self.dir, "profile")
        conf_dir = os.path.join(profile, "qBittorrent", "config")
        os.makedirs(conf_dir)
        with open(os.path.join(conf_dir, "qBittorrent.conf"), "w") as f:
            f.write("[LegalNotice]\nAccepted=true\n[Preferences]\nWebUI\\LocalHostAuth=false\n"
                    f"WebUI\\Port={self.web}\nWebUI\\Address=127.0.0.1\nWebUI\\CSRFProtection=false\n"
                    "WebUI\\HostHeaderValidation=false\n")
        self.proc = subprocess.Popen(["qbittorrent-nox", f"--profile={profile}", f"--webui-port={self.web}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.configure(swarm, proxy_port)
        except Exception:
            stop(self.proc)
            raise
        self.path = os.path.join(self.dir, "payload.bin")

    def configure(self, swarm, proxy_port):
        wait_tcp(self.web, timeout=20)
        # qBittorrent 4.5's API: proxy_type 2 = SOCKS5 without authentication (4.6 took names).
        prefs = {"proxy_type": 2, "proxy_ip": "127.0.0.1", "proxy_port": proxy_port,
                 "proxy_peer_connections": True, "proxy_torrents_only": False, "proxy_hostname_lookup": True,
                 "encryption": 1, "dht": False, "pex": False, "lsd": False, "bittorrent_protocol": 1,
                 "listen_port": free_port(), "upnp": False, "validate_https_tracker_certificate": False,
                 "ssrf_mitigation": False, "save_path": self.dir, "temp_path_enabled": False,
                 "max_ratio_enabled": False}
        self.api("app/setPreferences", {"json": json.dumps(prefs)})
        applied = json.loads(self.api("app/preferences"))
        wrong = {k: applied.get(k) for k in ("proxy_type", "proxy_port", "encryption", "dht", "bittorrent_protocol")
                 if applied.get(k) != prefs[k]}
        assert not wrong, f"qBittorrent did not take the preferences: {wrong}"
        with open(swarm.torrent, "rb") as f:
            data = f.read()
        self.upload(data)

    def api(self, path, fields=None):
        body = urllib.parse.urlencode(fields or {}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.web}/api/v2/{path}", data=body)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def upload(self, torrent):
        boundary = "swarmwallboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"torrents\"; filename=\"a.torrent\"\r\n"
                "Content-Type: application/x-bittorrent\r\n\r\n").encode() + torrent + \
            (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"savepath\"\r\n\r\n{self.dir}"
             f"\r\n--{boundary}--\r\n").encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.web}/api/v2/torrents/add", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.read().strip() == b"Ok.", "qBittorrent refused the torrent"

    def complete(self, source_size):
        try:
            torrents = json.loads(self.api("torrents/info"))
        except OSError:
            return False
        return bool(torrents) and all(t.get("progress", 0) >= 1.0 for t in torrents)

    def close(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


CLIENTS = {"qbittorrent": QBittorrent, "transmission": Transmission, "aria2": Aria2, "rtorrent": RTorrent,
           "libtorrent": Libtorrent}
