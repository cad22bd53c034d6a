"""Virtual keys end to end on one gateway without Redis (SQLite): create, use, revoke, rotate, expire, models.

The cross-replica behaviour (Redis, two processes) is in test_tenancy_replicas.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.sim import SimThread
from tests.integration.conftest import CLIENT_KEY, GatewayThread, default_policy

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "rw-admin-5d1e-keys-test"
MSG = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def gw(sims: SimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    work = tmp_path_factory.mktemp("keys")
    settings: dict[str, Any] = {
        "api_keys": CLIENT_KEY,
        "admin_key": ADMIN_KEY,
        "keys_db": work / "routeway.db",
    }
    with GatewayThread(default_policy(sims), work, reload_policies=False, key_cache_s=0.5, **settings) as g:
        yield g


def admin(gw: GatewayThread, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.request(method, gw.root + path, headers=headers, timeout=10, **kw)


def make_key(gw: GatewayThread, **spec: Any) -> dict[str, Any]:
    r = admin(gw, "POST", "/admin/keys", json={"name": "t", **spec})
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def chat(gw: GatewayThread, key: str, model: str = "chat") -> Any:
    return gw.client(api_key=key).chat.completions.create(model=model, messages=MSG, max_tokens=5)


def test_a_created_key_works_and_is_shown_without_its_secret(gw: GatewayThread) -> None:
    doc = make_key(gw, team="red", models=["chat"])
    assert doc["key"].startswith("rwk-") and doc["team"] == "red" and "hash" not in doc
    assert chat(gw, doc["key"]).choices[0].message.content
    listed = admin(gw, "GET", "/admin/keys").json()["data"]
    assert any(k["id"] == doc["id"] for k in listed)
    assert all("key" not in k and "hash" not in k for k in listed)
    shown = admin(gw, "GET", f"/admin/keys/{doc['id']}").json()
    assert shown["status"] == "active" and shown["models"] == ["chat"]


def test_the_plain_key_is_never_stored(gw: GatewayThread) -> None:
    doc = make_key(gw)
    chat(gw, doc["key"])  # a lookup and a ledger write have happened
    raw = Path(gw.settings.keys_db).read_bytes()
    assert doc["key"].encode() not in raw and doc["key"][8:].encode() not in raw


def test_a_model_outside_the_keys_globs_is_403_before_any_upstream_call(gw: GatewayThread) -> None:
    doc = make_key(gw, models=["fast-*"])
    with pytest.raises(openai.PermissionDeniedError) as info:
        chat(gw, doc["key"], model="chat")
    assert info.value.code == "model_not_allowed"
    assert info.value.response.headers["x-routeway-attempts"] == "0"
    assert chat(gw, doc["key"], model="fast-only").choices


def test_revoked_key_is_refused_and_rotation_replaces_the_secret(gw: GatewayThread) -> None:
    doc = make_key(gw)
    chat(gw, doc["key"])
    r = admin(gw, "POST", f"/admin/keys/{doc['id']}/rotate")
    assert r.status_code == 200, r.text
    new = r.json()["key"]
    assert new != doc["key"] and r.json()["id"] == doc["id"]
    with pytest.raises(openai.AuthenticationError):
        chat(gw, doc["key"])
    assert chat(gw, new).choices
    assert admin(gw, "POST", f"/admin/keys/{doc['id']}/revoke").json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as info:
        chat(gw, new)
    assert info.value.code == "key_revoked"
    assert admin(gw, "POST", f"/admin/keys/{doc['id']}/rotate").status_code == 400


def test_an_expired_key_is_refused(gw: GatewayThread) -> None:
    soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 2))
    doc = make_key(gw, expires=soon)
    assert chat(gw, doc["key"]).choices
    time.sleep(2.5)
    with pytest.raises(openai.AuthenticationError) as info:
        chat(gw, doc["key"])
    assert info.value.code == "key_expired"


def test_static_keys_still_work_and_unknown_virtual_keys_do_not(gw: GatewayThread) -> None:
    assert chat(gw, CLIENT_KEY).choices
    with pytest.raises(openai.AuthenticationError):
        chat(gw, "rwk-not-a-key-at-all")


def test_admin_routes_take_only_the_admin_key(gw: GatewayThread) -> None:
    doc = make_key(gw)
    for key, status in ((doc["key"], 403), (CLIENT_KEY, 403), ("nope", 401)):
        r = httpx.get(gw.root + "/admin/keys", headers={"authorization": f"Bearer {key}"}, timeout=5)
        assert r.status_code == status, (key[:6], r.text)
        assert r.json()["error"]["type"] in ("permission_error", "authentication_error")


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "x", "rpm": 0}, {"name": "x", "expires": "soon"}, {"name": "x", "other": 1}],
)
def test_bad_key_specs_are_400(gw: GatewayThread, body: dict[str, Any]) -> None:
    r = admin(gw, "POST", "/admin/keys", json=body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text


def test_unknown_key_id_is_404(gw: GatewayThread) -> None:
    assert admin(gw, "GET", "/admin/keys/vk_nope").status_code == 404
    assert admin(gw, "POST", "/admin/keys/vk_nope/revoke").status_code == 404


def own_usage(gw: GatewayThread, key: str, until_requests: int) -> dict[str, Any]:
    """The key's usage once `until_requests` are in it (settlement runs just after each answer)."""
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(gw.base_url + "/usage", headers={"authorization": f"Bearer {key}"}, timeout=5)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        if doc["total"]["requests"] >= until_requests or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def test_own_usage_counts_the_keys_requests(gw: GatewayThread) -> None:
    doc = make_key(gw, team="blue")
    for _ in range(3):
        chat(gw, doc["key"])
    usage = own_usage(gw, doc["key"], until_requests=3)
    assert usage["total"]["requests"] == 3 and usage["total"]["output_tokens"] > 0
    assert {row["key_id"] for row in usage["data"]} == {doc["id"]}
    assert usage["total"]["cost_usd"] > 0
    static = httpx.get(gw.base_url + "/usage", headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=5)
    assert static.status_code == 403
    team = admin(gw, "GET", "/admin/usage", params={"team": "blue"}).json()
    assert team["total"]["requests"] >= 3 and {row["team"] for row in team["data"]} == {"blue"}
    assert admin(gw, "GET", "/admin/usage", params={"from": "2026-13-01"}).status_code == 400
    # Prometheus: by team, never by key.
    metrics = httpx.get(gw.root + "/metrics", timeout=5).text
    cost = [
        line for line in metrics.splitlines() if line.startswith('routeway_team_cost_usd_total{team="blue"}')
    ]
    assert cost and float(cost[0].split()[-1]) == pytest.approx(usage["total"]["cost_usd"])
    assert 'routeway_team_tokens_total{team="blue",type="output"}' in metrics
    assert doc["id"] not in metrics


def test_budget_pressure_moves_a_key_to_the_cheapest_backend_and_explain_says_so(
    sims: SimThread, tmp_path: Path
) -> None:
    policy = default_policy(sims)
    policy["routes"][0] |= {"objective": "fastest", "budget_pressure": 0.5}
    settings: dict[str, Any] = {"api_keys": CLIENT_KEY, "admin_key": ADMIN_KEY, "keys_db": tmp_path / "k.db"}
    with GatewayThread(policy, tmp_path, reload_policies=False, **settings) as g:
        explain = {"model": "chat", "messages": MSG, "max_tokens": 5}
        static = {"authorization": f"Bearer {CLIENT_KEY}"}
        plain = httpx.post(g.base_url + "/route/explain", json=explain, headers=static, timeout=5).json()
        assert "budget_pressure" not in plain  # a static key has no budget
        # A request reserves its predicted cost at the pricier candidate: a quarter of the budget.
        reservation = max(c["predicted_cost_usd"] for c in plain["candidates"])
        key = make_key(g, daily_budget=4 * reservation)["key"]
        auth = {"authorization": f"Bearer {key}"}
        before = httpx.post(g.base_url + "/route/explain", json=explain, headers=auth, timeout=5).json()
        assert before["budget_pressure"] == {"threshold": 0.5, "budget_used": 0.25, "applied": False}
        assert before["candidates"][0]["backend"] == "fast"
        picks = []
        for _ in range(20):
            raw = g.client(api_key=key).chat.completions.with_raw_response.create(
                model="chat", messages=MSG, max_tokens=5
            )
            picks.append((raw.headers["x-routeway-backend"], raw.headers["x-routeway-pick"]))
            if picks[-1][1] == "budget":
                break
            time.sleep(0.2)  # let the settlement land, as a client's pace would
        assert picks[0] == ("fast", "best") and picks[-1] == ("cheap", "budget"), picks
        after = httpx.post(g.base_url + "/route/explain", json=explain, headers=auth, timeout=5).json()
        assert after["budget_pressure"]["applied"] and after["budget_pressure"]["budget_used"] >= 0.5
        assert after["candidates"][0]["backend"] == "cheap"


def cli(gw: GatewayThread, *args: str) -> subprocess.CompletedProcess[str]:
    """`routeway ARGS` on the gateway's key store (the same settings the server reads)."""
    env = {**os.environ, "ROUTEWAY_KEYS_DB": str(gw.settings.keys_db)}
    env.pop("ROUTEWAY_REDIS_URL", None)
    cmd = [sys.executable, "-m", "gateway", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_the_cli_manages_keys_the_server_uses_and_prints_usage(gw: GatewayThread) -> None:
    made = cli(
        gw, "keys", "create", "--name", "cli-key", "--team", "green", "--models", "chat", "--tpm", "5000"
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    key_id = made.stdout.split("id=")[1].split()[0]
    assert secret.startswith("rwk-") and chat(gw, secret).choices
    own_usage(gw, secret, until_requests=1)
    shown = cli(gw, "keys", "show", key_id)
    assert shown.returncode == 0 and '"team": "green"' in shown.stdout and secret not in shown.stdout
    listed = cli(gw, "keys", "list", "--json")
    assert key_id in listed.stdout and secret not in listed.stdout
    table = cli(gw, "usage", "--team", "green")
    assert table.returncode == 0, table.stderr
    head, *rows, total = table.stdout.strip().splitlines()
    assert head.split()[:5] == ["date", "team", "key", "model", "backend"]
    assert any("cli-key" in row and "chat" in row for row in rows) and total.startswith("total")
    rotated = cli(gw, "keys", "rotate", key_id)
    new = rotated.stdout.strip().splitlines()[-1]
    assert rotated.returncode == 0 and new.startswith("rwk-") and new != secret
    time.sleep(0.6)  # the lookup cache's life in this gateway (key_cache_s=0.5)
    with pytest.raises(openai.AuthenticationError):
        chat(gw, secret)
    assert chat(gw, new).choices
    assert cli(gw, "keys", "show", "vk_nope").returncode == 1
    assert cli(gw, "usage", "--from", "yesterday").returncode == 2
