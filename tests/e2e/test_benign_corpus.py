"""Never harm normal traffic (issue 17): a corpus of random-looking protocols from real
implementations, run through swarmwall as a customer would, on a blocking proxy with the
default MSE strictness. Every flow must come back byte-exact, no block may be counted and no
strike recorded. The same corpus on an `aggressive` proxy measures that setting's
false-positive rate per protocol (printed, and written to $SWARMWALL_CORPUS_REPORT if set).

Implementations: python sockets (bulk uploads/downloads 1 B .. 64 MiB and echo sessions with
random first writes of 1..2048 bytes), shadowsocks-libev (three AEAD ciphers), obfs4proxy,
v2ray (VMess, VLESS), OpenSSH (sessions and a port forward), TLS 1.3 / HTTP/2 against nginx
(python ssl, curl, openssl s_client).
"""
import hashlib
import json
import os
import random
import socket
import ssl
import subprocess
import tempfile

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
            "mse": value(samples, "swarmwall_verdicts_total", transport="tcp", label="mse")}


# ------------------------------------------------------------------ generators

def app_flows(opener, count, seed):
    """`count` inner-application flows (upload, download, echo in turn) over `opener()`."""
    return run_many(count, lambda rng, i: run_app_flow(KINDS[i % 3], rng, opener), seed=seed)


def direct(node, env, count, seed):
    apps = env["apps"]
    proxy = ("127.0.0.1", node.port)

    def work(rng, i):
        kind = KINDS[i % 3]
        return run_app_flow(kind, rng, socks_opener(proxy, "127.0.0.1", apps.ports[kind]))

    return run_many(count, work, seed=seed)


def tunnelled(socks, env, count, seed):
    apps = env["apps"]

    def work(rng, i):
        kind = KINDS[i % 3]
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
        argv = proxied(directory, node.port, ["openssl", "s_client", "-quiet", "-tls1_3", "-verify_quiet",
                                              "-connect", f"127.0.0.1:{env['nginx'].port}"])
        out = subprocess.run(argv, input=f"GET /files/{name} HTTP/1.0\r\n\r\n".encode(),
                             capture_output=True, timeout=60)
        body = out.stdout.partition(b"\r\n\r\n")[2]
        return body == env["files"][name]

    return run_many(count, work, parallel=6, seed=seed)


def ssh_sessions(node, env, count, seed):
    sshd, names = env["sshd"], sorted(env["files"])

    def work(rng, i):
        name = rng.choice(names)
        out = subprocess.run(sshd.client_argv(node.port) + [f"cat {env['root']}/{name}"],
                             capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        return out.returncode == 0 and out.stdout == env["files"][name]

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
    """(protocol, implementation, runner) in order; each runner returns per-flow results."""
    apps = env["apps"]
    entries = [
        ("bulk+echo", "python sockets", lambda: direct(node, env, n(2400), 1)),
        ("tls1.3", "python ssl", lambda: tls_python(node, env, n(600), 2)),
        ("http2", "curl", lambda: curl_h2(node, env, n(60), 3)),
        ("tls1.3", "openssl s_client", lambda: openssl_client(node, env, n(40), 4)),
        ("ssh", "openssh", lambda: ssh_sessions(node, env, n(60), 5)),
        ("ssh -L", "openssh", lambda: ssh_forward(node, env, n(60), 6)),
    ]
    for index, cipher in enumerate(("aes-256-gcm", "chacha20-ietf-poly1305", "aes-128-gcm")):
        def shadowsocks(cipher=cipher, index=index):
            tunnel = Shadowsocks(node.port, cipher)
            try:
                return tunnelled(tunnel.socks, env, n(300), 10 + index)
            finally:
                tunnel.close()
        entries.append((f"shadowsocks {cipher}", "shadowsocks-libev", shadowsocks))

    def obfs4():
        tunnel = Obfs4(node.port, apps.ports["echo"])
        try:
            return run_many(n(600), lambda rng, i: run_app_flow("echo", rng, tunnel.opener()), seed=20)
        finally:
            tunnel.close()
    entries.append(("obfs4", "obfs4proxy", obfs4))
    for index, protocol in enumerate(("vmess", "vless")):
        def v2ray(protocol=protocol, index=index):
            tunnel = V2Ray(node.port, protocol)
            try:
                return tunnelled(tunnel.socks, env, n(300), 30 + index)
            finally:
                tunnel.close()
        entries.append((protocol, "v2ray", v2ray))
    return entries


def run_corpus(node, env):
    report = []
    for protocol, implementation, runner in corpus(node, env):
        before = counters(node)
        results = runner()
        after = counters(node)
        failures = [r for r in results if r is not True]
        report.append({"protocol": protocol, "implementation": implementation, "flows": len(results),
                       "failed": len(failures), "first_failures": sorted(set(map(str, failures)))[:3],
                       "proxied_flows": after["flows"] - before["flows"],
                       "blocks": after["blocks"] - before["blocks"], "strikes": after["strikes"] - before["strikes"],
                       "mse_verdicts": after["mse"] - before["mse"]})
    return report


def print_report(title, report):
    print(f"\n{title}")
    for row in report:
        print(f"  {row['protocol']:<34} {row['implementation']:<18} flows {row['flows']:>5} "
              f"proxied {int(row['proxied_flows']):>5} failed {row['failed']:>4} blocks {int(row['blocks']):>4}"
              f" strikes {int(row['strikes']):>3} {row['first_failures']}")
    path = os.environ.get("SWARMWALL_CORPUS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"title": title, "report": report}) + "\n")


def test_benign_corpus_untouched_on_defaults(start_swarmwall, env):
    node = start_proxy(start_swarmwall)
    report = run_corpus(node, env)
    print_report("default strictness (corroborated)", report)
    total = counters(node)
    for row in report:
        assert row["failed"] == 0, f"{row['protocol']} ({row['implementation']}): {row['first_failures']}"
    assert total["blocks"] == 0, report
    assert total["strikes"] == 0, report
    implementations = {row["implementation"] for row in report}
    assert len(implementations) >= 6, implementations
    if SCALE >= 1:
        assert total["flows"] >= 5000, f"only {total['flows']} proxied flows"


def test_benign_corpus_aggressive_rate(start_swarmwall, env):
    """Measurement, not a limit: how many benign flows `aggressive` blocks, per protocol."""
    node = start_proxy(start_swarmwall, "aggressive")
    report = run_corpus(node, env)
    print_report("aggressive strictness", report)
    # Whatever aggressive blocks, the proxy stays up and counts every block it made.
    assert counters(node)["blocks"] == sum(row["blocks"] for row in report)
