"""Fleet mode, account security: two real `swarmwall serve` nodes on one real redis-server,
sharing one config, one accounts file and one pseudonymisation key file (client addresses
reach Redis only as keyed hashes, so the key must be the same on every node).

Both nodes trust loopback as a PROXY-protocol load balancer (`[server] proxy_protocol_trusted
= ["127.0.0.0/8"]`); every login below comes from 127.0.0.2 with a PROXY v1 header naming the
client, which is how the tests give clients distinct (and geolocatable) addresses.

- a lockout earned on node A refuses the account on node B; another account still logs in;
- impossible travel: London on A, then Changchun on B at once → refused on B (deny mode), with
  an `impossible_travel` event in B's audit log and B's metric moved;
- a TOTP code used on A is a replay on B from another client address; the trusted window the
  code opened on A holds on B for the same client address.
"""
import pytest

from conftest import wait_until
from _fleet import (Redis, add_user, login_status, serve_available, write_config,
                    write_secret_key)
from _metrics import scrape, value
from _security import CHANGCHUN, CITY_DB, LONDON, audit_events, enrol_totp, totp

pytestmark = pytest.mark.skipif(not serve_available(),
                                reason="`swarmwall serve --store` is not implemented in this build")

TRUST_LOOPBACK = 'proxy_protocol_trusted = ["127.0.0.0/8"]\n'


@pytest.fixture
def redis():
    server = Redis()
    yield server
    server.stop()


@pytest.fixture
def fleet(tmp_path, redis, start_swarmwall):
    """start(security_toml, totp_users=()) -> (node_a, node_b, paths); accounts alice, bob."""

    def start(security="", totp_users=()):
        key = write_secret_key(str(tmp_path / "fleet-secret.key"))
        config = write_config(str(tmp_path / "swarmwall.toml"), security=security,
                              server=TRUST_LOOPBACK, secret_key_file=key)
        accounts = str(tmp_path / "accounts.toml")
        add_user(accounts, config, "alice", "alice-secret-pw")
        add_user(accounts, config, "bob", "bob-secret-pw")
        # Enrolled before the nodes start, so no login has to poll for the accounts reload.
        secrets = {name: enrol_totp(accounts, config, name) for name in totp_users}
        paths = {"config": config, "accounts": accounts, "key": key, "secrets": secrets}

        def node(name):
            # Each node's log in its own directory, so the default key beside the log would
            # differ per node: only the configured secret_key_file makes the hashes agree.
            (tmp_path / f"log-{name}").mkdir()
            audit = str(tmp_path / f"log-{name}" / "audit.jsonl")
            paths[f"audit_{name}"] = audit
            return start_swarmwall(
                "--config", config, "--accounts", accounts, "--store", redis.url,
                "--data-dir", str(tmp_path / name), "--audit-log", audit,
                "--allow-destination", "127.0.0.0/8", cwd=str(tmp_path))

        return node("a"), node("b"), paths

    return start


def metrics(node):
    return scrape(node.admin_address)


def test_lockout_on_node_a_refuses_on_node_b(fleet):
    a, b, paths = fleet()
    attacker = "198.51.100.66"
    assert login_status(b, "alice", "alice-secret-pw", source="198.51.100.60") == 0
    for attempt in range(5):
        status = login_status(a, "alice", f"wrong-guess-{attempt}", source=attacker)
        assert status not in (0, None), (attempt, status)
    # Node A wrote both lockouts (the account name and the attacker's address).
    scopes = {e["details"]["scope"] for e in audit_events(paths["audit_a"], "lockout")}
    assert scopes == {"account", "client_address"}, scopes
    # Node B refuses alice with the right password from a clean address: the account lockout
    # lives in Redis, not in node A's memory.
    status = login_status(b, "alice", "alice-secret-pw", source="198.51.100.67")
    assert status is not None and status != 0, status
    # The attacker's address is locked on B too (same keyed hash: the nodes share the key) ...
    status = login_status(b, "bob", "bob-secret-pw", source=attacker)
    assert status is not None and status != 0, status
    # ... while bob from his own address logs in on B (and on A).
    assert login_status(b, "bob", "bob-secret-pw", source="198.51.100.68") == 0
    assert login_status(a, "bob", "bob-secret-pw", source="198.51.100.68") == 0
    # B counted its refusals as lockouts it never recorded itself.
    m = metrics(b)
    assert value(m, "swarmwall_auth_results_total", result="failure", reason="locked_out") >= 2, m
    assert value(m, "swarmwall_lockouts_total") == 0
    assert not audit_events(paths["audit_b"], "lockout")


def test_impossible_travel_across_nodes_is_denied_on_b(fleet):
    a, b, paths = fleet(f'geoip_database = "{CITY_DB}"\nimpossible_travel = "deny"\n')
    before = value(metrics(b), "swarmwall_impossible_travel_total")
    assert login_status(a, "alice", "alice-secret-pw", source=LONDON) == 0
    # Seconds later, from China, on the other node: B reads A's login from the shared history.
    status = login_status(b, "alice", "alice-secret-pw", source=CHANGCHUN)
    assert status is not None and status != 0, status
    events = audit_events(paths["audit_b"], "impossible_travel")
    assert len(events) == 1, events
    details = events[0]["details"]
    assert events[0]["account"] == "alice"
    assert details["action"] == "deny" and details["country"] == "CN", details
    assert details["speed_kmh"] > 1000 and details["distance_km"] > 7000, details
    # The metric moved on B (where the refusal happened), not on A.
    assert value(metrics(b), "swarmwall_impossible_travel_total", reason="deny") == before + 1
    assert value(metrics(a), "swarmwall_impossible_travel_total") == 0
    assert not audit_events(paths["audit_a"], "impossible_travel")
    # Not a country block: bob, with no history, logs in from Changchun on B.
    assert login_status(b, "bob", "bob-secret-pw", source=CHANGCHUN) == 0
    # The raw addresses are not in either log (pseudonymised with the shared key).
    for name in ("audit_a", "audit_b"):
        with open(paths[name]) as f:
            text = f.read()
        assert LONDON not in text and CHANGCHUN not in text


def test_totp_code_used_on_a_is_a_replay_on_b(fleet):
    a, b, paths = fleet(totp_users=("bob",))
    secret = paths["secrets"]["bob"]
    first, second = "192.0.2.10", "192.0.2.11"
    # Enrolled: the password alone is refused on both nodes.
    assert login_status(a, "bob", "bob-secret-pw", source=first) != 0
    code = totp(secret)
    assert login_status(a, "bob", "bob-secret-pw" + code, source=first) == 0
    # The same code on B from another client address: a replay, refused.
    status = login_status(b, "bob", "bob-secret-pw" + code, source=second)
    assert status is not None and status != 0, status
    reasons = [e["details"]["reason"] for e in audit_events(paths["audit_b"], "auth_failure")]
    assert "totp_replay" in reasons, reasons
    # The trusted window the code opened on A is for that client address only, fleet-wide:
    # password alone from `first` is accepted on B, from `second` refused on both.
    assert login_status(b, "bob", "bob-secret-pw", source=first) == 0
    assert login_status(b, "bob", "bob-secret-pw", source=second) != 0
    assert login_status(a, "bob", "bob-secret-pw", source=second) != 0
    # alice (no TOTP) is unaffected on B.
    assert login_status(b, "alice", "alice-secret-pw", source=second) == 0
