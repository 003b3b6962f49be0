#!/usr/bin/python3
"""Record real libtorrent DHT and uTP traffic on loopback (fixtures for classify::udp tests).

Usage: record_libtorrent.py OUT.pcap [plain|rc4]

Two python3-libtorrent sessions on 127.0.0.1: a seeder and a downloader, uTP only (TCP
disabled), DHT enabled with each session bootstrapping from the other. tcpdump captures the
UDP traffic between their two ports. Every wait is bounded by a deadline.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import libtorrent as lt

PORT_A, PORT_B = 46881, 46882


def session(port, other, enc):
    pack = {
        "listen_interfaces": f"127.0.0.1:{port}",
        "enable_dht": True,
        "dht_bootstrap_nodes": f"127.0.0.1:{other}",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
        "enable_outgoing_utp": True,
        "enable_incoming_utp": True,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
    }
    if enc == "rc4":
        pack.update(
            {
                "out_enc_policy": lt.enc_policy.forced,
                "in_enc_policy": lt.enc_policy.forced,
                "allowed_enc_level": lt.enc_level.rc4,
            }
        )
    else:
        pack.update(
            {
                "out_enc_policy": lt.enc_policy.disabled,
                "in_enc_policy": lt.enc_policy.disabled,
            }
        )
    return lt.session(pack)


def main():
    out = sys.argv[1]
    enc = sys.argv[2] if len(sys.argv) > 2 else "plain"
    work = tempfile.mkdtemp()
    dump = None
    try:
        seed_dir = os.path.join(work, "seed")
        leech_dir = os.path.join(work, "leech")
        os.makedirs(seed_dir)
        os.makedirs(leech_dir)
        with open(os.path.join(seed_dir, "payload.bin"), "wb") as f:
            f.write(os.urandom(256 * 1024))
        fs = lt.file_storage()
        lt.add_files(fs, os.path.join(seed_dir, "payload.bin"))
        t = lt.create_torrent(fs, 16 * 1024)
        lt.set_piece_hashes(t, seed_dir)
        info = lt.torrent_info(t.generate())

        dump = subprocess.Popen(  # stopped in the finally block below
            ["tcpdump", "-i", "lo", "-U", "-w", out, "-s", "0",
             f"udp and (port {PORT_A} or port {PORT_B})"],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)  # let tcpdump open the interface (capture start, not synchronisation)
        a = session(PORT_A, PORT_B, enc)
        b = session(PORT_B, PORT_A, enc)
        ha = a.add_torrent({"ti": info, "save_path": seed_dir})
        hb = b.add_torrent({"ti": lt.torrent_info(info), "save_path": leech_dir})
        deadline = time.monotonic() + 30
        connected = False
        while time.monotonic() < deadline:
            if not connected and ha.status().state == lt.torrent_status.seeding:
                hb.connect_peer(("127.0.0.1", PORT_A))
                connected = True
            if hb.status().is_seeding and time.monotonic() > deadline - 20:
                break
            time.sleep(0.2)
        # let DHT exchange a few more queries (announce/get_peers)
        a.dht_get_peers(info.info_hash())
        b.dht_get_peers(info.info_hash())
        end = time.monotonic() + 5
        while time.monotonic() < end:
            time.sleep(0.2)
        print("seeding:", hb.status().is_seeding)
        del a, b
        time.sleep(1)
    finally:
        if dump is not None:
            dump.terminate()
            dump.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
