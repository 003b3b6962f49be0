"""Encrypted BitTorrent with nothing else to give it away (issue 17): real clients with
encryption required, TCP only, no DHT/uTP/LSD/PEX, their only tracker on HTTPS (nginx TLS in
front of opentracker), seeders outside the proxy. On default settings (strictness
`corroborated`, no other evidence) the MSE peer connection must be blocked before any piece
moves; with policy `allow` the very same download completes (so the test can fail).
"""
import os
import tempfile

import pytest

from _bittorrent import file_sha256, free_port
from _metrics import scrape, value
from _mse import CLIENTS, SEED_PLAINTEXT, SEED_RC4, EncryptedSwarm
from conftest import wait_until

BLOCK_WAIT = float(os.environ.get("SWARMWALL_E2E_BLOCK_WAIT", "12"))
ALLOW_WAIT = 60.0
SIZE = 2 * 1024 * 1024

# (client, seeder policy): qBittorrent's "require encryption" offers RC4 and plaintext, so its
# MSE flows are tested against both seeder choices.
CASES = [("qbittorrent", "rc4"), ("qbittorrent", "plaintext"), ("transmission", "rc4"),
         ("aria2", "rc4"), ("rtorrent", "rc4"), ("libtorrent", "rc4")]
SEED_POLICIES = {"rc4": SEED_RC4, "plaintext": SEED_PLAINTEXT}


def start_proxy(start_swarmwall, action):
    admin_port = free_port()
    directory = tempfile.mkdtemp(prefix="sw-cfg-")
    config = os.path.join(directory, "swarmwall.toml")
    with open(config, "w") as f:
        # Only the action is set: mse_strictness stays at its default.
        f.write(f'[policy]\nbittorrent = "{action}"\n')
    node = start_swarmwall("--config", config, "--allow-destination", "127.0.0.0/8",
                           "--admin-listen", f"127.0.0.1:{admin_port}")
    node.admin = f"127.0.0.1:{admin_port}"
    return node


def blocks(node, form=None):
    samples = scrape(node.admin)
    if form is None:
        return value(samples, "swarmwall_blocks_total")
    return value(samples, "swarmwall_blocks_total", form=form)


@pytest.mark.parametrize("client,seed_policy", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_encrypted_download_blocked_on_defaults(start_swarmwall, client, seed_policy):
    node = start_proxy(start_swarmwall, "block")
    swarm = EncryptedSwarm(seed_policy=SEED_POLICIES[seed_policy], size=SIZE)
    downloader = CLIENTS[client](swarm, node.port)
    try:
        # RC4 selected: the MSE shape with the client's exact sizes (`mse`); plaintext selected:
        # the handshake in clear after the key exchange (`peer_wire`).
        assert wait_until(lambda: blocks(node) > 0, timeout=BLOCK_WAIT + 20), \
            f"{client}: no block counted; proxy output: {node.output()[-1500:]}"
        forms = {f: blocks(node, f) for f in ("mse", "peer_wire", "http_tracker")}
        assert forms["mse"] + forms["peer_wire"] > 0, forms
        assert forms["http_tracker"] == 0, "the HTTPS announce must not be what was blocked"
        assert not wait_until(lambda: downloader.complete(SIZE), timeout=BLOCK_WAIT), \
            f"{client}: download completed through a blocking proxy"
    finally:
        downloader.close()
        swarm.close()


@pytest.mark.parametrize("client,seed_policy", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_encrypted_download_completes_with_allow(start_swarmwall, client, seed_policy):
    node = start_proxy(start_swarmwall, "allow")
    swarm = EncryptedSwarm(seed_policy=SEED_POLICIES[seed_policy], size=SIZE)
    downloader = CLIENTS[client](swarm, node.port)
    try:
        assert wait_until(lambda: downloader.complete(SIZE), timeout=ALLOW_WAIT, interval=0.3), \
            f"{client}: download did not complete with policy allow"
        if os.path.exists(downloader.path):
            assert file_sha256(downloader.path) == file_sha256(swarm.source)
        assert blocks(node) == 0
        # The same flows were recognised (counted as detections, let through by policy).
        samples = scrape(node.admin)
        detected = sum(value(samples, "swarmwall_verdicts_total", transport="tcp", label=f) for f in ("mse", "peer_wire"))
        assert detected > 0, "the encrypted flows were not recognised"
    finally:
        downloader.close()
        swarm.close()
