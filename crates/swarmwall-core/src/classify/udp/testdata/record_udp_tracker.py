#!/usr/bin/python3
"""Record a real BEP 15 exchange: python3-libtorrent announcing to opentracker on loopback.

Usage: record_udp_tracker.py OUT.pcap
Every wait is bounded by a deadline; opentracker and tcpdump are stopped on exit.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import libtorrent as lt

TRACKER_PORT = 46969


def main():
    out = sys.argv[1]
    work = tempfile.mkdtemp()
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["opentracker", "-i", "127.0.0.1", "-p", str(TRACKER_PORT), "-P", str(TRACKER_PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            ["tcpdump", "-i", "lo", "-U", "-w", out, "-s", "0", f"udp port {TRACKER_PORT}"],
            stderr=subprocess.DEVNULL))
        time.sleep(1)  # capture start, not synchronisation
        with open(os.path.join(work, "payload.bin"), "wb") as f:
            f.write(os.urandom(64 * 1024))
        fs = lt.file_storage()
        lt.add_files(fs, os.path.join(work, "payload.bin"))
        t = lt.create_torrent(fs, 16 * 1024)
        t.add_tracker(f"udp://127.0.0.1:{TRACKER_PORT}/announce")
        lt.set_piece_hashes(t, work)
        info = lt.torrent_info(t.generate())
        s = lt.session({
            "listen_interfaces": "127.0.0.1:46883",
            "enable_dht": False, "enable_lsd": False,
            "enable_upnp": False, "enable_natpmp": False,
            "announce_to_all_trackers": True,
        })
        h = s.add_torrent({"ti": info, "save_path": work})
        deadline = time.monotonic() + 20
        announced = 0
        while time.monotonic() < deadline and announced < 3:
            if h.status().announcing_to_trackers is False and h.status().current_tracker:
                announced += 1
                h.scrape_tracker()
                h.force_reannounce()
            time.sleep(0.5)
        del s
        time.sleep(1)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
