"""Account security end to end: the real `swarmwall serve` on loopback, accounts made with the
real `swarmwall user` CLI, curl and a PROXY-protocol-speaking SOCKS5 client.

Client addresses other than 127.0.0.1 come from PROXY v1 headers (the config trusts
127.0.0.1 as a load balancer), which is how the GeoIP and impossible-travel cases use
addresses from the MaxMind test database.

Skipped as a whole only while `swarmwall serve` is the stub (detected by its error).
"""
import os
import time

import pytest

from conftest import wait_until
from _security import (
    BOXFORD, CHANGCHUN, CITY_DB, LINKOPING, LONDON, Target, add_user, audit_events,
    curl_via, enrol_totp, run_cli, socks5_login, totp, write_config,
)


@pytest.fixture
def target():
    server = Target()
    yield server
    server.close()


def _serve_is_stub():
    """The pre-integration `serve` takes no options (its --help has no --listen)."""
    out = run_cli("serve", "--help", timeout=30)
    return "--listen" not in out.stdout


@pytest.fixture
def setup(tmp_path, start_swarmwall):
    """Returns start(security_toml) -> (node, paths) with two accounts (alice, bob)."""

    if _serve_is_stub():
        pytest.skip("`swarmwall serve` is not implemented in this build")

    def start(security="", users=(("alice", "alice-secret-pw"), ("bob", "bob-secret-pw"))):
        config = write_config(str(tmp_path / "config.toml"), security)
        accounts = str(tmp_path / "accounts.toml")
        for name, password in users:
            add_user(accounts, config, name, password)
        audit = str(tmp_path / "audit.jsonl")
        try:
            node = start_swarmwall(
                "--config", config, "--accounts", accounts, "--audit-log", audit,
                "--allow-destination", "127.0.0.1/32", "--data-dir", str(tmp_path / "data"),
                cwd=str(tmp_path),
            )
        except RuntimeError as error:
            # The pre-integration stub either says so or takes no arguments at all.
            if "not implemented" in str(error) or "unexpected argument '--listen'" in str(error):
                pytest.skip("`swarmwall serve` is not implemented in this build")
            raise
        return node, {"config": config, "accounts": accounts, "audit": audit, "dir": tmp_path}

    return start


def test_right_and_wrong_password_with_curl(setup, target):
    node, paths = setup()
    code, body = curl_via(node, "alice", "alice-secret-pw", target.url)
    assert code == 0 and body == Target.BODY
    wrong_password, _ = curl_via(node, "alice", "nope", target.url)
    wrong_user, _ = curl_via(node, "mallory", "alice-secret-pw", target.url)
    assert wrong_password != 0
    assert wrong_user == wrong_password  # the same answer for both
    failures = audit_events(paths["audit"], "auth_failure")
    assert len(failures) >= 2
    # The unknown name is not written to the log.
    assert all(e["account"] in ("alice", None) for e in failures)


def test_totp_window_and_replay(setup, target):
    node, paths = setup()
    secret = enrol_totp(paths["accounts"], paths["config"], "bob")
    # The running proxy picks the new secret up (watcher): the password alone stops working.
    assert wait_until(lambda: not socks5_login(node, "bob", "bob-secret-pw", source="192.0.2.50"), 10)
    code = totp(secret)
    # Password + code from 192.0.2.10 opens a window there.
    assert socks5_login(node, "bob", "bob-secret-pw" + code, source="192.0.2.10")
    assert socks5_login(node, "bob", "bob-secret-pw", source="192.0.2.10")
    # The same code from another address is a replay; the password alone is refused there.
    assert not socks5_login(node, "bob", "bob-secret-pw" + code, source="192.0.2.11")
    assert not socks5_login(node, "bob", "bob-secret-pw", source="192.0.2.11")
    # curl from 127.0.0.1 (no PROXY header) with the next step's code works.
    assert wait_until(lambda: totp(secret) != code, 35, 0.5)
    rc, body = curl_via(node, "bob", "bob-secret-pw" + totp(secret), target.url)
    assert rc == 0 and body == Target.BODY
    reasons = [e["details"]["reason"] for e in audit_events(paths["audit"], "auth_failure")]
    assert "totp_replay" in reasons and "totp_required" in reasons


def test_lockout_after_five_failures(setup):
    node, paths = setup()
    attacker = "198.51.100.66"
    for _ in range(5):
        assert not socks5_login(node, "alice", "guess", source=attacker)
    # The account is now locked for everyone; the client address too.
    assert not socks5_login(node, "alice", "alice-secret-pw", source="198.51.100.67")
    assert not socks5_login(node, "bob", "bob-secret-pw", source=attacker)
    assert socks5_login(node, "bob", "bob-secret-pw", source="198.51.100.68")
    lockouts = audit_events(paths["audit"], "lockout")
    assert {e["details"]["scope"] for e in lockouts} == {"account", "client_address"}


def test_geo_denial_via_proxy_protocol(setup):
    node, paths = setup(f'geoip_database = "{CITY_DB}"\ndeny_countries = ["CN"]\n')
    assert socks5_login(node, "alice", "alice-secret-pw", source=LONDON)
    assert not socks5_login(node, "bob", "bob-secret-pw", source=CHANGCHUN)
    assert socks5_login(node, "bob", "bob-secret-pw", source=LINKOPING)
    denied = audit_events(paths["audit"], "geo_denied")
    assert [e["details"]["country"] for e in denied] == ["CN"]
    # Pseudonymised: the raw address is nowhere in the log.
    with open(paths["audit"]) as f:
        assert CHANGCHUN not in f.read()


def test_impossible_travel_alert_then_deny(setup, tmp_path):
    node, paths = setup(f'geoip_database = "{CITY_DB}"\n')
    assert socks5_login(node, "alice", "alice-secret-pw", source=LONDON)
    assert socks5_login(node, "alice", "alice-secret-pw", source=BOXFORD)
    assert socks5_login(node, "alice", "alice-secret-pw", source=CHANGCHUN)  # alert only
    events = audit_events(paths["audit"], "impossible_travel")
    assert len(events) == 1 and events[0]["details"]["action"] == "alert"
    node.stop()

    os.remove(paths["accounts"])
    node, paths = setup(f'geoip_database = "{CITY_DB}"\nimpossible_travel = "deny"\n')
    assert socks5_login(node, "bob", "bob-secret-pw", source=LONDON)
    assert not socks5_login(node, "bob", "bob-secret-pw", source=CHANGCHUN)
    actions = [e["details"]["action"] for e in audit_events(paths["audit"], "impossible_travel")]
    assert "deny" in actions


def test_accounts_file_changes_apply_without_restart(setup, target):
    # Failed polls before the reload must not lock "carol" out.
    node, paths = setup("max_failures = 1000\n")
    add_user(paths["accounts"], paths["config"], "carol", "carol-secret-pw")
    assert wait_until(lambda: socks5_login(node, "carol", "carol-secret-pw"), 15, 0.2)
    out = run_cli("user", "disable", "carol", "--accounts", paths["accounts"])
    assert out.returncode == 0, out.stderr
    assert wait_until(lambda: not socks5_login(node, "carol", "carol-secret-pw"), 15, 0.2)
    # The proxy recorded both edits as admin actions (names only, no secrets).
    changes = [e["details"] for e in audit_events(paths["audit"], "admin_action")]
    assert any(c.get("added") == ["carol"] for c in changes), changes
    assert any(c.get("disabled") == ["carol"] for c in changes), changes
    # And through curl, the new account reaches a real target.
    add_user(paths["accounts"], paths["config"], "dave", "dave-secret-pw")
    assert wait_until(lambda: socks5_login(node, "dave", "dave-secret-pw"), 15, 0.2)
    code, body = curl_via(node, "dave", "dave-secret-pw", target.url)
    assert code == 0 and body == Target.BODY


def test_no_secrets_in_logs_and_audit_log_verifies(setup, target):
    node, paths = setup()
    secret = enrol_totp(paths["accounts"], paths["config"], "bob")
    assert wait_until(lambda: not socks5_login(node, "bob", "bob-secret-pw", source="203.0.113.4"), 10)
    assert socks5_login(node, "bob", "bob-secret-pw" + totp(secret), source="203.0.113.5")
    socks5_login(node, "alice", "wrong-password-xyz", source="203.0.113.6")
    socks5_login(node, "alice-secret-pw", "typed-into-the-name", source="203.0.113.7")
    curl_via(node, "alice", "alice-secret-pw", target.url)
    node.stop()
    output = node.output()
    with open(paths["audit"]) as f:
        audit_text = f.read()
    for secret_text in ("alice-secret-pw", "bob-secret-pw", "wrong-password-xyz",
                        "typed-into-the-name", secret, "203.0.113.4", "203.0.113.5", "203.0.113.6",
                        "203.0.113.7", "$argon2id$"):
        assert secret_text not in output, secret_text
        assert secret_text not in audit_text, secret_text
    # The key is the node's: in the data directory the node was started with.
    verify = run_cli("audit", "verify", paths["audit"], "--data-dir", str(paths["dir"] / "data"))
    assert verify.returncode == 0, verify.stderr
    # Tampering is found and the line named.
    lines = audit_text.splitlines()
    assert len(lines) >= 2
    assert '"seq":1,' in lines[0]
    lines[0] = lines[0].replace('"seq":1,', '"seq":9,', 1)
    tampered = str(paths["dir"] / "tampered.jsonl")
    with open(tampered, "w") as f:
        f.write("\n".join(lines) + "\n")
    verify = run_cli("audit", "verify", tampered, "--data-dir", str(paths["dir"] / "data"))
    assert verify.returncode == 1
    assert "line 1" in verify.stderr
    # The key file is in the data directory (never beside the log nor in the working
    # directory) and is private.
    key = paths["dir"] / "data" / "swarmwall-secret.key"
    assert not (paths["dir"] / "swarmwall-secret.key").exists()
    assert key.exists() and (key.stat().st_mode & 0o077) == 0
