"""Redis over TLS, Redis Sentinel failover and `[store] on_outage` (issues 18 and 19), with
real redis-server / redis-sentinel processes on loopback and certificates made by openssl at
test time.

- `rediss://` with `[store] redis_ca_file`: logins work through a TLS-only redis-server; a
  CA that did not sign the server's certificate fails (fail closed), as does `redis://`
  with a CA file (check-config);
- Sentinel: the primary is killed while logins run; the node follows the promoted replica;
- `on_outage = "local"`: with Redis down, password logins go on, lockouts are kept on the node
  and merged into Redis when it returns; strikes are buffered and logged as such.
"""
import threading
import time

import pytest

from _fleet import (Redis, Sink, add_user, login_status, run_cli, send_bittorrent,
                    serve_available, write_config, write_secret_key)
from _metrics import scrape, value
from _redis_ha import SentinelSet, TlsRedis, make_ca
from conftest import wait_until

pytestmark = pytest.mark.skipif(not serve_available(),
                                reason="`swarmwall serve --store` is not implemented in this build")

# Only the test's "balancer" address sends PROXY headers; plain clients come from 127.0.0.1.
TRUST_LOOPBACK = 'proxy_protocol_trusted = ["127.0.0.2/32"]\n'


def _start(tmp_path, start_swarmwall, store_toml, url=None, name="node"):
    key = write_secret_key(str(tmp_path / "fleet-secret.key"))
    config = write_config(str(tmp_path / f"{name}.toml"), server=TRUST_LOOPBACK,
                          secret_key_file=key, extra="\n[store]\n" + store_toml)
    accounts = str(tmp_path / "accounts.toml")
    add_user(accounts, config, "alice", "alice-secret-pw")
    add_user(accounts, config, "bob", "bob-secret-pw")
    args = ["--config", config, "--accounts", accounts, "--data-dir", str(tmp_path / name),
            "--audit-log", str(tmp_path / f"{name}-audit.jsonl"),
            "--allow-destination", "127.0.0.0/8"]
    if url:
        args += ["--store", url]
    return start_swarmwall(*args), config


def _metric(node, name, **labels):
    return value(scrape(node.admin_address), name, **labels) or 0


# ---- TLS ---------------------------------------------------------------------------------

def test_rediss_with_the_right_ca_works_and_a_wrong_ca_fails_closed(tmp_path, start_swarmwall):
    redis = TlsRedis()
    try:
        node, config = _start(tmp_path, start_swarmwall,
                              f'redis_ca_file = "{redis.ca_cert}"\n', url=redis.url)
        assert run_cli("check-config", config).returncode == 0
        assert login_status(node, "alice", "alice-secret-pw", source="192.0.2.30") == 0
        # State really went over TLS into that server: a failed login's counter is there.
        assert login_status(node, "bob", "wrong", source="192.0.2.31") != 0
        assert redis.command("EXISTS", "swarmwall:authfail_account:bob") == 1
        assert _metric(node, "swarmwall_store_up") == 1
        node.stop()
        assert redis.password not in node.output()

        # A CA that did not sign the server certificate: no connection, logins refused.
        other = tmp_path / "other"
        other.mkdir()
        wrong_ca, _ = make_ca(str(other), "not-the-fleet-ca")
        node, _ = _start(other, start_swarmwall, f'redis_ca_file = "{wrong_ca}"\n',
                         url=redis.url, name="wrong")
        status = login_status(node, "alice", "alice-secret-pw", source="192.0.2.32")
        assert status not in (0,), status
        assert _metric(node, "swarmwall_store_up") == 0
        assert wait_until(lambda: "certificate" in node.output().lower(), timeout=15), \
            node.output()[-2000:]
        node.stop()
        assert redis.password not in node.output()
    finally:
        redis.stop()


def test_ca_file_without_tls_url_is_refused(tmp_path):
    ca, _ = make_ca(str(tmp_path), "ca")
    config = write_config(str(tmp_path / "c.toml"), extra=(
        f'\n[store]\nurl = "redis://:pw@127.0.0.1:6379/"\nredis_ca_file = "{ca}"\n'))
    out = run_cli("check-config", config)
    assert out.returncode != 0 and "store.redis_ca_file" in out.stderr, out.stderr


# ---- Sentinel ------------------------------------------------------------------------------

class LoginLoop:
    """Logs alice in every 50 ms from its own thread; records (time, accepted)."""

    def __init__(self, node):
        self.node = node
        self.results = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + 120  # bounded whatever happens
        n = 0
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            n += 1
            try:
                status = login_status(self.node, "alice", "alice-secret-pw",
                                      source=f"192.0.2.{40 + n % 50}", timeout=5)
            except OSError:
                status = None
            self.results.append((time.monotonic(), status == 0))
            time.sleep(0.05)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(10)


@pytest.mark.parametrize("mode", ["fail_closed", "local"])
def test_sentinel_failover_while_logins_run(tmp_path, start_swarmwall, mode):
    # Two set-ups in one go: open sentinels (fail_closed), password-protected ones (local).
    auth = mode == "local"
    ha = SentinelSet(sentinel_auth=auth)
    try:
        sentinels = ", ".join(f'"{s}"' for s in ha.sentinels)
        store = (f'url = "redis://:{ha.password}@127.0.0.1:{ha.ports[0]}/"\n'
                 f"sentinels = [{sentinels}]\nsentinel_master = \"{ha.master}\"\n"
                 f'on_outage = "{mode}"\ntimeout = "200ms"\n'
                 f"sentinel_auth = {'true' if auth else 'false'}\n")
        node, config = _start(tmp_path, start_swarmwall, store)
        assert run_cli("check-config", config).returncode == 0
        assert login_status(node, "alice", "alice-secret-pw", source="192.0.2.1") == 0
        loop = LoginLoop(node)
        time.sleep(1.0)
        old = ha.kill_primary()
        killed = time.monotonic()
        assert wait_until(lambda: ha.primary_port() not in (None, old), timeout=30), \
            "sentinels did not fail over"
        promoted = ha.primary_port()
        failed_over = time.monotonic()
        # Logins succeed again through the promoted replica ...
        assert wait_until(lambda: any(ok for t, ok in loop.results if t > failed_over),
                          timeout=15), node.output()[-3000:]
        back = min(t for t, ok in loop.results if ok and t > failed_over)
        time.sleep(2.0)
        loop.stop()
        after = [ok for t, ok in loop.results if t > back]
        assert after and all(after), (loop.results[-20:], node.output()[-3000:])
        refused = [t for t, ok in loop.results if not ok]
        gap = (max(refused) - killed) if refused else 0.0
        print(f"\nsentinel failover ({mode}): primary killed, sentinel promoted after "
              f"{failed_over - killed:.2f} s; logins refused: {len(refused)} of "
              f"{len(loop.results)}; last refusal {gap:.2f} s after the kill")
        if mode == "local":
            # Local mode: no login was refused across the failover.
            assert not refused, loop.results
        # ... and state lands there: a lockout written now is on the new primary, signed.
        for attempt in range(5):
            login_status(node, "bob", f"guess-{attempt}", source="198.51.100.90")
        assert wait_until(lambda: ha.command(promoted, "EXISTS",
                                             "swarmwall:lockout_account:bob") == 1, timeout=10)
        assert b"." in ha.command(promoted, "GET", "swarmwall:lockout_account:bob")
        assert "Redis primary" in node.output()
        node.stop()
        assert ha.password not in node.output()
    finally:
        ha.stop()


# ---- on_outage = "local" -------------------------------------------------------------------

def test_local_outage_mode_keeps_logins_and_merges_back(tmp_path, start_swarmwall):
    redis = Redis()
    sink = Sink()
    try:
        node, _ = _start(tmp_path, start_swarmwall, 'on_outage = "local"\n', url=redis.url)
        assert login_status(node, "alice", "alice-secret-pw", source="192.0.2.60") == 0
        redis.stop()
        # Password logins go on while Redis is down.
        assert login_status(node, "alice", "alice-secret-pw", source="192.0.2.61") == 0
        # Lockouts still hold, on this node.
        for attempt in range(5):
            assert login_status(node, "bob", f"guess-{attempt}", source="198.51.100.70") != 0
        assert login_status(node, "bob", "bob-secret-pw", source="198.51.100.71") != 0
        assert _metric(node, "swarmwall_store_local_operations_total") > 0
        # Strikes are buffered, and the log says so (not "recording a strike failed").
        assert send_bittorrent(node, "alice", "alice-secret-pw", sink.port) is True
        assert wait_until(lambda: "strikes are buffered" in node.output(), timeout=10), \
            node.output()[-2000:]
        redis.start()
        # Back: the lockout is merged into Redis (signed), the buffered strike written.
        assert wait_until(lambda: redis.command("EXISTS", "swarmwall:lockout_account:bob") == 1,
                          timeout=20), node.output()[-3000:]
        assert b"." in redis.command("GET", "swarmwall:lockout_account:bob")
        assert wait_until(lambda: "written 1 buffered strikes" in node.output(), timeout=20), \
            node.output()[-3000:]
        assert "merged" in node.output()
        assert "recording a strike failed" not in node.output()
        assert login_status(node, "bob", "bob-secret-pw", source="198.51.100.72") != 0
        node.stop()
        assert redis.password not in node.output()
    finally:
        sink.close()
        redis.stop()


def test_fail_closed_is_the_default(tmp_path, start_swarmwall):
    redis = Redis()
    try:
        node, _ = _start(tmp_path, start_swarmwall, "", url=redis.url)
        assert login_status(node, "alice", "alice-secret-pw", source="192.0.2.70") == 0
        redis.stop()
        status = login_status(node, "alice", "alice-secret-pw", source="192.0.2.71")
        assert status != 0, status
    finally:
        redis.stop()
