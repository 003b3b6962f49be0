"""Shared fixtures for the end-to-end suites: start the real swarmwall binary on loopback.

Run with /usr/bin/python3 -m pytest tests/e2e (Debian's python3 has python3-libtorrent).
SWARMWALL_BIN points at the binary (scripts/test.sh sets it to target/release/swarmwall).
"""
import os
import re
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTENING = re.compile(r"listening on (\S+)")
ADMIN = re.compile(r"admin interface on (\S+)")
# CLI commands audit into the default data directory's log: never the machine's own.
os.environ.setdefault("SWARMWALL_DATA_DIR", tempfile.mkdtemp(prefix="sw-e2e-data-"))


def swarmwall_bin():
    return os.environ.get("SWARMWALL_BIN", os.path.join(ROOT, "target", "release", "swarmwall"))


class Swarmwall:
    """A running `swarmwall serve`; stderr is collected in `self.stderr_lines`."""

    def __init__(self, args, env=None, timeout=20.0, cwd=None, prefix=()):
        """`prefix` runs the binary under another command (e.g. `ip netns exec NS`, which
        execs it, so the process is still swarmwall itself)."""
        args = list(args)
        if "--admin-listen" not in args:
            # Never the default 127.0.0.1:9090: tests run several nodes side by side.
            args += ["--admin-listen", "127.0.0.1:0"]
        if "--data-dir" not in args and "--store" not in args:
            args += ["--data-dir", tempfile.mkdtemp(prefix="sw-data-")]
        if "--audit-log" not in args:
            args += ["--audit-log", os.path.join(tempfile.mkdtemp(prefix="sw-audit-"), "audit.jsonl")]
        self.args = list(prefix) + [swarmwall_bin(), "serve", "--listen", "127.0.0.1:0"] + args
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})}, cwd=cwd,
        )
        self.stderr_lines = []
        self.stdout_lines = []
        self.address = None
        self.admin_address = None
        ready = threading.Event()

        def pump(stream, sink, watch):
            for line in stream:
                sink.append(line)
                if watch:
                    a = ADMIN.search(line)
                    if a:
                        self.admin_address = a.group(1)
                if watch and self.address is None:
                    m = LISTENING.search(line)
                    if m:
                        self.address = m.group(1)
                        ready.set()
            ready.set()

        threading.Thread(target=pump, args=(self.proc.stderr, self.stderr_lines, True), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stdout, self.stdout_lines, False), daemon=True).start()
        ready.wait(timeout)
        if self.address is None:
            self.stop()
            raise RuntimeError("swarmwall did not start: " + "".join(self.stderr_lines)[-2000:])
        host, _, port = self.address.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self):
        return "".join(self.stderr_lines) + "".join(self.stdout_lines)


@pytest.fixture
def start_swarmwall():
    started = []

    def start(*args, **kwargs):
        node = Swarmwall(args, **kwargs)
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


def wait_until(predicate, timeout=10.0, interval=0.05):
    """Poll `predicate` until it is truthy or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
