"""Encrypted BitTorrent against seeders that are not libtorrent (issue 17): the matrix real
client (through swarmwall) x real seeder (outside it), encryption required, TCP only, no
DHT/uTP/LSD/PEX, one seeder per cell handed over by an HTTPS tracker (nginx TLS serving a
static compact announce reply: the client learns that one peer and nothing else, so fan-out
cannot help), on default settings (strictness `corroborated`).

Seeders (_mse_seeders.py), each on its own defaults otherwise, i.e. its own MSE responder and
its own unchoke policy: transmission-daemon 3.00 (`encryption: 2`), rtorrent 0.9.8
(`require,require_RC4`), aria2c 1.36 (`--bt-require-crypto`, `--bt-min-crypto-level=arc4`).
The libtorrent seeder column is test_mse_clients.py.

Every cell: the download is blocked on defaults by an exact MSE rule (never fan-out, never a
tracker block), and the same cell completes byte-exact with policy `allow` (so the block test
can fail), its flow still recognised. The flight sizes the proxy saw are printed (`-s`).
Runs in a network namespace it creates (test_mse_clients.netns). Needs root.
"""
import json
import os
import subprocess
import sys

import pytest

from test_mse_clients import NET, netns  # noqa: F401 (the module's namespace fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
# After the first block, how long the download is given to complete anyway (it must not).
AFTER_BLOCK_WAIT = float(os.environ.get("SWARMWALL_E2E_SEEDER_AFTER_BLOCK", "4"))
# Until the first block: the seeders that unchoke on their choke round (aria2, Transmission:
# every 10 s) bring the first block only then.
BLOCK_WAIT = 25.0
ALLOW_WAIT = 60.0

CLIENTS = ("qbittorrent", "transmission", "aria2", "rtorrent", "libtorrent")
SEEDERS = ("transmission", "rtorrent", "aria2")
CELLS = [(client, seeder) for seeder in SEEDERS for client in CLIENTS]
IDS = [f"{client}-from-{seeder}" for client, seeder in CELLS]
EXACT_RULES = {"handshake_in_flight3", "handshake_in_flight5", "coalesced_first_block",
               "first_block_after_unchoke"}
# Cells that escape the default rules, with the exact reason (flight sizes, what the seeder
# does). Empty: every cell is blocked.
ESCAPES = {}


def scenario(netns, **args):
    args.update(seed_policy="rc4", block_wait=AFTER_BLOCK_WAIT, allow_wait=ALLOW_WAIT,
                first_block_wait=BLOCK_WAIT)
    env = {**os.environ, "SWARMWALL_MSE_NET": NET}
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, os.path.join(HERE, "_mse_scenario.py"),
                          json.dumps(args)], capture_output=True, text=True, timeout=180, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"scenario failed: {out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def cell(client, seeder):
    reason = ESCAPES.get((client, seeder))
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(client, seeder, marks=marks, id=f"{client}-from-{seeder}")


@pytest.mark.parametrize("client,seeder", [cell(c, s) for c, s in CELLS])
def test_encrypted_download_from_seeder_blocked_on_defaults(netns, client, seeder):  # noqa: F811
    result = scenario(netns, client=client, seeder=seeder, action="block")
    print(f"\n  {client} <- {seeder}: rules {result['mse_rules']}, flights "
          f"{[f['flights'] for f in result['mse_flights']]}, first block {result.get('first_block_s')} s")
    blocks = result["blocks"]
    assert blocks["mse"] + blocks["peer_wire"] > 0, result
    assert blocks["http_tracker"] == 0, f"the HTTPS announce must not be what was blocked: {result}"
    assert result["verdicts"].get("tls", 0) >= 1, f"the HTTPS announce went through as TLS: {result}"
    assert not result["completed"], f"{client} <- {seeder}: completed through a blocking proxy: {result}"
    # One peer: fan-out cannot count; the flow's own sizes decided.
    assert result["fan_out_blocks"] == 0, result
    assert result["mse_rules"] and set(result["mse_rules"]) <= EXACT_RULES, result


@pytest.mark.parametrize("client,seeder", CELLS, ids=IDS)
def test_encrypted_download_from_seeder_completes_with_allow(netns, client, seeder):  # noqa: F811
    result = scenario(netns, client=client, seeder=seeder, action="allow")
    print(f"\n  {client} <- {seeder} (allow): rules {result['mse_rules']}, flights "
          f"{[f['flights'] for f in result['mse_flights']]}, completed in {result.get('completed_s')} s")
    assert result["completed"], f"{client} <- {seeder}: no completion with policy allow: {result}"
    assert result.get("sha_ok", True), result
    assert result["blocks_total"] == 0, result
    if (client, seeder) not in ESCAPES:
        # Recognised by the same exact rule when let through.
        assert set(result["mse_rules"]) & EXACT_RULES, result
