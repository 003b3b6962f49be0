"""Record real libtorrent peer-wire traffic on loopback through a relay.

Usage: record.py MODE OUTDIR   (MODE: plain | rc4 | plaintext_selected | rc4_coalesced)
Writes OUTDIR/libtorrent_MODE.flow: segments as 'C'|'S', u32 BE length, bytes (first 8 KiB per
direction), and OUTDIR/libtorrent_announce.bin (the HTTP tracker request) in plain mode.
rc4_coalesced: RC4 as in `rc4`, but the relay holds every seeder chunk 20 ms (a network round
trip), so that libtorrent's encrypted handshake joins flight 3 (124 + PadC bytes) as it does
over a real network; keeps 24 KiB per direction (the sixth flight carries the first block) and
exits with status 3 (writing nothing) when flight 3 came out shorter than 124 bytes: run it again.
"""
import os, socket, struct, sys, threading, time, tempfile
import libtorrent as lt

mode, outdir = sys.argv[1], sys.argv[2]
COALESCED = mode == "rc4_coalesced"
LIMIT = 24576 if COALESCED else 8192
DELAY = 0.02 if COALESCED else 0.0
segments, lock = [], threading.Lock()
counts = {"C": 0, "S": 0}

def record(d, data):
    with lock:
        room = LIMIT - counts[d]
        if room > 0:
            segments.append((d, data[:room])); counts[d] += len(data[:room])

def pipe(src, dst, d):
    try:
        while True:
            data = src.recv(65536)
            if not data: break
            if d == "S" and DELAY: time.sleep(DELAY)
            record(d, data); dst.sendall(data)
    except OSError: pass
    finally:
        try: dst.shutdown(socket.SHUT_WR)
        except OSError: pass

def relay(listener, target):
    c, _ = listener.accept()
    s = socket.create_connection(target)
    threading.Thread(target=pipe, args=(c, s, "C"), daemon=True).start()
    threading.Thread(target=pipe, args=(s, c, "S"), daemon=True).start()

announce = {}
def tracker(listener):
    c, _ = listener.accept(); c.settimeout(5)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d: break
        buf += d
    announce["req"] = buf
    body = b"d8:intervali1800e5:peers0:e"
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    c.close()

def listen():
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", 0)); l.listen(4); return l

tmp = tempfile.mkdtemp()
payload = os.path.join(tmp, "seed", "data.bin")
os.makedirs(os.path.dirname(payload))
with open(payload, "wb") as f: f.write(os.urandom(256 * 1024))
tl = listen(); tport = tl.getsockname()[1]
fs = lt.file_storage(); lt.add_files(fs, payload)
t = lt.create_torrent(fs, 16384)
t.add_tracker("http://127.0.0.1:%d/announce" % tport)
lt.set_piece_hashes(t, os.path.dirname(payload))
info = lt.torrent_info(t.generate())

def session(port, out_pol, in_pol, level):
    s = lt.session({
        "listen_interfaces": "127.0.0.1:%d" % port,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "out_enc_policy": out_pol, "in_enc_policy": in_pol, "allowed_enc_level": level,
        "prefer_rc4": False, "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
    })
    return s

E = lt.enc_policy; L = lt.enc_level
if mode == "plain":
    seed_cfg = (E.disabled, E.enabled, L.both); leech_cfg = (E.disabled, E.enabled, L.both)
elif mode in ("rc4", "rc4_coalesced"):
    seed_cfg = (E.forced, E.forced, L.rc4); leech_cfg = (E.forced, E.forced, L.rc4)
else:
    seed_cfg = (E.enabled, E.enabled, L.both); leech_cfg = (E.forced, E.enabled, L.both)

sp = listen(); seed_port = sp.getsockname()[1]; sp.close()
seed = session(seed_port, *seed_cfg)
seed.add_torrent({"ti": info, "save_path": os.path.dirname(payload), "flags": lt.torrent_flags.seed_mode})
rl = listen(); rport = rl.getsockname()[1]
threading.Thread(target=relay, args=(rl, ("127.0.0.1", seed_port)), daemon=True).start()
if mode == "plain":
    threading.Thread(target=tracker, args=(tl,), daemon=True).start()
lp = listen(); leech_port = lp.getsockname()[1]; lp.close()
leech = session(leech_port, *leech_cfg)
h = leech.add_torrent({"ti": info, "save_path": os.path.join(tmp, "leech")})
h.connect_peer(("127.0.0.1", rport))
deadline = time.time() + 20
while time.time() < deadline:
    with lock:
        if counts["C"] >= LIMIT and counts["S"] >= LIMIT: break
    if h.status().is_seeding and counts["S"] > 4096 and (mode != "plain" or "req" in announce): break
    time.sleep(0.1)
flights = []
for d, data in segments:
    if flights and flights[-1][0] == d: flights[-1][1] += len(data)
    else: flights.append([d, len(data)])
print("flights", flights[:8])
if COALESCED and (len(flights) < 3 or flights[2][1] < 124):
    sys.exit(3)
with open(os.path.join(outdir, "libtorrent_%s.flow" % mode), "wb") as f:
    for d, data in segments:
        f.write(d.encode() + struct.pack(">I", len(data)) + data)
if "req" in announce:
    open(os.path.join(outdir, "libtorrent_announce.bin"), "wb").write(announce["req"])
print(mode, "segments", len(segments), counts, "announce" if "req" in announce else "")
