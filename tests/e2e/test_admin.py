"""The admin surface of the real `swarmwall serve`: /metrics, the token-guarded API, the token
file checks and the TLS rule for non-loopback admin addresses; plus the packaging (hardened
systemd unit, sample configuration)."""
import json
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from _admin import (http, metric_sum, parse_metrics, serve_supports_admin, socks5_connect,
                    start_with_admin, write_token)
from conftest import swarmwall_bin

needs_admin = pytest.mark.skipif(not serve_supports_admin(),
                                 reason="this build's `swarmwall serve` has no --admin-listen yet")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TOKEN = "e2e-admin-token-0123456789abcdef"


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory() as d:
        yield d


@needs_admin
def test_metrics_and_status_agree_after_a_real_request(start_swarmwall, workdir):
    node, admin = start_with_admin(start_swarmwall, write_token(workdir, TOKEN))
    status, headers, body = http(admin, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    before = parse_metrics(body)
    # A real SOCKS5 request to a closed loopback port (refused by policy or by the target).
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    socks5_connect(node.host, node.port, "127.0.0.1", port)
    after = parse_metrics(http(admin, "/metrics")[2])
    moved = (metric_sum(after, "swarmwall_sessions_total") - metric_sum(before, "swarmwall_sessions_total")
             + metric_sum(after, "swarmwall_sessions_refused_total")
             - metric_sum(before, "swarmwall_sessions_refused_total"))
    assert moved >= 1, "the request was not counted"
    code, _, text = http(admin, "/api/v1/status", TOKEN)
    assert code == 200
    totals = json.loads(text)
    final = parse_metrics(http(admin, "/metrics")[2])
    assert totals["sessions"]["total"] == metric_sum(final, "swarmwall_sessions_total")
    assert totals["sessions"]["refused"] == metric_sum(final, "swarmwall_sessions_refused_total")
    assert totals["blocks"]["total"] == metric_sum(final, "swarmwall_blocks_total")


@needs_admin
def test_every_api_path_needs_the_token(start_swarmwall, workdir):
    _, admin = start_with_admin(start_swarmwall, write_token(workdir, TOKEN))
    for path in ["/api/v1/status", "/api/v1/accounts", "/api/v1/events", "/api/v1/nope", "/api/"]:
        for token in [None, "wrong-token-0123456789abcdef"]:
            code, headers, body = http(admin, path, token)
            assert code == 401, (path, token, body)
    code, _, _ = http(admin, "/api/v1/reload", None, method="POST", body={})
    assert code == 401
    assert http(admin, "/api/v1/status", TOKEN)[0] == 200
    assert http(admin, "/api/v1/nope", TOKEN)[0] == 404
    assert http(admin, "/openapi.json")[0] == 200
    assert http(admin, "/")[0] == 200


@needs_admin
def test_loose_token_file_permissions_are_warned_about(start_swarmwall, workdir):
    node, admin = start_with_admin(start_swarmwall, write_token(workdir, TOKEN, mode=0o644))
    assert http(admin, "/api/v1/status", TOKEN)[0] == 200
    assert "admin token file is accessible by group or others" in node.output()


@needs_admin
def test_non_loopback_admin_without_tls_is_refused(workdir):
    token = write_token(workdir, TOKEN)
    result = subprocess.run(
        [swarmwall_bin(), "serve", "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0",
         "--admin-token-file", token],
        capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "tls_cert" in result.stderr + result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_is_hardened():
    unit = os.path.join(ROOT, "packaging", "swarmwall.service")
    # Exposure 2.0 or lower ("OK"); the command fails above the threshold.
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", unit],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "Overall exposure level" in result.stdout


def test_sample_config_passes_check_config():
    sample = os.path.join(ROOT, "packaging", "swarmwall.example.toml")
    result = subprocess.run([swarmwall_bin(), "check-config", sample], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
