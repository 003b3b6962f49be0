"""Never harm normal traffic (issue 17): a corpus of random-looking protocols from real
implementations, run through swarmwall as a customer would, on a blocking proxy with the
default MSE strictness. Every flow must come back byte-exact, no block may be counted and no
strike recorded. Rows marked "worst case" are random-size ping-pong sessions (every flight
random, sizes uniform in 1..2048) and random request/response rounds (requests 16..2048 bytes,
responses 1 B .. 1 MiB), the workloads that can meet MSE's exact sizes by chance: they are held
to the rate the size arithmetic predicts (docs/detection.md), not to zero. The
same corpus on an `aggressive` proxy (opt-in: SWARMWALL_CORPUS_AGGRESSIVE=1) measures that
setting's false-positive rate per protocol (printed, and appended to $SWARMWALL_CORPUS_REPORT
if set). SWARMWALL_CORPUS_SCALE scales every row's flow count.

Implementations: python sockets (bulk uploads/downloads 1 B .. 64 MiB and echo sessions with
random first writes of 1..2048 bytes), shadowsocks-libev (three AEAD ciphers), obfs4proxy,
v2ray (VMess, VLESS), OpenSSH (sessions and a port forward), TLS 1.3 / HTTP/2 against nginx
(python ssl, curl, openssl s_client). VPN tunnels (root, network namespaces this test creates:
they need tun devices): OpenVPN 2.6 over TCP with `--tls-crypt` through its `--socks-proxy`,
and WireGuard (wireguard-go) carried over TCP (_tunnels.py, _tunnel_scenario.py).
"""
import json
import os
import random
import socket
import ssl
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

from _benign import (AppServers, Obfs4, Shadowsocks, Sshd, V2Ray, recv_all, run_app_flow, run_many,
                     socks_opener)
from _bittorrent import free_port
from _metrics import scrape, value
from _mse import Nginx, proxied, stop, wait_tcp
from _socks5 import connect

SCALE = float(os.environ.get("SWARMWALL_CORPUS_SCALE", "1"))
KINDS = ("upload", "download", "echo")


def n(count):
    return max(1, int(count * SCALE))


@pytest.fixture(scope="module")
def env():
    apps = AppServers()
    root = tempfile.mkdtemp(prefix="sw-www-")
    rng = random.Random(17)
    files = {}
    for index in range(24):
        size = 1 if index == 0 else int(2 ** rng.uniform(0, 22))
        name = f"f{index}.bin"
        data = os.urandom(size)
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
        files[name] = data
    os.chmod(root, 0o755)
    nginx = Nginx(root=root)
    sshd = Sshd()
    yield {"apps": apps, "nginx": nginx, "files": files, "sshd": sshd, "root": root}
    sshd.close()
    nginx.stop()
    apps.close()


def start_proxy(start_swarmwall, strictness=None):
    admin_port = free_port()
    config = os.path.join(tempfile.mkdtemp(prefix="sw-cfg-"), "swarmwall.toml")
    with open(config, "w") as f:
        f.write('[policy]\nbittorrent = "block"\n')
        if strictness:
            f.write(f'mse_strictness = "{strictness}"\n')
    node = start_swarmwall("--config", config, "--allow-destination", "127.0.0.0/8",
                           "--admin-listen", f"127.0.0.1:{admin_port}")
    node.admin = f"127.0.0.1:{admin_port}"
    return node


def counters(node):
    samples = scrape(node.admin)
    return {"blocks": value(samples, "swarmwall_blocks_total"),
            "strikes": value(samples, "swarmwall_strikes_total"),
            "flows": value(samples, "swarmwall_sessions_total"),
            "mse": value(samples, "swarmwall_verdicts_total", transport="tcp", label="mse"),
            "rules": {dict(labels)["reason"]: v for (name, labels), v in samples.items()
                      if name == "swarmwall_mse_rules_total"}}


# ------------------------------------------------------------------ generators

BULK = ("upload", "download")


def direct(node, env, count, seed, kinds=BULK):
    apps = env["apps"]
    proxy = ("127.0.0.1", node.port)

    def work(rng, i):
        kind = kinds[i % len(kinds)]
        return run_app_flow(kind, rng, socks_opener(proxy, "127.0.0.1", apps.ports[kind]))

    return run_many(count, work, seed=seed)


def tunnelled(socks, env, count, seed, kinds=BULK):
    apps = env["apps"]

    def work(rng, i):
        kind = kinds[i % len(kinds)]
        return run_app_flow(kind, rng, socks_opener(socks, "127.0.0.1", apps.ports[kind]))

    return run_many(count, work, seed=seed)


def tls_python(node, env, count, seed):
    context = ssl.create_default_context(cafile=env["nginx"].cert)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    names = sorted(env["files"])

    def work(rng, i):
        name = rng.choice(names)
        raw = connect(("127.0.0.1", node.port), "127.0.0.1", env["nginx"].port, timeout=30)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(f"GET /files/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            response = recv_all(s)
        head, _, body = response.partition(b"\r\n\r\n")
        return head.startswith(b"HTTP/1.1 200") and body == env["files"][name]

    return run_many(count, work, seed=seed)


def curl_h2(node, env, count, seed):
    names = sorted(env["files"])

    def work(rng, i):
        name = rng.choice(names)
        out = subprocess.run(["curl", "-s", "--http2", "--tlsv1.3", "--cacert", env["nginx"].cert,
                              "--socks5", f"127.0.0.1:{node.port}", "-w", "%{http_version}", "-o", "-",
                              f"https://127.0.0.1:{env['nginx'].port}/files/{name}"],
                             capture_output=True, timeout=60)
        body, version = out.stdout[:-1], out.stdout[-1:]
        return out.returncode == 0 and version == b"2" and body == env["files"][name]

    return run_many(count, work, parallel=6, seed=seed)


def openssl_client(node, env, count, seed):
    names = sorted(env["files"])
    directory = tempfile.mkdtemp(prefix="sw-openssl-")

    def work(rng, i):
        name = rng.choice(names)
        argv = proxied(directory, node.port, ["openssl", "s_client", "-quiet", "-ign_eof", "-tls1_3",
                                              "-verify_quiet", "-connect", f"127.0.0.1:{env['nginx'].port}"])
        out = subprocess.run(argv, input=f"GET /files/{name} HTTP/1.0\r\n\r\n".encode(),
                             capture_output=True, timeout=60)
        body = out.stdout.partition(b"\r\n\r\n")[2]
        return body == env["files"][name] or f"openssl rc {out.returncode}: {len(body)} bytes {out.stderr[-200:]}"

    return run_many(count, work, parallel=6, seed=seed)


def ssh_sessions(node, env, count, seed):
    sshd, names = env["sshd"], sorted(env["files"])

    def work(rng, i):
        name = rng.choice(names)
        out = subprocess.run(sshd.client_argv(node.port) + [f"cat {env['root']}/{name}"],
                             capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        return (out.returncode == 0 and out.stdout == env["files"][name]
                or f"ssh rc {out.returncode}: {len(out.stdout)} bytes {out.stderr[-200:]}")

    return run_many(count, work, parallel=6, seed=seed)


def ssh_forward(node, env, count, seed):
    """One `ssh -N -L` through swarmwall; `count` inner flows through the forward. Counts as
    one proxied flow (plus the inner flows' results)."""
    sshd, apps = env["sshd"], env["apps"]
    local = free_port()
    proc = subprocess.Popen(sshd.client_argv(node.port, "-N", "-L", f"127.0.0.1:{local}:127.0.0.1:"
                                             f"{apps.ports['download']}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_tcp(local, timeout=20)
        return run_many(count, lambda rng, i: run_app_flow(
            "download", rng, lambda: socket.create_connection(("127.0.0.1", local), timeout=30)), seed=seed)
    finally:
        stop(proc)


def corpus(node, env):
    """(protocol, implementation, worst_case, runner) in order; each runner returns per-flow
    results. `worst_case` rows are random-size ping-pong (echo) sessions: every flight random
    with sizes drawn uniformly from 1..2048, the one workload that can hit MSE's exact sizes
    by chance (docs/detection.md, "False positives"); they are measured, not required to be 0."""
    apps = env["apps"]
    entries = [
        ("bulk up/down", "python sockets", False, lambda: direct(node, env, n(2600), 1)),
        ("tls1.3", "python ssl", False, lambda: tls_python(node, env, n(600), 2)),
        ("http2", "curl", False, lambda: curl_h2(node, env, n(60), 3)),
        ("tls1.3", "openssl s_client", False, lambda: openssl_client(node, env, n(40), 4)),
        ("ssh", "openssh", False, lambda: ssh_sessions(node, env, n(60), 5)),
        ("ssh -L (1 flow, inner downloads)", "openssh", False, lambda: ssh_forward(node, env, n(60), 6)),
        ("echo ping-pong (worst case)", "python sockets", True,
         lambda: direct(node, env, n(600), 7, kinds=("echo",))),
        ("request/response rounds (worst case)", "python sockets", True,
         lambda: direct(node, env, n(600), 8, kinds=("rpc",))),
    ]

    def with_tunnel(make, count, seed, kinds):
        def run():
            tunnel = make()
            try:
                return tunnelled(tunnel.socks, env, count, seed, kinds)
            finally:
                tunnel.close()
        return run

    for index, cipher in enumerate(("aes-256-gcm", "chacha20-ietf-poly1305", "aes-128-gcm")):
        def make(cipher=cipher):
            return Shadowsocks(node.port, cipher)
        entries.append((f"shadowsocks {cipher}", "shadowsocks-libev", False, with_tunnel(make, n(300), 10 + index, BULK)))
        entries.append((f"shadowsocks {cipher} echo (worst case)", "shadowsocks-libev", True,
                        with_tunnel(make, n(100), 40 + index, ("echo",))))
        if cipher == "chacha20-ietf-poly1305":
            entries.append((f"shadowsocks {cipher} rpc (worst case)", "shadowsocks-libev", True,
                            with_tunnel(make, n(200), 45, ("rpc",))))
    for kinds, count, worst in ((BULK, 400, False), (("echo",), 200, True)):
        def obfs4(kinds=kinds, count=count):
            # obfs4proxy's server forwards to one fixed port: one bridge per inner service.
            tunnels = {kind: Obfs4(node.port, apps.ports[kind]) for kind in kinds}
            try:
                return run_many(n(count), lambda rng, i: run_app_flow(
                    kinds[i % len(kinds)], rng, tunnels[kinds[i % len(kinds)]].opener()), seed=20 + len(kinds))
            finally:
                for tunnel in tunnels.values():
                    tunnel.close()
        label = "obfs4" + (" echo (worst case)" if worst else "")
        entries.append((label, "obfs4proxy", worst, obfs4))
    for index, protocol in enumerate(("vmess", "vless")):
        def make(protocol=protocol):
            return V2Ray(node.port, protocol)
        entries.append((protocol, "v2ray", False, with_tunnel(make, n(300), 30 + index, BULK)))
        entries.append((f"{protocol} echo (worst case)", "v2ray", True, with_tunnel(make, n(100), 50 + index, ("echo",))))
        if protocol == "vmess":
            entries.append(("vmess rpc (worst case)", "v2ray", True, with_tunnel(make, n(200), 55, ("rpc",))))
    return entries


def run_corpus(node, env, fresh_proxy=None):
    """Run every corpus row; `fresh_proxy()` (if given) starts a new proxy per row, so that
    one row's strikes (and a resulting suspension) never leak into the next row's figures."""
    report = []
    for index, (protocol, implementation, worst_case, runner) in enumerate(corpus(node, env)):
        if fresh_proxy:
            node = fresh_proxy()
            runner = corpus(node, env)[index][3]
        before = counters(node)
        results = runner()
        after = counters(node)
        failures = [r for r in results if r is not True]
        report.append({"protocol": protocol, "implementation": implementation, "worst_case": worst_case,
                       "flows": len(results),
                       "failed": len(failures), "first_failures": sorted(set(map(str, failures)))[:3],
                       "proxied_flows": after["flows"] - before["flows"],
                       "blocks": after["blocks"] - before["blocks"], "strikes": after["strikes"] - before["strikes"],
                       "mse_verdicts": after["mse"] - before["mse"],
                       "mse_rules": {rule: count - before["rules"].get(rule, 0)
                                     for rule, count in after["rules"].items()
                                     if count > before["rules"].get(rule, 0)}})
    return report


def print_report(title, report):
    print(f"\n{title}")
    for row in report:
        print(f"  {row['protocol']:<34} {row['implementation']:<18} flows {row['flows']:>5} "
              f"proxied {int(row['proxied_flows']):>5} failed {row['failed']:>4} blocks {int(row['blocks']):>4}"
              f" strikes {int(row['strikes']):>3} {row['mse_rules'] or ''} {row['first_failures']}")
    path = os.environ.get("SWARMWALL_CORPUS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"title": title, "report": report}) + "\n")


def test_benign_corpus_untouched_on_defaults(start_swarmwall, env):
    node = start_proxy(start_swarmwall)
    report = run_corpus(node, env)
    print_report("default strictness (corroborated)", report)
    real = [row for row in report if not row["worst_case"]]
    worst = [row for row in report if row["worst_case"]]
    for row in real:
        assert row["failed"] == 0, f"{row['protocol']} ({row['implementation']}): {row['first_failures']}"
        assert row["blocks"] == 0 and row["strikes"] == 0, row
    implementations = {row["implementation"] for row in real}
    assert len(implementations) >= 6, implementations
    if SCALE >= 1:
        assert sum(row["proxied_flows"] for row in real) >= 5000, real
    # The worst cases: random-size echo ping-pong, expected about 1.2e-4 per flow from the size
    # arithmetic of the exact layouts; random request/response rounds, about 4e-4 from the
    # coalesced layout (measured 3 in 3,600, docs/detection.md). A rate several times higher
    # means a rule is looser than documented.
    worst_flows = sum(row["flows"] for row in worst)
    worst_blocks = sum(row["blocks"] for row in worst)
    assert worst_blocks <= max(1, worst_flows * 0.0015), worst
    for row in worst:
        # Flows not blocked came back byte-exact; no strike beyond the blocks themselves.
        assert row["failed"] <= row["blocks"], row


@pytest.mark.skipif(not os.environ.get("SWARMWALL_CORPUS_AGGRESSIVE"),
                    reason="measurement for the README; set SWARMWALL_CORPUS_AGGRESSIVE=1 (3 more minutes)")
def test_benign_corpus_aggressive_rate(start_swarmwall, env):
    """Measurement, not a limit: how many benign flows `aggressive` blocks, per protocol."""
    nodes = []

    def fresh():
        if nodes:
            nodes[-1].stop()
        nodes.append(start_proxy(start_swarmwall, "aggressive"))
        return nodes[-1]

    report = run_corpus(None, env, fresh_proxy=fresh)
    print_report("aggressive strictness (a fresh proxy per row)", report)
    # The real protocols' handshakes (TLS, SSH) are never touched, whatever the strictness.
    for row in report:
        if row["implementation"] in ("python ssl", "curl", "openssl s_client", "openssh"):
            assert row["blocks"] == 0 and row["failed"] == 0, row


# ------------------------------------------------------------------ VPN tunnels (namespaces)

HERE = os.path.dirname(os.path.abspath(__file__))
HUB_IP, FAR_IP = "198.19.7.1", "198.19.7.2"


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def vpn_netns():
    """A hub namespace (swarmwall, the tunnels' client sides) and a far one (the tunnels'
    servers and the inner application), joined by a veth pair; nothing outside them changes."""
    if os.geteuid() != 0 or shutil.which("ip") is None or not os.path.exists("/dev/net/tun"):
        pytest.fail("the VPN rows need root, iproute2 and /dev/net/tun")
    hub, far = "sw-vpnh-" + uuid.uuid4().hex[:6], "sw-vpnf-" + uuid.uuid4().hex[:6]
    ip("netns", "add", hub)
    ip("netns", "add", far)
    try:
        for ns in (hub, far):
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", hub, "link", "add", "vpnh", "type", "veth", "peer", "name", "vpnf", "netns", far)
        ip("-n", hub, "addr", "add", f"{HUB_IP}/30", "dev", "vpnh")
        ip("-n", far, "addr", "add", f"{FAR_IP}/30", "dev", "vpnf")
        ip("-n", hub, "link", "set", "dev", "vpnh", "up")
        ip("-n", far, "link", "set", "dev", "vpnf", "up")
        yield hub, far
    finally:
        for ns in (hub, far):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.parametrize("strictness", [None, "aggressive"], ids=["default", "aggressive"])
@pytest.mark.parametrize("tunnel", ["openvpn", "wireguard"])
def test_vpn_tunnels_untouched(vpn_netns, tunnel, strictness):
    """OpenVPN (`--tls-crypt`, TCP, through its own SOCKS5 client) and WireGuard-in-TCP through
    a blocking proxy, on the default strictness and on `aggressive`: every tunnel comes up,
    every inner flow (uploads, downloads, echo sessions) is byte-exact, no block, no strike
    (OpenVPN is ruled out by its opcode, WireGuard fails the MSE shape at its 92-byte reply)."""
    hub, far = vpn_netns
    args = {"tunnel": tunnel, "far_ns": far, "far_ip": FAR_IP, "hub_ip": HUB_IP,
            "sessions": n(4), "flows": n(30), "seed": 60 + len(tunnel), "strictness": strictness}
    out = subprocess.run(["ip", "netns", "exec", hub, sys.executable, os.path.join(HERE, "_tunnel_scenario.py"),
                          json.dumps(args)], capture_output=True, text=True, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"scenario failed: {out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    failures = [r for r in result["results"] if r is not True]
    print(f"\n  {tunnel} ({strictness or 'default'}): sessions {args['sessions']} inner flows {len(result['results'])} "
          f"proxied {int(result['proxied_flows'])} blocks {int(result['blocks'])} verdicts {result['verdicts']}")
    assert len(result["results"]) == args["sessions"] * args["flows"], result
    assert not failures, sorted(set(map(str, failures)))[:3]
    assert result["blocks"] == 0 and result["strikes"] == 0, result
    # One proxied flow per tunnel session (nothing else goes through the proxy).
    assert result["proxied_flows"] == args["sessions"], result
    assert result["verdicts"].get("mse", 0) == 0, result
