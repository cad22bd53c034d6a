"""GET /admin/state and the dashboard's static files over real sockets: shape, auth, no secrets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from gateway.sim import SimThread
from tests.integration.conftest import BACKEND_KEY, CLIENT_KEY, GatewayThread, default_policy

ADMIN_KEY = "rw-admin-5d1e-never-shown"
HI = [{"role": "user", "content": "hello dashboard"}]
OPENAPI = Path(__file__).resolve().parents[2] / "openapi.yaml"


def documented(schema: str) -> Draft202012Validator:
    """A validator for one of openapi.yaml's component schemas: the doc must describe what we serve."""
    doc = yaml.safe_load(OPENAPI.read_text())
    registry: Registry[object] = Registry().with_resource("urn:rw", DRAFT202012.create_resource(doc))
    return Draft202012Validator({"$ref": f"urn:rw#/components/schemas/{schema}"}, registry=registry)


@pytest.fixture(scope="module")
def open_gw(sims: SimThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    """No client keys, no admin key: the state is open to loopback callers only."""
    with GatewayThread(default_policy(sims), tmp_path_factory.mktemp("open"), reload_policies=False) as gw:
        yield gw


def test_state_shape_after_traffic(open_gw: GatewayThread, sims: SimThread) -> None:
    client = open_gw.client()
    for _ in range(3):
        client.chat.completions.create(model="chat", messages=HI, max_tokens=5)
    client.embeddings.create(model="embed", input="x")
    with pytest.raises(Exception):  # noqa: B017 - any 404 will do: it must still be counted
        client.chat.completions.create(model="no-such-model", messages=HI)

    resp = httpx.get(f"{open_gw.root}/admin/state")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["cache-control"] == "no-store"
    state = resp.json()
    assert [e.message for e in documented("AdminState").iter_errors(state)] == []

    assert {r["name"] for r in state["routes"]} == {"default"}
    fleet = {(f["backend"], f["model_id"]): f for f in state["fleet"]}
    assert set(fleet) == {
        ("fast", "up-fast"),
        ("fast", "up-embed"),
        ("cheap", "up-cheap"),
        ("quirky", "up-quirky"),
    }
    assert sorted(fleet[("fast", "up-fast")]["models"]) == ["chat", "fast-only"]
    cheap = fleet[("cheap", "up-cheap")]
    assert cheap["hardware"] == "aws-inferentia2" and cheap["breaker"] == "closed"
    assert cheap["input_price"] == 0.1 and cheap["output_price"] == 0.2
    assert cheap["joules_per_token"] == 0.3  # the hardware table's default for aws-inferentia2
    assert cheap["samples"] > 0 and cheap["last_tried_s"] is not None

    five = state["traffic"]["windows"]["5m"]
    assert five["requests"] == 5 and five["errors"] == 0  # the 404 is the client's error, not the fleet's
    assert five["by_route"]["default"] == {"cheap": 3, "fast": 1}
    lines = state["traffic"]["series"]["lines"]
    assert sum(sum(line["requests"]) for line in lines) == 5
    assert len(state["traffic"]["series"]["times"]) == 3600 // state["traffic"]["bucket_s"]

    money = state["money"]
    assert money["per_minute"]["by_backend"].keys() == {"cheap", "fast"}
    assert money["per_hour"]["total"] == pytest.approx(
        sum(d["cost_usd"] or 0 for d in state["decisions"]), rel=1e-6
    )
    assert money["tokens_per_joule"]["cheap"] > 0

    newest = state["decisions"][0]
    assert newest["model"] == "no-such-model" and newest["status"] == 404 and newest["route"] is None
    served = next(d for d in state["decisions"] if d["backend"] == "cheap")
    assert served["status"] == 200 and served["attempts"][0]["outcome"] == "ok"
    # The ranking itself is rendered only when one decision is asked for.
    assert served["ranked"] == 2 and "candidates" not in served

    detail = httpx.get(f"{open_gw.root}/admin/decisions/{served['id']}")
    assert detail.status_code == 200
    ranked = detail.json()
    assert [e.message for e in documented("DecisionDetail").iter_errors(ranked)] == []
    assert [c["backend"] for c in ranked["candidates"]] == ["cheap", "fast"]  # cheapest first
    assert ranked["candidates"][0]["predicted_cost_usd"] < ranked["candidates"][1]["predicted_cost_usd"]
    assert ranked["dropped"] == [] and ranked["attempts"] == served["attempts"]
    gone = httpx.get(f"{open_gw.root}/admin/decisions/not-kept")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_failover_is_counted(open_gw: GatewayThread, sims: SimThread) -> None:
    before = httpx.get(f"{open_gw.root}/admin/state").json()["traffic"]["windows"]["5m"]["failovers"]
    sims.control("cheap", error_rate=1.0)
    open_gw.client().chat.completions.create(model="chat", messages=HI, max_tokens=5)
    state = httpx.get(f"{open_gw.root}/admin/state").json()
    assert state["traffic"]["windows"]["5m"]["failovers"] == before + 1
    d = state["decisions"][0]
    assert [a["backend"] for a in d["attempts"]] == ["cheap", "fast"]
    assert d["attempts"][0]["outcome"] == "server" and d["attempts"][0]["status"] == 503


def test_page_and_assets(open_gw: GatewayThread) -> None:
    page = httpx.get(f"{open_gw.root}/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    for src in ("/dashboard/assets/dashboard.js", "/dashboard/assets/uPlot.iife.min.js"):
        assert src in page.text
        asset = httpx.get(open_gw.root + src)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    assert "https://" not in page.text  # no CDN: it works air-gapped
    missing = httpx.get(f"{open_gw.root}/dashboard/assets/..%2Fstate.py")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_open_gateway_with_client_keys_refuses_without_admin_key(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False, api_keys=CLIENT_KEY) as gw:
        for headers in ({}, {"Authorization": f"Bearer {CLIENT_KEY}"}):
            resp = httpx.get(f"{gw.root}/admin/state", headers=headers)
            assert resp.status_code == 403
            error = resp.json()["error"]
            assert error["code"] == "permission_denied" and "ROUTEWAY_ADMIN_KEY" in error["message"]
            assert set(error) == {"message", "type", "param", "code"}


def test_admin_key(sims: SimThread, tmp_path: Path) -> None:
    with GatewayThread(
        default_policy(sims), tmp_path, reload_policies=False, api_keys=CLIENT_KEY, admin_key=ADMIN_KEY
    ) as gw:
        gw.client().chat.completions.create(model="chat", messages=HI, max_tokens=5)
        url = f"{gw.root}/admin/state"
        client = httpx.get(url, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        assert client.status_code == 403  # a client key is known, but not allowed here
        assert client.json()["error"]["code"] == "permission_denied"
        refused = [
            {},
            {"Authorization": f"Basic {ADMIN_KEY}"},
            {"Authorization": f"Bearer {ADMIN_KEY}x"},
            {"Authorization": "Bearer clé-admin".encode()},  # non-ASCII: a 401, not a 500
        ]
        for headers in refused:
            resp = httpx.get(url, headers=headers)  # type: ignore[arg-type]
            assert resp.status_code == 401, headers
            assert resp.json()["error"]["type"] == "authentication_error"
        resp = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert resp.status_code == 200
        for secret in (ADMIN_KEY, CLIENT_KEY, BACKEND_KEY):
            assert secret not in resp.text
        newest = resp.json()["decisions"][0]
        assert newest["status"] == 200
        detail_url = f"{gw.root}/admin/decisions/{newest['id']}"
        assert httpx.get(detail_url).status_code == 401
        assert httpx.get(detail_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
        # The page itself carries no data and is served to anyone; only its data is guarded.
        assert httpx.get(f"{gw.root}/dashboard").status_code == 200


def test_state_is_get_only(open_gw: GatewayThread) -> None:
    resp = httpx.post(f"{open_gw.root}/admin/state")
    assert resp.status_code == 405 and "error" in resp.json()
