#!/usr/bin/env python3
"""Login rate through RADIUS vs local accounts (`scripts/bench-accounts.sh` runs this after the
load benchmark when FreeRADIUS is installed).

Two `swarmwall serve` nodes on loopback: one with a local accounts file (argon2id at the
default cost, m=19456 KiB t=2), one with `accounts_backend = "radius"` against a real
FreeRADIUS (`freeradius -X`, users file with a Cleartext-Password) on loopback. Each gets
LOGINS successful RFC 1929 logins from CONCURRENCY client threads; prints logins/s and the
median and p90 login time as JSON lines.
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("SWARMWALL_BIN", "target/release/swarmwall")
LOGINS = int(os.environ.get("LOGINS", "400"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "8"))
SECRET = "bench-radius-secret"

RADIUSD = """prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {d}
raddbdir = {d}
radacctdir = {d}
name = freeradius
confdir = {d}
modconfdir = {d}
run_dir = {d}
db_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 65536
hostname_lookups = no
log {{
    destination = files
    file = {d}/radius.log
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 4
    max_servers = 8
    min_spare_servers = 2
    max_spare_servers = 8
    max_requests_per_server = 0
}}
client local {{
    ipaddr = 127.0.0.1
    secret = {secret}
}}
modules {{
    pap {{
    }}
    files {{
        filename = {d}/users
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
    }}
    authorize {{
        files
        pap
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
    }}
    post-auth {{
    }}
}}
"""


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def login(port, user, password):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"\x05\x01\x02")
        if s.recv(2) != b"\x05\x02":
            return False
        u, p = user.encode(), password.encode()
        s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        return s.recv(2) == b"\x01\x00"


def start(args, tmp, name):
    proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--store", "memory",
                             "--data-dir", os.path.join(tmp, name),
                             "--audit-log", os.path.join(tmp, name + "-audit.jsonl"),
                             "--admin-listen", "127.0.0.1:0", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "RUST_LOG": "warn"})
    for line in proc.stderr:
        if "listening on" in line:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, int(line.rsplit(":", 1)[1])
    raise RuntimeError(name + " did not start")


def measure(port, user, password):
    assert login(port, user, password), "warm-up login refused"
    times, lock, count = [], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                if count[0] >= LOGINS:
                    return
                count[0] += 1
            t = time.monotonic()
            try:
                ok = login(port, user, password)
            except OSError:
                ok = False
            with lock:
                times.append(time.monotonic() - t if ok else float("nan"))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    good = sorted(x for x in times if x == x)
    if not good:
        return {"logins": LOGINS, "refused": LOGINS, "concurrency": CONCURRENCY}
    return {"logins": LOGINS, "refused": LOGINS - len(good), "concurrency": CONCURRENCY,
            "logins_per_s": round(len(good) / elapsed, 1),
            "median_ms": round(statistics.median(good) * 1000, 1),
            "p90_ms": round(good[int(len(good) * 0.9) - 1] * 1000, 1)}


def main():
    tmp = tempfile.mkdtemp(prefix="bench-login-")
    procs = []
    try:
        config = os.path.join(tmp, "local.toml")
        with open(config, "w") as f:
            f.write("[security]\nmax_failures = 100000000\n")
        accounts = os.path.join(tmp, "accounts.toml")
        subprocess.run([BIN, "user", "add", "bench", "--accounts", accounts, "--config", config,
                        "--password-stdin"], input="bench-password\n", text=True, check=True,
                       capture_output=True)
        proc, port = start(["--config", config, "--accounts", accounts], tmp, "local")
        procs.append(proc)
        row = measure(port, "bench", "bench-password")
        row["backend"] = "file (argon2id m=19456 t=2)"
        print(json.dumps(row), flush=True)
        if shutil.which("freeradius") is None:
            print(json.dumps({"backend": "radius", "skipped": "freeradius not installed"}))
            return
        rdir = os.path.join(tmp, "radius")
        os.mkdir(rdir)
        shutil.copy("/etc/freeradius/3.0/dictionary", rdir)
        rport = free_udp_port()
        with open(os.path.join(rdir, "radiusd.conf"), "w") as f:
            f.write(RADIUSD.format(d=rdir, secret=SECRET, port=rport))
        with open(os.path.join(rdir, "users"), "w") as f:
            f.write('bench Cleartext-Password := "bench-password"\n')
        radius = subprocess.Popen(["freeradius", "-f", "-d", rdir],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(radius)
        time.sleep(1.5)
        secret_file = os.path.join(tmp, "radius.secret")
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(SECRET + "\n")
        rconfig = os.path.join(tmp, "radius.toml")
        with open(rconfig, "w") as f:
            f.write('[security]\naccounts_backend = "radius"\nmax_failures = 100000000\n'
                    f'[security.radius]\nservers = ["127.0.0.1:{rport}"]\n'
                    f'secret_file = "{secret_file}"\n')
        proc, port = start(["--config", rconfig], tmp, "radius")
        procs.append(proc)
        row = measure(port, "bench", "bench-password")
        row["backend"] = "radius (FreeRADIUS PAP, loopback)"
        print(json.dumps(row), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
