"""One encrypted-BitTorrent scenario, run by test_mse_clients.py inside the network namespace it
creates (`ip netns exec NS python3 _mse_scenario.py '<json>'`): swarmwall, the HTTPS tracker,
the seeders and one real client; prints one JSON line with what was measured.

Arguments (JSON): client, seed_policy ("rc4" | "plaintext"), action ("block" | "allow"),
seeders (int), block_wait (after the first block), allow_wait, first_block_wait (optional)
(seconds); seeder (optional: "libtorrent", "transmission",
"rtorrent" or "aria2": one seeder of that kind, _mse_seeders.py, instead of the libtorrent
swarm; its HTTPS tracker hands over only that peer); for the libtorrent client optionally
direct (no tracker: the client is handed the seeders with `connect_peer`) and delay_ms (each
seeder behind a DelayRelay holding its replies that long: a network round trip).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _bittorrent import file_sha256, free_port  # noqa: E402
from _metrics import scrape, value  # noqa: E402
from _mse_seeders import SeederSwarm  # noqa: E402
from _mse import CLIENTS, NET, SEED_PLAINTEXT, SEED_RC4, DelayRelay, EncryptedSwarm  # noqa: E402
from conftest import Swarmwall, wait_until  # noqa: E402

SIZE = 2 * 1024 * 1024
FORMS = ("mse", "peer_wire", "peer_wire_messages", "http_tracker")


def main():
    args = json.loads(sys.argv[1])
    admin_port = free_port()
    config = os.path.join(tempfile.mkdtemp(prefix="sw-cfg-"), "swarmwall.toml")
    with open(config, "w") as f:
        # Only the action is set: mse_strictness stays at its default.
        f.write(f'[policy]\nbittorrent = "{args["action"]}"\n')
    node = Swarmwall(["--config", config, "--allow-destination", f"{NET}.0/24", "--allow-destination",
                      "127.0.0.0/8", "--admin-listen", f"127.0.0.1:{admin_port}"],
                     env={"RUST_LOG": "info,swarmwall_server::server::relay=debug"})
    admin = f"127.0.0.1:{admin_port}"
    policy = {"rc4": SEED_RC4, "plaintext": SEED_PLAINTEXT}[args["seed_policy"]]
    size = args.get("size", SIZE)
    if args.get("seeder"):
        swarm = SeederSwarm(args["seeder"], size=size)
    else:
        swarm = EncryptedSwarm(seeders=args.get("seeders", 1), seed_policy=policy, size=size)
    client = None
    capture = None
    relays = []
    result = {}
    started = time.monotonic()
    try:
        if args.get("capture"):
            # Recording for tests/captures: the proxy's both legs, the HTTPS tracker and the
            # seeders' plain announces; snap length 2048 (the classifier reads at most 4 KiB).
            ports = [node.port, swarm.tracker.nginx.port, swarm.tracker.tracker.port] + \
                [port for _, port in swarm.seed_addresses]
            result["ports"] = {"proxy": node.port, "https_tracker": swarm.tracker.nginx.port,
                               "tracker": swarm.tracker.tracker.port,
                               "seeders": [port for _, port in swarm.seed_addresses]}
            capture = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "2048", "-U", "-w", args["capture"],
                                        " or ".join(f"tcp port {p}" for p in ports)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        if args.get("direct"):
            peers = swarm.seed_addresses
            if args.get("delay_ms"):
                relays = [DelayRelay(f"{NET}.{30 + index}", address, args["delay_ms"] / 1000)
                          for index, address in enumerate(peers)]
                peers = [relay.address for relay in relays]
            client = CLIENTS[args["client"]](swarm, node.port, direct_peers=peers)
        else:
            client = CLIENTS[args["client"]](swarm, node.port)

        def blocks():
            return value(scrape(admin), "swarmwall_blocks_total")

        if args["action"] == "block":
            wait_until(lambda: blocks() > 0, timeout=args.get("first_block_wait", args["block_wait"] + 20),
                       interval=0.2)
            result["first_block_s"] = round(time.monotonic() - started, 2)
            result["completed"] = bool(wait_until(lambda: client.complete(size), timeout=args["block_wait"],
                                                  interval=0.3))
        else:
            result["completed"] = bool(wait_until(lambda: client.complete(size), timeout=args["allow_wait"],
                                                  interval=0.3))
            result["completed_s"] = round(time.monotonic() - started, 2)
            if result["completed"] and os.path.exists(client.path):
                result["sha_ok"] = file_sha256(client.path) == file_sha256(swarm.source)
            # The verdict of a flow that outlives the download is recorded when it is decided.
            wait_until(lambda: sum(value(scrape(admin), "swarmwall_verdicts_total", label=f) for f in FORMS) > 0,
                       timeout=10)
        samples = scrape(admin)
        result["blocks"] = {f: value(samples, "swarmwall_blocks_total", form=f) for f in FORMS}
        result["blocks_total"] = value(samples, "swarmwall_blocks_total")
        result["verdicts"] = {dict(labels)["label"]: v for (name, labels), v in samples.items()
                              if name == "swarmwall_verdicts_total" and v > 0}
        result["sessions"] = value(samples, "swarmwall_sessions_total")
        result["mse_rules"] = {dict(labels)["reason"]: v for (name, labels), v in samples.items()
                               if name == "swarmwall_mse_rules_total" and v > 0}
        output = re.sub(r"\x1b\[[0-9;]*m", "", node.output())
        result["fan_out_blocks"] = output.count("corroborated mid-flow (fan-out)")
        # The flight sizes of every MSE candidate the proxy decided (relay debug log).
        result["mse_flights"] = [
            {"outcome": "let_through" if "let through" in line else "verdict",
             "rule": (re.search(r"rule=\"?(\w+)", line) or [None, None])[1],
             "flights": [int(n) for n in re.findall(r"\d+", re.search(r"flights=\[([^\]]*)\]", line)[1])]}
            for line in output.splitlines()
            if ("MSE verdict" in line or "MSE candidate let through" in line) and "flights=[" in line]
        # Out before the clean-up: python3-libtorrent has crashed (SIGSEGV) tearing a session
        # down, which lost a buffered result that was already complete.
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        if client:
            client.close()
        for relay in relays:
            relay.close()
        if capture:
            time.sleep(0.5)
            capture.terminate()
            capture.wait()
        swarm.close()
        node.stop()


if __name__ == "__main__":
    main()
