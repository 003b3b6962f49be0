"""/metrics latency while 400 idle clients exhaust a 200-descriptor limit (docs/accounts.md, "Files,
keys and modes"). Loopback only; needs prlimit (util-linux).
usage: python3 scripts/measure-fd-exhaustion.py target/debug/swarmwall"""
import os, re, socket, statistics, subprocess, sys, tempfile, time, urllib.request
binary = sys.argv[1]
d = tempfile.mkdtemp(prefix="hw-measure-")
cfg = os.path.join(d, "c.toml")
open(cfg, "w").write('[server]\nhandshake_timeout = "60s"\nmax_sessions = 100000\n')
p = subprocess.Popen(["prlimit", "--nofile=200:200", binary, "serve", "--config", cfg, "--listen",
                      "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", os.path.join(d, "data")],
                     stderr=subprocess.PIPE, text=True)
port = admin = None
try:
    deadline = time.monotonic() + 20
    while port is None or admin is None:
        line = p.stderr.readline()
        if (not line and p.poll() is not None) or time.monotonic() > deadline:
            sys.exit("swarmwall did not start")
        m = re.search(r"listening on \S+:(\d+)", line); port = port or (m and int(m.group(1)))
        m = re.search(r"admin interface on (\S+)", line); admin = admin or (m and m.group(1))
    clients = []
    for _ in range(400):
        try:
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break  # the listen backlog is full: the proxy stopped accepting
    time.sleep(0.5)
    times, failures, body = [], 0, ""
    for _ in range(20):
        t = time.monotonic()
        try:
            body = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
            times.append((time.monotonic() - t) * 1000)
        except Exception as e:
            failures += 1
    refused = re.search(r'sessions_refused_total\{reason="fd_reserve"\} (\d+)', body)
    print(f"clients {len(clients)}; scrapes ok {len(times)}/20, failed {failures}; median {statistics.median(times) if times else float('nan'):.1f} ms, "
          f"max {max(times) if times else float('nan'):.1f} ms; fd_reserve refusals {refused.group(1) if refused else 'n/a'}")
    for c in clients: c.close()
finally:
    p.terminate()
    p.wait(10)
