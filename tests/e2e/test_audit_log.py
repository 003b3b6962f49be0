"""The security event log against an attacker who edits the file (issue 18, findings 1 and 4).

A real `swarmwall serve` writes auth failures while `swarmwall user` and `swarmwall strikes`
write `admin_action` records into the same log; checkpoints arrive on a syslog socket this
test binds; `audit verify` accepts the real log, with `audit head` and the checkpoint as
anchors, and rejects it once its tail is cut or its chain recomputed with plain SHA-256.
"""
import hashlib
import json
import os
import socket
import threading

from _security import add_user, run_cli, socks5_login, write_config
from conftest import wait_until


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _rechain_sha256(records):
    """What anyone can do to an unkeyed chain: renumber and recompute every hash."""
    prev, out = "0" * 64, []
    for seq, record in enumerate(records, 1):
        body = {k: v for k, v in record.items() if k != "hash"}
        body.update(seq=seq, prev=prev)
        text = json.dumps(body, separators=(",", ":"), sort_keys=True)
        prev = hashlib.sha256(text.encode()).hexdigest()
        out.append(text[:-1] + ',"hash":"' + prev + '"}')
    return out


def test_cli_actions_join_the_chain_and_cut_or_rechained_logs_fail(tmp_path, start_swarmwall):
    log = str(tmp_path / "log" / "audit.jsonl")
    sock_path = str(tmp_path / "syslog.sock")
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(sock_path)
    syslog.settimeout(0.5)
    config = write_config(
        str(tmp_path / "config.toml"),
        f'audit_log = "{log}"\naudit_syslog = "{sock_path}"\n'
        'audit_checkpoint_records = 3\naudit_checkpoint_interval = "1s"\n'
        'audit_node_name = "e2e-node"\nmax_failures = 100000\n',
    )
    accounts = str(tmp_path / "accounts.toml")
    add_user(accounts, config, "alice", "alice-secret-pw")
    node = start_swarmwall("--config", config, "--accounts", accounts, "--audit-log", log)

    def failures():
        for _ in range(15):
            socks5_login(node, "alice", "wrong-password")

    load = [threading.Thread(target=failures) for _ in range(2)]
    for thread in load:
        thread.start()
    commands = [
        ("strikes", "suspend", "bob", "--for", "1h", "--store", "memory"),
        ("strikes", "unsuspend", "bob", "--store", "memory"),
        ("strikes", "clear", "--all", "--store", "memory"),
        ("user", "disable", "alice", "--accounts", accounts),
        ("user", "enable", "alice", "--accounts", accounts),
    ]
    for command in commands:
        out = run_cli(*command, "--config", config)
        assert out.returncode == 0, (command, out.stderr)
    for thread in load:
        thread.join()

    # Checkpoints reach the syslog socket; keep the newest one.
    checkpoints = []

    def newest_covers_everything():
        try:
            checkpoints.append(syslog.recv(4096).decode())
        except socket.timeout:
            pass
        head = run_cli("audit", "head", log).stdout.strip()
        return checkpoints and f"seq={head.split(':')[0]} " in checkpoints[-1]

    assert wait_until(newest_covers_everything, 20, 0.1), checkpoints[-3:]
    node.stop()
    checkpoint = checkpoints[-1]
    assert checkpoint.startswith("<85>swarmwall[") and "node=e2e-node" in checkpoint
    head = run_cli("audit", "head", log).stdout.strip()

    records = _records(log)
    cli = [r for r in records if r["kind"] == "admin_action" and r["details"].get("source") == "cli"]
    assert sorted(r["details"]["action"] for r in cli) == sorted(
        # `user add` ran before the server started: the server continued that chain.
        ["user_add", "strikes_suspend", "strikes_unsuspend", "strikes_clear_all", "user_disable",
         "user_enable"]
    ), cli
    assert sum(r["kind"] == "auth_failure" for r in records) == 30
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))

    verify = run_cli("audit", "verify", log, "--config", config, "--expect", head,
                     "--checkpoint", checkpoint)
    assert verify.returncode == 0, verify.stderr

    # Cut the newest records: still a chain, but not the anchored one.
    lines = open(log).read().splitlines()
    cut = str(tmp_path / "log" / "cut.jsonl")
    with open(cut, "w") as f:
        f.write("\n".join(lines[:-4]) + "\n")
    assert run_cli("audit", "verify", cut, "--config", config).returncode == 0
    for anchor in (["--expect", head], ["--checkpoint", checkpoint]):
        out = run_cli("audit", "verify", cut, "--config", config, *anchor)
        assert out.returncode == 1 and "cut off" in out.stderr, out.stderr

    # Delete the CLI's records and recompute the chain with SHA-256: the old check passes,
    # the keyed one does not.
    forged = str(tmp_path / "log" / "forged.jsonl")
    with open(forged, "w") as f:
        f.write("\n".join(_rechain_sha256([r for r in records if r not in cli])) + "\n")
    assert run_cli("audit", "verify", forged, "--legacy-sha256").returncode == 0
    out = run_cli("audit", "verify", forged, "--config", config)
    assert out.returncode == 1 and "line 1" in out.stderr, out.stderr
    assert os.stat(log).st_mode & 0o077 == 0
