#!/usr/bin/env python3
"""Load time and memory of N accounts (`scripts/bench-accounts.sh` runs this).

For each size: write an accounts file of N accounts (one fixed, valid argon2id PHC string for
all: generating 1 M real hashes would take hours and the loader does not care), start
`swarmwall serve --accounts FILE` on loopback and time it from exec to the `listening on` line;
read VmRSS (and VmHWM) from /proc once it listens. A run with one account gives the baseline;
memory per account = (RSS(N) - RSS(1)) / N. Then a reload with one changed account: time from
the file's replacement until a login with the new password works, while a second client logs
in continuously with an unchanged account (its slowest login during the reload is reported).
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("SWARMWALL_BIN", "target/release/swarmwall")
SIZES = [int(s) for s in os.environ.get("SIZES", "10000 100000 1000000").split()]
# A valid argon2id PHC string with cheap parameters (m=64 KiB, t=1): a login costs little, so
# the reload probe measures the swap, not argon2.
PHC_FIXED = "$argon2id$v=19$m=64,t=1,p=1$c3dhcm13YWxsYmVuY2g$"


def phc_for(password):
    """A real argon2id hash of `password` with the cheap parameters (needs argon2-cffi or the
    swarmwall CLI); the CLI is used so no Python package is needed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.toml")
        config = os.path.join(tmp, "c.toml")
        with open(config, "w") as f:
            f.write("[security]\nargon2_memory_kib = 64\nargon2_iterations = 1\n")
        subprocess.run([BIN, "user", "add", "x", "--accounts", path, "--config", config,
                        "--password-stdin"], input=password + "\n", text=True, check=True,
                       capture_output=True)
        for line in open(path):
            if line.startswith("password"):
                return line.split('"')[1]
    raise RuntimeError("no hash")


def write_accounts(path, n, extra):
    fixed = phc_for("bench-password")
    with open(path, "w") as f:
        for i in range(n):
            f.write(f'[[account]]\nname = "user{i:07d}"\npassword = "{fixed}"\n\n')
        for name, phc in extra:
            f.write(f'[[account]]\nname = "{name}"\npassword = "{phc}"\n\n')
    os.chmod(path, 0o600)


def socks_login(port, user, password, timeout=10.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"\x05\x01\x02")
        if s.recv(2) != b"\x05\x02":
            return False
        u, p = user.encode(), password.encode()
        s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
        reply = s.recv(2)
        return reply == b"\x01\x00"


def rss_kib(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def start(path, tmp):
    # Probing for the new password fails until the reload: no lockout, no delay here.
    config = os.path.join(tmp, "serve.toml")
    with open(config, "w") as f:
        f.write('[security]\nmax_failures = 100000000\nfailure_delay = "0s"\n'
                'failure_delay_max = "0s"\n')
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [BIN, "serve", "--config", config, "--accounts", path, "--listen", "127.0.0.1:0", "--store", "memory",
         "--data-dir", tmp, "--audit-log", os.path.join(tmp, "audit.jsonl"),
         "--admin-listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
    port = None
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        if "listening on" in line:
            port = int(line.rsplit(":", 1)[1])
            break
        if time.monotonic() > deadline:
            break
    elapsed = time.monotonic() - t0
    log = open(os.path.join(tmp, "serve.log"), "a")
    threading.Thread(target=lambda: [log.write(line) for line in proc.stderr],
                     daemon=True).start()
    if port is None:
        proc.kill()
        raise RuntimeError("server did not start")
    return proc, port, elapsed


def measure(n, tmp):
    path = os.path.join(tmp, f"accounts-{n}.toml")
    old_phc = phc_for("old-password")
    new_phc = phc_for("new-password")
    write_accounts(path, n, [("probe", old_phc), ("steady", phc_for("steady-password"))])
    size_mb = os.path.getsize(path) / 1e6
    proc, port, load_s = start(path, tmp)
    try:
        time.sleep(0.5)
        mem = rss_kib(proc.pid)
        assert socks_login(port, "probe", "old-password")
        # Reload: replace the file with one changed account while `steady` logs in.
        slowest = [0.0]
        refused = [0]
        stop = threading.Event()

        def steady():
            while not stop.is_set():
                t = time.monotonic()
                ok = socks_login(port, "steady", "steady-password")
                slowest[0] = max(slowest[0], time.monotonic() - t)
                if not ok:
                    refused[0] += 1

        thread = threading.Thread(target=steady)
        thread.start()
        time.sleep(0.3)
        with open(path) as f:
            text = f.read().replace(old_phc, new_phc)
        tmp_path = path + ".new"
        with open(tmp_path, "w") as f:
            f.write(text)
        os.chmod(tmp_path, 0o600)
        t0 = time.monotonic()
        os.rename(tmp_path, path)
        reload_s = None
        while time.monotonic() - t0 < 120:
            if socks_login(port, "probe", "new-password"):
                reload_s = time.monotonic() - t0
                break
            time.sleep(0.05)
        stop.set()
        thread.join()
        return {"accounts": n, "file_mb": round(size_mb, 1), "start_s": round(load_s, 3),
                "rss_kib": mem["VmRSS"], "peak_rss_kib": mem["VmHWM"],
                "reload_visible_s": None if reload_s is None else round(reload_s, 2),
                "slowest_login_during_reload_s": round(slowest[0], 3),
                "refused_logins_during_reload": refused[0]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        if os.environ.get("KEEP_LOG"):
            tmp = os.environ["KEEP_LOG"]
        base = measure(1, tmp)
        print(json.dumps(base), flush=True)
        for n in SIZES:
            row = measure(n, tmp)
            row["bytes_per_account"] = round((row["rss_kib"] - base["rss_kib"]) * 1024 / n)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
