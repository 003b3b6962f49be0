"""Redis hardening (issue 18 finding 2): a real redis-server on loopback.

- a `redis://` URL without a password is refused by `serve` and `check-config` unless
  `[store] danger_allow_unauthenticated_redis = true`, and the password never reaches a log;
- (more below: forged values, TLS.)

Skips cleanly when redis-server is missing.
"""
import subprocess

import pytest

from _fleet import Redis, free_port, run_cli, serve_available, write_config
from conftest import swarmwall_bin

pytestmark = pytest.mark.skipif(not serve_available(),
                                reason="`swarmwall serve --store` is not implemented in this build")


@pytest.fixture
def redis():
    server = Redis()
    yield server
    server.stop()


def serve_exit(tmp_path, *args, timeout=20):
    """Run `serve` that must exit by itself; return (returncode, output)."""
    out = subprocess.run(
        [swarmwall_bin(), "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data"), "--audit-log", str(tmp_path / "audit.jsonl"),
         *args], capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_serve_refuses_a_redis_url_without_password(tmp_path, scheme):
    config = write_config(str(tmp_path / "swarmwall.toml"))
    url = f"{scheme}://127.0.0.1:{free_port()}/"
    code, output = serve_exit(tmp_path, "--config", config, "--store", url)
    assert code != 0, output
    assert "danger_allow_unauthenticated_redis" in output, output
    # Same answer from the configuration file.
    config = write_config(str(tmp_path / "swarmwall.toml"), extra=f'\n[store]\nurl = "{url}"\n')
    code, output = serve_exit(tmp_path, "--config", config)
    assert code != 0 and "danger_allow_unauthenticated_redis" in output, output
    check = run_cli("check-config", config)
    assert check.returncode != 0, check.stdout + check.stderr
    assert "danger_allow_unauthenticated_redis" in check.stderr, check.stderr
    assert "store.url" in check.stderr, check.stderr


def test_danger_flag_allows_an_open_redis(tmp_path, start_swarmwall):
    # A password-less redis-server of its own (the fixture's has a password).
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        config = write_config(str(tmp_path / "swarmwall.toml"),
                              extra="\n[store]\ndanger_allow_unauthenticated_redis = true\n")
        assert run_cli("check-config", config).returncode == 0
        node = start_swarmwall("--config", config, "--store", f"redis://127.0.0.1:{port}/",
                               "--data-dir", str(tmp_path / "data"))
        assert node.proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_password_in_url_works_and_never_reaches_the_log(tmp_path, redis, start_swarmwall):
    config = write_config(str(tmp_path / "swarmwall.toml"))
    assert run_cli("check-config", config).returncode == 0
    node = start_swarmwall("--config", config, "--store", redis.url,
                           "--data-dir", str(tmp_path / "data"), "--log-format", "json")
    # The node connected (state store reachable) and said so without the password.
    from conftest import wait_until
    assert wait_until(lambda: "state store" in node.output(), timeout=10), node.output()
    node.stop()
    assert redis.password not in node.output(), "Redis password in the log"
    # A wrong password is an error that does not echo it either.
    wrong = redis.url.replace(redis.password, "wrong-" + redis.password[:6])
    node = start_swarmwall("--config", config, "--store", wrong,
                           "--data-dir", str(tmp_path / "data2"))
    node.stop()
    assert "wrong-" not in node.output(), node.output()


# ---- forged values (MAC from the fleet secret) ----------------------------------------------

def _node(tmp_path, redis, start_swarmwall, security="", totp_users=()):
    from _fleet import add_user, write_secret_key
    from _security import enrol_totp
    key = write_secret_key(str(tmp_path / "fleet-secret.key"))
    config = write_config(str(tmp_path / "swarmwall.toml"), security=security,
                          server='proxy_protocol_trusted = ["127.0.0.0/8"]\n',
                          secret_key_file=key)
    accounts = str(tmp_path / "accounts.toml")
    add_user(accounts, config, "alice", "alice-secret-pw")
    add_user(accounts, config, "bob", "bob-secret-pw")
    secrets = {name: enrol_totp(accounts, config, name) for name in totp_users}
    node = start_swarmwall("--config", config, "--accounts", accounts, "--store", redis.url,
                           "--data-dir", str(tmp_path / "data"),
                           "--audit-log", str(tmp_path / "audit.jsonl"))
    return node, secrets


def _forged(node, namespace, kind):
    from _metrics import scrape, value
    return value(scrape(node.admin_address), "swarmwall_store_forged_values_total",
                 namespace=namespace, kind=kind) or 0


def _keys(redis, pattern):
    keys = redis.command("KEYS", pattern)
    return [k.decode() for k in keys]


def test_forged_trusted_window_is_rejected(tmp_path, redis, start_swarmwall):
    from _fleet import login_status
    from _security import totp
    from conftest import wait_until
    node, secrets = _node(tmp_path, redis, start_swarmwall,
                          security='totp_trusted_window = "2s"\n', totp_users=("bob",))
    client = "192.0.2.20"
    assert login_status(node, "bob", "bob-secret-pw", source=client) != 0
    assert login_status(node, "bob", "bob-secret-pw" + totp(secrets["bob"]), source=client) == 0
    [window] = _keys(redis, "swarmwall:trusted_window:bob:*")
    assert b"." in redis.command("GET", window), "trusted window is not signed"
    # Inside the window the password alone is enough; after it, TOTP is asked for again.
    assert login_status(node, "bob", "bob-secret-pw", source=client) == 0
    assert wait_until(lambda: redis.command("EXISTS", window) == 0, timeout=10)
    assert login_status(node, "bob", "bob-secret-pw", source=client) != 0
    # The review's attack: write the window by hand (a deadline a day ahead), then log in with
    # the password alone. Refused, and counted.
    import time
    far = str(int((time.time() + 86400) * 1000))
    assert redis.command("SET", window, far) == "OK"
    assert login_status(node, "bob", "bob-secret-pw", source=client) != 0
    assert _forged(node, "trusted_window", "edited") >= 1
    # A deadline edited inside a once-valid signed value fails the same way.
    assert login_status(node, "bob", "bob-secret-pw" + totp(secrets["bob"], time.time() + 30),
                        source=client) == 0
    signed = redis.command("GET", window).decode()
    deadline, mac = signed.split(".")
    assert redis.command("SET", window, f"{far}.{mac}") == "OK"
    time.sleep(2.2)  # the real window is over; only the edited deadline would still hold
    assert login_status(node, "bob", "bob-secret-pw", source=client) != 0
    assert _forged(node, "trusted_window", "edited") >= 2
    node.stop()
    assert redis.password not in node.output()


def test_lockout_deleted_by_hand_stays_on_the_node(tmp_path, redis, start_swarmwall):
    from _fleet import login_status
    node, _ = _node(tmp_path, redis, start_swarmwall)
    attacker = "198.51.100.80"
    for attempt in range(5):
        assert login_status(node, "alice", f"guess-{attempt}", source=attacker) not in (0, None)
    locks = _keys(redis, "swarmwall:lockout_*")
    assert len(locks) == 2, locks
    assert redis.command("DEL", *locks) == 2
    # Lifted by hand in Redis: the node that set it still refuses (and writes it back).
    assert login_status(node, "alice", "alice-secret-pw", source="198.51.100.81") != 0
    assert _forged(node, "lockout_account", "deleted") >= 1
    assert redis.command("EXISTS", "swarmwall:lockout_account:alice") == 1
    # Edited to a past deadline: still locked.
    assert redis.command("SET", "swarmwall:lockout_account:alice", "1") == "OK"
    assert login_status(node, "alice", "alice-secret-pw", source="198.51.100.82") != 0
    assert _forged(node, "lockout_account", "edited") >= 1
    # bob is untouched.
    assert login_status(node, "bob", "bob-secret-pw", source="198.51.100.83") == 0
