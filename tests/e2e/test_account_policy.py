"""Per-account BitTorrent policy overrides set through the admin API, end to end: a real
BitTorrent peer-wire handshake (the 68-byte handshake a client sends first) through the proxy
with an account is blocked by default; `PATCH {"policy": {"bittorrent": "allow"}}` lets the
same handshake through; `{"policy": null}` blocks it again. The same through the
`swarmwall user policy` CLI on the accounts file, and on a two-node fleet on a real
redis-server (set on node A, in force on node B within a second; the CLI with `--store`).

Every check looks at what the target received, so the test fails if the override is ignored
(the handshake never arrives) or applied where it must not be (it arrives while blocked).
"""
import socket
import time

import pytest

from conftest import wait_until
from _accounts import api, write_token
from _fleet import Redis, add_user, run_cli, serve_available, write_config, write_secret_key
from _socks5 import connect

pytestmark = pytest.mark.skipif(not serve_available(),
                                reason="`swarmwall serve --store` is not implemented in this build")

HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + b"I" * 20 + b"-XX0001-abcdefghijkl"
# Strikes off: the blocked handshakes of the test must not suspend the account.
NO_STRIKES = "enabled = false\n"


def handshake_arrives(node, user, password):
    """Send a peer-wire handshake through `node` as `user` to a loopback listener; True when
    the listener received it whole."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(5)
    try:
        sock = connect((node.host, node.port), "127.0.0.1", listener.getsockname()[1],
                       user=user, password=password)
        conn, _ = listener.accept()
    except Exception:
        listener.close()
        raise
    conn.settimeout(1.5)
    sock.sendall(HANDSHAKE)
    received = b""
    try:
        while len(received) < len(HANDSHAKE):
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
    except socket.timeout:
        pass
    for s in (sock, conn, listener):
        s.close()
    return received == HANDSHAKE


@pytest.fixture
def file_node(tmp_path, start_swarmwall):
    config = write_config(str(tmp_path / "swarmwall.toml"), extra=NO_STRIKES)
    accounts = str(tmp_path / "accounts.toml")
    add_user(accounts, config, "peer", "peer-password-1")
    token = write_token(str(tmp_path))
    node = start_swarmwall("--config", config, "--accounts", accounts,
                           "--admin-token-file", token, "--data-dir", str(tmp_path / "data"),
                           "--allow-destination", "127.0.0.0/8")
    return node, accounts, config


def test_api_override_allows_then_clearing_blocks_again(file_node):
    node, accounts, _ = file_node
    assert not handshake_arrives(node, "peer", "peer-password-1"), "blocked by default"
    status, body, _ = api(node, "PATCH", "/api/v1/accounts/peer",
                          {"policy": {"bittorrent": "allow"}})
    assert status == 200, body
    assert body["policy"] == {"bittorrent": "allow"}
    assert handshake_arrives(node, "peer", "peer-password-1"), "the override was ignored"
    # A per-form action wins over the account's `bittorrent`.
    status, body, _ = api(node, "PATCH", "/api/v1/accounts/peer",
                          {"policy": {"bittorrent": "allow", "forms": {"peer_wire": "block"}}})
    assert status == 200, body
    assert not handshake_arrives(node, "peer", "peer-password-1")
    # Cleared: blocked again (the global `bittorrent = "block"`).
    status, body, _ = api(node, "PATCH", "/api/v1/accounts/peer", {"policy": None})
    assert status == 200, body
    assert body["policy"] is None
    assert not handshake_arrives(node, "peer", "peer-password-1")
    # Bad input names the field and changes nothing.
    status, _, text = api(node, "PATCH", "/api/v1/accounts/peer",
                          {"policy": {"forms": {"xyz": "allow"}}})
    assert status == 422 and "policy.forms.xyz" in text, text
    status, _, text = api(node, "PATCH", "/api/v1/accounts/peer",
                          {"policy": {"bittorrent": "permit"}})
    assert status == 422 and "policy.bittorrent" in text, text
    assert api(node, "GET", "/api/v1/accounts/peer")[1]["policy"] is None
    assert not handshake_arrives(node, "peer", "peer-password-1")
    # The file keeps nothing for a cleared override; audited as admin actions.
    assert "policy" not in open(accounts).read()
    _, events, _ = api(node, "GET", "/api/v1/events?limit=1000")
    policy_events = [e for e in events["events"]
                     if e.get("details", {}).get("action") == "account_policy"]
    assert len(policy_events) == 3, policy_events
    assert policy_events[0]["details"]["policy"] == {"bittorrent": "allow"}
    assert policy_events[-1]["details"]["policy"] is None


def test_cli_override_on_the_accounts_file(file_node):
    node, accounts, config = file_node
    assert not handshake_arrives(node, "peer", "peer-password-1")
    out = run_cli("user", "policy", "peer", "--bittorrent", "allow",
                  "--accounts", accounts, "--config", config)
    assert out.returncode == 0, out.stderr
    # The running node re-reads the file within a second.
    assert wait_until(lambda: api(node, "GET", "/api/v1/accounts/peer")[1]["policy"]
                      == {"bittorrent": "allow"}, timeout=3.0)
    assert handshake_arrives(node, "peer", "peer-password-1")
    out = run_cli("user", "policy", "peer", "--accounts", accounts, "--config", config)
    assert out.returncode == 0 and '"bittorrent":"allow"' in out.stdout, out
    out = run_cli("user", "policy", "peer", "--form", "peer_wire=nope",
                  "--accounts", accounts, "--config", config)
    assert out.returncode != 0 and "policy.forms.peer_wire" in out.stderr, out.stderr
    out = run_cli("user", "policy", "peer", "--clear", "--accounts", accounts, "--config", config)
    assert out.returncode == 0, out.stderr
    assert wait_until(lambda: api(node, "GET", "/api/v1/accounts/peer")[1]["policy"] is None,
                      timeout=3.0)
    assert not handshake_arrives(node, "peer", "peer-password-1")


@pytest.fixture
def redis():
    server = Redis()
    yield server
    server.stop()


def test_fleet_override_set_on_a_is_in_force_on_b(tmp_path, redis, start_swarmwall):
    key = write_secret_key(str(tmp_path / "fleet-secret.key"))
    config = write_config(str(tmp_path / "swarmwall.toml"), secret_key_file=key,
                          security='accounts_backend = "store"\nmax_failures = 10000\n',
                          extra=NO_STRIKES)
    token = write_token(str(tmp_path))

    def node(name):
        return start_swarmwall(
            "--config", config, "--store", redis.url, "--admin-token-file", token,
            "--data-dir", str(tmp_path / name), "--allow-destination", "127.0.0.0/8")

    a, b = node("a"), node("b")
    status, body, _ = api(a, "POST", "/api/v1/accounts",
                          {"name": "swarm", "password": "swarm-password-1"})
    assert status == 201, body
    assert wait_until(lambda: api(b, "GET", "/api/v1/accounts/swarm")[0] == 200, timeout=1.0)
    assert not handshake_arrives(b, "swarm", "swarm-password-1")
    assert api(a, "PATCH", "/api/v1/accounts/swarm",
               {"policy": {"bittorrent": "allow"}})[0] == 200
    t0 = time.monotonic()
    assert wait_until(lambda: api(b, "GET", "/api/v1/accounts/swarm")[1]["policy"]
                      == {"bittorrent": "allow"}, timeout=1.0, interval=0.02)
    seen_s = time.monotonic() - t0
    assert handshake_arrives(b, "swarm", "swarm-password-1"), "node B ignored the override"
    assert api(a, "PATCH", "/api/v1/accounts/swarm", {"policy": None})[0] == 200
    assert wait_until(lambda: api(b, "GET", "/api/v1/accounts/swarm")[1]["policy"] is None,
                      timeout=1.0, interval=0.02)
    assert not handshake_arrives(b, "swarm", "swarm-password-1")
    # The CLI pointed at the store sets it for the whole fleet too.
    out = run_cli("user", "policy", "swarm", "--form", "peer_wire=log",
                  "--store", redis.url, "--config", config)
    assert out.returncode == 0, out.stderr
    assert wait_until(lambda: api(a, "GET", "/api/v1/accounts/swarm")[1]["policy"]
                      == {"forms": {"peer_wire": "log"}}, timeout=1.0, interval=0.02)
    assert handshake_arrives(a, "swarm", "swarm-password-1")
    print(f"override in force on node B after {seen_s:.3f} s")
