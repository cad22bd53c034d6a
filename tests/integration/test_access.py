"""The principal and guard stage over real sockets: the per-request cost cap refuses before the upstream
is called, the backend's key reaches the upstream and the client's never does, the log names the caller."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from aiohttp import web

from gateway.sim import SimThread
from tests.integration.conftest import CLIENT_KEY, GatewayThread, default_policy
from tests.integration.test_edge_upstream import Hostile

KEY_ENV = "ROUTEWAY_TEST_ACCESS_KEY"
UPSTREAM_KEY = "Yk3Pq8Rt1Wz6Nm4Lc9Vb2Xd7Hf5Js0A"
MSG = [{"role": "user", "content": "hello"}]
CAP_USD = 0.001  # at $10 per million output tokens: ~100 output tokens


class Recorder:
    """What the real upstream received: each request's headers and body."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.seen.append(({k.lower(): v for k, v in request.headers.items()}, raw))
        doc = orjson.loads(raw)
        if doc.get("stream"):
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            delta = {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up-r",
                "choices": [delta],
            }
            usage = {**chunk, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}
            for event in (chunk, usage):
                await resp.write(b"data: " + orjson.dumps(event) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            return resp
        return web.json_response(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "up-r",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
            }
        )


def policy(url: str) -> dict[str, Any]:
    model = {"id": "up-r", "input_price": 1.0, "output_price": 10.0}
    return {
        "backends": {
            "rec": {
                "provider": "openai",
                "base_url": url + "/v1",
                "api_key_env": KEY_ENV,
                "models": {"r": model},
            }
        },
        "routes": [{"name": "default", "match": {"model": "*"}, "max_attempts": 1, "probe_interval_s": 0}],
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Hostile, Recorder]]:
    recorder = Recorder()
    with Hostile() as h:
        h.behave(recorder)
        yield h, recorder


@pytest.fixture(scope="module")
def gw(
    upstream: tuple[Hostile, Recorder], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayThread]:
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, UPSTREAM_KEY)
    url = f"http://127.0.0.1:{upstream[0].port}"
    with GatewayThread(
        policy(url),
        tmp_path_factory.mktemp("access"),
        reload_policies=False,
        api_keys=f"rw-first-key,{CLIENT_KEY}",
        admin_key="rw-admin-key",
        max_request_usd=CAP_USD,
    ) as gateway:
        yield gateway
    mp.undo()


def test_a_request_over_the_cost_cap_is_a_400_and_never_reaches_the_upstream(
    gw: GatewayThread, upstream: tuple[Hostile, Recorder]
) -> None:
    recorder = upstream[1]
    before = len(recorder.seen)
    r = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": "r", "messages": MSG, "max_tokens": 5000},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=10,
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["code"] == "cost_limit_exceeded"
    assert err["param"] == "max_tokens" and "$0.001000" in err["message"]
    assert r.headers["x-routeway-attempts"] == "0"
    assert len(recorder.seen) == before
    # The SDK's view of the same answer.
    with pytest.raises(openai.BadRequestError) as info:
        gw.client().chat.completions.create(model="r", messages=MSG, max_tokens=5000)  # type: ignore[arg-type]
    assert info.value.code == "cost_limit_exceeded" and len(recorder.seen) == before


def test_under_the_cap_the_backend_key_is_sent_and_the_client_key_never(
    gw: GatewayThread, upstream: tuple[Hostile, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = upstream[1]
    caplog.set_level(logging.INFO, logger="routeway")
    before = len(recorder.seen)
    client = gw.client()
    done = client.chat.completions.create(model="r", messages=MSG, max_tokens=10)  # type: ignore[arg-type]
    assert done.choices[0].message.content == "hi"
    chunks = list(client.chat.completions.create(model="r", messages=MSG, max_tokens=10, stream=True))  # type: ignore[arg-type]
    assert chunks and chunks[0].choices[0].delta.content == "hi"
    sent = recorder.seen[before:]
    assert len(sent) == 2
    for headers, raw in sent:
        assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert CLIENT_KEY not in str(headers) and CLIENT_KEY.encode() not in raw
    # The access log names the caller by the key's position (CLIENT_KEY is listed second), never the key.
    lines = [r for r in caplog.records if r.name == "routeway.access"]
    assert [getattr(r, "principal", None) for r in lines[-2:]] == ["key-2", "key-2"]
    assert all(
        CLIENT_KEY not in str(r.__dict__) and UPSTREAM_KEY not in str(r.__dict__) for r in caplog.records
    )


def test_admin_routes_still_take_only_the_admin_key(gw: GatewayThread) -> None:
    with httpx.Client(base_url=gw.root, timeout=10) as http:
        assert http.get("/admin/state", headers={"authorization": f"Bearer {CLIENT_KEY}"}).status_code == 403
        assert http.get("/admin/state").status_code == 401
        assert http.get("/admin/state", headers={"authorization": "Bearer rw-admin-key"}).status_code == 200
        explain = http.post(
            "/v1/route/explain",
            json={"model": "r", "messages": MSG},
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
        assert explain.status_code == 200
        assert http.get("/v1/models").status_code == 401


def test_the_simulator_requiring_a_key_gets_it_on_both_paths(sims: SimThread, tmp_path: Any) -> None:
    """Regression: the key moved from the adapter to the credential step; the sim's `fast` profile refuses
    a request without BACKEND_KEY."""
    with GatewayThread(default_policy(sims), tmp_path, reload_policies=False) as gw:
        client = gw.client()
        done = client.chat.completions.create(model="fast-only", messages=MSG, max_tokens=4)  # type: ignore[arg-type]
        assert done.usage is not None and done.usage.completion_tokens > 0
        stream = client.chat.completions.create(model="fast-only", messages=MSG, max_tokens=4, stream=True)  # type: ignore[arg-type]
        assert any(c.choices and c.choices[0].delta.content for c in stream)
