"""`swarmwall monitor` against a real tracker (Debian's opentracker) and real libtorrent peers
on loopback. A peer bound to 127.0.0.2 plays "one of our egress addresses"; peers on
127.0.0.3/127.0.0.4 are other people's and must never appear anywhere.
"""
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import swarmwall_bin, wait_until
from _monitor import Opentracker, free_port, make_torrent, seed, session

OUTSIDERS = ("127.0.0.3", "127.0.0.4")


def monitor(args, timeout=60):
    started = time.monotonic()
    proc = subprocess.run([swarmwall_bin(), "monitor"] + list(args), capture_output=True,
                          text=True, timeout=timeout)
    return proc, time.monotonic() - started


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_no_outsider_anywhere(proc, workdir):
    text = proc.stdout + proc.stderr
    for ip in OUTSIDERS:
        assert ip not in text, f"{ip} leaked into the monitor's output"
    # ... nor into any file the monitor could have written next to the watchlist.
    for root, _, files in os.walk(workdir):
        for name in files:
            if name.endswith((".txt", ".json", ".log")) and name != "whitelist.txt":
                with open(os.path.join(root, name), "rb") as f:
                    data = f.read()
                for ip in OUTSIDERS:
                    assert ip.encode() not in data, f"{ip} found in {name}"


@pytest.fixture
def swarm(tmp_path):
    """A work seeded by one 'egress' peer (127.0.0.2) and two outsiders, on opentracker."""
    tracker_port = free_port()
    http, udp = Opentracker.urls(tracker_port)
    torrent, info_hash, data = make_torrent(str(tmp_path), "work.bin", [http, udp])
    tracker = Opentracker(tmp_path, [info_hash], tracker_port)
    peers = {}
    sessions = []
    handles = []
    for ip in ("127.0.0.2",) + OUTSIDERS:
        port = free_port(host=ip)
        ses = session(ip, port)
        handles.append(seed(ses, torrent, data))
        sessions.append(ses)
        peers[ip] = port
    # A seed whose first announce was lost (e.g. sent while its recheck was still running on a
    # loaded machine) waits a whole announce interval: ask again every 10 s.
    announced = False
    for _ in range(6):
        announced = wait_until(lambda: tracker.scrape_complete(info_hash) >= 3, timeout=10)
        if announced:
            break
        for handle in handles:
            handle.force_reannounce()
    assert announced, ("the libtorrent seeds did not announce to opentracker",
                       tracker.proc.poll(), [h.status().state for h in handles],
                       [str(h.status().current_tracker) + h.status().errc.message() for h in handles])
    yield {"torrent": torrent, "info_hash": info_hash, "tracker": tracker, "peers": peers,
           "dir": str(tmp_path), "http": http, "udp": udp}
    del sessions
    tracker.stop()


def test_egress_peer_is_reported_from_both_trackers(swarm, tmp_path):
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text(f"# the work\n{swarm['torrent']}\n")
    proc, _ = monitor(["--watchlist", str(watchlist), "--egress", "127.0.0.2/32", "--json",
                       "--timeout", "5s"])
    assert proc.returncode == 1, proc.stderr
    events = json_lines(proc.stdout)
    leaks = [e for e in events if e["event"] == "leak"]
    assert {leak["tracker"] for leak in leaks} == {swarm["http"], swarm["udp"]}
    for leak in leaks:
        assert leak["address"] == "127.0.0.2"
        assert leak["port"] == swarm["peers"]["127.0.0.2"]
        assert leak["source"] == "tracker"
        assert leak["info_hash"] == swarm["info_hash"]
        # Confirmed by a real BitTorrent handshake with the libtorrent peer.
        assert leak["peer_client"].startswith("-LT")
        assert leak["time"].endswith("Z")
    checked = [e for e in events if e["event"] == "checked"]
    assert len(checked) == 2 and all(e["ok"] for e in checked), checked
    assert_no_outsider_anywhere(proc, swarm["dir"])


def test_text_output_and_magnet_and_hash_entries(swarm, tmp_path):
    watchlist = tmp_path / "watchlist.txt"
    magnet = f"magnet:?xt=urn:btih:{swarm['info_hash']}&tr={swarm['http']}"
    watchlist.write_text(f"{magnet}\n{swarm['info_hash'].upper()}\n")
    proc, _ = monitor(["--watchlist", str(watchlist), "--egress", "127.0.0.2",
                       "--tracker", swarm["udp"], "--timeout", "5s", "--tracker-rate", "600"])
    assert proc.returncode == 1, proc.stderr
    leak_lines = [line for line in proc.stdout.splitlines() if line.startswith("LEAK ")]
    # Magnet: http (own tr=) + udp (--tracker); bare hash: udp (--tracker) only.
    assert len(leak_lines) == 3, proc.stdout
    for line in leak_lines:
        assert "address=127.0.0.2" in line and f"port={swarm['peers']['127.0.0.2']}" in line
    assert_no_outsider_anywhere(proc, swarm["dir"])


def test_no_leak_when_no_peer_is_ours(swarm, tmp_path):
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text(f"{swarm['torrent']}\n")
    proc, _ = monitor(["--watchlist", str(watchlist), "--egress", "10.0.0.0/8,192.0.2.0/24",
                       "--timeout", "5s"])
    assert proc.returncode == 0, proc.stderr
    assert "LEAK" not in proc.stdout
    assert "127.0.0.2" not in proc.stdout + proc.stderr
    assert_no_outsider_anywhere(proc, swarm["dir"])


def test_unreachable_trackers_time_out_within_the_bound(tmp_path):
    # Blackholes: a TCP listener that accepts (kernel backlog) but never answers, and a UDP
    # socket that never answers.
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    info_hash = "ab" * 20
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text(
        f"magnet:?xt=urn:btih:{info_hash}"
        f"&tr=http%3A%2F%2F127.0.0.1%3A{tcp.getsockname()[1]}%2Fannounce"
        f"&tr=udp%3A%2F%2F127.0.0.1%3A{udp.getsockname()[1]}\n")
    proc, elapsed = monitor(["--watchlist", str(watchlist), "--egress", "127.0.0.2/32",
                             "--timeout", "1s"])
    tcp.close()
    udp.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("no answer within 1s") == 2, proc.stderr
    # One bound per tracker request that could hang (HTTP announce, UDP connect) plus slack.
    assert elapsed < 8, elapsed


def test_bad_watchlist_lines_are_reported_with_line_numbers(tmp_path):
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text("# comment\nnot-a-hash\n" + "cd" * 20 + "\nmagnet:?dn=nohash\n")
    proc, _ = monitor(["--watchlist", str(watchlist), "--egress", "127.0.0.2/32"])
    assert proc.returncode == 2
    assert "watchlist line 2" in proc.stderr
    assert "watchlist line 4" in proc.stderr
    # The good line still ran (it has no tracker, so it says so).
    assert "line 3" in proc.stderr


def test_dht_only_swarm_is_found_through_the_dht(tmp_path):
    """Three libtorrent DHT nodes bootstrapped off each other, no tracker at all: the egress
    seed (127.0.0.2) and an outsider seed (127.0.0.4) announce into the DHT; the monitor starts
    from node 127.0.0.3 and finds ours by iterative get_peers."""
    torrent, info_hash, data = make_torrent(str(tmp_path), "dht-only.bin", [])
    ips = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
    ports = {ip: free_port(host=ip) for ip in ips}
    nodes = [f"{ip}:{ports[ip]}" for ip in ips]
    sessions = {ip: session(ip, ports[ip], dht_nodes=[n for n in nodes if not n.startswith(ip)])
                for ip in ips}
    seed(sessions["127.0.0.2"], torrent, data)
    seed(sessions["127.0.0.4"], torrent, data)
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text(info_hash + "\n")
    args = ["--watchlist", str(watchlist), "--egress", "127.0.0.2/32", "--json",
            "--timeout", "1s", "--dht-bootstrap", nodes[1], "--dht-rate", "600"]
    runs = []

    def found():
        proc, _ = monitor(args)
        runs.append(proc)
        return proc.returncode == 1

    # The seeds announce to the DHT a moment after they start: poll with a deadline.
    assert wait_until(found, timeout=60, interval=0.5), runs[-1].stdout + runs[-1].stderr
    proc = runs[-1]
    leaks = [e for e in json_lines(proc.stdout) if e["event"] == "leak"]
    assert len(leaks) == 1, leaks
    assert leaks[0]["source"] == "dht"
    assert leaks[0]["address"] == "127.0.0.2"
    assert leaks[0]["port"] == ports["127.0.0.2"]
    assert leaks[0]["peer_client"].startswith("-LT")
    for run in runs:
        assert_no_outsider_anywhere(run, str(tmp_path))
    del sessions
