#!/usr/bin/env python3
"""Authenticated new-connection benchmark (driven by scripts/bench-relay.sh, `ONLY=auth` runs
just this): new SOCKS5 connections per second with and without RFC 1929 login, side by side.

Each target is `NAME=HOST:PORT:PID[:USER:PASSWORD]`. The Rust load generator
(`relay_load`, pinned to the client core) runs `--concurrency` loops of connect → greeting →
login (when a user is given) → CONNECT → 1-byte echo → close for `--seconds`. Runs are
interleaved round-robin over the targets (`--runs` rounds, median reported), and for each run
the proxy's CPU time (utime+stime from /proc) is divided by the connections it served. Peak
RSS is the proxy's VmHWM after all runs.
"""
import argparse
import json
import os
import statistics
import subprocess


def pin(core):
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_load(load_bin, core, target, seconds, concurrency):
    command = ["taskset", "-c", str(core), load_bin, "--proxy", "%s:%s" % (target["host"], target["port"]),
               "--seconds", str(seconds), "--concurrency", str(concurrency)]
    if target.get("user"):
        command += ["--user", target["user"], "--password", target["password"]]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError("relay_load failed: " + out.stderr)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", action="append", default=[])
    parser.add_argument("--load-bin", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--core", type=int, default=1)
    args = parser.parse_args()
    pin(args.core)
    targets = []
    for spec in args.target:
        name, rest = spec.split("=", 1)
        parts = rest.split(":")
        target = {"name": name, "host": parts[0], "port": int(parts[1]), "pid": int(parts[2])}
        if len(parts) >= 5:
            target["user"], target["password"] = parts[3], ":".join(parts[4:])
        targets.append(target)
    results = {t["name"]: {"cps": [], "cpu_ms": [], "errors": 0} for t in targets}
    for _ in range(args.runs):
        for target in targets:
            cpu0 = cpu_seconds(target["pid"])
            load = run_load(args.load_bin, args.core, target, args.seconds, args.concurrency)
            cpu1 = cpu_seconds(target["pid"])
            result = results[target["name"]]
            result["cps"].append(load["per_second"])
            result["errors"] += load["errors"]
            if load["connections"]:
                result["cpu_ms"].append(1000 * (cpu1 - cpu0) / load["connections"])
    print("%-26s %16s %22s %14s %8s" % ("proxy", "new conn/s", "proxy CPU/conn (ms)",
                                         "peak RSS MiB", "errors"))
    summary = {}
    for target in targets:
        result = results[target["name"]]
        cps = statistics.median(result["cps"])
        cpu = statistics.median(result["cpu_ms"]) if result["cpu_ms"] else float("nan")
        rss = peak_rss_mib(target["pid"])
        summary[target["name"]] = {"cps": cps, "cpu_ms": cpu, "peak_rss_mib": rss,
                                   "errors": result["errors"], "runs": result["cps"]}
        print("%-26s %16.0f %22.3f %14.1f %8d" % (target["name"], cps, cpu, rss, result["errors"]))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
