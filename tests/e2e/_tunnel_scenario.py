"""One VPN-tunnel corpus row, run by test_benign_corpus.py inside the hub namespace it creates
(`ip netns exec HUB python3 _tunnel_scenario.py '<json>'`): swarmwall (policy block, default
MSE strictness), the tunnel's client side and the flow driver here; the tunnel's server and the
inner application servers in the far namespace. Prints one JSON line with what was measured.

Arguments (JSON): tunnel ("openvpn" | "wireguard"), far_ns, far_ip, hub_ip, sessions (tunnels
brought up one after another, each a fresh proxied TCP flow), flows (inner flows per session),
seed; optionally strictness (`mse_strictness`, unset: the default) and capture (a pcap path:
tcpdump on the hub's loopback, the SOCKS5 legs to swarmwall, snap length 2048;
tests/captures/record_mse.py).
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _benign import run_app_flow, run_many  # noqa: E402
from _bittorrent import free_port  # noqa: E402
from _metrics import scrape, value  # noqa: E402
from _tunnels import OpenVpn, WireGuard  # noqa: E402
from conftest import Swarmwall  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ("upload", "download", "echo")
APP_SERVERS = ("import json, sys; sys.path.insert(0, sys.argv[1]); from _benign import AppServers; "
               "a = AppServers('0.0.0.0'); print(json.dumps(a.ports), flush=True); sys.stdin.read()")


def main():
    args = json.loads(sys.argv[1])
    admin_port = free_port()
    config = os.path.join(tempfile.mkdtemp(prefix="sw-cfg-"), "swarmwall.toml")
    with open(config, "w") as f:
        f.write('[policy]\nbittorrent = "block"\n')
        if args.get("strictness"):
            f.write(f'mse_strictness = "{args["strictness"]}"\n')
    node = Swarmwall(["--config", config, "--allow-destination", "198.18.0.0/15", "--allow-destination",
                      "127.0.0.0/8", "--admin-listen", f"127.0.0.1:{admin_port}"])
    admin = f"127.0.0.1:{admin_port}"
    apps = subprocess.Popen(["ip", "netns", "exec", args["far_ns"], sys.executable, "-c", APP_SERVERS, HERE],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    result = {"tunnel": args["tunnel"], "results": [], "proxy_port": node.port}
    capture = None
    try:
        if args.get("capture"):
            capture = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "2048", "-U", "-w", args["capture"],
                                        f"tcp port {node.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        ports = json.loads(apps.stdout.readline())
        before = scrape(admin)
        for session in range(args["sessions"]):
            if args["tunnel"] == "openvpn":
                tunnel = OpenVpn(args["far_ns"], args["far_ip"], node.port)
            else:
                tunnel = WireGuard(args["far_ns"], args["far_ip"], args["hub_ip"], node.port)
            try:
                def work(rng, i, inner=tunnel.INNER):
                    kind = KINDS[i % len(KINDS)]
                    return run_app_flow(kind, rng, lambda: socket.create_connection((inner, ports[kind]), timeout=30))

                result["results"] += run_many(args["flows"], work, parallel=6,
                                              seed=args["seed"] * 1000 + session)
            finally:
                tunnel.close()
        after = scrape(admin)

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        result["blocks"] = delta("swarmwall_blocks_total")
        result["strikes"] = delta("swarmwall_strikes_total")
        result["proxied_flows"] = delta("swarmwall_sessions_total")
        result["verdicts"] = {dict(labels)["label"]: v - value(before, name, **dict(labels))
                              for (name, labels), v in after.items()
                              if name == "swarmwall_verdicts_total" and v > 0}
    finally:
        if capture:
            time.sleep(0.5)
            capture.terminate()
            capture.wait()
        apps.stdin.close()
        apps.terminate()
        apps.wait()
        node.stop()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
