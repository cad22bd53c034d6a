"""The hardened edge over real sockets: exposure at start-up, the admin key, odd Authorization headers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from gateway.sim import SimThread
from tests.conftest import free_port
from tests.integration.conftest import BACKEND_KEY, GatewayThread, default_policy, wait_serving

REPO = Path(__file__).resolve().parents[2]
CLIENT_KEY = "rw-client-auth-test"
ADMIN_KEY = "rw-admin-auth-test"
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def _env(**extra: str) -> dict[str, str]:
    # No ROUTEWAY_API_KEYS inherited from the developer's shell: these tests are about running without keys.
    return {"PATH": "/usr/bin:/bin", "ROUTEWAY_TEST_BACKEND_KEY": BACKEND_KEY, **extra}


def _policy_file(sims: SimThread, tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(default_policy(sims)))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--host", "0.0.0.0"],
        ["serve", "--host", "0.0.0.0", "--workers", "2"],
        ["serve", "--host", "::"],
    ],
)
def test_serve_on_a_public_address_without_keys_exits_2_with_one_line(
    sims: SimThread, tmp_path: Path, args: list[str]
) -> None:
    policy = _policy_file(sims, tmp_path)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--port", str(free_port()), "--config", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=REPO,
    )
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 20  # refused at once, not after a bind or a timeout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("routeway: refusing to serve on") and "ROUTEWAY_API_KEYS" in lines[0]


def test_the_worker_factory_applies_the_same_rule(tmp_path: Path) -> None:
    """`uvicorn --factory gateway.main:app_from_env` started by hand: no path skips the exposure check."""
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "gateway.main:app_from_env", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(ROUTEWAY_HOST="0.0.0.0", ROUTEWAY_CONFIG=str(REPO / "policies")),
        cwd=REPO,
    )
    assert result.returncode == 2, result.stderr
    assert "routeway: refusing to serve on 0.0.0.0" in result.stderr


class _Serve:
    """`routeway serve` as a subprocess; stderr is collected when it stops."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""

    def wait_ready(self) -> None:
        wait_serving(self.proc, self.port)

    def stop(self) -> None:
        self.proc.terminate()
        _, self.stderr = self.proc.communicate(timeout=15)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_allow_open_serves_on_a_public_address_and_warns(sims: SimThread, tmp_path: Path, how: str) -> None:
    args = ["--host", "0.0.0.0", "--config", str(_policy_file(sims, tmp_path))]
    env = _env()
    if how == "flag":
        args.append("--allow-open")
    else:
        env["ROUTEWAY_ALLOW_OPEN"] = "true"
    serve = _Serve(args, env)
    try:
        serve.wait_ready()
        r = httpx.post(f"http://127.0.0.1:{serve.port}/v1/chat/completions", json=CHAT, timeout=10)
        assert r.status_code == 200  # open, as asked
        # Open on a public address: the admin routes stay shut without an admin key.
        r = httpx.post(f"http://127.0.0.1:{serve.port}/admin/reload", timeout=10)
        assert r.status_code == 403 and "ROUTEWAY_ADMIN_KEY" in r.json()["error"]["message"]
    finally:
        serve.stop()
    warnings = [orjson.loads(line) for line in serve.stderr.splitlines() if '"WARNING"' in line]
    assert len(warnings) == 1, serve.stderr
    assert "0.0.0.0" in warnings[0]["msg"] and "no client keys" in warnings[0]["msg"]


@pytest.fixture(scope="module")
def keyed(sims: SimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    with GatewayThread(
        default_policy(sims),
        tmp_path_factory.mktemp("keyed"),
        api_keys=f"rw-other,{CLIENT_KEY}",
        admin_key=ADMIN_KEY,
        reload_policies=False,
    ) as gw:
        yield gw


def _reload(gw: GatewayThread, auth: str | None) -> httpx.Response:
    headers = {"authorization": auth} if auth is not None else {}
    return httpx.post(gw.root + "/admin/reload", headers=headers, timeout=10)


def test_admin_reload_takes_only_the_admin_key(keyed: GatewayThread) -> None:
    ok = _reload(keyed, f"Bearer {ADMIN_KEY}")
    assert ok.status_code == 200 and ok.json()["status"] == "reloaded"
    denied = _reload(keyed, f"Bearer {CLIENT_KEY}")
    assert denied.status_code == 403
    assert denied.json()["error"]["type"] == "permission_error"
    assert denied.json()["error"]["code"] == "permission_denied"
    for auth in (None, "Bearer wrong", f"Basic {ADMIN_KEY}", "Bearer"):
        r = _reload(keyed, auth)
        assert r.status_code == 401, auth
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert ADMIN_KEY not in r.text and CLIENT_KEY not in r.text


def test_explain_stays_a_client_route(keyed: GatewayThread) -> None:
    def explain(key: str) -> int:
        headers = {"authorization": f"Bearer {key}"}
        return httpx.post(
            keyed.base_url + "/route/explain", json=CHAT, headers=headers, timeout=10
        ).status_code

    assert explain(CLIENT_KEY) == 200
    assert explain(ADMIN_KEY) == 401


def test_client_keys_without_admin_key_shut_the_admin_routes(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(default_policy(sims), tmp_path, api_keys=CLIENT_KEY, reload_policies=False) as gw:
        for auth in (None, f"Bearer {CLIENT_KEY}"):
            r = _reload(gw, auth)
            assert r.status_code == 403
            assert "ROUTEWAY_ADMIN_KEY" in r.json()["error"]["message"]


def _raw_post(port: int, path: str, authorization: bytes) -> tuple[int, bytes]:
    """One request written byte for byte, so the header can carry what no client library would send."""
    body = orjson.dumps(CHAT)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"Authorization: " + authorization + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/route/explain", "/admin/reload"])
@pytest.mark.parametrize(
    "authorization",
    [b"Bearer rw-client-auth-t\xe9st", b"Bearer \xff\xfe", "Bearer rw-\u00e9".encode(), b"Bearer a\tb"],
)
def test_non_ascii_authorization_is_401_json_never_500(
    keyed: GatewayThread, path: str, authorization: bytes
) -> None:
    status, body = _raw_post(keyed.port, path, authorization)
    assert status == 401, body
    error = orjson.loads(body)["error"]
    assert error["type"] == "authentication_error" and set(error) == {"message", "type", "param", "code"}
