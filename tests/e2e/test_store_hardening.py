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
