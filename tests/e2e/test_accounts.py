"""Accounts at operator scale, end to end with real clients:

- the provisioning API in file mode (create with a given or generated password, get without
  secrets, disable, password change, delete, TOTP enrolment, country lists, paging, bulk import
  as JSON lines and CSV, 4xx naming the field), checked with real `curl --socks5-hostname`
  logins and the accounts file on disk (0600, hashes only);
- a two-node fleet on a real redis-server with `--accounts-backend store`: provisioning on node
  A, logins on node B (created -> works; disabled -> refused within a second; deleted ->
  refused; password changed -> the old one refused), and `swarmwall user import FILE --store`.
"""
import json
import os
import stat
import time

import pytest

from conftest import wait_until
from _accounts import api, curl_login, write_token
from _fleet import (Redis, Sink, add_user, login_status, run_cli, serve_available,
                    write_config, write_secret_key)

pytestmark = pytest.mark.skipif(not serve_available(),
                                reason="`swarmwall serve --store` is not implemented in this build")


@pytest.fixture
def sink():
    server = Sink()
    yield server
    server.close()


@pytest.fixture
def file_node(tmp_path, start_swarmwall):
    config = write_config(str(tmp_path / "swarmwall.toml"))
    accounts = str(tmp_path / "accounts.toml")
    add_user(accounts, config, "seed", "seed-password-1")
    token = write_token(str(tmp_path))
    node = start_swarmwall("--config", config, "--accounts", accounts,
                           "--admin-token-file", token, "--data-dir", str(tmp_path / "data"),
                           "--allow-destination", "127.0.0.0/8")
    return node, accounts


def test_file_mode_provisioning_with_real_clients(file_node, sink):
    node, accounts = file_node
    # Created with a password: works at once, no reload.
    status, body, _ = api(node, "POST", "/api/v1/accounts",
                          {"name": "carol", "password": "carol-password-1"})
    assert status == 201, body
    assert "password" not in body
    assert curl_login(node, "carol", "carol-password-1", sink.port)
    assert not curl_login(node, "carol", "wrong-password", sink.port)
    # Created without one: generated, returned once, and it works.
    status, body, _ = api(node, "POST", "/api/v1/accounts", {"name": "dave"})
    assert status == 201, body
    generated = body["password"]
    assert len(generated) >= 16
    assert curl_login(node, "dave", generated, sink.port)
    # GET: no secrets, never the generated password again.
    status, body, text = api(node, "GET", "/api/v1/accounts/dave")
    assert status == 200
    assert body["name"] == "dave" and body["disabled"] is False
    assert generated not in text and "argon2" not in text and "password" not in body
    # The file on disk: mode 0600, hashes only.
    mode = stat.S_IMODE(os.stat(accounts).st_mode)
    assert mode == 0o600, oct(mode)
    on_disk = open(accounts).read()
    assert "carol-password-1" not in on_disk and generated not in on_disk
    assert on_disk.count("$argon2id$") == 3
    # Duplicate, unknown, bad bodies.
    assert api(node, "POST", "/api/v1/accounts", {"name": "carol", "password": "x"})[0] == 409
    assert api(node, "GET", "/api/v1/accounts/nobody")[0] == 404
    assert api(node, "PATCH", "/api/v1/accounts/nobody", {"disabled": True})[0] == 404
    assert api(node, "DELETE", "/api/v1/accounts/nobody")[0] == 404
    status, _, text = api(node, "POST", "/api/v1/accounts", {"password": "x"})
    assert status in (400, 422) and "name" in text, text
    status, _, text = api(node, "POST", "/api/v1/accounts", {"name": "bad name", "password": "x"})
    assert status in (400, 422) and "name" in text, text
    status, _, text = api(node, "PATCH", "/api/v1/accounts/carol", {"disabled": "yes"})
    assert status in (400, 422) and "disabled" in text, text
    status, _, text = api(node, "PATCH", "/api/v1/accounts/carol", {"colour": "red"})
    assert status in (400, 422) and "colour" in text, text
    status, _, text = api(node, "PATCH", "/api/v1/accounts/carol",
                          {"allow_countries": ["GBR"]})
    assert status == 422 and "allow_countries" in text, text
    assert api(node, "POST", "/api/v1/accounts", raw="{not json")[0] in (400, 415, 422)
    # Disable -> refused; enable -> works again.
    assert api(node, "PATCH", "/api/v1/accounts/carol", {"disabled": True})[0] == 200
    assert not curl_login(node, "carol", "carol-password-1", sink.port)
    assert api(node, "PATCH", "/api/v1/accounts/carol", {"disabled": False})[0] == 200
    assert curl_login(node, "carol", "carol-password-1", sink.port)
    # Password change: the old one is refused, the new one works.
    assert api(node, "PATCH", "/api/v1/accounts/carol", {"password": "carol-password-2"})[0] == 200
    assert not curl_login(node, "carol", "carol-password-1", sink.port)
    assert curl_login(node, "carol", "carol-password-2", sink.port)
    # TOTP: the URI once; then the password alone is not enough.
    status, body, _ = api(node, "POST", "/api/v1/accounts/carol/totp")
    assert status == 200 and body["otpauth_uri"].startswith("otpauth://totp/")
    assert api(node, "GET", "/api/v1/accounts/carol")[1]["totp_enrolled"] is True
    assert api(node, "POST", "/api/v1/accounts/carol/totp")[0] == 422
    assert not curl_login(node, "carol", "carol-password-2", sink.port)
    assert api(node, "DELETE", "/api/v1/accounts/carol/totp")[0] == 204
    assert curl_login(node, "carol", "carol-password-2", sink.port)
    # Delete -> refused.
    assert api(node, "DELETE", "/api/v1/accounts/dave")[0] == 204
    assert not curl_login(node, "dave", generated, sink.port)
    assert api(node, "GET", "/api/v1/accounts/dave")[0] == 404
    # Audit: admin actions recorded, no secret in them.
    _, events, text = api(node, "GET", "/api/v1/events?limit=1000")
    actions = [e.get("details", e).get("action") for e in events["events"]
               if e.get("kind", e.get("event")) == "admin_action"]
    for action in ("account_create", "account_disable", "account_password", "totp_enrol",
                   "account_delete"):
        assert action in actions, (action, actions)
    for secret in ("carol-password-1", "carol-password-2", generated, "otpauth"):
        assert secret not in text


def test_bulk_import_and_paged_listing(file_node, sink):
    node, accounts = file_node
    lines = "\n".join(json.dumps({"name": f"bulk{i:03d}", "password": f"bulk-pw-{i}"})
                      for i in range(40))
    status, body, _ = api(node, "POST", "/api/v1/accounts/import", raw=lines)
    assert status == 200, body
    assert body == {"created": 40, "replaced": 0, "skipped": 0}
    csv = ("name,password,disabled,allow_countries\n"
           "csv1,csv-pw-1,false,\n"
           "csv2,\"pw,with,commas\",true,GB;IE\n")
    status, body, _ = api(node, "POST", "/api/v1/accounts/import", raw=csv,
                          content_type="text/csv")
    assert status == 200, body
    assert body["created"] == 2
    assert curl_login(node, "bulk007", "bulk-pw-7", sink.port)
    assert curl_login(node, "csv1", "csv-pw-1", sink.port)
    assert not curl_login(node, "csv2", "pw,with,commas", sink.port)  # imported disabled
    assert api(node, "GET", "/api/v1/accounts/csv2")[1]["allow_countries"] == ["GB", "IE"]
    # A bad record names its line and field; nothing of that import is applied.
    bad = json.dumps({"name": "ok1", "password": "p"}) + "\n" + json.dumps({"name": "x", "pasword": "p"})
    status, _, text = api(node, "POST", "/api/v1/accounts/import", raw=bad)
    assert status == 422 and "line 2" in text and "pasword" in text, text
    assert api(node, "GET", "/api/v1/accounts/ok1")[0] == 404
    # Paging and name filter.
    _, page, _ = api(node, "GET", "/api/v1/accounts?name=bulk&offset=10&limit=5")
    assert page["total"] == 40
    assert [a["name"] for a in page["accounts"]] == [f"bulk{i:03d}" for i in range(10, 15)]
    assert api(node, "GET", "/api/v1/accounts?limit=nope")[0] == 400
    # One file write for the import; all hashes, mode 0600.
    assert stat.S_IMODE(os.stat(accounts).st_mode) == 0o600
    assert open(accounts).read().count("$argon2id$") == 43


@pytest.fixture
def redis():
    server = Redis()
    yield server
    server.stop()


@pytest.fixture
def store_fleet(tmp_path, redis, start_swarmwall):
    key = write_secret_key(str(tmp_path / "fleet-secret.key"))
    config = write_config(str(tmp_path / "swarmwall.toml"), secret_key_file=key,
                          # Polling for a change must not lock the test client out.
                          security='accounts_backend = "store"\nmax_failures = 10000\n')
    token = write_token(str(tmp_path))

    def node(name):
        return start_swarmwall(
            "--config", config, "--store", redis.url, "--admin-token-file", token,
            "--data-dir", str(tmp_path / name), "--allow-destination", "127.0.0.0/8")

    return node("a"), node("b"), config


def seen_on(node, name, **fields):
    """True when `node`'s own copy of the accounts (the one its logins use) has `name` with
    `fields` (or, with fields=None, does not have it)."""
    status, body, _ = api(node, "GET", "/api/v1/accounts/" + name)
    if fields.get("gone"):
        return status == 404
    return status == 200 and all(body.get(k) == v for k, v in fields.items())


def within_a_second(predicate):
    """Seconds until `predicate` held (polled every 20 ms), or fail after one second."""
    t0 = time.monotonic()
    assert wait_until(predicate, timeout=1.0, interval=0.02)
    return time.monotonic() - t0


def test_fleet_provisioning_on_a_logins_on_b(store_fleet, sink):
    a, b, _ = store_fleet
    # No account yet: authentication is still required (the proxy is not open).
    assert login_status(b, "erin", "erin-password-1") not in (0, None)
    # Created on A -> in force on B within a second, without a reload.
    assert api(a, "POST", "/api/v1/accounts", {"name": "erin", "password": "erin-password-1"})[0] == 201
    created_s = within_a_second(lambda: seen_on(b, "erin", disabled=False))
    assert login_status(b, "erin", "erin-password-1") == 0
    assert curl_login(b, "erin", "erin-password-1", sink.port)
    # Disabled on A -> refused on B within a second.
    assert api(a, "PATCH", "/api/v1/accounts/erin", {"disabled": True})[0] == 200
    disabled_s = within_a_second(lambda: seen_on(b, "erin", disabled=True))
    assert login_status(b, "erin", "erin-password-1") not in (0, None)
    assert not curl_login(b, "erin", "erin-password-1", sink.port)
    assert api(a, "PATCH", "/api/v1/accounts/erin", {"disabled": False})[0] == 200
    within_a_second(lambda: seen_on(b, "erin", disabled=False))
    assert login_status(b, "erin", "erin-password-1") == 0
    # Password changed on B -> the old one refused on A.
    assert api(b, "PATCH", "/api/v1/accounts/erin", {"password": "erin-password-2"})[0] == 200
    assert wait_until(lambda: login_status(a, "erin", "erin-password-2") == 0, timeout=2.0)
    assert login_status(a, "erin", "erin-password-1") not in (0, None)
    # Deleted on A -> refused on B.
    assert api(a, "DELETE", "/api/v1/accounts/erin")[0] == 204
    deleted_s = within_a_second(lambda: seen_on(b, "erin", gone=True))
    assert login_status(b, "erin", "erin-password-2") not in (0, None)
    print(f"in force on B after: created {created_s:.3f} s, disabled {disabled_s:.3f} s, "
          f"deleted {deleted_s:.3f} s")


def test_user_import_copies_a_file_into_the_store(store_fleet, tmp_path, redis, sink):
    a, b, config = store_fleet
    accounts = str(tmp_path / "import.toml")
    add_user(accounts, config, "frank", "frank-password-1")
    add_user(accounts, config, "grace", "grace-password-1")
    out = run_cli("user", "import", accounts, "--store", redis.url, "--config", config)
    assert out.returncode == 0, out.stderr
    assert "2 created" in out.stderr, out.stderr
    within_a_second(lambda: seen_on(b, "frank", disabled=False))
    assert login_status(b, "frank", "frank-password-1") == 0
    within_a_second(lambda: seen_on(a, "grace", disabled=False))
    assert curl_login(a, "grace", "grace-password-1", sink.port)
    out = run_cli("user", "list", "--store", redis.url, "--config", config)
    assert out.returncode == 0, out.stderr
    assert "frank" in out.stdout and "grace" in out.stdout
    # The CLI pointed at the store disables for the whole fleet.
    out = run_cli("user", "disable", "grace", "--store", redis.url, "--config", config)
    assert out.returncode == 0, out.stderr
    within_a_second(lambda: seen_on(b, "grace", disabled=True))
    assert login_status(b, "grace", "grace-password-1") not in (0, None)
