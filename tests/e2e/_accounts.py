"""Helpers for the accounts suite: the provisioning API with a bearer token, and logins through
a real `curl --socks5-hostname user:pass@` client."""
import json
import os
import subprocess
import urllib.error
import urllib.request

TOKEN = "accounts-suite-token-0123456789abcdef"


def write_token(directory):
    path = os.path.join(directory, "admin-token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(TOKEN + "\n")
    return path


def api(node, method, path, body=None, raw=None, content_type=None, token=TOKEN):
    """One admin API request; returns (status, parsed JSON or None, text)."""
    headers = {"Authorization": "Bearer " + token} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if raw is not None:
        data = raw if isinstance(raw, bytes) else raw.encode()
        headers["Content-Type"] = content_type or "application/x-ndjson"
    request = urllib.request.Request("http://" + node.admin_address + path, data=data,
                                     headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return status, parsed, text


def curl_login(node, user, password, target_port, timeout=10):
    """A real curl through the proxy: True when the page came back, False when refused."""
    out = subprocess.run(
        ["curl", "-sS", "--max-time", str(timeout), "-o", "-",
         "--socks5-hostname", f"{node.host}:{node.port}",
         "--proxy-user", f"{user}:{password}",
         f"http://127.0.0.1:{target_port}/"],
        capture_output=True, text=True, timeout=timeout + 5)
    return out.returncode == 0 and out.stdout.endswith("fleet")
