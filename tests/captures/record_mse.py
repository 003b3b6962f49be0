"""Record the encrypted-BitTorrent and benign-tunnel captures of issue 17 (mse_*.pcap) and add
their rules to labels.json. Root: creates a network namespace with a veth pair holding
198.18.0.0/24 (Transmission refuses 127.0.0.0/8 peers), runs tests/e2e/_mse_scenario.py in it
with tcpdump on its loopback, policy `allow` (whole flows, 64 KiB torrents, snap length 2048),
then removes the namespace.

    /usr/bin/python3 tests/captures/record_mse.py        # clients, then benign tunnels
    /usr/bin/python3 tests/captures/record_mse.py benign # benign tunnels only
    /usr/bin/python3 tests/captures/record_mse.py vpn    # mse_vpn_tunnels.pcap only
    /usr/bin/python3 tests/captures/record_mse.py seeders # mse_aria2_from_transmission.pcap only

Each client capture holds both legs of the proxy: client → swarmwall (SOCKS5, the tracker
reached directly so that every SOCKS5 flow is a peer connection) and swarmwall → seeder
(plain MSE), plus the HTTPS announces (TLS).
"""
import json
import os
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(os.path.dirname(HERE), "e2e")
NET = "198.18.0"
CLIENTS = ["transmission", "aria2", "rtorrent"]
# (client, seeder, capture, extra scenario arguments): a cell decided by the bare handshake
# reply of a Transmission 3.00 seeder (test_mse_seeders.py), aria2 under proxychains4 with
# the tracker reached directly, so that every SOCKS5 flow is the peer connection.
SEEDER_CELLS = [("aria2", "transmission", "mse_aria2_from_transmission.pcap", {})]


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def main(seeders=False):
    name = "sw-rec-" + uuid.uuid4().hex[:8]
    ip("netns", "add", name)
    labels_path = os.path.join(HERE, "labels.json")
    with open(labels_path) as f:
        labels = json.load(f)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "swarm0", "type", "veth", "peer", "name", "swarm1")
        for host in (1, 2, 10):
            ip("-n", name, "addr", "add", f"{NET}.{host}/32", "dev", "swarm0")
        ip("-n", name, "link", "set", "swarm0", "up")
        ip("-n", name, "link", "set", "swarm1", "up")
        env = {**os.environ, "SWARMWALL_MSE_NET": NET, "SWARMWALL_MSE_DIRECT_TRACKER": "1"}
        cells = SEEDER_CELLS if seeders else [(client, None, f"mse_{client}.pcap", {}) for client in CLIENTS]
        for client, seeder, capture_name, extra in cells:
            pcap = os.path.join(HERE, capture_name)
            args = {"client": client, "seed_policy": "rc4", "action": "allow", "block_wait": 12,
                    "allow_wait": 60, "size": 64 * 1024, "capture": pcap, **extra}
            if seeder:
                args["seeder"] = seeder
            out = subprocess.run(["ip", "netns", "exec", name, sys.executable,
                                  os.path.join(E2E, "_mse_scenario.py"), json.dumps(args)],
                                 capture_output=True, text=True, timeout=240, env=env)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                sys.exit(f"{client}: {out.stdout[-1500:]}\n{out.stderr[-1500:]}")
            result = json.loads(line[-1][len("RESULT "):])
            assert result["completed"], result
            ports = result["ports"]
            os.chmod(pcap, 0o644)
            labels[os.path.basename(pcap)] = {"rules": [
                {"l4": "tcp", "port": ports["proxy"], "forms": ["mse"]},
                *({"l4": "tcp", "port": port, "forms": ["mse"]} for port in ports["seeders"]),
                {"l4": "tcp", "port": ports["https_tracker"], "benign": True},
            ]}
            # The tracker's plain leg (nginx → opentracker, the seeders' announces) is not kept.
            subprocess.run(["tcpdump", "-r", pcap, "-w", pcap + ".tmp", f"not tcp port {ports['tracker']}"],
                           check=True, capture_output=True)
            os.replace(pcap + ".tmp", pcap)
            print(client, os.path.getsize(pcap), "bytes", result["verdicts"])
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    with open(labels_path, "w") as f:
        json.dump(labels, f, indent=2)
        f.write("\n")


def benign():
    """mse_benign_tunnels.pcap: Shadowsocks (aes-256-gcm), obfs4 and VMess tunnels through
    swarmwall on loopback, three short ping-pong flows each, both legs."""
    sys.path.insert(0, E2E)
    import time
    from _benign import AppServers, Obfs4, Shadowsocks, V2Ray, run_app_flow, socks_opener
    from conftest import Swarmwall

    pcap = os.path.join(HERE, "mse_benign_tunnels.pcap")
    node = Swarmwall(["--allow-destination", "127.0.0.0/8"])
    apps = AppServers()
    tunnels = [("shadowsocks", Shadowsocks(node.port, "aes-256-gcm")), ("vmess", V2Ray(node.port, "vmess")),
               ("obfs4", Obfs4(node.port, apps.ports["echo"]))]
    ports = [node.port] + [tunnel.server_port for _, tunnel in tunnels]
    capture = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "2048", "-U", "-w", pcap,
                                " or ".join(f"tcp port {p}" for p in ports)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    import random
    rng = random.Random(1)
    try:
        for name, tunnel in tunnels:
            for index in range(3):
                kind = "echo"
                if name == "obfs4":
                    opener, kind = tunnel.opener(), "echo"
                else:
                    opener = socks_opener(tunnel.socks, "127.0.0.1", apps.ports[kind])
                assert run_app_flow(kind, rng, opener), (name, kind)
    finally:
        time.sleep(0.5)
        capture.terminate()
        capture.wait()
        for _, tunnel in tunnels:
            tunnel.close()
        node.stop()
    os.chmod(pcap, 0o644)
    with open(os.path.join(HERE, "labels.json")) as f:
        labels = json.load(f)
    labels[os.path.basename(pcap)] = {"rules": [{"l4": "tcp", "port": port, "benign": True} for port in ports]}
    with open(os.path.join(HERE, "labels.json"), "w") as f:
        json.dump(labels, f, indent=2)
        f.write("\n")
    print("benign tunnels", os.path.getsize(pcap), "bytes")


def vpn():
    """mse_vpn_tunnels.pcap: one OpenVPN (`--tls-crypt`, TCP, `--socks-proxy`) and one
    WireGuard-over-TCP tunnel through swarmwall, each carrying six short inner flows; the
    SOCKS5 legs (client side of the proxy) on the hub namespace's loopback. Runs
    tests/e2e/_tunnel_scenario.py in a hub/far namespace pair it creates."""
    hub, far = "sw-rech-" + uuid.uuid4().hex[:6], "sw-recf-" + uuid.uuid4().hex[:6]
    hub_ip, far_ip = "198.19.7.1", "198.19.7.2"
    pcaps = []
    ip("netns", "add", hub)
    ip("netns", "add", far)
    try:
        for ns in (hub, far):
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", hub, "link", "add", "vpnh", "type", "veth", "peer", "name", "vpnf", "netns", far)
        ip("-n", hub, "addr", "add", f"{hub_ip}/30", "dev", "vpnh")
        ip("-n", far, "addr", "add", f"{far_ip}/30", "dev", "vpnf")
        ip("-n", hub, "link", "set", "dev", "vpnh", "up")
        ip("-n", far, "link", "set", "dev", "vpnf", "up")
        ports = []
        for tunnel in ("openvpn", "wireguard"):
            pcap = os.path.join(HERE, f".{tunnel}.pcap")
            args = {"tunnel": tunnel, "far_ns": far, "far_ip": far_ip, "hub_ip": hub_ip, "sessions": 1,
                    "flows": 6, "seed": 3, "capture": pcap}
            out = subprocess.run(["ip", "netns", "exec", hub, sys.executable,
                                  os.path.join(E2E, "_tunnel_scenario.py"), json.dumps(args)],
                                 capture_output=True, text=True, timeout=240)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                sys.exit(f"{tunnel}: {out.stdout[-1500:]}\n{out.stderr[-1500:]}")
            result = json.loads(line[-1][len("RESULT "):])
            assert all(r is True for r in result["results"]) and result["blocks"] == 0, result
            pcaps.append(pcap)
            ports.append(result["proxy_port"])
        pcap = os.path.join(HERE, "mse_vpn_tunnels.pcap")
        subprocess.run(["mergecap", "-F", "pcap", "-w", pcap, *pcaps], check=True, capture_output=True)
        os.chmod(pcap, 0o644)
    finally:
        for path in pcaps:
            if os.path.exists(path):
                os.remove(path)
        for ns in (hub, far):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    with open(os.path.join(HERE, "labels.json")) as f:
        labels = json.load(f)
    labels[os.path.basename(pcap)] = {"rules": [{"l4": "tcp", "port": port, "benign": True} for port in ports]}
    with open(os.path.join(HERE, "labels.json"), "w") as f:
        json.dump(labels, f, indent=2)
        f.write("\n")
    print("vpn tunnels", os.path.getsize(pcap), "bytes")


if __name__ == "__main__":
    if sys.argv[1:] == ["vpn"]:
        vpn()
    elif sys.argv[1:] == ["seeders"]:
        main(seeders=True)
    else:
        if sys.argv[1:] != ["benign"]:
            main()
        benign()
